"""OAuth: a code remembers its PKCE challenge and whether its install link named the
redirect_uri (RFC 7636; RFC 6749 section 4.1.3).

Codes issued before this migration (alive for five minutes at most) carry no challenge and
are taken as issued without an explicit redirect_uri: the rules they were issued under.

Revision ID: c0002_oauth_pkce
Revises: ev0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0002_oauth_pkce"
down_revision: str | None = "ev0003"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_codes") as t:
        t.add_column(sa.Column("code_challenge", sa.String(128), nullable=True))
        t.add_column(sa.Column("code_challenge_method", sa.String(8), nullable=True))
        t.add_column(sa.Column("redirect_uri_sent", sa.Boolean, nullable=False,
                               server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("oauth_codes") as t:
        for name in ("redirect_uri_sent", "code_challenge_method", "code_challenge"):
            t.drop_column(name)
