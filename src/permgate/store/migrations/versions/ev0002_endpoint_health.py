"""Events: endpoint health (failing since, disabled) and local-development endpoints.

Revision ID: ev0002
Revises: c0001_consent
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ev0002"
down_revision: str | None = "c0001_consent"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as t:
        t.add_column(sa.Column("kind", sa.String(16), nullable=False,
                               server_default="standard"))
        t.add_column(sa.Column("failing_since", _TS, nullable=True))
        t.add_column(sa.Column("disabled_at", _TS, nullable=True))
        t.add_column(sa.Column("disabled_reason", sa.Text, nullable=True))
        t.add_column(sa.Column("expires_at", _TS, nullable=True))
    op.create_index("ix_event_deliveries_endpoint", "event_deliveries",
                    ["endpoint_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_event_deliveries_endpoint", "event_deliveries")
    with op.batch_alter_table("webhook_endpoints") as t:
        for name in ("expires_at", "disabled_reason", "disabled_at", "failing_since", "kind"):
            t.drop_column(name)
