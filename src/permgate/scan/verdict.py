"""From call sites to permissions, and the verdict against a manifest's grants.

Each call asks the engine what its operation and expansions need (any-of groups, most specific
first), so "invalid expansion" findings follow the engine's expansion model. Calls on the
installing or a connected account, and events handled for the installing account, are what the
app needs. Calls on the developer's own account are not. Calls whose account is unknown are
reported, but neither counted nor allowed to keep a grant from being called unused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import permgate
from permgate.scan.model import EXPAND_AT_RUN_TIME, NEEDS_APP_PERMISSION, Call, EventUse
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

    @property
    def counts(self) -> bool:
        return self.use.account in NEEDS_APP_PERMISSION


@dataclass(frozen=True, slots=True)
class Site:
    """Where a need comes from, and why it is the app's: what every verdict line shows."""

    file: str
    line: int
    what: str  # the call ("stripe.customers.retrieve -> GET /v1/customers/{customer}") or event
    account: str
    reason: str


@dataclass(frozen=True, slots=True)
class Missing:
    permission: str  # the narrowest permission that would allow the sites
    sites: tuple[Site, ...]


@dataclass(frozen=True, slots=True)
class Unused:
    permission: str
    reason: str  # "nothing in the scanned tree needs it" or "covered by the narrower X"
    narrower: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unverified:
    """A grant nothing seen needs, but the scan did not see all of the app's traffic: a call
    whose operation or account it cannot tell might need it. Never called unused (a reviewer
    deletes what is called unused)."""

    permission: str
    reason: str
    sites: tuple[Site, ...]  # the calls that made the scan unsure


@dataclass(slots=True)
class Verdict:
    findings: Findings
    calls: list[CallNeeds]
    events: list[EventNeeds]
    manifest: str | None = None
    granted: tuple[str, ...] = ()
    missing: list[Missing] = field(default_factory=list)
    unused: list[Unused] = field(default_factory=list)
    covered: list[str] = field(default_factory=list)
    unavailable: list[CallNeeds] = field(default_factory=list)  # no permission allows them
    invalid: list[CallNeeds] = field(default_factory=list)  # bad expansions
    unknown_names: list[str] = field(default_factory=list)  # manifest names not in the catalog
    used_by: dict[str, list[Site]] = field(default_factory=dict)  # covered -> the sites
    outside: list[Unused] = field(default_factory=list)  # kept: code outside may need them
    unverified: list[Unverified] = field(default_factory=list)  # traffic the scan cannot read

    @property
    def has_findings(self) -> bool:
        return bool(self.missing or self.unused or self.unavailable or self.invalid)

    @property
    def needed(self) -> list[str]:
        """The narrowest set the code needs, as `--fix` would grant it from nothing."""
        return _cover(self._needs(), ())

    def _needs(self) -> list[tuple[tuple[str, ...], str | None, Site]]:
        """(group, hint, site) for every group of a counted call or event."""
        out: list[tuple[tuple[str, ...], str | None, Site]] = []
        for c in self.calls:
            if c.counts:
                for g in c.required:
                    out.append((g, None, _call_site(c)))
        for e in self.events:
            if e.counts:
                for g in e.required:
                    out.append((g, e.use.event, _event_site(e)))
        return out


def _call_site(c: CallNeeds) -> Site:
    call = c.call
    op = c.operation or f"{call.method} {call.path}"
    return Site(call.file, call.line, f"{call.call} -> {op}", call.account, call.reason)


def _event_site(e: EventNeeds) -> Site:
    u = e.use
    return Site(u.file, u.line, f"handles {u.event}", u.account, u.reason)


def _event_object_perm(event: str | None) -> set[str]:
    """`customer.subscription.updated` -> {subscription_read, customer_subscription_read}."""
    if not event:
        return set()
    parts = event.split(".")[:-1]
    out = set()
    for i in range(len(parts)):
        out.add("_".join(parts[i:]) + "_read")
    return out


def _rank(group: tuple[str, ...], event: str | None, p: str) -> tuple[int, ...]:
    """How narrow `p` is as the way to meet `group` (smaller is narrower). An API call's group
    comes from the engine most specific first; an event's lists its permissions by name, so
    there: the event's own object first, then what grants the least, read before write."""
    if event is None:
        return (group.index(p),)
    catalog = permgate.default_engine().catalog
    implied = catalog.implied_by(p) if p in catalog.permissions else frozenset({p})
    return (0 if p in _event_object_perm(event) else 1, len(implied),
            0 if p.endswith("_read") else 1, group.index(p))


def narrowest(group: tuple[str, ...], event: str | None = None) -> str:
    """The least-privilege choice in an any-of group (see `_rank`)."""
    return min(group, key=lambda p: _rank(group, event, p))


def _cover(
    needs: Iterable[tuple[tuple[str, ...], str | None, Site]], have: Iterable[str]
) -> list[str]:
    """Permissions to add so that every group is met: forced choices first (one-name groups),
    then the narrowest satisfier of each group still unmet. Least privilege beats fewer
    names: a broad permission is never chosen because it happens to meet two groups."""
    chosen: list[str] = []
    hints: dict[tuple[str, ...], str | None] = {}
    for g, hint, _site in needs:
        if g and (g not in hints or hints[g] is None):
            hints[g] = hint
    if not hints:
        return chosen  # nothing needed: no need to load the catalog
    catalog = permgate.default_engine().catalog
    closure = set(catalog.closure(frozenset(have)))
    for g in sorted(hints, key=lambda g: (len(g), g)):
        if closure.isdisjoint(g):
            pick = narrowest(g, hints[g])
            chosen.append(pick)
            closure |= catalog.implied_by(pick) if pick in catalog.permissions else {pick}
    return chosen


def needs(findings: Findings) -> tuple[list[CallNeeds], list[EventNeeds]]:
    engine = permgate.default_engine()
    cache: dict[tuple[str, str, tuple[str, ...]], CallNeeds] = {}
    calls: list[CallNeeds] = []
    for c in findings.calls:
        key = (c.method, c.path, c.expand)
        hit = cache.get(key)
        if hit is None:
            d = engine.requirements(c.method, c.path, expand=c.expand)
            op = f"{d.operation.method} {d.operation.path}" if d.operation else None
            required = d.required if d.kind in ("missing", "allowed") else ()
            if d.kind == "bad_request" and c.expand:
                # The request is refused as written, but the operation and its other
                # expansions still say what the call is for: count those needs.
                required = _needs_without_bad_expansions(c)
            hit = CallNeeds(c, d.kind, op, required, d.message)
            cache[key] = hit
        calls.append(CallNeeds(c, hit.kind, hit.operation, hit.required, hit.message))
    events: list[EventNeeds] = []
    for e in findings.events:
        d = permgate.default_engine().decide_event(e.event, ())  # the process's API
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
    catalog = permgate.default_engine().catalog
    names = tuple(dict.fromkeys(granted))
    v.granted = names
    known = frozenset(n for n in names if n in catalog.permissions)
    v.unknown_names = [n for n in names if n not in catalog.permissions]
    closure = catalog.closure(known)
    need_list = v._needs()
    # Missing: the unmet groups, grouped under the narrowest permission that meets them.
    unmet = [(g, h, s) for g, h, s in need_list if closure.isdisjoint(g)]
    for perm in _cover(unmet, known):
        implied = catalog.implied_by(perm)
        sites = sorted({s for g, _h, s in unmet if not implied.isdisjoint(g)},
                       key=lambda s: (s.file, s.line, s.what))
        v.missing.append(Missing(perm, tuple(sites)))
    # Unused: no counted need is met by it, or every need it meets is met by a granted
    # permission that is a narrower way to meet that need.
    groups: dict[tuple[tuple[str, ...], str | None], list[Site]] = {}
    for g, h, s in need_list:
        groups.setdefault((g, h), []).append(s)
    for n in sorted(known):
        served = [(g, h) for g, h in groups if n in g or not catalog.implied_by(n).isdisjoint(g)]
        if not served and findings.escapes:
            e = findings.escapes[0]
            v.outside.append(Unused(n, f"the installing account's credential ({e.credential}) "
                                       f"is handed to {e.call} at {e.file}:{e.line}, code "
                                       "outside the project that may need it"))
            continue
        if not served:
            v.unused.append(Unused(n, "no call or handled event of the app's accounts in the "
                                      "scanned tree needs it"))
            continue
        better: set[str] = set()
        for g, h in served:
            mine = _best_rank(g, h, n)
            others = [m for m in known if m != n and _best_rank(g, h, m) < mine]
            if not others:
                break
            better.update(others)
        else:
            by = tuple(sorted(better))
            v.unused.append(Unused(
                n, f"every need it meets is met by the narrower {', '.join(by)}", by))
            continue
        v.covered.append(n)
        v.used_by[n] = [s for key in served for s in groups[key]]
    _doubt_unused(v)
    return v


def _doubt_unused(v: Verdict) -> None:
    """"Unused" claims that the app's whole traffic was seen. Requests whose operation is known
    only at run time, or files not read whole, could need any grant: every unused one becomes
    unverified. Calls on a client of unknown account have known needs: the grants meeting them
    become unverified."""
    if not v.unused:
        return
    catalog = permgate.default_engine().catalog
    blind = tuple(Site(u.file, u.line, u.call, "unknown", u.reason)
                  for u in v.findings.unresolved)
    # a request the engine cannot map because part of its path is computed (`/v1/${path}`
    # read as GET /v1/{param}) is as blind; a literal path it does not know (the OAuth token
    # exchange) is an endpoint outside the permission model, not unreadable traffic
    blind += tuple(_call_site(c) for c in v.calls
                   if c.kind == "unknown" and c.call.account != "own"
                   and ("{param}" in c.call.path or c.call.path in ("/v1", "/v2")))
    # an expand list built at run time may reach any object the response holds
    blind += tuple(_call_site(c) for c in v.calls
                   if EXPAND_AT_RUN_TIME in c.call.notes and c.call.account != "own")
    # a file not read whole (too large, unreadable, unparsable, too deeply nested) may hold
    # any traffic: what it does was not seen
    blind += tuple(Site(p.file, 1, "file read in part", "unknown", p.reason)
                   for p in v.findings.partial)
    blind += tuple(Site(s.file, 1, "file not read", "unknown", s.reason)
                   for s in v.findings.skipped if s.dropped)
    unknown: list[tuple[tuple[str, ...], Site]] = [
        (g, _call_site(c)) for c in v.calls if c.call.account == "unknown" for g in c.required]
    keep: list[Unused] = []
    for u in v.unused:
        gives = catalog.implied_by(u.permission)
        sites = tuple(dict.fromkeys(s for g, s in unknown if not gives.isdisjoint(g)))
        if blind:
            v.unverified.append(Unverified(
                u.permission, f"nothing seen needs it, but {len(blind)} request(s) to the API "
                "are known only in part until run time (path, method or expand), or file(s) "
                "were not read whole, and may need it", blind + sites))
        elif sites:
            v.unverified.append(Unverified(
                u.permission, f"nothing of the app's accounts needs it, but {len(sites)} "
                "call(s) on a client whose account the scan cannot tell do", sites))
        else:
            keep.append(u)
    v.unused = keep


def _best_rank(group: tuple[str, ...], event: str | None, grant: str) -> tuple[int, ...]:
    """How narrowly `grant` meets `group`: its own rank when it is a member, else the rank of
    the member it implies, made worse (an implication grants more than the member does)."""
    if grant in group:
        return _rank(group, event, grant)
    catalog = permgate.default_engine().catalog
    gives = catalog.implied_by(grant) if grant in catalog.permissions else frozenset({grant})
    ranks = [_rank(group, event, p) for p in group if p in gives]
    if not ranks:
        return (99,)
    best = min(ranks)
    return (*best[:-1], best[-1] + len(group))


def _needs_without_bad_expansions(c: Call) -> Groups:
    engine = permgate.default_engine()
    groups: list[tuple[str, ...]] = []
    for expand in ((), *((e,) for e in c.expand)):
        d = engine.requirements(c.method, c.path, expand=expand)
        if d.kind in ("missing", "allowed"):
            groups += [g for g in d.required if g not in groups]
    return tuple(groups)
