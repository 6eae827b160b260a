"""The durable outbox: an accepted event and all its deliveries are written in one transaction.

Fan-out happens when the event is accepted, with the grants in force at that moment; the
worker checks again just before each attempt, so an uninstall or a narrowed grant stops
deliveries that were already queued.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from permgate.events.db import utcnow, writing
from permgate.events.fixtures import api_version
from permgate.events.model import Accepted, Delivery, Endpoint
from permgate.events.routing import Grants, Route, event_mode, route_event
from permgate.events.schema import deliveries, events, webhook_endpoints
from permgate.events.subscriptions import endpoint_from_row
from permgate.store import EffectiveGrant, NotFound, Store, StoreError

AUTHORIZED = "account.application.authorized"
DEAUTHORIZED = "account.application.deauthorized"
_ALPHABET = string.ascii_letters + string.digits


class BadEvent(StoreError):
    default_code = "event_invalid"


def _endpoints_of(conn: Connection, app_id: str) -> list[Endpoint]:
    rows = conn.execute(sa.select(webhook_endpoints).where(
        webhook_endpoints.c.app_id == app_id, webhook_endpoints.c.removed_at.is_(None)))
    return [endpoint_from_row(r) for r in rows.mappings()]


# Events permgate makes itself (`permgate trigger`, an install's `account.application.*`):
# their `pending_webhooks` is counted here, where they are queued. Upstream events (webhook,
# poll) keep Stripe's own count.
OWN_SOURCES = frozenset({"trigger", "permgate"})


def _payload(event: Mapping[str, Any], account: str, raw: bytes | None,
             pending: int | None = None) -> str:
    """The upstream's bytes when they already name the account, else the event re-encoded
    with `account` added (Connect events carry it; apps need it to know whose event it is).
    `pending`: permgate's own event, queued for that many endpoints (Stripe's count of the
    endpoints an event is still to reach)."""
    if pending is not None:
        return json.dumps({**event, "account": account, "pending_webhooks": pending},
                          indent=2)
    if raw is not None and event.get("account") == account:
        return raw.decode("utf-8")
    return json.dumps({**event, "account": account}, indent=2)


class Router:
    """Who gets an event, from installs and endpoints cached per account and per app.

    The caches are dropped whenever the store's change counter moves (installs, grants,
    approvals and endpoint changes all bump it); the counter is read once per batch, one
    indexed row. Routes are fanned out with the grants in force at that read; the worker
    checks again before every attempt, so a change an instant later still stops delivery.
    """

    _MAX_ENTRIES = 200_000  # a bound on memory, not a policy: past it the caches restart

    def __init__(self, store: Store, grants: Grants | None = None) -> None:
        self.store = store
        self.grants = grants or Grants()
        self._counter: int | None = None
        self._installs: dict[str, list[EffectiveGrant]] = {}
        self._endpoints: dict[str, list[Endpoint]] = {}
        self._routes: dict[tuple[str, str, str], list[Route]] = {}

    def refresh(self) -> None:
        counter = self.store.change_counter()
        if counter != self._counter or len(self._routes) > self._MAX_ENTRIES:
            self._installs.clear()
            self._endpoints.clear()
            self._routes.clear()
            self._counter = counter

    def _load_endpoints(self, app_ids: set[str]) -> None:
        missing = sorted(a for a in app_ids if a not in self._endpoints)
        if not missing:
            return
        now = utcnow()
        for app_id in missing:
            self._endpoints[app_id] = []
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_endpoints).where(
                webhook_endpoints.c.app_id.in_(missing),
                webhook_endpoints.c.removed_at.is_(None),
                webhook_endpoints.c.disabled_at.is_(None))).mappings()
            for r in rows:
                ep = endpoint_from_row(r)
                # An abandoned listen session's endpoint gets nothing new.
                if ep.receives(now):
                    self._endpoints[ep.app_id].append(ep)

    def preload(self, accounts: Iterable[str]) -> None:
        """Load the installs of every account not cached yet, in one query."""
        missing = {a for a in accounts if a not in self._installs}
        if missing:
            self._installs.update(self.store.installs_for_accounts(missing))

    def routes(self, account: str, event_type: str, mode: str) -> list[Route]:
        key = (account, event_type, mode)
        found = self._routes.get(key)
        if found is None:
            installs_ = self._installs.get(account)
            if installs_ is None:
                installs_ = self._installs[account] = self.store.installs_for_account(account)
            self._load_endpoints({g.app_id for g in installs_})
            endpoints = [ep for app in {g.app_id for g in installs_}
                         for ep in self._endpoints[app]]
            found = self._routes[key] = route_event(
                event_type, mode, installs_, endpoints, self.grants)
        return found


@dataclass(frozen=True, slots=True)
class _Row:
    """An event ready to write, with its routes."""

    event_id: str
    account: str
    mode: str
    type: str
    created: int
    payload: str
    source: str
    target_app: str | None
    routes: Sequence[Route]


def _prepare(event: Mapping[str, Any], account: str | None, source: str, raw: bytes | None,
             router: Router) -> _Row:
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_id \
            or len(event_id) > 255 or len(event_type) > 255:
        raise BadEvent("an event needs a string `id` and `type` (at most 255 characters)")
    acct = event.get("account") or account
    if not isinstance(acct, str) or not acct or len(acct) > 255:
        raise BadEvent(f"event {event_id} names no account and none is configured")
    mode = event_mode(event.get("livemode"))
    created = event.get("created")
    routes = router.routes(acct, event_type, mode)
    return _Row(event_id, acct, mode, event_type,
                created if isinstance(created, int) else int(time.time()),
                _payload(event, acct, raw, len(routes) if source in OWN_SOURCES else None),
                source, None, routes)


def accept_many(
    store: Store, batch: Sequence[tuple[Mapping[str, Any], bytes | None]], *,
    account: str | None = None, source: str = "webhook", router: Router | None = None,
) -> list[Accepted | BadEvent]:
    """Store a batch of upstream events and all their deliveries in ONE transaction.

    `batch`: (event, the upstream's raw bytes or None). One result per item, in order: an
    `Accepted` (duplicate=True for an id already stored, or repeated in the batch) or the
    `BadEvent` that item was refused with (the others are still stored). Nothing is
    acknowledged before the transaction commits; if it fails, it raises and none is stored.
    """
    router = router or Router(store)
    router.refresh()
    router.preload(acct for event, _ in batch
                   if isinstance(acct := event.get("account") or account, str))
    results: list[Accepted | BadEvent | None] = [None] * len(batch)
    rows: list[_Row] = []
    where: list[int] = []
    seen: set[str] = set()
    for i, (event, raw) in enumerate(batch):
        try:
            row = _prepare(event, account, source, raw, router)
        except BadEvent as e:
            results[i] = e
            continue
        if row.event_id in seen:
            results[i] = Accepted(row.event_id, True, 0)
            continue
        seen.add(row.event_id)
        rows.append(row)
        where.append(i)
    if rows:
        stored = _write(store, rows)
        for i, row in zip(where, rows, strict=True):
            fresh = row.event_id in stored
            results[i] = Accepted(row.event_id, not fresh, len(row.routes) if fresh else 0)
    return [r for r in results if r is not None]


def accept(
    store: Store, event: Mapping[str, Any], *, account: str | None = None,
    source: str = "webhook", raw: bytes | None = None, grants: Grants | None = None,
    router: Router | None = None,
) -> Accepted:
    """Store one upstream event and its deliveries; a known event id is a no-op."""
    [result] = accept_many(store, [(event, raw)], account=account, source=source,
                           router=router or Router(store, grants))
    if isinstance(result, BadEvent):
        raise result
    return result


# PostgreSQL: one statement per batch whatever its size, its rows as arrays in binary (the
# text of the statement never changes, and no payload is escaped into an array literal).
_PG_EVENTS = (
    f"INSERT INTO {events.name} (event_id, account, mode, type, created, payload, source, "
    "target_app_id, received_at) SELECT u.*, %(at)b FROM unnest(%(ids)b::text[], "
    "%(accounts)b::text[], %(modes)b::text[], %(types)b::text[], %(created)b::bigint[], "
    "%(payloads)b::text[], %(sources)b::text[], %(targets)b::text[]) AS u "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id")
_PG_DELIVERIES = (
    f"INSERT INTO {deliveries.name} (event_id, endpoint_id, app_id, install_id, status, "
    "attempts, next_attempt_at, created_at) SELECT u.e, u.ep, u.app, u.inst, 'pending', 0, "
    "%(at)b, %(at)b FROM unnest(%(events)b::text[], %(endpoints)b::text[], "
    "%(apps)b::text[], %(installs)b::text[]) AS u(e, ep, app, inst)")


def _pg_execute(conn: Connection, query: str, params: dict[str, Any]) -> list[Any]:
    """Run on the driver's connection, inside this transaction, with binary parameters."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def _insert_events(conn: Connection, rows: Sequence[_Row], now: datetime) -> set[str]:
    """One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the ids this call stored.
    A known id (a retry of the upstream, or a concurrent ingest that won) is left alone."""
    if conn.dialect.name == "postgresql":
        return {r[0] for r in _pg_execute(conn, _PG_EVENTS, {
            "at": now, "ids": [r.event_id for r in rows],
            "accounts": [r.account for r in rows], "modes": [r.mode for r in rows],
            "types": [r.type for r in rows], "created": [r.created for r in rows],
            "payloads": [r.payload for r in rows], "sources": [r.source for r in rows],
            "targets": [r.target_app for r in rows]})}
    # SQLite: SQLAlchemy sends the rows as multi-row VALUES ("insertmanyvalues").
    stmt = sqlite_insert(events).on_conflict_do_nothing(index_elements=["event_id"]).returning(
        events.c.event_id)
    return set(conn.execute(stmt, [{
        "event_id": r.event_id, "account": r.account, "mode": r.mode, "type": r.type,
        "created": r.created, "payload": r.payload, "source": r.source,
        "target_app_id": r.target_app, "received_at": now,
    } for r in rows]).scalars())


def _insert_deliveries(conn: Connection, pairs: Sequence[tuple[str, Route]],
                       now: datetime) -> None:
    if not pairs:
        return
    if conn.dialect.name == "postgresql":
        _pg_execute(conn, _PG_DELIVERIES, {
            "at": now, "events": [e for e, _ in pairs],
            "endpoints": [r.endpoint_id for _, r in pairs],
            "apps": [r.app_id for _, r in pairs], "installs": [r.install_id for _, r in pairs]})
        return
    # RETURNING makes SQLAlchemy send multi-row VALUES (1,000 rows a statement) rather than
    # a statement per row.
    conn.execute(deliveries.insert().returning(deliveries.c.delivery_id), [{
        "event_id": event_id, "endpoint_id": r.endpoint_id, "app_id": r.app_id,
        "install_id": r.install_id, "status": "pending", "attempts": 0,
        "next_attempt_at": now, "created_at": now,
    } for event_id, r in pairs])


def _write(store: Store, rows: Sequence[_Row]) -> set[str]:
    """Events and their deliveries, one transaction; returns the ids newly stored."""
    # Inserted in id order: two batches holding the same ids then wait for each other in
    # one order and cannot deadlock (PostgreSQL locks a new key until its commit).
    rows = sorted(rows, key=lambda r: r.event_id)
    for attempt in range(3):
        now = utcnow()
        try:
            with writing(store) as conn:
                stored = _insert_events(conn, rows, now)
                _insert_deliveries(conn, [(r.event_id, route) for r in rows
                                          if r.event_id in stored for route in r.routes], now)
            return stored
        except sa.exc.OperationalError as e:
            # A serialisation failure or deadlock rolled everything back: try again.
            if getattr(e.orig, "sqlstate", None) not in ("40001", "40P01") or attempt == 2:
                raise
    raise AssertionError("unreachable")


def new_event_id() -> str:
    return "evt_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _application_event(store: Store, grant: EffectiveGrant, event_type: str) -> dict[str, Any]:
    try:
        name = store.get_app(grant.app_id).name
    except NotFound:
        name = grant.app_id
    return {
        "id": new_event_id(), "object": "event", "account": grant.account,
        "api_version": api_version(), "created": int(time.time()),
        "data": {"object": {"id": grant.app_id, "object": "application", "name": name}},
        "livemode": grant.mode == "live", "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }


def _emit_to_app(store: Store, grant: EffectiveGrant, event_type: str,
                 installs_: Sequence[EffectiveGrant]) -> Accepted:
    event = _application_event(store, grant, event_type)
    with store.engine.connect() as conn:
        endpoints = _endpoints_of(conn, grant.app_id)
    # The event is about this install: route it by the install's own mode.
    mode = "live" if grant.mode == "live" else "test"
    routes = route_event(event_type, mode, installs_, endpoints, Grants(),
                         target_app=grant.app_id)
    routes = [r for r in routes if r.install_id == grant.install_id]
    row = _Row(event["id"], grant.account, mode, event_type, event["created"],
               _payload(event, grant.account, None, len(routes)), "permgate", grant.app_id,
               routes)
    stored = _write(store, [row])
    return Accepted(row.event_id, row.event_id not in stored, len(routes))


def on_install(store: Store, grant: EffectiveGrant) -> Accepted:
    """`account.application.authorized`, to the installed app only. Call after install."""
    others = store.list_installs(app_id=grant.app_id, account=grant.account)
    return _emit_to_app(store, grant, AUTHORIZED, others)


def on_uninstall(store: Store, grant: EffectiveGrant) -> Accepted:
    """`account.application.deauthorized` to the app (routed by the grant it had), and every
    other queued delivery of the install cancelled. Call with what `uninstall` returned."""
    with writing(store) as conn:
        cancel_pending(conn, "app uninstalled", install_id=grant.install_id)
    others = store.list_installs(app_id=grant.app_id, account=grant.account)
    return _emit_to_app(store, grant, DEAUTHORIZED, [grant, *others])


def cancel_pending(conn: Connection, reason: str, *, install_id: str | None = None,
                   endpoint_id: str | None = None) -> int:
    stmt = deliveries.update().where(deliveries.c.status == "pending")
    if install_id is not None:
        # Except the deauthorization notice itself, which exists to say goodbye.
        stmt = stmt.where(deliveries.c.install_id == install_id, deliveries.c.event_id.not_in(
            sa.select(events.c.event_id).where(events.c.type == DEAUTHORIZED)))
    if endpoint_id is not None:
        stmt = stmt.where(deliveries.c.endpoint_id == endpoint_id)
    result = conn.execute(stmt.values(status="cancelled", last_error=reason,
                                      finished_at=utcnow()))
    return int(result.rowcount or 0)


def resend(store: Store, event_id: str, app_id: str) -> int:
    """Queue the event again for the app's endpoints that may receive it now."""
    with store.engine.connect() as conn:
        ev = conn.execute(sa.select(events).where(events.c.event_id == event_id)
                          ).mappings().first()
        if ev is None:
            raise NotFound(f"no event {event_id!r}", "event_not_found")
        endpoints = _endpoints_of(conn, app_id)
    installs_ = store.list_installs(app_id=app_id, account=ev["account"])
    routes = route_event(ev["type"], ev["mode"], installs_, endpoints, Grants(),
                         target_app=app_id)
    if not routes:
        raise StoreError(
            f"{app_id} has no endpoint that may receive {ev['type']} on {ev['account']} "
            f"({ev['mode']}) now", "nothing_to_resend")
    with writing(store) as conn:
        _insert_deliveries(conn, [(event_id, r) for r in routes], utcnow())
    return len(routes)


def list_deliveries(
    store: Store, *, app_id: str | None = None, status: str | None = None,
    event_id: str | None = None, limit: int | None = None,
) -> list[Delivery]:
    stmt = (sa.select(deliveries, events.c.type, events.c.account)
            .join(events, events.c.event_id == deliveries.c.event_id)
            .order_by(deliveries.c.delivery_id))
    if app_id is not None:
        stmt = stmt.where(deliveries.c.app_id == app_id)
    if status is not None:
        stmt = stmt.where(deliveries.c.status == status)
    if event_id is not None:
        stmt = stmt.where(deliveries.c.event_id == event_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [Delivery(
        delivery_id=r["delivery_id"], event_id=r["event_id"], event_type=r["type"],
        endpoint_id=r["endpoint_id"], app_id=r["app_id"], account=r["account"],
        status=r["status"], attempts=r["attempts"], next_attempt_at=r["next_attempt_at"],
        last_http_status=r["last_http_status"], last_error=r["last_error"],
        created_at=r["created_at"], finished_at=r["finished_at"],
    ) for r in rows]
