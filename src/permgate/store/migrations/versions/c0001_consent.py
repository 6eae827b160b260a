"""Consent by people: account links, browser sessions, OAuth codes and refresh tokens.

Revision ID: c0001_consent
Revises: ev0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001_consent"
down_revision: str | None = "ev0001"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_links",
        sa.Column("link_id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("return_url", sa.Text, nullable=True),
        sa.Column("next_path", sa.Text, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
    )
    op.create_index("uq_account_links_token", "account_links", ["token_hash"], unique=True)
    op.create_table(
        "browser_sessions",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("link_id", sa.String(40), sa.ForeignKey("account_links.link_id"),
                  nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("return_url", sa.Text, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
    )
    op.create_index("uq_browser_sessions_token", "browser_sessions", ["token_hash"],
                    unique=True)
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("install_id", sa.String(40), sa.ForeignKey("installs.install_id"),
                  nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("family_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_oauth_codes_install", "oauth_codes", ["install_id"])
    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("token_id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("install_id", sa.String(40), sa.ForeignKey("installs.install_id"),
                  nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_index("uq_oauth_refresh_tokens_hash", "oauth_refresh_tokens", ["token_hash"],
                    unique=True)
    op.create_index("ix_oauth_refresh_tokens_family", "oauth_refresh_tokens", ["family_id"])
    op.create_index("ix_oauth_refresh_tokens_install", "oauth_refresh_tokens", ["install_id"])


def downgrade() -> None:
    for table in ("oauth_refresh_tokens", "oauth_codes", "browser_sessions", "account_links"):
        op.drop_table(table)
