"""`permgate trigger`: a realistic test event through the real pipeline, and who gets it.

The event's `data.object` is Stripe's own sample of that resource (generated from Stripe's
API fixtures by tools/gen_event_fixtures.py). It is accepted exactly as an upstream event
(`accept`: routing by each install's approved grant, the outbox, the workers), and the
result says for each app installed on the account whether it receives the event and, if
not, which permission it lacks.

The event is shaped as Stripe sends one, so that the official libraries' webhook helpers
accept it (stripe-go and Stripe.net refuse an event without `api_version` by default): a
real `api_version` (the official Python library's that the fixtures are read with),
`data.previous_attributes` on `*.updated` events, no id on `invoice.upcoming` (an upcoming
invoice has none), and `pending_webhooks` counting the endpoints it is queued for.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import permgate
from permgate.events.fixtures import fixtures
from permgate.events.outbox import Router, accept, new_event_id
from permgate.events.routing import Grants, may_receive
from permgate.events.schema import deliveries
from permgate.store import NotFound, Store, StoreError

DEMO_ACCOUNT = "acct_demo"  # `permgate serve`'s demo account


class UnknownEvent(StoreError):
    default_code = "event_unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    app_id: str
    mode: str
    allowed: bool
    message: str  # the engine's: what is missing, naming the permission
    endpoints: tuple[str, ...]  # endpoints the event was queued for

    def as_json(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "mode": self.mode, "allowed": self.allowed,
                "message": self.message, "endpoints": list(self.endpoints)}


@dataclass(frozen=True, slots=True)
class Triggered:
    event: dict[str, Any]
    verdicts: tuple[Verdict, ...]

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event["id"], "type": self.event["type"],
                "account": self.event["account"], "livemode": self.event["livemode"],
                "apps": [v.as_json() for v in self.verdicts]}


def sample_event(event_type: str, account: str, pending_webhooks: int = 0) -> dict[str, Any]:
    """A test-mode event of this type with Stripe's sample object (or a minimal one; always
    for another API than Stripe's, whose objects Stripe's samples are not)."""
    fx = fixtures()
    resource = fx["events"].get(event_type) if permgate.api_profile().stripe else None
    if resource is not None:
        obj = copy.deepcopy(fx["objects"][resource])
    else:  # no sample of its object: the id and type are what receivers look at first
        kind = event_type.rsplit(".", 1)[0]
        obj = {"id": f"{kind.rsplit('.', 1)[-1]}_{new_event_id()[4:]}", "object": kind}
    data: dict[str, Any] = {"object": obj}
    if event_type == "invoice.upcoming":
        obj.pop("id", None)  # Stripe: an upcoming invoice has no id yet
    if event_type.endswith(".updated"):
        data["previous_attributes"] = _changed(obj)
    return {
        "id": new_event_id(), "object": "event", "account": account,
        "api_version": fx["api_version"], "created": int(time.time()), "data": data,
        "livemode": False, "pending_webhooks": pending_webhooks,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }


def _changed(obj: dict[str, Any]) -> dict[str, Any]:
    """Make a change to `obj` and answer its previous attributes, as Stripe's `*.updated`
    events carry them: a metadata key set by the trigger, absent (null) before."""
    if isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {**obj["metadata"], "permgate_trigger": "updated"}
        return {"metadata": {"permgate_trigger": None}}
    return {}


def default_account(store: Store, app_id: str | None) -> str:
    """The app's only test-mode account if it has exactly one, else the demo's account."""
    if app_id is not None:
        accounts = {g.account for g in store.list_installs(app_id=app_id)
                    if g.mode != "live"}
        if len(accounts) == 1:
            return accounts.pop()
    return DEMO_ACCOUNT


def trigger(store: Store, event_type: str, *, account: str,
            app_id: str | None = None) -> Triggered:
    engine = permgate.default_engine()
    if event_type not in engine.catalog.events:
        raise UnknownEvent(f"{event_type!r} is not an event type permgate knows "
                           "(`permgate events list` shows them)")
    installs_ = [g for g in store.installs_for_account(account) if g.mode != "live"]
    if app_id is not None:
        store.get_app(app_id)  # NotFound names it
        installs_ = [g for g in installs_ if g.app_id == app_id]
        if not installs_:
            raise NotFound(f"{app_id} is not installed on {account} in test mode: nothing "
                           f"would reach it (permgate install {app_id} --account {account} "
                           "--mode test ...)", "not_installed")
    router = Router(store)
    router.refresh()
    # Stripe counts the endpoints an event is still to reach: here, every one it is queued for.
    pending = len(router.routes(account, event_type, "test"))
    event = sample_event(event_type, account, pending)
    accept(store, event, source="trigger", router=router)
    with store.engine.connect() as conn:
        queued: dict[str, list[str]] = {}
        for app, endpoint in conn.execute(sa.select(
                deliveries.c.app_id, deliveries.c.endpoint_id).where(
                deliveries.c.event_id == event["id"]).order_by(deliveries.c.endpoint_id)):
            queued.setdefault(app, []).append(endpoint)
    grants = Grants()
    verdicts = []
    for g in sorted(installs_, key=lambda g: (g.app_id, g.mode)):
        grant = grants(g.approved)
        allowed = may_receive(event_type, grant)
        message = "" if allowed else engine.decide_event(event_type, grant).message
        verdicts.append(Verdict(g.app_id, g.mode, allowed, message,
                                tuple(queued.get(g.app_id, ()))))
    return Triggered(event, tuple(verdicts))
