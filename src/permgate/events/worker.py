"""The delivery worker: claim due deliveries, check they may still go, POST them signed.

Claiming is one short write transaction: the due rows are selected `FOR UPDATE SKIP LOCKED`
(PostgreSQL; SQLite serialises writers instead) and leased by moving `next_attempt_at` past
the lease and counting the attempt, then committed before any HTTP request. Another worker
therefore never takes the same attempt; a worker killed mid-run leaves leases that expire, and
the deliveries become due again (at-least-once). A result is recorded only if the row is still
at the attempt this worker claimed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from permgate.events import signing
from permgate.events.db import utcnow, writing
from permgate.events.outbox import DEAUTHORIZED
from permgate.events.retry import RetryPolicy
from permgate.events.routing import Grants, endpoint_reachable, may_receive
from permgate.events.schema import deliveries, events, webhook_endpoints
from permgate.events.sealing import Sealer, default_sealer
from permgate.events.targets import Deliverer, TargetPolicy
from permgate.store import EffectiveGrant, Store
from permgate.store.schema import installs

log = logging.getLogger("permgate.events.worker")
USER_AGENT = "permgate-webhooks/0.1"
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    attempts: int
    status: str  # delivered | pending | failed | cancelled
    http_status: int | None
    error: str | None
    next_attempt_at: datetime | None


class _GrantView:
    """Effective grants by (app, account, mode), dropped whenever the store changes."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counter = -1
        self._cache: dict[tuple[str, str, str], EffectiveGrant | None] = {}

    def refresh(self) -> None:
        counter = self._store.change_counter()
        if counter != self._counter:
            self._cache.clear()
            self._counter = counter

    def get(self, app_id: str, account: str, mode: str) -> EffectiveGrant | None:
        key = (app_id, account, mode)
        if key not in self._cache:
            self._cache[key] = self._store.effective_grant(app_id, account, mode)
        return self._cache[key]


class DeliveryWorker:
    def __init__(
        self, store: Store, *, sealer: Sealer | None = None, policy: RetryPolicy | None = None,
        batch: int = 100, concurrency: int = 16, timeout: float = 10.0,
        lease: float | None = None, clock: Callable[[], datetime] = utcnow,
        targets: TargetPolicy | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer or default_sealer(store)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.timeout = timeout
        # Longer than any attempt can take, so a live worker's lease never runs out.
        self.lease = timedelta(seconds=lease if lease is not None else timeout * 2 + 30)
        if self.lease.total_seconds() <= timeout:
            raise ValueError("the lease must be longer than the HTTP timeout")
        self._clock = clock
        self._grants = Grants()
        self._view = _GrantView(store)
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix="permgate-deliver")
        # Every URL re-checked, every connection pinned to an address checked just now.
        self._http = Deliverer(targets, timeout=timeout, max_connections=concurrency)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> DeliveryWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one round ------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch, deliver it, record the results; returns how many were claimed."""
        claimed = self._claim()
        if not claimed:
            return 0
        self._view.refresh()
        outcomes = list(self._pool.map(self._attempt, claimed))
        self._record(outcomes)
        return len(claimed)

    def run(self, stop: threading.Event, idle: float = 0.2) -> None:
        while not stop.is_set():
            try:
                busy = self.run_once()
            except sa.exc.OperationalError as e:
                log.warning("database unavailable, retrying: %s", e.orig)
                busy = 0
            if not busy:
                stop.wait(idle)

    def drain(self, max_rounds: int = 10_000) -> int:
        """Deliver until nothing is due now; returns the number of attempts made."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if not n:
                break
            total += n
        return total

    # -- steps ----------------------------------------------------------------------------

    def _claim(self) -> list[RowMapping]:
        now = self._clock()
        with writing(self.store) as conn:
            ids = conn.execute(
                sa.select(deliveries.c.delivery_id)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at).limit(self.batch)
                .with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return []
            conn.execute(deliveries.update().where(deliveries.c.delivery_id.in_(ids)).values(
                attempts=deliveries.c.attempts + 1, next_attempt_at=now + self.lease,
                last_attempt_at=now,
                first_attempt_at=sa.func.coalesce(deliveries.c.first_attempt_at, now)))
            return list(conn.execute(
                sa.select(
                    deliveries.c.delivery_id, deliveries.c.attempts, deliveries.c.app_id,
                    deliveries.c.endpoint_id,
                    deliveries.c.first_attempt_at, events.c.type, events.c.account,
                    events.c.mode.label("event_mode"), events.c.payload,
                    events.c.target_app_id, webhook_endpoints.c.url,
                    webhook_endpoints.c.mode.label("endpoint_mode"),
                    webhook_endpoints.c.enabled_events, webhook_endpoints.c.removed_at,
                    webhook_endpoints.c.secret_sealed,
                    webhook_endpoints.c.previous_secret_sealed,
                    webhook_endpoints.c.previous_expires_at,
                    installs.c.mode.label("install_mode"),
                    installs.c.uninstalled_at,
                )
                .select_from(deliveries.join(events, events.c.event_id == deliveries.c.event_id)
                             .join(webhook_endpoints,
                                   webhook_endpoints.c.endpoint_id == deliveries.c.endpoint_id)
                             .join(installs, installs.c.install_id == deliveries.c.install_id))
                .where(deliveries.c.delivery_id.in_(ids))).mappings())

    def _still_allowed(self, row: RowMapping) -> str | None:
        """Why the delivery may no longer go, or None. Checked at every attempt."""
        if row["removed_at"] is not None:
            return "endpoint removed"
        etype = row["type"]
        if etype not in row["enabled_events"] and "*" not in row["enabled_events"]:
            return "endpoint no longer subscribes"
        if etype == DEAUTHORIZED and row["target_app_id"] == row["app_id"]:
            return None  # the goodbye is owed to an install that no longer exists
        if row["uninstalled_at"] is not None:
            return "app uninstalled"
        grant = self._view.get(row["app_id"], row["account"], row["install_mode"])
        if grant is None:
            return "app uninstalled"
        if not may_receive(etype, self._grants(grant.approved)):
            return "the app's approved permissions no longer allow this event"
        live = self._view.get(row["app_id"], row["account"], "live")
        if not endpoint_reachable(row["endpoint_mode"], row["install_mode"],
                                  ("live",) if live is not None else ()):
            return "app no longer installed in the endpoint's mode"
        return None

    def _secrets(self, row: RowMapping) -> list[str]:
        # Sealed values are bound to their endpoint (AES-GCM associated data).
        out = [self.sealer.open(row["secret_sealed"], row["endpoint_id"])]
        expires = row["previous_expires_at"]
        if row["previous_secret_sealed"] and expires is not None and expires > self._clock():
            out.append(self.sealer.open(row["previous_secret_sealed"], row["endpoint_id"]))
        return out

    def _attempt(self, row: RowMapping) -> Outcome:
        did, attempts = row["delivery_id"], row["attempts"]
        try:
            reason = self._still_allowed(row)
        except Exception as e:  # a failed check must not lose the delivery: retry it
            reason, error = None, f"check failed: {e}"
            return self._failed(row, None, error)
        if reason is not None:
            return Outcome(did, attempts, "cancelled", None, reason, None)
        payload = row["payload"].encode("utf-8")
        try:
            header = signing.sign(payload, self._secrets(row))
            resp = self._http.post(row["url"], row["endpoint_mode"], content=payload, headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": header, "User-Agent": USER_AGENT})
        except Exception as e:
            return self._failed(row, None, f"{type(e).__name__}: {e}"[:_MAX_ERROR])
        if 200 <= resp.status_code < 300:
            return Outcome(did, attempts, "delivered", resp.status_code, None, None)
        return self._failed(row, resp.status_code, f"HTTP {resp.status_code}")

    def _failed(self, row: RowMapping, http_status: int | None, error: str) -> Outcome:
        now = self._clock()
        first = row["first_attempt_at"] or now
        at = self.policy.next_attempt(row["attempts"], first, now)
        status = "pending" if at is not None else "failed"
        return Outcome(row["delivery_id"], row["attempts"], status, http_status, error, at)

    def _record(self, outcomes: Sequence[Outcome]) -> None:
        now = self._clock()
        b = sa.bindparam
        stmt = (deliveries.update()
                .where(deliveries.c.delivery_id == b("b_id"),
                       deliveries.c.attempts == b("b_attempts"),
                       deliveries.c.status == "pending")
                .values(status=b("b_status"), last_http_status=b("b_http"),
                        last_error=b("b_error"), next_attempt_at=b("b_next"),
                        finished_at=b("b_finished")))
        with writing(self.store) as conn:
            conn.execute(stmt, [{
                "b_id": o.delivery_id, "b_attempts": o.attempts, "b_status": o.status,
                "b_http": o.http_status, "b_error": o.error,
                "b_next": o.next_attempt_at or now,
                "b_finished": None if o.status == "pending" else now,
            } for o in outcomes])
