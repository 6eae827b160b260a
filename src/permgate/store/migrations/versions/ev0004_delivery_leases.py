"""Events: a delivery's lease in a column of its own, and claim indexes over pending rows only.

Why (PostgreSQL): every delivery was updated twice, by its lease and by its result, and both
updates changed a column of the claim index (`status, attempts, next_attempt_at`), so
neither could be a HOT update and each wrote a new entry into all five indexes of the
table. Now:

- the lease sets `leased_until` (and counts the attempt) and changes no indexed column, so
  it is a HOT update (the table keeps free room in its pages for it: fillfactor 50) and
  writes no index at all; `next_attempt_at` stays the time the attempt was due;
- first attempts (`next_attempt_at = created_at`: the outbox writes both from one clock
  read) and retries (`next_attempt_at <> created_at`) are found through two partial indexes
  over pending rows only, ordered by due time; the endpoint index (for cancelling an
  endpoint's pending deliveries) covers pending rows only too. A result that finishes a
  delivery therefore writes none of them, only the key, event and app indexes.

Rows leased before this migration keep their lease as a due time past it (they are retries
now, as they were), so an upgrade under a running outbox sends nothing twice.

Revision ID: ev0004_delivery_leases
Revises: c0002_oauth_pkce
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ev0004_delivery_leases"
down_revision: str | None = "c0002_oauth_pkce"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_T = "event_deliveries"
FRESH = "status = 'pending' AND next_attempt_at = created_at"
RETRY = "status = 'pending' AND next_attempt_at <> created_at"
PENDING = "status = 'pending'"
FILLFACTOR = 50


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(name, _T, columns, postgresql_where=sa.text(where),
                    sqlite_where=sa.text(where))


def upgrade() -> None:
    op.add_column(_T, sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    _partial("ix_event_deliveries_fresh", ["next_attempt_at"], FRESH)
    _partial("ix_event_deliveries_retry", ["next_attempt_at"], RETRY)
    _partial("ix_event_deliveries_pending_endpoint", ["endpoint_id"], PENDING)
    op.drop_index("ix_event_deliveries_claim", _T)
    op.drop_index("ix_event_deliveries_endpoint", _T)
    if op.get_context().dialect.name == "postgresql":
        # New pages only: existing rows stay where they are.
        op.execute(f"ALTER TABLE {_T} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_T} RESET (fillfactor)")
    op.create_index("ix_event_deliveries_claim", _T, ["status", "attempts", "next_attempt_at"])
    op.create_index("ix_event_deliveries_endpoint", _T, ["endpoint_id", "status"])
    for name in ("ix_event_deliveries_pending_endpoint", "ix_event_deliveries_retry",
                 "ix_event_deliveries_fresh"):
        op.drop_index(name, _T)
    # A lease still running becomes a due time past it, as the earlier code leased.
    op.execute(f"UPDATE {_T} SET next_attempt_at = leased_until WHERE status = 'pending' "
               "AND leased_until IS NOT NULL AND leased_until > next_attempt_at")
    with op.batch_alter_table(_T) as t:
        t.drop_column("leased_until")
