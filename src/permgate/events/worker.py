"""The delivery worker: claim due deliveries in batches, check they may still go, sign each
once, POST them concurrently, record the results in batches.

Claiming is one short write transaction: candidate rows are selected `FOR UPDATE SKIP
LOCKED` (PostgreSQL; SQLite serialises writers instead), the chosen ones are leased by setting
`leased_until` past the lease and counting the attempt, and the transaction commits before
any HTTP request. Another worker therefore never takes the same attempt; a worker killed
mid-batch leaves leases that expire, and the deliveries become due again (at-least-once). A
result is recorded only if the row is still at the attempt this worker claimed. The lease
changes no indexed column (ev0004): on PostgreSQL it is a HOT update, which writes no index.

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
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from permgate.events import signing
from permgate.events.db import audit, bump_change_counter, utcnow, writing
from permgate.events.model import LOCAL
from permgate.events.outbox import DEAUTHORIZED, cancel_pending
from permgate.events.retry import RetryPolicy
from permgate.events.routing import Grants, endpoint_reachable, may_receive
from permgate.events.schema import FRESH, RETRY, deliveries, events, webhook_endpoints
from permgate.events.sealing import Sealer, default_sealer
from permgate.events.subscriptions import remove_abandoned_local
from permgate.events.targets import TargetPolicy, TargetRefused
from permgate.events.transport import DeliveryError, Target, Transport
from permgate.store import EffectiveGrant, Store
from permgate.store.schema import installs, state

log = logging.getLogger("permgate.events.worker")
_MAX_ERROR = 500
DISABLE_AFTER = timedelta(days=3)
_FLUSH_SECONDS = 0.05  # results wait at most this long to be recorded in one batch
_SWEEP_SECONDS = 30.0  # how often abandoned listen endpoints are looked for
_RECHECK_SECONDS = 0.05  # a waiting attempt's re-check shares a counter read this recent
# PostgreSQL's claim as one statement: the due first attempts and retries, each locked with
# SKIP LOCKED; first attempts keep 3/4 of the claim while there are any; at most `cap` in
# flight per endpoint (counting those already in flight here); the chosen rows leased; and
# what the attempts need read, joined. `_choose` is the same rule in Python.
_D, _E, _W, _I, _S = (deliveries.name, events.name, webhook_endpoints.name, installs.name,
                      state.name)
# With `{rec}` it first records this worker's finished attempts (`_PG_RECORD`'s update) in
# the same statement: one round trip and one commit for both; the recorded rows are left out
# of the claim, so no row is changed twice by one statement.
_PG_CLAIM = f"""
WITH {{rec}} fresh AS (
  SELECT delivery_id, endpoint_id, next_attempt_at FROM {_D}
  WHERE {FRESH} AND next_attempt_at <= %(now)b {{scope}}
    AND (leased_until IS NULL OR leased_until <= %(now)b)
    AND NOT (endpoint_id = ANY(%(saturated)b::text[])) {{not_rec}}
  ORDER BY next_attempt_at LIMIT %(n)b FOR UPDATE SKIP LOCKED),
retry AS (
  SELECT delivery_id, endpoint_id, next_attempt_at FROM {_D}
  WHERE {RETRY} AND next_attempt_at <= %(now)b {{scope}}
    AND (leased_until IS NULL OR leased_until <= %(now)b)
    AND NOT (endpoint_id = ANY(%(saturated)b::text[])) {{not_rec}}
  ORDER BY next_attempt_at LIMIT %(n)b FOR UPDATE SKIP LOCKED),
quota AS (
  SELECT greatest(%(n)b - (SELECT count(*) FROM fresh), %(n)b / 4) AS room,
         (SELECT count(*) FROM retry) AS nr),
pool AS (
  SELECT delivery_id, endpoint_id, 0 AS kind,
         row_number() OVER (ORDER BY next_attempt_at, delivery_id) AS rn FROM fresh
  UNION ALL
  SELECT delivery_id, endpoint_id, 1 AS kind,
         row_number() OVER (ORDER BY next_attempt_at, delivery_id) AS rn FROM retry),
taken AS (
  SELECT p.* FROM pool p, quota q
  WHERE (p.kind = 0 AND p.rn <= %(n)b - least(q.nr, q.room)) OR (p.kind = 1 AND p.rn <= q.room)),
capped AS (
  SELECT t.delivery_id, t.kind, t.rn, coalesce(b.busy, 0)
           + row_number() OVER (PARTITION BY t.endpoint_id ORDER BY t.kind, t.rn) AS k
  FROM taken t LEFT JOIN unnest(%(busy_ids)b::text[], %(busy_n)b::int[]) AS b(endpoint_id, busy)
    ON b.endpoint_id = t.endpoint_id),
chosen AS (SELECT delivery_id FROM capped WHERE k <= %(cap)b ORDER BY kind, rn LIMIT %(n)b),
leased AS (
  UPDATE {_D} d SET attempts = d.attempts + 1, leased_until = %(until)b,
         last_attempt_at = %(now)b, first_attempt_at = coalesce(d.first_attempt_at, %(now)b)
  FROM chosen c WHERE d.delivery_id = c.delivery_id
  RETURNING d.delivery_id, d.attempts, d.app_id, d.first_attempt_at, d.endpoint_id,
            d.event_id, d.install_id)
SELECT l.delivery_id, l.attempts, l.app_id, l.first_attempt_at, l.endpoint_id, l.event_id,
       l.install_id, e.type, e.account, e.mode, convert_to(e.payload, 'UTF8'), e.target_app_id,
       w.url, w.mode, w.kind, w.disabled_at, w.enabled_events::text, w.removed_at,
       w.secret_sealed, w.previous_secret_sealed, w.previous_expires_at, w.failing_since,
       i.mode, i.uninstalled_at, (SELECT change_counter FROM {_S} WHERE id = 1)
FROM leased l JOIN {_E} e ON e.event_id = l.event_id
  JOIN {_W} w ON w.endpoint_id = l.endpoint_id JOIN {_I} i ON i.install_id = l.install_id
"""

# SQLite's claim, on the driver's connection in one BEGIN IMMEDIATE transaction: the due
# first attempts and retries (each through its partial index), the chosen ones leased with
# RETURNING, then what the attempts need, read once per distinct event, endpoint and install.
# Id lists go as one JSON parameter, so each statement's text (and SQLite's prepared
# statement) is the same whatever the batch.
_SQ_CANDIDATES = (
    f"SELECT delivery_id, endpoint_id FROM {_D} WHERE {{where}} AND next_attempt_at <= ? "
    "AND (leased_until IS NULL OR leased_until <= ?) {scope} ORDER BY next_attempt_at LIMIT ?")
_SQ_NOT_LOCAL = (f"AND endpoint_id NOT IN (SELECT endpoint_id FROM {_W} "
                 f"WHERE kind = '{LOCAL}')")
_SQ_NOT_SATURATED = "AND endpoint_id NOT IN (SELECT value FROM json_each(?))"
_SQ_LEASE = (
    f"UPDATE {_D} SET attempts = attempts + 1, leased_until = ?, last_attempt_at = ?, "
    "first_attempt_at = coalesce(first_attempt_at, ?) "
    "WHERE delivery_id IN (SELECT value FROM json_each(?)) RETURNING delivery_id, attempts, "
    "app_id, first_attempt_at, endpoint_id, event_id, install_id")
_SQ_EVENTS = (f"SELECT event_id, type, account, mode, payload, target_app_id FROM {_E} "
              "WHERE event_id IN (SELECT value FROM json_each(?))")
_SQ_ENDPOINTS = (
    "SELECT endpoint_id, url, mode, kind, disabled_at, enabled_events, removed_at, "
    "secret_sealed, previous_secret_sealed, previous_expires_at, failing_since "
    f"FROM {_W} WHERE endpoint_id IN (SELECT value FROM json_each(?))")
_SQ_INSTALLS = (f"SELECT install_id, mode, uninstalled_at FROM {_I} "
                "WHERE install_id IN (SELECT value FROM json_each(?))")
_SQ_COUNTER = f"SELECT change_counter FROM {_S} WHERE id = 1"
# Row layouts both claims produce (tuples, no per-row mapping objects):
#   leased: delivery_id, attempts, app_id, first_attempt_at, endpoint_id, event_id, install_id
#   event: type, account, mode, payload, target_app_id
#   endpoint: url, mode, kind, disabled_at, enabled_events (JSON text), removed_at,
#             secret_sealed, previous_secret_sealed, previous_expires_at, failing_since
#   install: mode, uninstalled_at
_Leased = tuple[Any, ...]
# A claim: the leased rows, events, endpoints and installs by id, and the change counter.
_Claimed = tuple[list[_Leased], dict[str, _Leased], dict[str, _Leased], dict[str, _Leased],
                 int | None]

# A result, recorded only if the row is still at the attempt this worker claimed; found by
# its key (SQLite plans a row-value IN list as a scan of every pending row). SQLite: one
# executemany through the driver.
_SQ_RECORD = (f"UPDATE {_D} SET status = ?, last_http_status = ?, last_error = ?, "
              "next_attempt_at = ?, finished_at = ?, leased_until = NULL "
              "WHERE delivery_id = ? AND attempts = ? AND status = 'pending'")

# The same on PostgreSQL, every result in one statement, in a transaction that set
# `_PG_KEYED`. Left to its defaults, the planner read every pending row (through the claim
# index, or the whole table) and hash-joined them to the results, because a few hundred key
# lookups cost more than one scan in its model of random disk reads; the outbox is read hot,
# so that made each batch of results cost as much as the outbox was long. The lower random
# page cost (for this transaction only) makes key lookups win once the outbox is larger than
# the batch; `IS TRUE` keeps the claim index out of it.
_PG_KEYED = "SET LOCAL random_page_cost = 1.1"
_PG_RECORD = f"""
UPDATE {_D} d SET status = u.st, last_http_status = u.http, last_error = u.err,
       next_attempt_at = u.next, finished_at = u.fin, leased_until = NULL
FROM unnest(%(ids)b::bigint[], %(att)b::int[], %(st)b::text[], %(http)b::int[],
            %(err)b::text[], %(next)b::timestamptz[], %(fin)b::timestamptz[])
     AS u(id, att, st, http, err, next, fin)
WHERE d.delivery_id = u.id AND d.attempts = u.att AND (d.status = 'pending') IS TRUE
"""
_PG_CLAIM_REC = f"rec AS ({_PG_RECORD.strip()} RETURNING 1),"
_PG_NOT_REC = "AND NOT (delivery_id = ANY(%(ids)b::bigint[]))"


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


@dataclass(slots=True)
class _Job:
    """A claimed attempt, checked and signed, ready to POST (or already settled)."""

    delivery_id: int
    attempts: int
    first_attempt_at: Any  # as the driver returned it: converted only if the attempt fails
    endpoint_id: str
    event_id: str
    event_type: str
    account: str
    target: Target
    body: bytes
    headers: dict[str, str]
    settled: Outcome | None  # cancelled, or a failed check: no HTTP request
    start_by: float  # time.monotonic(): not sent later (its lease would run out during it)
    claimed_at: float  # time.monotonic() when its claim began
    counter: int | None  # the store's change counter its check was made against


_CONTENT_TYPE = "application/json; charset=utf-8"
_NO_HEADERS: dict[str, str] = {}


@dataclass(slots=True)
class _EndpointState:
    """An endpoint as its row read in one claim says, shared by that claim's attempts."""

    target: Target
    refused: str | None  # removed or disabled: its attempts are cancelled
    subscribed: frozenset[str] | None = None
    sign: Callable[[bytes], str] | None = None  # its secrets, the claim's timestamp
    error: str | None = None  # its subscription could not be read
    sign_error: str | None = None  # its secret could not be opened


class _GrantView:
    """Effective grants by (app, account, mode), dropped whenever the store changes."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counter = -1
        self._cache: dict[tuple[str, str, str], EffectiveGrant | None] = {}
        self._accounts: set[str] = set()

    def refresh(self, counter: int | None = None) -> None:
        """Drop what changed: `counter` is the store's change counter if just read (in a
        claim's transaction), else it is read now."""
        if counter is None:
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
        self._loop = asyncio.new_event_loop()
        # Every request's URL checked and every connection pinned to an address checked
        # just now, by the target policy (events/targets.py, events/transport.py).
        self._transport = Transport(concurrency=concurrency, per_destination=per_endpoint,
                                    timeout=timeout, policy=targets)
        self._busy: Counter[str] = Counter()  # endpoint -> attempts claimed, not finished
        # Claiming ahead: a worker holds up to twice what it may have in flight (per endpoint
        # and in all), the second half waiting here for a slot, so the next claim runs while
        # this one's attempts go on and no endpoint's connections idle meanwhile. A waiting
        # attempt starts once one in flight ends, within one timeout; the lease allows for
        # that wait plus the attempt (2 x timeout + 30 s by default). With a shorter lease, a
        # worker claims only what can start at once.
        self._ahead = 2 if self.lease.total_seconds() >= 2 * timeout + 5 else 1
        self._claim_cap = per_endpoint * self._ahead  # claimed per endpoint, at most
        self._slots: dict[str, asyncio.Semaphore] = {}  # endpoint -> its in-flight slots
        self._sending: asyncio.Semaphore | None = None  # the in-flight slots in all
        self._probe: asyncio.Task[int] | None = None  # the last read of the change counter
        self._probe_started = 0.0
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
        """Claims, attempts and the recording of results overlap: a claim (which records
        the results so far) runs in a thread while the attempts of the last ones go on, and
        the next claim starts as soon as one ends and there is room, before the new attempts
        take the loop."""
        inflight: set[asyncio.Task[Outcome]] = set()
        done_outcomes: list[Outcome] = []
        wake = asyncio.Event()
        flushing: asyncio.Task[None] | None = None
        claiming: asyncio.Task[list[_Job]] | None = None
        claim_want = 0
        claim_results: list[Outcome] = []

        completed = [0]  # attempts finished since the last claim began

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
            jobs: list[_Job] = []
            if claiming is not None and claiming.done():
                try:
                    jobs = claiming.result()
                except sa.exc.OperationalError as e:
                    log.warning("database unavailable, retrying: %s", e.orig)
                    done_outcomes[:0] = claim_results  # not recorded: kept for the next write
                else:
                    if claim_results:
                        last_flush = self._loop.time()
                claiming = None
                self._hold(jobs)
                if len(jobs) < claim_want:
                    short_claim_at = self._loop.time()
            free = self.concurrency * self._ahead - len(inflight) - len(jobs)
            # Claim when a good share of the slots is free, so claims stay batches rather
            # than one row per finished attempt.
            # After a claim that found less than it wanted (the due rows are claimed, or
            # their endpoints are at their bound), claim again only once a share of the
            # attempts finished or `idle` passed: an empty claim still costs a transaction.
            if short_claim_at is not None and (
                    completed[0] >= threshold or self._loop.time() - short_claim_at >= idle):
                short_claim_at = None
            if claiming is None and not stopping and short_claim_at is None and (
                    free >= threshold or not (inflight or jobs)):
                claim_want = min(self.batch, free)
                completed[0] = 0
                # The results so far ride with the claim: one transaction (one commit) for
                # both.
                claim_results = list(done_outcomes)
                done_outcomes.clear()
                claiming = self._loop.create_task(asyncio.to_thread(
                    self._claim_and_prepare, claim_want, dict(self._busy), claim_results))
                claiming.add_done_callback(lambda _: wake.set())
            for job in jobs:  # after the next claim began: it runs while these start
                task = self._loop.create_task(self._attempt(job))
                inflight.add(task)
                task.add_done_callback(finished)
            now = self._loop.time()
            flush_idle = flushing is None or flushing.done()
            if done_outcomes and flush_idle and claiming is None and (
                    len(done_outcomes) >= self.batch // 2 or not inflight
                    or now - last_flush >= _FLUSH_SECONDS):
                batch = list(done_outcomes)
                done_outcomes.clear()
                flushing = self._loop.create_task(self._flush(batch))
                flushing.add_done_callback(lambda _: wake.set())
                last_flush = now
                flush_idle = False
            if stopping and claiming is None and not inflight and not done_outcomes \
                    and flush_idle:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), _FLUSH_SECONDS if inflight or claiming
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

    def _claim_and_prepare(self, limit: int, busy: Mapping[str, int],
                           results: Sequence[Outcome] = ()) -> list[_Job]:
        """Runs in a thread: `busy` is a snapshot of the attempts in flight per endpoint.
        `results` (finished attempts) are recorded first, in the claim's own transaction:
        one commit for both."""
        if limit < 1 and not results:
            return []
        now = self._clock()
        # Leased from `now` (or later): an attempt started by this time ends within its lease.
        claimed_at = time.monotonic()
        start_by = claimed_at + self.lease.total_seconds() - self.timeout - 1.0
        if self.store.engine.dialect.name == "postgresql":
            if results and self._health_work(results):
                # Failures (or a failing endpoint's recovery) need the health statements
                # too: recorded on their own, as before a claim.
                self._record(results)
                results = ()
            leased, evs, eps, ins, counter = self._claim_pg(now, limit, busy, results)
        else:
            with writing(self.store) as conn:
                if results:
                    self._record_on(conn, results, now)
                if limit < 1:
                    return []
                leased, evs, eps, ins, counter = self._claim_sqlite(
                    conn.connection.driver_connection, now, limit, busy)
        if not leased:
            return []
        # The grants as of the claim's transaction (the change counter read in it): each
        # attempt is checked against them.
        self._view.refresh(counter)
        self._view.preload({e[1] for e in evs.values()})
        return self._prepare(leased, evs, eps, ins, int(now.timestamp()), start_by,
                             claimed_at, counter)

    def _hold(self, jobs: Iterable[_Job]) -> None:
        """Count the attempts now in flight (on the loop's thread, as `_attempt` does)."""
        for j in jobs:
            if j.settled is None:
                self._busy[j.target.endpoint_id] += 1

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
            if busy[endpoint_id] < self._claim_cap:
                busy[endpoint_id] += 1
                ids.append(did)
        return ids

    def _claim_pg(self, now: datetime, limit: int, in_flight: Mapping[str, int],
                  results: Sequence[Outcome]) -> _Claimed:
        """The claim (and the recording of `results`) as ONE statement in a short
        transaction; rows locked but not chosen are released at its commit. Split into the
        layouts `_prepare` reads."""
        if self.only_endpoint is not None:
            scope = "AND endpoint_id = %(only)b"
        else:
            scope = ("AND endpoint_id NOT IN (SELECT endpoint_id FROM "
                     f"{webhook_endpoints.name} WHERE kind = 'local')")
        saturated = sorted(e for e, n in in_flight.items() if n >= self._claim_cap)
        busy = sorted(in_flight.items())
        params: dict[str, Any] = {
            "now": now, "n": max(limit, 0), "cap": self._claim_cap,
            "until": now + self.lease, "only": self.only_endpoint, "saturated": saturated,
            "busy_ids": [e for e, _ in busy], "busy_n": [n for _, n in busy],
        }
        if results:
            params.update(self._pg_record_params(results, now))
        sql = _PG_CLAIM.format(scope=scope, rec=_PG_CLAIM_REC if results else "",
                               not_rec=_PG_NOT_REC if results else "")
        with writing(self.store) as conn:
            raw: Any = conn.connection.driver_connection
            # Binary results: the payload arrives as the bytes to send (no decoding), the
            # timestamps without text parsing.
            with raw.cursor(binary=True) as cur:
                cur.execute(_PG_KEYED)  # this transaction only
                cur.execute(sql, params)
                rows = cur.fetchall()
        leased: list[_Leased] = []
        evs: dict[str, _Leased] = {}
        eps: dict[str, _Leased] = {}
        ins: dict[str, _Leased] = {}
        for r in rows:
            leased.append(r[:7])
            evs[r[5]] = r[7:12]
            eps[r[4]] = r[12:22]
            ins[r[6]] = r[22:24]
        return leased, evs, eps, ins, rows[0][24] if rows else None

    def _claim_sqlite(self, raw: Any, now: datetime, limit: int,
                      in_flight: Mapping[str, int]) -> _Claimed:
        """The same claim on SQLite (BEGIN IMMEDIATE serialises writers), through the driver:
        rows as tuples, nothing converted that the checks do not need."""
        at = self._bind_time(now)
        saturated = sorted(e for e, n in in_flight.items() if n >= self._claim_cap)
        scope, extra = ("AND endpoint_id = ?", [self.only_endpoint]) \
            if self.only_endpoint is not None else (_SQ_NOT_LOCAL, [])
        if saturated:
            scope += " " + _SQ_NOT_SATURATED
            extra.append(json.dumps(saturated))
        cur = raw.cursor()
        try:
            picked = []
            for where in (FRESH, RETRY):
                cur.execute(_SQ_CANDIDATES.format(where=where, scope=scope),
                            [at, at, *extra, limit])
                picked.append(cur.fetchall())
            ids = self._choose(picked[0], picked[1], limit, in_flight)
            if not ids:
                return [], {}, {}, {}, None
            cur.execute(_SQ_LEASE, (self._bind_time(now + self.lease), at, at, json.dumps(ids)))
            order = {did: k for k, did in enumerate(ids)}
            leased = sorted(cur.fetchall(), key=lambda r: order[r[0]])
            details = []
            for sql, column in ((_SQ_EVENTS, 5), (_SQ_ENDPOINTS, 4), (_SQ_INSTALLS, 6)):
                cur.execute(sql, (json.dumps(sorted({r[column] for r in leased})),))
                details.append({r[0]: r[1:] for r in cur.fetchall()})
            counter = cur.execute(_SQ_COUNTER).fetchone()[0]
        finally:
            cur.close()
        return leased, details[0], details[1], details[2], counter

    # -- per attempt ------------------------------------------------------------------------

    def _endpoint_state(self, endpoint_id: str, ep: _Leased | None, timestamp: int,
                        now: datetime) -> _EndpointState:
        """What every attempt to this endpoint in this claim shares, from its row as read in
        the claim's transaction: decided once per endpoint and claim, not once per attempt."""
        if ep is None:
            return _EndpointState(Target(endpoint_id, "", False, ""), "endpoint removed")
        (url, mode, kind, disabled_at, enabled_events, removed_at, sealed, previous,
         previous_expires, failing_since) = ep
        state = _EndpointState(Target(endpoint_id, url, kind == LOCAL, mode), None)
        if failing_since is not None:
            self._failing.add(endpoint_id)
        if removed_at is not None:
            state.refused = "endpoint removed"
        elif disabled_at is not None:
            state.refused = "endpoint disabled"
        try:
            state.subscribed = self._subscribed(enabled_events)
        except Exception as e:  # a failed check must not lose the delivery: retry it
            state.error = f"check failed: {e}"
            return state
        try:
            secrets_ = [self._open(sealed, endpoint_id)]
            expires = self._as_time(previous_expires)
            if previous and expires is not None and expires > now:
                secrets_.append(self._open(previous, endpoint_id))
            state.sign = signing.signer(secrets_, timestamp)
        except Exception as e:
            state.sign_error = f"check failed: {e}"
        return state

    def _prepare(self, leased: Sequence[_Leased], evs: Mapping[str, _Leased],
                 eps: Mapping[str, _Leased], ins: Mapping[str, _Leased],
                 timestamp: int, start_by: float, claimed_at: float,
                 counter: int | None) -> list[_Job]:
        """Check each claimed attempt against the state just read and sign it (one signature
        per attempt and secret set), or settle it without a request."""
        now = self._clock()
        states = {e: self._endpoint_state(e, eps.get(e), timestamp, now) for e in eps}
        bodies: dict[str, bytes] = {}
        jobs = []
        for row in leased:
            delivery_id, attempts, _, first, endpoint_id, event_id, install_id = row
            ev = evs.get(event_id)
            etype, account = (ev[0], ev[1]) if ev is not None else ("", "")
            state = states.get(endpoint_id) or self._endpoint_state(
                endpoint_id, None, timestamp, now)
            job = _Job(delivery_id, attempts, first, endpoint_id, event_id, etype, account,
                       state.target, b"", _NO_HEADERS, None, start_by, claimed_at, counter)
            jobs.append(job)
            error: str | None
            try:
                reason = self._refusal(row, state, ev, ins.get(install_id))
            except Exception as e:  # a failed check must not lose the delivery: retry it
                reason, error = None, f"check failed: {e}"
            else:
                error = state.error
            if reason is not None:
                job.settled = self._outcome(job, "cancelled", None, reason)
                continue
            if error is None and state.sign is None:
                error = state.sign_error
            if error is not None or ev is None or state.sign is None:
                job.settled = replace(self._failed(job, None, error or "check failed"),
                                      attempted=False)
                continue
            body = bodies.get(event_id)
            if body is None:
                payload = ev[3]  # bytes from PostgreSQL, text from SQLite
                body = bodies[event_id] = payload if isinstance(payload, bytes) \
                    else payload.encode("utf-8")
            job.body = body
            job.headers = {"Content-Type": _CONTENT_TYPE, "Stripe-Signature": state.sign(body)}
        return jobs

    def _refusal(self, row: _Leased, state: _EndpointState, ev: _Leased | None,
                 install: _Leased | None) -> str | None:
        """Why the delivery may no longer go, or None. Checked at every attempt, against the
        endpoint and install rows read in its claim and the grants read right after it."""
        if state.refused is not None:
            return state.refused
        if ev is None:
            return "event removed"
        if state.subscribed is None:
            return None  # the endpoint's subscription could not be read: `state.error`
        etype = ev[0]
        subscribed = state.subscribed
        if etype not in subscribed and "*" not in subscribed:
            return "endpoint no longer subscribes"
        app_id = row[2]
        if etype == DEAUTHORIZED and ev[4] == app_id:
            return None  # the goodbye is owed to an install that no longer exists
        if install is None or install[1] is not None:
            return "app uninstalled"
        install_mode = install[0]
        grant = self._view.get(app_id, ev[1], install_mode)
        if grant is None:
            return "app uninstalled"
        if not self._may_receive(etype, grant.approved):
            return "the app's approved permissions no longer allow this event"
        live = self._view.get(app_id, ev[1], "live")
        if not endpoint_reachable(state.target.mode, install_mode,
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

    async def _attempt(self, job: _Job) -> Outcome:
        if job.settled is not None:
            return self._report(job.settled)
        endpoint_id = job.endpoint_id
        slots = self._slots.get(endpoint_id)
        if slots is None:
            slots = self._slots[endpoint_id] = asyncio.Semaphore(self.per_endpoint)
        sending = self._sending
        if sending is None:
            sending = self._sending = asyncio.Semaphore(self.concurrency)
        try:
            # A claimed-ahead attempt waits here for a slot, outside the HTTP timeout.
            waits = slots.locked() or sending.locked()
            async with slots, sending:
                if time.monotonic() > job.start_by:
                    # Its lease could run out during the attempt: another worker may take it
                    # then, so it is not sent (the lease expires and it is retried).
                    outcome = replace(self._failed(job, None, "not started within its lease"),
                                      attempted=False)
                elif waits and not await self._unchanged_since(job):
                    # Checked at its claim, then waited: something changed meanwhile (an
                    # uninstall, a grant, an endpoint), so it is checked again at once by
                    # the next claim rather than sent on the old answer.
                    outcome = replace(self._outcome(
                        job, "pending", None, "checked again: the store changed while it "
                        "waited for a slot", self._clock()), attempted=False)
                else:
                    outcome = await self._send(job)
        finally:
            n = self._busy[endpoint_id] - 1
            if n > 0:
                self._busy[endpoint_id] = n
            else:
                self._busy.pop(endpoint_id, None)
                self._slots.pop(endpoint_id, None)  # nothing of this endpoint is claimed here
        if self.on_outcome is not None:
            self._report(outcome)
        return outcome

    async def _unchanged_since(self, job: _Job) -> bool:
        """Is the store's change counter still the one this attempt was checked against?
        Every change that can stop a delivery moves it. One read serves every attempt that
        asks within `_RECHECK_SECONDS` of it and was claimed before it started."""
        while True:
            probe, started = self._probe, self._probe_started
            fresh = started >= max(job.claimed_at, time.monotonic() - _RECHECK_SECONDS)
            if probe is None or (probe.done() and not fresh):
                started = self._probe_started = time.monotonic()
                probe = self._probe = self._loop.create_task(
                    asyncio.to_thread(self.store.change_counter))
            try:
                counter = await asyncio.shield(probe)
            except Exception:  # the database is unavailable: do not send on an old answer
                return False
            if started >= job.claimed_at:
                return counter == job.counter

    async def _send(self, job: _Job) -> Outcome:
        try:
            resp = await self._transport.post(job.target, job.body, job.headers)
        except TimeoutError:
            outcome = self._failed(job, None, f"timed out after {self.timeout:g} s")
        except TargetRefused as e:
            outcome = self._failed(job, None, f"target refused: {e}")
        except DeliveryError as e:
            outcome = self._failed(job, None, str(e)[:_MAX_ERROR])
        except Exception as e:  # anything else fails this attempt, never the worker
            outcome = self._failed(job, None, f"{type(e).__name__}: {e}"[:_MAX_ERROR])
        else:
            if 200 <= resp.status < 300:
                outcome = Outcome(job.delivery_id, job.attempts, "delivered", resp.status, None,
                                  None, job.endpoint_id, job.event_id, job.event_type,
                                  job.account)
            else:
                outcome = self._failed(job, resp.status, f"HTTP {resp.status}")
        return outcome

    def _report(self, outcome: Outcome) -> Outcome:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # a printing callback must not lose a result
                log.exception("on_outcome failed")
        return outcome

    @staticmethod
    def _outcome(job: _Job, status: str, http_status: int | None,
                 error: str | None, at: datetime | None = None) -> Outcome:
        return Outcome(job.delivery_id, job.attempts, status, http_status, error, at,
                       job.endpoint_id, job.event_id, job.event_type, job.account)

    def _failed(self, job: _Job, http_status: int | None, error: str) -> Outcome:
        now = self._clock()
        first = self._as_time(job.first_attempt_at) or now
        at = self.policy.next_attempt(job.attempts, first, now)
        return self._outcome(job, "pending" if at is not None else "failed", http_status,
                             error, at)

    def _as_time(self, value: Any) -> datetime | None:
        """A timestamp as the driver returned it (SQLite: UTC text) -> an aware datetime."""
        if value is None or isinstance(value, datetime):
            return value.astimezone(UTC) if value is not None else None
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    @staticmethod
    def _bind_time(value: datetime) -> str:
        """A timestamp as the store writes it on SQLite: UTC, naive, the text the sqlite3
        module makes of a datetime (what SQLAlchemy's writes store), so comparisons hold."""
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")

    # -- recording --------------------------------------------------------------------------

    def _record(self, outcomes: Sequence[Outcome]) -> None:
        """Every result in one transaction."""
        if outcomes:
            with writing(self.store) as conn:
                self._record_on(conn, outcomes, self._clock())

    def _record_on(self, conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Every result as one statement: on SQLite one executemany of `_RECORD` through the
        driver, on PostgreSQL `_PG_RECORD` over arrays; then the endpoints' health."""
        if conn.dialect.name == "postgresql":
            self._record_pg(conn, outcomes, now)
            self._health(conn, outcomes, now)
            return
        at_now = self._bind_time(now)
        at = self._bind_time
        # A retry waits for its next attempt; anything else is finished now. The driver's
        # executemany: SQLAlchemy's per-row parameter processing cost more than SQLite's work.
        rows = [(o.status, o.http_status, o.error, at_now, at_now, o.delivery_id, o.attempts)
                if o.status != "pending" or o.next_attempt_at is None else
                (o.status, o.http_status, o.error, at(o.next_attempt_at), None, o.delivery_id,
                 o.attempts) for o in outcomes]
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(_SQ_RECORD, rows)
        finally:
            cur.close()
        self._health(conn, outcomes, now)

    def _record_pg(self, conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
        """PostgreSQL: every result in ONE statement over arrays (no per-row work in the
        driver), each row found by its key."""
        conn.exec_driver_sql(_PG_KEYED)
        conn.exec_driver_sql(_PG_RECORD, self._pg_record_params(outcomes, now))

    @staticmethod
    def _pg_record_params(outcomes: Sequence[Outcome], now: datetime) -> dict[str, Any]:
        retry = [o.status == "pending" for o in outcomes]
        return {
            "ids": [o.delivery_id for o in outcomes], "att": [o.attempts for o in outcomes],
            "st": [o.status for o in outcomes], "http": [o.http_status for o in outcomes],
            "err": [o.error for o in outcomes],
            "next": [o.next_attempt_at if r else now for o, r in zip(outcomes, retry, strict=True)],
            "fin": [None if r else now for r in retry],
        }

    def _health_work(self, outcomes: Iterable[Outcome]) -> bool:
        """Would `_health` change anything: a failed attempt, or a failing endpoint's 2xx?"""
        for o in outcomes:
            reached = o.reached
            if reached is False or (reached is True and o.endpoint_id in self._failing):
                return True
        return False

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
