"""The events layer's tables: endpoints, ingested events, the delivery outbox, poll cursors.

They live in the store's database and on the store's `metadata`, so one MetaData describes
the whole schema; migrations `ev0001` to `ev0004` create exactly these.
"""

from __future__ import annotations

import sqlalchemy as sa

from permgate.store.schema import BigId, UTCDateTime, metadata

webhook_endpoints = sa.Table(
    "webhook_endpoints", metadata,
    sa.Column("endpoint_id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("enabled_events", sa.JSON, nullable=False),  # event types, or ["*"]
    # Sealed with the deployment's webhook key (see events/sealing.py), never in clear.
    sa.Column("secret_sealed", sa.Text, nullable=False),
    sa.Column("secret_hint", sa.String(32), nullable=False),
    # While a rotated-out secret is still valid, deliveries carry a v1 for it too (Stripe).
    sa.Column("previous_secret_sealed", sa.Text, nullable=True),
    sa.Column("previous_expires_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("removed_at", UTCDateTime, nullable=True),
    # "standard", or "local": a `permgate listen` session's endpoint, which may target
    # loopback and is delivered only by that session (ev0002).
    sa.Column("kind", sa.String(16), nullable=False, server_default="standard"),
    # Health, as Stripe: the first failure of the current unbroken run of failures; an
    # endpoint failing for days is disabled until its operator enables it again.
    sa.Column("failing_since", UTCDateTime, nullable=True),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    # Local endpoints only: the listen session's lease; past it the endpoint is abandoned.
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Index("ix_webhook_endpoints_app", "app_id"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # "live" or "test" (event.livemode)
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),  # the event's own unix time
    sa.Column("payload", sa.Text, nullable=False),  # exactly the bytes every delivery signs
    sa.Column("source", sa.String(16), nullable=False),  # webhook | poll | permgate | trigger
    sa.Column("target_app_id", sa.String(255), nullable=True),  # permgate's per-app events
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Index("ix_events_account", "account", "received_at"),
)


# The claim indexes' conditions (ev0004): the outbox writes a delivery's `created_at` and
# `next_attempt_at` from one clock read, and only a recorded retry moves the due time, so
# every pending row is in exactly one of FRESH and RETRY. The SQL of the claims repeats them
# word for word (SQLite uses a partial index only for a query whose WHERE holds its terms).
FRESH = "status = 'pending' AND next_attempt_at = created_at"
RETRY = "status = 'pending' AND next_attempt_at <> created_at"
PENDING = "status = 'pending'"
FILLFACTOR = 50


def _pending_index(name: str, where: str, column: str) -> sa.Index:
    return sa.Index(name, column, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


deliveries = sa.Table(
    "event_deliveries", metadata,
    sa.Column("delivery_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(255), sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("webhook_endpoints.endpoint_id"),
              nullable=False),
    sa.Column("app_id", sa.String(255), nullable=False),
    sa.Column("install_id", sa.String(40), nullable=False),  # the grant that allowed it
    sa.Column("status", sa.String(16), nullable=False),  # pending|delivered|failed|cancelled
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("first_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_http_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    # The worker's lease on the attempt it claimed (ev0004). No index holds it (nor
    # `attempts`, `first_attempt_at`, `last_attempt_at`), so on PostgreSQL the lease is a
    # HOT update that writes no index; `next_attempt_at` stays the time it was due.
    sa.Column("leased_until", UTCDateTime, nullable=True),
    # The worker's claims over pending rows only, first attempts (due when created) and
    # retries each in due order; a finished delivery leaves them (ev0004).
    _pending_index("ix_event_deliveries_fresh", FRESH, "next_attempt_at"),
    _pending_index("ix_event_deliveries_retry", RETRY, "next_attempt_at"),
    _pending_index("ix_event_deliveries_pending_endpoint", PENDING, "endpoint_id"),
    sa.Index("ix_event_deliveries_event", "event_id"),
    sa.Index("ix_event_deliveries_app", "app_id", "delivery_id"),
    # Free room in every page for the lease's new row version (HOT needs the same page).
    postgresql_with={"fillfactor": FILLFACTOR},
)

poll_cursors = sa.Table(
    "event_poll_cursors", metadata,
    sa.Column("source", sa.String(255), primary_key=True),  # upstream URL + account
    sa.Column("created_gte", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
