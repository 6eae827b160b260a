"""Webhook endpoints: register (refusing what the app's manifest cannot receive), list,
remove, rotate the signing secret."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

import permgate
from permgate.events import signing
from permgate.events.db import audit, changing, utcnow, writing
from permgate.events.model import LOCAL, STANDARD, WILDCARD, Endpoint, NewEndpoint
from permgate.events.schema import webhook_endpoints
from permgate.events.sealing import Sealer, default_sealer
from permgate.events.targets import TargetPolicy, redact
from permgate.store import MODES, NotFound, Store, StoreError
from permgate.store.keys import new_id

MAX_ROTATION_GRACE = timedelta(hours=24)  # Stripe lets the old secret live up to 24 hours


class SubscriptionRefused(StoreError):
    """An event type the app's current manifest cannot receive, or that does not exist."""

    default_code = "event_not_permitted"


def endpoint_from_row(row: RowMapping) -> Endpoint:
    return Endpoint(
        # Endpoints stored before userinfo was refused may hold a password: never show it.
        endpoint_id=row["endpoint_id"], app_id=row["app_id"], url=redact(row["url"]),
        mode=row["mode"], enabled_events=tuple(row["enabled_events"]),
        secret_hint=row["secret_hint"], created_at=row["created_at"],
        created_by=row["created_by"], removed_at=row["removed_at"], kind=row["kind"],
        failing_since=row["failing_since"], disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"], expires_at=row["expires_at"],
    )


def check_subscription(permissions: frozenset[str], event_types: Sequence[str]) -> list[str]:
    """Why each refused type is refused: the engine's message, naming what would allow it."""
    engine = permgate.default_engine()
    grant = engine.grant(p for p in permissions if p in engine.catalog.permissions)
    problems = []
    for t in event_types:
        d = engine.decide_event(t, grant)
        if not d.allowed:
            problems.append(d.message)
    return problems


def _event_list(events: Sequence[str]) -> list[str]:
    names = sorted({e.strip() for e in events if e.strip()})
    if not names:
        raise StoreError("name at least one event type, or * for every event the app may "
                         "receive", "events_required")
    if WILDCARD in names and len(names) > 1:
        raise StoreError("* already means every event the app may receive; give it alone",
                         "events_invalid")
    return names


def add_endpoint(
    store: Store, app_id: str, url: str, events: Sequence[str], mode: str, *, by: str,
    sealer: Sealer | None = None, targets: TargetPolicy | None = None, kind: str = STANDARD,
    expires_at: datetime | None = None,
) -> NewEndpoint:
    """Register an endpoint. Its URL must pass the target policy (events/targets.py:
    https, a public address, no userinfo), resolved now and again at every delivery.
    `kind=LOCAL`: a `permgate listen` session's endpoint (test mode; loopback, and only
    loopback; delivered by that session, abandoned after `expires_at` unless renewed)."""
    if kind not in (STANDARD, LOCAL):
        raise StoreError(f"kind must be {STANDARD!r} or {LOCAL!r}, not {kind!r}", "bad_kind")
    if mode not in MODES:
        raise StoreError(f"mode must be one of {', '.join(MODES)}, not {mode!r}", "bad_mode")
    if kind == LOCAL and mode != "test":
        raise StoreError("a local (listen) endpoint is a test-mode endpoint", "bad_mode")
    (targets or TargetPolicy.from_env()).check_registration(url, mode, local=kind == LOCAL)
    names = _event_list(events)
    app = store.get_app(app_id)
    if names != [WILDCARD]:
        problems = check_subscription(app.latest.permissions, names)
        if problems:
            raise SubscriptionRefused(
                f"{app_id} version {app.latest.version} cannot subscribe: " + " ".join(problems))
    secret = signing.new_secret()
    endpoint_id = new_id("we")
    sealed = (sealer or default_sealer(store)).seal(secret, endpoint_id)  # bound to this row
    now = utcnow()
    with changing(store) as conn:
        conn.execute(webhook_endpoints.insert().values(
            endpoint_id=endpoint_id, app_id=app_id, url=url, mode=mode, enabled_events=names,
            secret_sealed=sealed, secret_hint=signing.secret_hint(secret), created_at=now,
            created_by=by, kind=kind, expires_at=expires_at))
        audit(conn, by, "webhook.added", app_id=app_id, mode=mode, endpoint_id=endpoint_id,
              url=url, enabled_events=names, kind=kind)
        row = _get(conn, endpoint_id)
    return NewEndpoint(endpoint_from_row(row), secret)


def _get(conn: sa.Connection, endpoint_id: str) -> RowMapping:
    row = conn.execute(sa.select(webhook_endpoints).where(
        webhook_endpoints.c.endpoint_id == endpoint_id)).mappings().first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}", "endpoint_not_found")
    return row


def list_endpoints(store: Store, app_id: str | None = None, *,
                   include_removed: bool = False) -> list[Endpoint]:
    stmt = sa.select(webhook_endpoints).order_by(webhook_endpoints.c.app_id,
                                                  webhook_endpoints.c.created_at)
    if app_id is not None:
        stmt = stmt.where(webhook_endpoints.c.app_id == app_id)
    if not include_removed:
        stmt = stmt.where(webhook_endpoints.c.removed_at.is_(None))
    with store.engine.connect() as conn:
        return [endpoint_from_row(r) for r in conn.execute(stmt).mappings()]


def remove_endpoint(store: Store, endpoint_id: str, *, by: str) -> Endpoint:
    """No delivery to it starts after this returns; its pending deliveries are cancelled."""
    from permgate.events.outbox import cancel_pending

    with changing(store) as conn:
        row = _get(conn, endpoint_id)
        if row["removed_at"] is not None:
            raise NotFound(f"webhook endpoint {endpoint_id} was already removed",
                           "endpoint_not_found")
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == endpoint_id).values(removed_at=utcnow()))
        cancelled = cancel_pending(conn, "endpoint removed", endpoint_id=endpoint_id)
        audit(conn, by, "webhook.removed", app_id=row["app_id"], mode=row["mode"],
              endpoint_id=endpoint_id, cancelled_deliveries=cancelled)
        return endpoint_from_row(_get(conn, endpoint_id))


def rotate_secret(
    store: Store, endpoint_id: str, *, by: str, grace: timedelta = timedelta(0),
    sealer: Sealer | None = None,
) -> NewEndpoint:
    """A new secret; during `grace` deliveries are signed with the old one as well."""
    if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
        raise StoreError("the old secret may stay valid for 0 to 24 hours", "bad_grace_period")
    box = sealer or default_sealer(store)
    secret = signing.new_secret()
    now = utcnow()
    with writing(store) as conn:
        row = _get(conn, endpoint_id)
        if row["removed_at"] is not None:
            raise NotFound(f"webhook endpoint {endpoint_id} was removed", "endpoint_not_found")
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == endpoint_id).values(
            secret_sealed=box.seal(secret, endpoint_id), secret_hint=signing.secret_hint(secret),
            previous_secret_sealed=row["secret_sealed"] if grace else None,
            previous_expires_at=now + grace if grace else None))
        audit(conn, by, "webhook.secret_rotated", app_id=row["app_id"], mode=row["mode"],
              endpoint_id=endpoint_id, old_secret_expires_at=(now + grace).isoformat())
        return NewEndpoint(endpoint_from_row(_get(conn, endpoint_id)), secret)


def enable_endpoint(store: Store, endpoint_id: str, *, by: str) -> Endpoint:
    """Deliver to a disabled endpoint again (its operator fixed it). New events only: what
    was cancelled when it was disabled can be queued again with `events resend`."""
    with changing(store) as conn:
        row = _get(conn, endpoint_id)
        if row["removed_at"] is not None:
            raise NotFound(f"webhook endpoint {endpoint_id} was removed", "endpoint_not_found")
        if row["disabled_at"] is None:
            raise StoreError(f"webhook endpoint {endpoint_id} is not disabled", "not_disabled")
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == endpoint_id).values(
            disabled_at=None, disabled_reason=None, failing_since=None))
        audit(conn, by, "webhook.enabled", app_id=row["app_id"], mode=row["mode"],
              endpoint_id=endpoint_id, was_disabled_at=row["disabled_at"].isoformat())
        return endpoint_from_row(_get(conn, endpoint_id))


def get_endpoint(store: Store, endpoint_id: str) -> Endpoint:
    with store.engine.connect() as conn:
        return endpoint_from_row(_get(conn, endpoint_id))


def renew_local(store: Store, endpoint_id: str, expires_at: datetime) -> None:
    """A listen session's heartbeat: its endpoint stays live until `expires_at`."""
    with writing(store) as conn:
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == endpoint_id,
            webhook_endpoints.c.kind == LOCAL).values(expires_at=expires_at))


def remove_abandoned_local(store: Store, app_id: str | None = None, *,
                           by: str) -> list[str]:
    """Remove local endpoints whose listen session stopped renewing them (a session killed
    without its clean-up), so their queued deliveries are cancelled. Workers call this."""
    stmt = sa.select(webhook_endpoints.c.endpoint_id).where(
        webhook_endpoints.c.kind == LOCAL, webhook_endpoints.c.removed_at.is_(None),
        webhook_endpoints.c.expires_at <= utcnow())
    if app_id is not None:
        stmt = stmt.where(webhook_endpoints.c.app_id == app_id)
    with store.engine.connect() as conn:
        ids = list(conn.execute(stmt).scalars().all())
    for endpoint_id in ids:
        with contextlib.suppress(NotFound):  # another process removed it first
            remove_endpoint(store, endpoint_id, by=by)
    return ids
