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
from pathlib import Path

# First of ours: which build of the call path runs is chosen before any of it imports.
from permgate import _build  # noqa: F401
from permgate.api import BadPath, Operation
from permgate.api.profile import STRIPE_PROFILE, ApiDirError, ApiProfile
from permgate.catalog import Catalog, EventRule, Permission, UnknownPermission
from permgate.decision import Body, Decision, Engine, Grant
from permgate.errors import PermgateError
from permgate.load import load, read_api_dir

__version__ = "0.1.0"

engine: Engine = load()
"""Stripe's engine: the one every command, the gateway and events decide with."""


# The API this process decides for: Stripe's unless `use_api` chose an API DIR (the CLI's
# `--api DIR` / PERMGATE_API, a gateway worker's `api` setting). One per process: every
# layer (manifests, store descriptions, consent pages, events, scan) reads it here.
_active: tuple[Engine, ApiProfile] | None = None


def default_engine() -> Engine:
    """The engine this process decides with: Stripe's (`permgate.engine`) unless `use_api`
    chose another API."""
    return engine if _active is None else _active[0]


def api_profile() -> ApiProfile:
    """The edge profile of `default_engine()`'s API (`STRIPE_PROFILE` unless `use_api`)."""
    return STRIPE_PROFILE if _active is None else _active[1]


def use_api(directory: str | Path | None, *, check_spec: bool = False
            ) -> tuple[Engine, ApiProfile]:
    """Decide for the API of an API DIR from now on in this process (None: Stripe's again).
    Raises ApiDirError (one line) for a DIR that cannot be used; see `read_api_dir`."""
    global _active
    if directory is None:
        _active = None
        return engine, STRIPE_PROFILE
    _active = read_api_dir(directory, check_spec=check_spec)
    return _active


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
    "STRIPE_PROFILE", "ApiDirError", "ApiProfile", "BadPath", "Catalog", "Decision", "Engine",
    "EventRule", "Grant", "Operation", "PermgateError", "Permission", "UnknownPermission",
    "__version__", "api_profile", "decide", "decide_event", "default_engine", "engine", "load",
    "read_api_dir", "use_api",
]
