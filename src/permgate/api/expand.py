"""The expansion model: `expand[]=a.b.c` -> each step, what it reaches and what it needs.

A node is an object type (`customer`) or an object embedded in one (`invoice_setting_customer_
setting`). Each expandable field of a node is one step of one of these kinds:

- **id**: the field holds an id that becomes an object; each type it may hold needs its read
  permission (a polymorphic field needs all of them), unless the catalog names one permission
  for the field itself (`balance_transaction.source`), or the type is read through its owner
  (a customer's card needs what reading it at `/v1/customers/{customer}/sources/{id}` needs);
- **embedded**: an object (or an array of objects) inside the parent: nothing of its own;
- **list**: a list always present (`items` of a subscription): the next step is its `data`;
- **includable**: left out of responses unless expanded (`line_items` of a Checkout Session):
  it needs what the equivalent request needs, looked up in the operations table when the
  engine is built, so the two cannot disagree;
- **unavailable**: a field no app may expand.

Every step counts against Stripe's limit of 4 (`data` of a list too). Results are cached per
(roots, list?, path) in a cache bounded by entries and bytes: paths come from requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LEVELS = 4  # Stripe's limit: every step of the path, the `data` of a list included
MAX_PATH = 512  # bytes of one expansion path; 4 steps of the longest field names fit easily
_CACHE_ENTRIES = 20_000
_CACHE_BYTES = 4 << 20

# Step kinds, as `explain` shows them.
ID, EMBEDDED, LIST, DATA, INCLUDABLE = "expanded", "walked", "walked", "walked", "includable"

Resolver = Callable[[str, str], tuple[str | None, str | None]]  # (method, path) -> (perm, why)


@dataclass(frozen=True, slots=True)
class Step:
    field: str  # the field name at this step (`data` for a list's elements)
    types: tuple[str, ...]  # object types (or embedded schemas) reached
    needs: tuple[str, ...]  # permissions this step requires (empty for a walk)
    kind: str = ID  # "expanded", "walked" or "includable"
    request: str | None = None  # includable (or owned type): the equivalent request
    # id: (type reached, permission that reads it, the owner's request it is read as, or "")
    reads: tuple[tuple[str, str, str], ...] = ()
    # the API versions that have this field, when some version lacks it (empty: every one)
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Expansion:
    """The outcome of resolving one expansion path against one operation's object."""

    path: str
    needs: tuple[str, ...]  # requirement tokens (permission names), in order, no duplicates
    steps: tuple[Step, ...]
    error: str | None = None  # "bad_request" (cannot be expanded) or "unavailable"
    message: str | None = None


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # "id" | "embedded" | "list" | "includable" | "unavailable"
    targets: tuple[str, ...]  # types (id) or schemas (embedded, list elements, includable)
    list: bool = False  # the next step must be `data`
    request: str | None = None  # includable: the equivalent request
    via: tuple[tuple[str, str], ...] = ()  # id: (type, request) read through an owner
    reason: str | None = None  # unavailable
    versions: tuple[str, ...] = ()  # the versions that have it, when not every one does


def _parse_field(entry: Any) -> _Field:
    if isinstance(entry, list | tuple):  # the id-only shape of older documents
        return _Field("id", tuple(entry))
    versions = tuple(str(v) for v in entry.get("v") or ())
    if "unavailable" in entry:
        return _Field("unavailable", (), reason=str(entry["unavailable"]), versions=versions)
    if "id" in entry:
        via = tuple(sorted((str(t), str(r)) for t, r in (entry.get("via") or {}).items()))
        return _Field("id", tuple(entry["id"]), via=via, versions=versions)
    targets = tuple(entry.get("list") or entry.get("walk") or ())
    is_list = "list" in entry
    if "includable" in entry:
        return _Field("includable", targets, is_list, request=str(entry["includable"]),
                      versions=versions)
    return _Field("list" if is_list else "embedded", targets, is_list, versions=versions)


class ExpansionGraph:
    __slots__ = ("_cache", "_cache_bytes", "_field_permissions", "_graph", "_readers",
                 "_requests", "_unreadable")

    def __init__(
        self,
        graph: Mapping[str, Mapping[str, Any]],
        objects: Mapping[str, Mapping[str, str]],
        field_permissions: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self._graph = {o: {f: _parse_field(e) for f, e in fields.items()}
                       for o, fields in graph.items()}
        self._readers: dict[str, str] = {}
        self._unreadable: dict[str, str] = {}
        for obj, info in objects.items():
            if info.get("permission"):
                self._readers[obj] = info["permission"]
            else:
                self._unreadable[obj] = info.get("unavailable") or "no permission reads it"
        self._field_permissions = dict(field_permissions or {})
        # Equivalent requests -> (permission, why unavailable), filled by bind().
        self._requests: dict[str, tuple[str | None, str | None]] = {}
        self._cache: dict[tuple[tuple[str, ...], bool, str], Expansion] = {}
        self._cache_bytes = 0

    def requests(self) -> set[str]:
        """Every equivalent request the model names (includables and owned types)."""
        out = set()
        for fields in self._graph.values():
            for f in fields.values():
                if f.request:
                    out.add(f.request)
                out.update(r for _, r in f.via)
        return out

    def bind(self, resolve: Resolver) -> None:
        """Look up each equivalent request in the operations table (the engine does this once).
        A request the table does not know is an error of the documents, not of a request."""
        bound: dict[str, tuple[str | None, str | None]] = {}
        for req in sorted(self.requests()):
            method, _, path = req.partition(" ")
            bound[req] = resolve(method, path)
        self._requests = bound
        self.clear_cache()

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    def cache_size(self) -> tuple[int, int]:
        """(entries, approximate bytes of their keys) of the resolution cache."""
        return len(self._cache), self._cache_bytes

    def fields(self, obj: str) -> Mapping[str, tuple[str, ...]]:
        """The expandable fields of a node: field -> types or schemas it leads to."""
        return {name: f.targets for name, f in self._graph.get(obj, {}).items()}

    def kinds(self, obj: str) -> Mapping[str, str]:
        """The expandable fields of a node: field -> kind."""
        return {name: f.kind for name, f in self._graph.get(obj, {}).items()}

    def objects(self) -> list[str]:
        return sorted(self._graph)

    def resolve(self, roots: tuple[str, ...], is_list: bool, path: str) -> Expansion:
        """Resolve `path` from an operation's result types (several for polymorphic results)."""
        key = (roots, is_list, path)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._resolve(roots, is_list, path)
            size = len(path) + 64
            if (len(self._cache) >= _CACHE_ENTRIES
                    or self._cache_bytes + size > _CACHE_BYTES):  # bounded: paths are input
                self.clear_cache()
            self._cache[key] = hit
            self._cache_bytes += size
        return hit

    def _bad(self, path: str, message: str) -> Expansion:
        return Expansion(path, (), (), "bad_request", message)

    def _resolve(self, roots: tuple[str, ...], is_list: bool, path: str) -> Expansion:
        shown = path if len(path) <= 80 else path[:77] + "..."
        cannot = f"This property cannot be expanded ({shown})."
        if len(path) > MAX_PATH:
            return self._bad(path[:80], f"This property cannot be expanded: the path is longer "
                             f"than {MAX_PATH} bytes.")
        parts = path.split(".")
        if not path or any(not p for p in parts) or not roots:
            return self._bad(path, cannot)
        if len(parts) > MAX_LEVELS:
            return self._bad(path, f"You cannot expand more than {MAX_LEVELS} levels of a "
                             f"property. Property: {shown}")
        nodes: tuple[str, ...] = roots
        needs: list[str] = []
        steps: list[Step] = []
        want_data = is_list
        i = 0
        while i < len(parts):
            if want_data:
                if parts[i] != "data":
                    # Stripe's own hint (a list expanded without `data.`), for a nested list
                    # too: the path with `data` where the list needs it.
                    fixed = ".".join([*parts[:i], "data", *parts[i:]])
                    return self._bad(path, f"{cannot} You may want to try expanding "
                                     f"'{fixed}' instead.")
                steps.append(Step("data", nodes, (), DATA))
                want_data = False
                i += 1
                continue
            found = self._find(nodes, parts, i)
            if found is None:
                return self._bad(path, cannot)
            name, j, holders = found
            i = j
            kinds = {f.kind for _, f in holders}
            if "unavailable" in kinds:
                why = next(f.reason for _, f in holders if f.kind == "unavailable")
                return Expansion(path, (), tuple(steps), "unavailable",
                                 f"Expanding '{shown}' is not available to apps: {why}.")
            reached: dict[str, None] = {}
            step_needs: dict[str, None] = {}
            reads: dict[tuple[str, str, str], None] = {}
            request: str | None = None
            lists = set()
            for holder, f in holders:
                reached.update(dict.fromkeys(f.targets))
                lists.add(f.list)
                if f.kind == "includable":
                    assert f.request is not None
                    perm, why = self._requests.get(f.request, (None, "it is not bound"))
                    if perm is None:
                        return Expansion(
                            path, (), tuple(steps), "unavailable",
                            f"Expanding '{shown}' needs what {f.request} needs, and that "
                            f"request is not available to apps: {why}.")
                    step_needs[perm] = None
                    request = f.request
                elif f.kind == "id":
                    own = self._field_permissions.get((holder, name))
                    if own is not None:
                        step_needs[own] = None
                        reads[("*", own, "")] = None
                        continue
                    via = dict(f.via)
                    for t in f.targets:
                        err = self._type_need(t, via, step_needs, reads)
                        if err is not None:
                            return Expansion(
                                path, (), tuple(steps), "unavailable",
                                f"Expanding '{shown}' reaches {t} objects, which apps cannot "
                                f"read: {err}.")
            if kinds == {"id"}:
                kind = ID
            elif "includable" in kinds:
                kind = INCLUDABLE
            elif "id" in kinds:
                kind = ID
            else:
                kind = EMBEDDED
            # Every version one holder's field is in (a holder in all versions: none named).
            versions: tuple[str, ...] = () if any(not f.versions for _, f in holders) \
                else tuple(sorted({v for _, f in holders for v in f.versions}))
            steps.append(Step(name, tuple(reached), tuple(step_needs), kind, request,
                              tuple(reads), versions))
            needs.extend(n for n in step_needs if n not in needs)
            nodes = tuple(reached)
            # A field that is a list for one holder and not for another would be ambiguous;
            # only a list for every holder takes `data` next.
            want_data = lists == {True}
            if not nodes and i < len(parts):
                return self._bad(path, cannot)
        return Expansion(path, tuple(needs), tuple(steps))

    def _find(self, nodes: tuple[str, ...], parts: list[str],
              i: int) -> tuple[str, int, list[tuple[str, _Field]]] | None:
        """The field at parts[i] (or a dotted field of older documents, shortest first)."""
        for j in range(i + 1, len(parts) + 1):
            name = parts[i] if j == i + 1 else ".".join(parts[i:j])
            holders = [(n, f) for n in nodes if (f := self._graph.get(n, {}).get(name))]
            if holders:
                return name, j, holders
        return None

    def _type_need(self, t: str, via: Mapping[str, str], into: dict[str, None],
                   reads: dict[tuple[str, str, str], None]) -> str | None:
        """Add what reading one reached type needs; the reason it cannot be read, or None."""
        if t in via:
            perm, why = self._requests.get(via[t], (None, "it is not bound"))
            if perm is None:
                return why or "its owner cannot be read"
        else:
            perm = self._readers.get(t)
            if perm is None:
                return self._unreadable.get(t, "it is not in the permission catalog")
        into[perm] = None
        reads[(t, perm, via.get(t, ""))] = None
        return None


def graph_from_documents(
    expansions_doc: Any, objects_doc: Any, field_permissions: Mapping[tuple[str, str], str]
) -> ExpansionGraph:
    return ExpansionGraph(expansions_doc["expansions"], objects_doc["objects"], field_permissions)
