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
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from permgate.events.db import utcnow, writing
from permgate.events.model import Accepted, Delivery
from permgate.events.routing import Grants, Route, event_mode, route_event
from permgate.events.schema import deliveries, events, webhook_endpoints
from permgate.events.subscriptions import endpoint_from_row
from permgate.store import EffectiveGrant, NotFound, Store, StoreError
from permgate.store.schema import installs

AUTHORIZED = "account.application.authorized"
DEAUTHORIZED = "account.application.deauthorized"
_ALPHABET = string.ascii_letters + string.digits


class BadEvent(StoreError):
    default_code = "event_invalid"


def _endpoints_on_account(conn: Connection, account: str) -> list[Any]:
    active_apps = sa.select(installs.c.app_id).where(
        installs.c.account == account, installs.c.uninstalled_at.is_(None))
    rows = conn.execute(sa.select(webhook_endpoints).where(
        webhook_endpoints.c.app_id.in_(active_apps),
        webhook_endpoints.c.removed_at.is_(None))).mappings()
    return [endpoint_from_row(r) for r in rows]


def _endpoints_of(conn: Connection, app_id: str) -> list[Any]:
    rows = conn.execute(sa.select(webhook_endpoints).where(
        webhook_endpoints.c.app_id == app_id, webhook_endpoints.c.removed_at.is_(None)))
    return [endpoint_from_row(r) for r in rows.mappings()]


def _payload(event: Mapping[str, Any], account: str, raw: bytes | None) -> str:
    """The upstream's bytes when they already name the account, else the event re-encoded
    with `account` added (Connect events carry it; apps need it to know whose event it is)."""
    if raw is not None and event.get("account") == account:
        return raw.decode("utf-8")
    return json.dumps({**event, "account": account}, indent=2)


def accept(
    store: Store, event: Mapping[str, Any], *, account: str | None = None,
    source: str = "webhook", raw: bytes | None = None, grants: Grants | None = None,
) -> Accepted:
    """Store an upstream event and its deliveries; a known event id is a no-op."""
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise BadEvent("an event needs a string `id` and `type`")
    acct = event.get("account") or account
    if not isinstance(acct, str) or not acct:
        raise BadEvent(f"event {event_id} names no account and none is configured")
    mode = event_mode(event.get("livemode"))
    installs_ = store.installs_for_account(acct)
    with store.engine.connect() as conn:
        endpoints = _endpoints_on_account(conn, acct) if installs_ else []
    routes = route_event(event_type, mode, installs_, endpoints, grants or Grants())
    created = event.get("created")
    return _write(store, event_id, acct, mode, event_type,
                  created if isinstance(created, int) else int(time.time()),
                  _payload(event, acct, raw), source, None, routes)


def _write(
    store: Store, event_id: str, account: str, mode: str, event_type: str, created: int,
    payload: str, source: str, target_app: str | None, routes: Sequence[Route],
) -> Accepted:
    now = utcnow()
    try:
        with writing(store) as conn:
            known = conn.execute(sa.select(events.c.event_id).where(
                events.c.event_id == event_id)).first()
            if known is not None:
                return Accepted(event_id, True, 0)
            conn.execute(events.insert().values(
                event_id=event_id, account=account, mode=mode, type=event_type,
                created=created, payload=payload, source=source, target_app_id=target_app,
                received_at=now))
            _insert_deliveries(conn, event_id, routes, now)
    except sa.exc.IntegrityError:
        # PostgreSQL: the same event accepted concurrently by another ingest; it won.
        return Accepted(event_id, True, 0)
    return Accepted(event_id, False, len(routes))


def _insert_deliveries(conn: Connection, event_id: str, routes: Sequence[Route],
                       now: Any) -> None:
    if routes:
        conn.execute(deliveries.insert(), [{
            "event_id": event_id, "endpoint_id": r.endpoint_id, "app_id": r.app_id,
            "install_id": r.install_id, "status": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now,
        } for r in routes])


def new_event_id() -> str:
    return "evt_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _application_event(store: Store, grant: EffectiveGrant, event_type: str) -> dict[str, Any]:
    try:
        name = store.get_app(grant.app_id).name
    except NotFound:
        name = grant.app_id
    return {
        "id": new_event_id(), "object": "event", "account": grant.account,
        "api_version": None, "created": int(time.time()),
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
    return _write(store, event["id"], grant.account, mode, event_type, event["created"],
                  json.dumps(event, indent=2), "permgate", grant.app_id, routes)


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
        _insert_deliveries(conn, event_id, routes, utcnow())
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
