"""The delivery worker: claim due deliveries in batches, check they may still go, sign each
once, POST them concurrently, record the results in batches.

Claiming is one short write transaction: candidate rows are selected `FOR UPDATE SKIP
LOCKED` (PostgreSQL; SQLite serialises writers instead), the chosen ones are leased by moving
`next_attempt_at` past the lease and counting the attempt, and the transaction commits before
any HTTP request. Another worker therefore never takes the same attempt; a worker killed
mid-batch leaves leases that expire, and the deliveries become due again (at-least-once). A
result is recorded only if the row is still at the attempt this worker claimed.

Fairness: at most `per_endpoint` attempts per endpoint are in flight in a worker, and an
endpoint at that bound is left out of the next claims, so a slow or dead endpoint holds its
own slots and nobody else's. First attempts get at least three quarters of every claim when
there are any, so a backlog of retries never starves new events.

Health (as Stripe): an endpoint whose attempts have all failed for `disable_after` (3 days)
is disabled: no new event is routed to it, its pending deliveries are cancelled, the app's
audit trail records `webhook.disabled`, and `webhooks enable` turns it back on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from psycopg.rows import dict_row as psycopg_dict_row
from sqlalchemy.engine import Connection, RowMapping

from permgate.events import signing
from permgate.events.db import audit, bump_change_counter, utcnow, writing
from permgate.events.model import LOCAL
from permgate.events.outbox import DEAUTHORIZED, cancel_pending
from permgate.events.retry import RetryPolicy
from permgate.events.routing import Grants, endpoint_reachable, may_receive
from permgate.events.schema import deliveries, events, webhook_endpoints
from permgate.events.sealing import Sealer, default_sealer
from permgate.events.subscriptions import remove_abandoned_local
from permgate.events.targets import TargetPolicy, TargetRefused
from permgate.events.transport import DeliveryError, Target, Transport
from permgate.store import EffectiveGrant, Store
from permgate.store.schema import installs

log = logging.getLogger("permgate.events.worker")
_MAX_ERROR = 500
DISABLE_AFTER = timedelta(days=3)
_FLUSH_SECONDS = 0.05  # results wait at most this long to be recorded in one batch
_SWEEP_SECONDS = 30.0  # how often abandoned listen endpoints are looked for
# PostgreSQL's claim as one statement: the due first attempts and retries, each locked with
# SKIP LOCKED; first attempts keep 3/4 of the claim while there are any; at most `cap` in
# flight per endpoint (counting those already in flight here); the chosen rows leased; and
# what the attempts need read, joined. `_choose` is the same rule in Python.
_D, _E, _W, _I = deliveries.name, events.name, webhook_endpoints.name, installs.name
_PG_CLAIM = f"""
WITH fresh AS (
  SELECT delivery_id, endpoint_id, next_attempt_at FROM {_D}
  WHERE status = 'pending' AND next_attempt_at <= %(now)s AND attempts = 0 {{scope}}
    AND NOT (endpoint_id = ANY(%(saturated)s::text[]))
  ORDER BY next_attempt_at LIMIT %(n)s FOR UPDATE SKIP LOCKED),
retry AS (
  SELECT delivery_id, endpoint_id, next_attempt_at FROM {_D}
  WHERE status = 'pending' AND next_attempt_at <= %(now)s AND attempts > 0 {{scope}}
    AND NOT (endpoint_id = ANY(%(saturated)s::text[]))
  ORDER BY next_attempt_at LIMIT %(n)s FOR UPDATE SKIP LOCKED),
quota AS (
  SELECT greatest(%(n)s - (SELECT count(*) FROM fresh), %(n)s / 4) AS room,
         (SELECT count(*) FROM retry) AS nr),
pool AS (
  SELECT delivery_id, endpoint_id, 0 AS kind,
         row_number() OVER (ORDER BY next_attempt_at, delivery_id) AS rn FROM fresh
  UNION ALL
  SELECT delivery_id, endpoint_id, 1 AS kind,
         row_number() OVER (ORDER BY next_attempt_at, delivery_id) AS rn FROM retry),
taken AS (
  SELECT p.* FROM pool p, quota q
  WHERE (p.kind = 0 AND p.rn <= %(n)s - least(q.nr, q.room)) OR (p.kind = 1 AND p.rn <= q.room)),
capped AS (
  SELECT t.delivery_id, t.kind, t.rn, coalesce(b.busy, 0)
           + row_number() OVER (PARTITION BY t.endpoint_id ORDER BY t.kind, t.rn) AS k
  FROM taken t LEFT JOIN unnest(%(busy_ids)s::text[], %(busy_n)s::int[]) AS b(endpoint_id, busy)
    ON b.endpoint_id = t.endpoint_id),
chosen AS (SELECT delivery_id FROM capped WHERE k <= %(cap)s ORDER BY kind, rn LIMIT %(n)s),
leased AS (
  UPDATE {_D} d SET attempts = d.attempts + 1, next_attempt_at = %(until)s,
         last_attempt_at = %(now)s, first_attempt_at = coalesce(d.first_attempt_at, %(now)s)
  FROM chosen c WHERE d.delivery_id = c.delivery_id
  RETURNING d.delivery_id, d.attempts, d.app_id, d.first_attempt_at, d.endpoint_id,
            d.event_id, d.install_id)
SELECT l.*, e.type, e.account, e.mode AS event_mode, e.payload, e.target_app_id, w.url,
       w.mode AS endpoint_mode, w.kind, w.disabled_at, w.enabled_events::text AS enabled_events,
       w.removed_at,
       w.secret_sealed, w.previous_secret_sealed, w.previous_expires_at, w.failing_since,
       i.mode AS install_mode, i.uninstalled_at
FROM leased l JOIN {_E} e ON e.event_id = l.event_id
  JOIN {_W} w ON w.endpoint_id = l.endpoint_id JOIN {_I} i ON i.install_id = l.install_id
"""

# What an attempt reads: the leased delivery's own columns, then its event, endpoint, install.
_LEASED = ("delivery_id", "attempts", "app_id", "first_attempt_at", "endpoint_id",
           "event_id", "install_id")
_DETAILS = (
    events.c.type, events.c.account, events.c.mode.label("event_mode"), events.c.payload,
    events.c.target_app_id, webhook_endpoints.c.url,
    webhook_endpoints.c.mode.label("endpoint_mode"), webhook_endpoints.c.kind,
    webhook_endpoints.c.disabled_at,
    # As text: parsed once per distinct value (`_subscribed`), not once per row.
    sa.type_coerce(webhook_endpoints.c.enabled_events, sa.Text).label("enabled_events"),
    webhook_endpoints.c.removed_at, webhook_endpoints.c.secret_sealed,
    webhook_endpoints.c.previous_secret_sealed, webhook_endpoints.c.previous_expires_at,
    webhook_endpoints.c.failing_since, installs.c.mode.label("install_mode"),
    installs.c.uninstalled_at)
# A result, recorded only if the row is still at the attempt this worker claimed; found by
# its key (SQLite plans a row-value IN list as a scan of every pending row).
_RECORD = deliveries.update().where(
    deliveries.c.delivery_id == sa.bindparam("b_id"),
    deliveries.c.attempts == sa.bindparam("b_attempts"),
    deliveries.c.status == "pending",
).values(status=sa.bindparam("b_status"), last_http_status=sa.bindparam("b_http"),
         last_error=sa.bindparam("b_error"), next_attempt_at=sa.bindparam("b_next"),
         finished_at=sa.bindparam("b_finished"))

# The same on PostgreSQL, every result in one statement.
_PG_RECORD = f"""
UPDATE {_D} d SET status = u.st, last_http_status = u.http, last_error = u.err,
       next_attempt_at = u.next, finished_at = u.fin
FROM unnest(%(ids)s::bigint[], %(att)s::int[], %(st)s::text[], %(http)s::int[],
            %(err)s::text[], %(next)s::timestamptz[], %(fin)s::timestamptz[])
     AS u(id, att, st, http, err, next, fin)
WHERE d.delivery_id = u.id AND d.attempts = u.att AND d.status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    attempts: int
    status: str  # delivered | pending | failed | cancelled
    http_status: int | None
    error: str | None
    next_attempt_at: datetime | None
    endpoint_id: str = ""
    event_id: str = ""
    event_type: str = ""
    account: str = ""
    attempted: bool = True  # False: cancelled, or our own check failed (no HTTP request)

    @property
    def reached(self) -> bool | None:
        """True: the endpoint answered 2xx; False: it failed; None: no attempt was made."""
        if self.status == "cancelled" or not self.attempted:
            return None
        return self.status == "delivered"


@dataclass(frozen=True, slots=True)
class _Job:
    """A claimed attempt, checked and signed, ready to POST (or already settled)."""

    row: RowMapping
    target: Target
    body: bytes
    headers: dict[str, str]
    settled: Outcome | None  # cancelled, or a failed check: no HTTP request


class _GrantView:
    """Effective grants by (app, account, mode), dropped whenever the store changes."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counter = -1
        self._cache: dict[tuple[str, str, str], EffectiveGrant | None] = {}
        self._accounts: set[str] = set()

    def refresh(self) -> None:
        counter = self._store.change_counter()
        if counter != self._counter or len(self._cache) > 100_000:
            self._cache.clear()
            self._accounts.clear()
            self._counter = counter

    def preload(self, accounts: Iterable[str]) -> None:
        """Every install of these accounts, in one query (a claim spans many accounts)."""
        missing = {a for a in accounts if a not in self._accounts}
        if not missing:
            return
        for account, grants in self._store.installs_for_accounts(missing).items():
            for g in grants:
                self._cache[(g.app_id, account, g.mode)] = g
            self._accounts.add(account)

    def get(self, app_id: str, account: str, mode: str) -> EffectiveGrant | None:
        key = (app_id, account, mode)
        if key in self._cache:
            return self._cache[key]
        if account in self._accounts:
            return None  # preloaded: not installed there
        grant = self._cache[key] = self._store.effective_grant(app_id, account, mode)
        return grant


class DeliveryWorker:
    """Deliver the outbox. `only_endpoint`: deliver that endpoint's deliveries and nothing
    else (a `permgate listen` session); otherwise every standard endpoint's, never a local
    one's (those belong to their session). `on_outcome` is called with every result."""

    def __init__(
        self, store: Store, *, sealer: Sealer | None = None, policy: RetryPolicy | None = None,
        batch: int = 200, concurrency: int = 256, per_endpoint: int = 16,
        timeout: float = 10.0, lease: float | None = None,
        clock: Callable[[], datetime] = utcnow, disable_after: timedelta = DISABLE_AFTER,
        only_endpoint: str | None = None, on_outcome: Callable[[Outcome], None] | None = None,
        targets: TargetPolicy | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1 or per_endpoint < 1:
            raise ValueError("batch, concurrency and per_endpoint must be at least 1")
        self.store = store
        self.sealer = sealer or default_sealer(store)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.timeout = timeout
        # Longer than any attempt can take, so a live worker's lease never runs out: every
        # claimed attempt starts at once (claims never exceed the free slots).
        self.lease = timedelta(seconds=lease if lease is not None else timeout * 2 + 30)
        if self.lease.total_seconds() <= timeout:
            raise ValueError("the lease must be longer than the HTTP timeout")
        self.disable_after = disable_after
        self.only_endpoint = only_endpoint
        self.on_outcome = on_outcome
        self._clock = clock
        self._grants = Grants()
        self._view = _GrantView(store)
        # (sealed secret, endpoint) -> secret, unsealed once (sealed values are bound to
        # their endpoint: AES-GCM associated data)
        self._opened: dict[tuple[str, str], str] = {}
        self._enabled: dict[str, frozenset[str]] = {}  # enabled_events JSON -> names
        self._allowed: dict[tuple[str, frozenset[str]], bool] = {}  # (type, approved set)
        self._record_forms: dict[str, tuple[
            str, list[str], dict[str, Any], Callable[[datetime | None], Any]]] = {}
        self._loop = asyncio.new_event_loop()
        # Every request's URL checked and every connection pinned to an address checked
        # just now, by the target policy (events/targets.py, events/transport.py).
        self._transport = Transport(concurrency=concurrency, per_destination=per_endpoint,
                                    timeout=timeout, policy=targets)
        self._busy: Counter[str] = Counter()  # endpoint -> attempts in flight here
        self._failing: set[str] = set()  # endpoints whose failing_since may be set

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._transport.close())
            self._loop.close()

    def __enter__(self) -> DeliveryWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch, deliver it, record the results; returns how many were claimed."""
        jobs = self._claim_and_prepare(min(self.batch, self.concurrency), dict(self._busy))
        self._hold(jobs)
        if not jobs:
            return 0
        outcomes = self._loop.run_until_complete(self._attempt_all(jobs))
        self._record(outcomes)
        return len(jobs)

    async def _attempt_all(self, jobs: Sequence[_Job]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._attempt(j) for j in jobs)))

    def drain(self, max_rounds: int = 10_000) -> int:
        """Deliver until nothing is due now; returns the number of attempts made."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if not n:
                break
            total += n
        return total

    def run(self, stop: threading.Event, idle: float = 0.2) -> None:
        """Deliver continuously until `stop` is set; attempts in flight then finish."""
        self._loop.run_until_complete(self._serve(stop, idle))

    async def _serve(self, stop: threading.Event, idle: float) -> None:
        """Claims, attempts and the recording of results overlap: while a batch of results
        is being written, the next claim runs and attempts go on."""
        inflight: set[asyncio.Task[Outcome]] = set()
        done_outcomes: list[Outcome] = []
        wake = asyncio.Event()
        flushing: asyncio.Task[None] | None = None

        completed = [0]  # attempts finished since the last claim

        def finished(task: asyncio.Task[Outcome]) -> None:
            # A completion queue: O(1) per result, however many attempts are in flight.
            inflight.discard(task)
            done_outcomes.append(task.result())
            completed[0] += 1
            wake.set()

        last_flush = self._loop.time()
        next_sweep = 0.0
        threshold = max(1, min(self.batch, self.concurrency) // 4)
        short_claim_at: float | None = None  # when a claim last found less than it wanted
        while True:
            if self.only_endpoint is None and self._loop.time() >= next_sweep:
                next_sweep = self._loop.time() + _SWEEP_SECONDS
                try:
                    await asyncio.to_thread(remove_abandoned_local, self.store,
                                            by="permgate-worker")
                except Exception as e:  # housekeeping must never stop delivery
                    log.warning("could not remove abandoned listen endpoints: %s", e)
            stopping = stop.is_set()
            want = claimed = 0
            free = self.concurrency - len(inflight)
            # Claim when a good share of the slots is free, so claims stay batches rather
            # than one row per finished attempt.
            # After a claim that found less than it wanted (the due rows are claimed, or
            # their endpoints are at their bound), claim again only once a share of the
            # attempts finished or `idle` passed: an empty claim still costs a transaction.
            if short_claim_at is not None and (
                    completed[0] >= threshold or self._loop.time() - short_claim_at >= idle):
                short_claim_at = None
            if not stopping and short_claim_at is None and (free >= threshold or not inflight):
                want = min(self.batch, free)
                completed[0] = 0
                try:
                    jobs = await asyncio.to_thread(
                        self._claim_and_prepare, want, dict(self._busy))
                except sa.exc.OperationalError as e:
                    log.warning("database unavailable, retrying: %s", e.orig)
                    jobs = []
                self._hold(jobs)
                claimed = len(jobs)
                if claimed < want:
                    short_claim_at = self._loop.time()
                for job in jobs:
                    task = self._loop.create_task(self._attempt(job))
                    inflight.add(task)
                    task.add_done_callback(finished)
            now = self._loop.time()
            flush_idle = flushing is None or flushing.done()
            if done_outcomes and flush_idle and (
                    len(done_outcomes) >= self.batch // 2 or not inflight
                    or now - last_flush >= _FLUSH_SECONDS):
                batch = list(done_outcomes)
                done_outcomes.clear()
                flushing = self._loop.create_task(self._flush(batch))
                flushing.add_done_callback(lambda _: wake.set())
                last_flush = now
                flush_idle = False
            if stopping and not inflight and not done_outcomes and flush_idle:
                break
            if claimed and claimed == want:
                await asyncio.sleep(0)  # a full claim: more may be due at once
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), _FLUSH_SECONDS if inflight
                                           or done_outcomes or short_claim_at else idle)
                wake.clear()
        if flushing is not None:
            await flushing

    async def _flush(self, outcomes: list[Outcome]) -> None:
        while True:
            try:
                await asyncio.to_thread(self._record, outcomes)
                return
            except sa.exc.OperationalError as e:
                # The results are not lost while we hold them; if we die, leases expire.
                log.warning("database unavailable while recording, retrying: %s", e.orig)
                await asyncio.sleep(0.5)

    # -- claiming ---------------------------------------------------------------------------

    def _claim_and_prepare(self, limit: int, busy: Mapping[str, int]) -> list[_Job]:
        """Runs in a thread: `busy` is a snapshot of the attempts in flight per endpoint."""
        if limit < 1:
            return []
        rows = self._claim(limit, busy)
        if not rows:
            return []
        self._view.refresh()
        self._view.preload(r["account"] for r in rows)
        now = int(self._clock().timestamp())
        return [self._prepare(r, now) for r in rows]

    def _hold(self, jobs: Iterable[_Job]) -> None:
        """Count the attempts now in flight (on the loop's thread, as `_attempt` does)."""
        for j in jobs:
            if j.settled is None:
                self._busy[j.target.endpoint_id] += 1

    def _candidates(self, now: datetime, limit: int, first: bool,
                    busy: Mapping[str, int]) -> sa.Select[int, str]:
        d = deliveries.c
        stmt = (sa.select(d.delivery_id, d.endpoint_id)
                .where(d.status == "pending", d.next_attempt_at <= now,
                       d.attempts == 0 if first else d.attempts > 0))
        if self.only_endpoint is not None:
            stmt = stmt.where(d.endpoint_id == self.only_endpoint)
        else:
            stmt = stmt.where(d.endpoint_id.not_in(
                sa.select(webhook_endpoints.c.endpoint_id)
                .where(webhook_endpoints.c.kind == LOCAL)))
        saturated = sorted(e for e, n in busy.items() if n >= self.per_endpoint)
        if saturated:
            stmt = stmt.where(d.endpoint_id.not_in(saturated))
        return (stmt.order_by(d.next_attempt_at).limit(limit)
                .with_for_update(skip_locked=True, of=deliveries))

    def _choose(self, fresh: Sequence[tuple[int, str]], retries: Sequence[tuple[int, str]],
                limit: int, in_flight: Mapping[str, int]) -> list[int]:
        # New events keep at least 3/4 of the claim while there are any.
        room_for_retries = max(limit - len(fresh), limit // 4)
        busy = Counter(in_flight)
        ids: list[int] = []
        for did, endpoint_id in [*fresh[:limit - min(len(retries), room_for_retries)],
                                 *retries[:room_for_retries]]:
            if len(ids) >= limit:
                break
            if busy[endpoint_id] < self.per_endpoint:
                busy[endpoint_id] += 1
                ids.append(did)
        return ids

    def _claim(self, limit: int, in_flight: Mapping[str, int]) -> list[RowMapping]:
        if self.store.engine.dialect.name == "postgresql":
            return self._claim_pg(limit, in_flight)
        return self._claim_generic(limit, in_flight)

    def _claim_pg(self, limit: int, in_flight: Mapping[str, int]) -> list[RowMapping]:
        """The same claim as `_claim_generic`, as ONE statement in its own transaction
        (autocommit): one round trip. Rows locked but not chosen are released at once."""
        now = self._clock()
        if self.only_endpoint is not None:
            scope = "AND endpoint_id = %(only)s"
        else:
            scope = ("AND endpoint_id NOT IN (SELECT endpoint_id FROM "
                     f"{webhook_endpoints.name} WHERE kind = 'local')")
        saturated = sorted(e for e, n in in_flight.items() if n >= self.per_endpoint)
        busy = sorted(in_flight.items())
        params = {
            "now": now, "n": limit, "cap": self.per_endpoint, "until": now + self.lease,
            "only": self.only_endpoint, "saturated": saturated,
            "busy_ids": [e for e, _ in busy], "busy_n": [n for _, n in busy],
        }
        with self.store.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT") as conn:
            raw: Any = conn.connection.driver_connection
            with raw.cursor(row_factory=psycopg_dict_row) as cur:
                cur.execute(_PG_CLAIM.format(scope=scope), params)
                return list(cur.fetchall())

    def _claim_generic(self, limit: int, in_flight: Mapping[str, int]) -> list[RowMapping]:
        now = self._clock()
        fresh_q = self._candidates(now, limit, True, in_flight)
        retry_q = self._candidates(now, limit, False, in_flight)
        with writing(self.store) as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                # One round trip: both candidate sets, each locked with SKIP LOCKED.
                f, r = fresh_q.cte("fresh"), retry_q.cte("retry")
                rows = conn.execute(sa.union_all(
                    sa.select(f.c.delivery_id, f.c.endpoint_id, sa.literal(True)),
                    sa.select(r.c.delivery_id, r.c.endpoint_id, sa.literal(False)))).all()
                fresh = [(int(x[0]), str(x[1])) for x in rows if x[2]]
                retries = [(int(x[0]), str(x[1])) for x in rows if not x[2]]
            else:
                fresh = [(int(x[0]), str(x[1])) for x in conn.execute(fresh_q)]
                retries = [(int(x[0]), str(x[1])) for x in conn.execute(retry_q)]
            ids = self._choose(fresh, retries, limit, in_flight)
            if not ids:
                return []
            lease = deliveries.update().where(deliveries.c.delivery_id.in_(ids)).values(
                attempts=deliveries.c.attempts + 1, next_attempt_at=now + self.lease,
                last_attempt_at=now,
                first_attempt_at=sa.func.coalesce(deliveries.c.first_attempt_at, now))
            if postgres:
                # One round trip: lease the rows and read what the attempts need.
                leased = lease.returning(*(deliveries.c[n] for n in _LEASED)).cte("leased")
                source: sa.FromClause = leased
            else:
                conn.execute(lease)
                source = deliveries
            c = source.c
            return list(conn.execute(
                sa.select(*(c[n] for n in _LEASED), *_DETAILS)
                .select_from(source.join(events, events.c.event_id == c.event_id)
                             .join(webhook_endpoints,
                                   webhook_endpoints.c.endpoint_id == c.endpoint_id)
                             .join(installs, installs.c.install_id == c.install_id))
                .where(c.delivery_id.in_(ids))).mappings())

    # -- per attempt ------------------------------------------------------------------------

    def _still_allowed(self, row: RowMapping) -> str | None:
        """Why the delivery may no longer go, or None. Checked at every attempt."""
        if row["removed_at"] is not None:
            return "endpoint removed"
        if row["disabled_at"] is not None:
            return "endpoint disabled"
        etype = row["type"]
        subscribed = self._subscribed(row["enabled_events"])
        if etype not in subscribed and "*" not in subscribed:
            return "endpoint no longer subscribes"
        if etype == DEAUTHORIZED and row["target_app_id"] == row["app_id"]:
            return None  # the goodbye is owed to an install that no longer exists
        if row["uninstalled_at"] is not None:
            return "app uninstalled"
        grant = self._view.get(row["app_id"], row["account"], row["install_mode"])
        if grant is None:
            return "app uninstalled"
        if not self._may_receive(etype, grant.approved):
            return "the app's approved permissions no longer allow this event"
        live = self._view.get(row["app_id"], row["account"], "live")
        if not endpoint_reachable(row["endpoint_mode"], row["install_mode"],
                                  ("live",) if live is not None else ()):
            return "app no longer installed in the endpoint's mode"
        return None

    def _subscribed(self, enabled_events: str) -> frozenset[str]:
        names = self._enabled.get(enabled_events)
        if names is None:
            if len(self._enabled) > 10_000:
                self._enabled.clear()
            names = self._enabled[enabled_events] = frozenset(json.loads(enabled_events))
        return names

    def _may_receive(self, event_type: str, approved: frozenset[str]) -> bool:
        # A pure function of the type and the approved set (thousands of installs share
        # few sets): decided once per pair, re-checked against each attempt's grant.
        key = (event_type, approved)
        allowed = self._allowed.get(key)
        if allowed is None:
            if len(self._allowed) > 100_000:
                self._allowed.clear()
            allowed = self._allowed[key] = may_receive(event_type, self._grants(approved))
        return allowed

    def _open(self, sealed: str, endpoint_id: str) -> str:
        key = (sealed, endpoint_id)
        secret = self._opened.get(key)
        if secret is None:
            if len(self._opened) > 10_000:
                self._opened.clear()
            secret = self._opened[key] = self.sealer.open(sealed, endpoint_id)
        return secret

    def _secrets(self, row: RowMapping) -> list[str]:
        endpoint_id = row["endpoint_id"]
        out = [self._open(row["secret_sealed"], endpoint_id)]
        expires = row["previous_expires_at"]
        if row["previous_secret_sealed"] and expires is not None and expires > self._clock():
            out.append(self._open(row["previous_secret_sealed"], endpoint_id))
        return out

    def _prepare(self, row: RowMapping, timestamp: int) -> _Job:
        target = Target(row["endpoint_id"], row["url"], row["kind"] == LOCAL,
                        row["endpoint_mode"])
        if row["failing_since"] is not None:
            self._failing.add(row["endpoint_id"])
        body = row["payload"].encode("utf-8")
        try:
            reason = self._still_allowed(row)
            if reason is not None:
                return _Job(row, target, body, {}, self._outcome(row, "cancelled", None, reason))
            # One signature per (event, secret): the header is built once for this attempt.
            header = signing.sign(body, self._secrets(row), timestamp)
        except Exception as e:  # a failed check must not lose the delivery: retry it
            failed = replace(self._failed(row, None, f"check failed: {e}"), attempted=False)
            return _Job(row, target, body, {}, failed)
        return _Job(row, target, body, {
            "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
        }, None)

    async def _attempt(self, job: _Job) -> Outcome:
        if job.settled is not None:
            return self._report(job.settled)
        row = job.row
        try:
            resp = await self._transport.post(job.target, job.body, job.headers)
        except TimeoutError:
            outcome = self._failed(row, None, f"timed out after {self.timeout:g} s")
        except TargetRefused as e:
            outcome = self._failed(row, None, f"target refused: {e}")
        except DeliveryError as e:
            outcome = self._failed(row, None, str(e)[:_MAX_ERROR])
        except Exception as e:  # anything else fails this attempt, never the worker
            outcome = self._failed(row, None, f"{type(e).__name__}: {e}"[:_MAX_ERROR])
        else:
            if 200 <= resp.status < 300:
                outcome = self._outcome(row, "delivered", resp.status, None)
            else:
                outcome = self._failed(row, resp.status, f"HTTP {resp.status}")
        finally:
            self._busy[job.target.endpoint_id] -= 1
            if self._busy[job.target.endpoint_id] <= 0:
                del self._busy[job.target.endpoint_id]
        return self._report(outcome)

    def _report(self, outcome: Outcome) -> Outcome:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # a printing callback must not lose a result
                log.exception("on_outcome failed")
        return outcome

    def _outcome(self, row: RowMapping, status: str, http_status: int | None,
                 error: str | None, at: datetime | None = None) -> Outcome:
        return Outcome(row["delivery_id"], row["attempts"], status, http_status, error, at,
                       row["endpoint_id"], row["event_id"], row["type"], row["account"])

    def _failed(self, row: RowMapping, http_status: int | None, error: str) -> Outcome:
        now = self._clock()
        first = row["first_attempt_at"] or now
        at = self.policy.next_attempt(row["attempts"], first, now)
        return self._outcome(row, "pending" if at is not None else "failed", http_status,
                             error, at)

    # -- recording --------------------------------------------------------------------------

    def _record(self, outcomes: Sequence[Outcome]) -> None:
        """Every result in one transaction, as one executemany of `_RECORD`."""
        if not outcomes:
            return
        now = self._clock()
        with writing(self.store) as conn:
            if conn.dialect.name == "postgresql":
                self._record_pg(conn, outcomes, now)
                self._health(conn, outcomes, now)
                return
            sql, names, fixed, convert = self._record_form(conn.dialect)
            at_now = convert(now)
            rows = []
            for o in outcomes:
                # A retry waits for its next attempt; anything else is finished now.
                retry = o.status == "pending"
                values = {**fixed, "b_id": o.delivery_id, "b_attempts": o.attempts,
                          "b_status": o.status, "b_http": o.http_status, "b_error": o.error,
                          "b_next": convert(o.next_attempt_at) if retry else at_now,
                          "b_finished": None if retry else at_now}
                rows.append(tuple(values[n] for n in names) if names else values)
            # The driver's executemany, the statement compiled once: SQLAlchemy's per-row
            # parameter processing cost more than SQLite's own work.
            conn.exec_driver_sql(sql, rows)
            self._health(conn, outcomes, now)

    @staticmethod
    def _record_pg(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
        """PostgreSQL: every result in ONE statement over arrays (one round trip, no
        per-row work in the driver)."""
        retry = [o.status == "pending" for o in outcomes]
        conn.exec_driver_sql(_PG_RECORD, {
            "ids": [o.delivery_id for o in outcomes], "att": [o.attempts for o in outcomes],
            "st": [o.status for o in outcomes], "http": [o.http_status for o in outcomes],
            "err": [o.error for o in outcomes],
            "next": [o.next_attempt_at if r else now for o, r in zip(outcomes, retry, strict=True)],
            "fin": [None if r else now for r in retry],
        })

    def _record_form(self, dialect: sa.Dialect) -> tuple[
            str, list[str], dict[str, Any], Callable[[datetime | None], Any]]:
        """`_RECORD` for this dialect: its SQL, positional parameter order (or [] when
        parameters are named), constant parameters, and the timestamps' conversion."""
        form = self._record_forms.get(dialect.name)
        if form is None:
            compiled = _RECORD.compile(dialect=dialect)
            sql = str(compiled)
            names = list(compiled.positiontup or []) if compiled.positional else []
            fixed = {k: b.effective_value for k, b in compiled.binds.items()
                     if not k.startswith("b_") and (k in names or f"%({k})s" in sql)}
            proc = compiled.binds["b_next"].type.bind_processor(dialect)

            def convert(value: datetime | None) -> Any:
                return value if proc is None or value is None else proc(value)

            form = self._record_forms[dialect.name] = (sql, names, fixed, convert)
        return form

    def _health(self, conn: Connection, outcomes: Iterable[Outcome], now: datetime) -> None:
        ok = {o.endpoint_id for o in outcomes if o.reached is True}
        failing = {o.endpoint_id for o in outcomes if o.reached is False} - ok
        self._failing.update(failing)
        # Only endpoints known to be failing need their clock reset: a healthy outbox
        # costs no extra statement here.
        ok = {e for e in ok if e in self._failing}
        self._failing.difference_update(ok)
        e = webhook_endpoints.c
        if ok:
            conn.execute(webhook_endpoints.update().where(
                e.endpoint_id.in_(sorted(ok)), e.failing_since.is_not(None),
            ).values(failing_since=None))
        if not failing:
            return
        conn.execute(webhook_endpoints.update().where(
            e.endpoint_id.in_(sorted(failing)), e.failing_since.is_(None),
        ).values(failing_since=now))
        doomed = conn.execute(sa.select(
            e.endpoint_id, e.app_id, e.mode, e.url, e.failing_since,
        ).where(e.endpoint_id.in_(sorted(failing)), e.kind != LOCAL,
                e.disabled_at.is_(None), e.removed_at.is_(None),
                e.failing_since <= now - self.disable_after)).mappings().all()
        for ep in doomed:
            disable(conn, ep, now, f"every delivery attempt failed since "
                                   f"{ep['failing_since'].isoformat()}")
        if doomed:
            bump_change_counter(conn)


def disable(conn: Connection, ep: RowMapping, now: datetime, reason: str) -> None:
    """Disable an endpoint: no new events, its pending deliveries cancelled, the app told
    through its audit trail (`permgate audit --app`) and the worker's log."""
    endpoint_id = str(ep["endpoint_id"])
    conn.execute(webhook_endpoints.update().where(
        webhook_endpoints.c.endpoint_id == endpoint_id,
    ).values(disabled_at=now, disabled_reason=reason))
    cancelled = cancel_pending(conn, "endpoint disabled", endpoint_id=endpoint_id)
    audit(conn, "permgate-worker", "webhook.disabled", app_id=str(ep["app_id"]),
          mode=str(ep["mode"]), endpoint_id=endpoint_id, url=str(ep["url"]), reason=reason,
          cancelled_deliveries=cancelled)
    log.warning("disabled webhook endpoint %s of %s (%s): %s; re-enable with `permgate "
                "webhooks enable %s`", endpoint_id, ep["app_id"], ep["url"], reason,
                endpoint_id)
