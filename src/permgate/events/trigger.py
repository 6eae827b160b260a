"""`permgate trigger`: a realistic test event through the real pipeline, and who gets it.

The event's `data.object` is Stripe's own sample of that resource (generated from Stripe's
API fixtures by tools/gen_event_fixtures.py). It is accepted exactly as an upstream event
(`accept`: routing by each install's approved grant, the outbox, the workers), and the
result says for each app installed on the account whether it receives the event and, if
not, which permission it lacks.

The event is shaped as Stripe sends one, so that the official libraries' webhook helpers
accept it. stripe-go and Stripe.net refuse by default an event whose `api_version` differs
from the one the library is pinned to (newer releases: whose release train differs), so
`api_version` is the official Python library's pinned one (the fixtures are read with it)
unless the caller names another (`permgate trigger --api-version 2024-06-20`, for a handler
pinned to that version). The object itself is the fixtures' sample whatever the version.
`*.updated` events carry `data.previous_attributes` (when the object has `metadata` to
change; Stripe never sends an empty one), `invoice.upcoming`'s invoice has no id (an
upcoming invoice has none), and `pending_webhooks` is counted where the event is queued
(events.outbox).
"""

from __future__ import annotations

import copy
import re
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


class BadApiVersion(StoreError):
    default_code = "api_version_invalid"


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


# Stripe's API versions: a date, and since 2024-09-30 a release train (`2024-09-30.acacia`).
_API_VERSION = re.compile(r"20[0-9]{2}-[01][0-9]-[0-3][0-9](?:\.[a-z]{1,20})?", re.ASCII)


def check_api_version(text: str) -> str:
    """`text` if it is shaped as a Stripe API version, else BadApiVersion."""
    if len(text) > 40 or _API_VERSION.fullmatch(text) is None:
        raise BadApiVersion("an API version is a date, optionally with its release train "
                            "(e.g. 2024-06-20 or 2024-09-30.acacia)")
    return text


def sample_event(event_type: str, account: str, pending_webhooks: int = 0, *,
                 api_version: str | None = None) -> dict[str, Any]:
    """A test-mode event of this type with Stripe's sample object (or a minimal one; always
    for another API than Stripe's, whose objects Stripe's samples are not).
    `pending_webhooks` is set again where the event is queued (events.outbox)."""
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
        previous = _changed(obj)
        if previous:
            data["previous_attributes"] = previous
    return {
        "id": new_event_id(), "object": "event", "account": account,
        "api_version": api_version or fx["api_version"], "created": int(time.time()),
        "data": data,
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
            app_id: str | None = None, api_version: str | None = None) -> Triggered:
    engine = permgate.default_engine()
    if api_version is not None:
        check_api_version(api_version)
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
    event = sample_event(event_type, account, api_version=api_version)
    # accept() counts `pending_webhooks` (the endpoints it is queued for) as it queues it.
    event["pending_webhooks"] = accept(store, event, source="trigger",
                                       router=Router(store)).deliveries
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
