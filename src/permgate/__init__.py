"""permgate: the Stripe Apps permission system, faithful and fast.

    import permgate
    d = permgate.decide("GET", "/v1/customers/cus_1?expand[]=default_source",
                        grants={"customer_read"}, account="acct_1")
    d.allowed, d.missing, d.message

`permgate.engine` is Stripe's Engine (catalog, operations, expansion graph), loaded at import
(a few milliseconds); `permgate.engine.catalog` is Stripe's Catalog, the one copy every layer
shares. `permgate.load(...)` builds an Engine for another API from documents of the same shape.
Everything public is listed in `__all__` and documented in docs/api.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from permgate.api import BadPath, Operation
from permgate.catalog import Catalog, EventRule, Permission, UnknownPermission
from permgate.decision import Body, Decision, Engine, Grant
from permgate.errors import PermgateError
from permgate.load import load

__version__ = "0.1.0"

engine: Engine = load()
"""Stripe's engine: the one every command, the gateway and events decide with."""


def default_engine() -> Engine:
    """Stripe's engine (the same object as `permgate.engine`)."""
    return engine


def decide(
    method: str,
    target: str,
    body: Body = None,
    grants: Grant | Iterable[str] = (),
    *,
    expand: Iterable[str] = (),
    account: str | None = None,
) -> Decision:
    """Decide one API request against Stripe's tables: `target` is the path with its query
    string, `body` the form-encoded body (or None), `grants` the permissions the app holds
    (names, or a Grant from `engine.grant(names)`). See `Engine.decide`."""
    return engine.decide(method, target, body, grants, expand=expand, account=account)


def decide_event(event_type: str, grants: Grant | Iterable[str] = ()) -> Decision:
    """May an app holding `grants` receive `event_type`? (event_read plus one of the event's
    permissions). See `Engine.decide_event`."""
    return engine.decide_event(event_type, grants)


__all__ = [
    "BadPath", "Catalog", "Decision", "Engine", "EventRule", "Grant", "Operation",
    "PermgateError", "Permission", "UnknownPermission", "__version__", "decide", "decide_event",
    "default_engine", "engine", "load",
]
