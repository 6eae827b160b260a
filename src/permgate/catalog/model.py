"""The permission catalog: permissions, implications and event rules, immutable once loaded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from permgate.errors import UnknownPermission as UnknownPermission

Level = Literal["read", "write"]
REQUESTABLE_SOURCES = frozenset({"reference", "schema", "event-table"})


@dataclass(frozen=True, slots=True)
class AlsoRequest:
    """A "must also request" note: advice for manifests, not an implication."""

    permission: str
    note: str


@dataclass(frozen=True, slots=True)
class Permission:
    name: str
    level: Level
    resource: str  # shared by the read and write permission of one row, e.g. "customer"
    product: str
    title: str  # the resource as the reference names it, e.g. "Customers"
    description: str
    implies: tuple[str, ...]  # as stated by the reference (read permissions)
    also_request: tuple[AlsoRequest, ...]
    sources: tuple[str, ...]  # "reference", "implied", "schema", "event-table"
    refused: str | None  # why a manifest may not request it, if it may not

    @property
    def requestable(self) -> bool:
        """May a manifest list it? Implied-only names and refused names may not."""
        return self.refused is None and not REQUESTABLE_SOURCES.isdisjoint(self.sources)


@dataclass(frozen=True, slots=True)
class EventRule:
    type: str
    permissions: tuple[str, ...]  # any one of them (plus event_read) allows the event
    event_read_only: bool  # True: event_read alone allows it
    source: Literal["documented", "derived"]
    note: str | None

    @property
    def receivable(self) -> bool:
        return self.event_read_only or bool(self.permissions)


def implication_closure(
    rows: Iterable[tuple[str, str, str, Iterable[str]]],
) -> dict[str, frozenset[str]]:
    """Each permission -> what holding it satisfies: itself, its read twin if it is a write,
    and every permission it implies, transitively (an implication on a row holds for both
    levels). `rows`: (name, level, resource, implies). The catalog's rule, in one place for
    whoever must know it before a Catalog exists (ownapi's generator)."""
    table = list(rows)
    names = {name for name, _, _, _ in table}
    direct: dict[str, set[str]] = {}
    for name, level, resource, implies in table:
        d = set(implies)
        twin = f"{resource}_read"
        if level == "write" and twin in names:
            d.add(twin)
        direct[name] = d
    implied: dict[str, frozenset[str]] = {}
    for name in direct:
        seen = {name}
        stack = list(direct[name])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(direct.get(n, ()))
        implied[name] = frozenset(seen)
    return implied


class Catalog:
    """Permissions and event rules of one API (Stripe's by default).

    Everything derived (closures, satisfier lists) is computed here once; the decision path
    only does set membership on the results.
    """

    __slots__ = (
        "_closure_cache", "_implied_by_one", "_satisfiers", "event_permission", "events", "name",
        "permissions", "typos",
    )

    def __init__(
        self,
        name: str,
        permissions: Iterable[Permission],
        events: Iterable[EventRule],
        *,
        event_permission: str = "event_read",
        typos: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        perms = {p.name: p for p in permissions}
        self.permissions: Mapping[str, Permission] = MappingProxyType(perms)
        self.events: Mapping[str, EventRule] = MappingProxyType({e.type: e for e in events})
        self.event_permission = event_permission
        self.typos: Mapping[str, str] = MappingProxyType(dict(typos or {}))
        for p in perms.values():
            for target in (*p.implies, *(a.permission for a in p.also_request)):
                if target not in perms:
                    raise ValueError(f"{p.name} names unknown permission {target}")
        for e in self.events.values():
            for target in e.permissions:
                if target not in perms:
                    raise ValueError(f"event {e.type} names unknown permission {target}")
        implied = implication_closure(
            (p.name, p.level, p.resource, p.implies) for p in perms.values())
        self._implied_by_one: Mapping[str, frozenset[str]] = MappingProxyType(implied)
        # Who satisfies a requirement, most specific first: itself, its write twin, then those
        # that imply it directly, then transitively; names break ties.
        sat: dict[str, tuple[str, ...]] = {}
        for req in perms:
            holders = [p for p in perms if req in implied[p]]

            def rank(p: str, req: str = req) -> tuple[int, str]:
                if p == req:
                    return (0, p)
                if perms[p].resource == perms[req].resource:
                    return (1, p)
                if req in perms[p].implies:  # directly (a write's read twin shares its resource)
                    return (2, p)
                return (3, p)

            sat[req] = tuple(sorted(holders, key=rank))
        self._satisfiers: Mapping[str, tuple[str, ...]] = MappingProxyType(sat)
        self._closure_cache: dict[frozenset[str], frozenset[str]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.permissions

    def __getitem__(self, name: str) -> Permission:
        try:
            return self.permissions[name]
        except KeyError:
            raise UnknownPermission(name, self.suggest(name)) from None

    def suggest(self, name: str) -> str | None:
        """The documented name closest to a misspelt one (known schema typos first)."""
        if name in self.typos:
            return self.typos[name]
        import difflib  # only on a miss: not worth its import on every start

        close = difflib.get_close_matches(name, list(self.permissions), n=1, cutoff=0.75)
        return close[0] if close else None

    def require_known(self, names: Iterable[str]) -> frozenset[str]:
        """The names as a frozenset; raises UnknownPermission on the first unknown one."""
        out = frozenset(names)
        for n in out:
            if n not in self.permissions:
                raise UnknownPermission(n, self.suggest(n))
        return out

    def implied_by(self, name: str) -> frozenset[str]:
        """Everything one permission grants: itself, read for write, and implications."""
        return self._implied_by_one[name]

    def closure(self, grants: Iterable[str]) -> frozenset[str]:
        """Every permission a grant set effectively holds. Cached per distinct grant set.

        Unknown names are kept as they are (they grant nothing beyond themselves); callers
        that take user input validate names first with `require_known`.
        """
        key = grants if isinstance(grants, frozenset) else frozenset(grants)
        hit = self._closure_cache.get(key)
        if hit is not None:
            return hit
        implied = self._implied_by_one
        out: set[str] = set()
        for g in key:
            out |= implied.get(g, frozenset((g,)))
        result = frozenset(out)
        if len(self._closure_cache) > 65536:  # bounded: grant sets come from installs
            self._closure_cache.clear()
        self._closure_cache[key] = result
        return result

    def satisfiers(self, requirement: str) -> tuple[str, ...]:
        """Permissions that meet a requirement, most specific first."""
        return self._satisfiers[requirement]

    def redundant(self, grants: Iterable[str]) -> dict[str, str]:
        """Granted permissions already held through another granted one: name -> by whom."""
        names = sorted(set(grants) & set(self.permissions))
        out: dict[str, str] = {}
        for n in names:
            for other in names:
                if other != n and other not in out and n in self._implied_by_one[other]:
                    out[n] = other
                    break
        return out

    def event_rule(self, event_type: str) -> EventRule | None:
        return self.events.get(event_type)
