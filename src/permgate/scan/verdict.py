"""From call sites to permissions, and the verdict against a manifest's grants.

Each call asks the engine what its operation and expansions need (any-of groups, most specific
first). Calls on the installing or a connected account, and handled events, are what the app
needs. Calls whose account is unknown are not counted as needed, but a granted permission
they would use is not called unused either: removing it could break them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import permgate
from permgate.scan.model import NEEDS_APP_PERMISSION, Call, EventUse
from permgate.scan.scanner import Findings

Groups = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class CallNeeds:
    call: Call
    kind: str  # engine decision kind: "missing" (needs groups), "unavailable", "unknown", ...
    operation: str | None  # "GET /v1/customers/{customer}"
    required: Groups
    message: str

    @property
    def counts(self) -> bool:
        return self.call.account in NEEDS_APP_PERMISSION


@dataclass(frozen=True, slots=True)
class EventNeeds:
    use: EventUse
    kind: str
    required: Groups
    message: str


@dataclass(frozen=True, slots=True)
class Missing:
    permission: str  # the smallest permission that would allow the sites
    sites: tuple[tuple[str, int, str], ...]  # (file, line, call or event)


@dataclass(slots=True)
class Verdict:
    findings: Findings
    calls: list[CallNeeds]
    events: list[EventNeeds]
    manifest: str | None = None
    granted: tuple[str, ...] = ()
    missing: list[Missing] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    covered: list[str] = field(default_factory=list)
    unavailable: list[CallNeeds] = field(default_factory=list)  # no permission allows them
    invalid: list[CallNeeds] = field(default_factory=list)  # bad expansions
    unknown_names: list[str] = field(default_factory=list)  # manifest names not in the catalog

    @property
    def has_findings(self) -> bool:
        return bool(self.missing or self.unused or self.unavailable or self.invalid)

    @property
    def needed(self) -> list[str]:
        """The smallest set the code needs, as `--fix` would grant it from nothing."""
        return _cover(self._groups(counted_only=True), ())

    def _groups(self, *, counted_only: bool) -> list[tuple[str, ...]]:
        """Groups of counted calls and events; with `counted_only=False` also the groups of
        calls on an unknown account (never those on the developer's own account)."""
        wanted = NEEDS_APP_PERMISSION if counted_only else NEEDS_APP_PERMISSION | {"unknown"}
        out = [g for c in self.calls if c.call.account in wanted for g in c.required]
        out += [g for e in self.events for g in e.required]
        return out


def _cover(groups: Iterable[tuple[str, ...]], have: Iterable[str]) -> list[str]:
    """Permissions to add so that every group is met: forced choices first, then the most
    specific satisfier of each group still unmet."""
    chosen: list[str] = []
    closure = set(permgate.engine.catalog.closure(frozenset(have)))
    ordered = sorted({g for g in groups if g}, key=lambda g: (len(g), g))
    for g in ordered:
        if closure.isdisjoint(g):
            chosen.append(g[0])
            closure |= permgate.engine.catalog.implied_by(g[0])
    return chosen


def needs(findings: Findings) -> tuple[list[CallNeeds], list[EventNeeds]]:
    engine = permgate.engine
    cache: dict[tuple[str, str, tuple[str, ...]], CallNeeds] = {}
    calls: list[CallNeeds] = []
    for c in findings.calls:
        key = (c.method, c.path, c.expand)
        hit = cache.get(key)
        if hit is None:
            d = engine.requirements(c.method, c.path, expand=c.expand)
            op = f"{d.operation.method} {d.operation.path}" if d.operation else None
            required = d.required if d.kind in ("missing", "allowed") else ()
            hit = CallNeeds(c, d.kind, op, required, d.message)
            cache[key] = hit
        calls.append(CallNeeds(c, hit.kind, hit.operation, hit.required, hit.message))
    events: list[EventNeeds] = []
    for e in findings.events:
        d = permgate.decide_event(e.event, ())
        required = d.required if d.kind in ("missing", "allowed") else ()
        events.append(EventNeeds(e, d.kind, required, d.message))
    return calls, events


def verdict(findings: Findings, granted: Iterable[str] | None, manifest: str | None) -> Verdict:
    calls, events = needs(findings)
    v = Verdict(findings, calls, events, manifest)
    v.unavailable = [c for c in calls if c.counts and c.kind == "unavailable"]
    v.invalid = [c for c in calls if c.counts and c.kind == "bad_request"]
    if granted is None:
        return v
    catalog = permgate.engine.catalog
    names = tuple(dict.fromkeys(granted))
    v.granted = names
    known = frozenset(n for n in names if n in catalog.permissions)
    v.unknown_names = [n for n in names if n not in catalog.permissions]
    closure = catalog.closure(known)
    # Missing: group the unmet groups by the permission that would meet them.
    unmet: dict[tuple[str, ...], list[tuple[str, int, str]]] = {}
    for c in calls:
        if c.counts:
            for g in c.required:
                if closure.isdisjoint(g):
                    unmet.setdefault(g, []).append((c.call.file, c.call.line, c.call.call))
    for e in events:
        for g in e.required:
            if closure.isdisjoint(g):
                unmet.setdefault(g, []).append((e.use.file, e.use.line, e.use.event))
    for perm in _cover(unmet, known):
        implied = catalog.implied_by(perm)
        sites = sorted({s for g, ss in unmet.items() if not implied.isdisjoint(g) for s in ss})
        v.missing.append(Missing(perm, tuple(sites)))
    # Unused: granted, and no group (counted or of unknown account) is met by it.
    groups = v._groups(counted_only=False)
    counted = v._groups(counted_only=True)
    for n in sorted(known):
        implied = catalog.implied_by(n)
        if any(not implied.isdisjoint(g) for g in counted):
            v.covered.append(n)
        elif not any(not implied.isdisjoint(g) for g in groups):
            v.unused.append(n)
        else:
            v.covered.append(n)  # only calls of unknown account use it: keep it
    return v
