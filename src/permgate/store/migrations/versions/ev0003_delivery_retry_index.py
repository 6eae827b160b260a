"""Events: an index that finds due retries without reading every due first attempt.

The worker claims first attempts (`attempts = 0`) and retries (`attempts > 0`) separately,
each in `next_attempt_at` order. With only (status, next_attempt_at), the retry query read
every due first attempt of a backlog to find none: a cost per claim that grew with the
backlog. (status, attempts, next_attempt_at) serves both queries, and replaces the old
index (nothing else looks deliveries up by due time): writes cost no more than before.

Revision ID: ev0003
Revises: ev0002
"""

from __future__ import annotations

from alembic import op

revision = "ev0003"
down_revision: str | None = "ev0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_index("ix_event_deliveries_claim", "event_deliveries",
                    ["status", "attempts", "next_attempt_at"])
    op.drop_index("ix_event_deliveries_due", "event_deliveries")


def downgrade() -> None:
    op.create_index("ix_event_deliveries_due", "event_deliveries",
                    ["status", "next_attempt_at"])
    op.drop_index("ix_event_deliveries_claim", "event_deliveries")
