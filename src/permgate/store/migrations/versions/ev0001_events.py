"""Events: webhook endpoints, ingested events, the delivery outbox, poll cursors.

Revision ID: ev0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ev0001"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("enabled_events", sa.JSON, nullable=False),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("secret_hint", sa.String(32), nullable=False),
        sa.Column("previous_secret_sealed", sa.Text, nullable=True),
        sa.Column("previous_expires_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("removed_at", _TS, nullable=True),
    )
    op.create_index("ix_webhook_endpoints_app", "webhook_endpoints", ["app_id"])
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("target_app_id", sa.String(255), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_index("ix_events_account", "events", ["account", "received_at"])
    op.create_table(
        "event_deliveries",
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(255), sa.ForeignKey("events.event_id"),
                  nullable=False),
        sa.Column("endpoint_id", sa.String(40),
                  sa.ForeignKey("webhook_endpoints.endpoint_id"), nullable=False),
        sa.Column("app_id", sa.String(255), nullable=False),
        sa.Column("install_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("first_attempt_at", _TS, nullable=True),
        sa.Column("last_attempt_at", _TS, nullable=True),
        sa.Column("last_http_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_index("ix_event_deliveries_due", "event_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index("ix_event_deliveries_event", "event_deliveries", ["event_id"])
    op.create_index("ix_event_deliveries_app", "event_deliveries", ["app_id", "delivery_id"])
    op.create_table(
        "event_poll_cursors",
        sa.Column("source", sa.String(255), primary_key=True),
        sa.Column("created_gte", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("event_poll_cursors", "event_deliveries", "events", "webhook_endpoints"):
        op.drop_table(table)
