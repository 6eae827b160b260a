"""Who gets an event: pure functions of the event, the installs and their endpoints.

An event of account A in mode M goes to every install on A in M whose effective (approved)
grant allows the event type, at each of the app's endpoints that subscribes to the type and
is of the install's mode. As Stripe routes Connect events, a test-mode event also reaches the
app's live endpoints when the app is installed on A in live mode as well; a live event never
reaches a test endpoint. Sandboxes take test-mode events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import permgate
from permgate.decision import Grant
from permgate.events.model import Endpoint
from permgate.store import EffectiveGrant

INSTALL_MODES: Mapping[str, tuple[str, ...]] = {"live": ("live",), "test": ("test", "sandbox")}


@dataclass(frozen=True, slots=True)
class Route:
    endpoint_id: str
    app_id: str
    install_id: str


class Grants:
    """Validated grants, one per distinct permission set (thousands of installs share few)."""

    def __init__(self) -> None:
        self._cache: dict[frozenset[str], Grant] = {}

    def __call__(self, names: frozenset[str]) -> Grant:
        grant = self._cache.get(names)
        if grant is None:
            engine = permgate.default_engine()
            # A name the catalog does not know grants nothing; it must not block the rest.
            grant = engine.grant(n for n in names if n in engine.catalog.permissions)
            self._cache[names] = grant
        return grant


def event_mode(livemode: object) -> str:
    return "live" if livemode is True else "test"


def may_receive(event_type: str, grant: Grant) -> bool:
    return permgate.default_engine().decide_event(event_type, grant).allowed


def endpoint_reachable(endpoint_mode: str, install_mode: str, app_modes: Iterable[str]) -> bool:
    """May an event allowed by an install in `install_mode` go to an endpoint of this mode?"""
    if endpoint_mode == install_mode:
        return True
    return endpoint_mode == "live" and install_mode != "live" and "live" in app_modes


def route_event(
    event_type: str, mode: str, installs: Sequence[EffectiveGrant],
    endpoints: Iterable[Endpoint], grants: Grants, *, target_app: str | None = None,
) -> list[Route]:
    """Every (endpoint, install) that gets the event; one route per endpoint."""
    wanted = INSTALL_MODES[mode]
    by_app: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        if ep.removed_at is None and ep.disabled_at is None and ep.subscribes(event_type):
            by_app.setdefault(ep.app_id, []).append(ep)
    app_modes: dict[str, set[str]] = {}
    for g in installs:
        app_modes.setdefault(g.app_id, set()).add(g.mode)
    routes: dict[str, Route] = {}
    for g in installs:
        if g.mode not in wanted or (target_app is not None and g.app_id != target_app):
            continue
        eps = by_app.get(g.app_id)
        if not eps or not may_receive(event_type, grants(g.approved)):
            continue
        for ep in eps:
            if ep.endpoint_id not in routes and endpoint_reachable(
                    ep.mode, g.mode, app_modes[g.app_id]):
                routes[ep.endpoint_id] = Route(ep.endpoint_id, g.app_id, g.install_id)
    return list(routes.values())
