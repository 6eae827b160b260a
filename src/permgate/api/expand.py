"""The expandable-field graph: `expand[]=a.b.c` -> the object types reached and their needs.

Every object type an expansion reaches must be readable; a polymorphic field needs every type
it can hold, except where the catalog names one permission for the field itself
(`balance_transaction.source` -> `balance_transaction_source_read`). Results are cached per
(root object, list?, expansion), so a request pays a dict lookup for an expansion seen before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_LEVELS = 4  # Stripe's limit; "data" of a list response counts as a level


@dataclass(frozen=True, slots=True)
class Step:
    field: str  # field path at this level (may contain dots for nested non-expandable parts)
    types: tuple[str, ...]  # object types the field can hold
    needs: tuple[str, ...]  # permissions this step requires (one per type, or the field's own)


@dataclass(frozen=True, slots=True)
class Expansion:
    """The outcome of resolving one expansion path against one operation's object."""

    path: str
    needs: tuple[str, ...]  # requirement tokens (permission names), in order, no duplicates
    steps: tuple[Step, ...]
    error: str | None = None  # "bad_request" (cannot be expanded) or "unavailable"
    message: str | None = None


class ExpansionGraph:
    __slots__ = ("_cache", "_field_permissions", "_graph", "_readers", "_unreadable")

    def __init__(
        self,
        graph: Mapping[str, Mapping[str, list[str] | tuple[str, ...]]],
        objects: Mapping[str, Mapping[str, str]],
        field_permissions: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self._graph = {o: {f: tuple(ts) for f, ts in fields.items()} for o, fields in graph.items()}
        self._readers: dict[str, str] = {}
        self._unreadable: dict[str, str] = {}
        for obj, info in objects.items():
            if info.get("permission"):
                self._readers[obj] = info["permission"]
            else:
                self._unreadable[obj] = info.get("unavailable") or "no permission reads it"
        self._field_permissions = dict(field_permissions or {})
        self._cache: dict[tuple[tuple[str, ...], bool, str], Expansion] = {}

    def fields(self, obj: str) -> Mapping[str, tuple[str, ...]]:
        """The expandable fields of an object type: field path -> types it may hold."""
        return self._graph.get(obj, {})

    def objects(self) -> list[str]:
        return sorted(self._graph)

    def resolve(self, roots: tuple[str, ...], is_list: bool, path: str) -> Expansion:
        """Resolve `path` from an operation's result types (several for polymorphic results)."""
        key = (roots, is_list, path)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._resolve(roots, is_list, path)
            if len(self._cache) > 100_000:  # bounded: expansion strings come from requests
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _bad(self, path: str, message: str) -> Expansion:
        return Expansion(path, (), (), "bad_request", message)

    def _resolve(self, roots: tuple[str, ...], is_list: bool, path: str) -> Expansion:
        cannot = f"This property cannot be expanded ({path})."
        parts = path.split(".")
        if not path or any(not p for p in parts) or not roots:
            return self._bad(path, cannot)
        levels = 0
        if is_list:
            if parts[0] != "data" or len(parts) == 1:
                return self._bad(path, cannot + " List responses expand under 'data.'.")
            parts = parts[1:]
            levels = 1
        types: tuple[str, ...] = roots
        needs: list[str] = []
        steps: list[Step] = []
        i = 0
        while i < len(parts):
            found: tuple[str, tuple[str, ...], list[str]] | None = None
            for j in range(i + 1, len(parts) + 1):
                name = ".".join(parts[i:j])
                reached: list[str] = []
                holders: list[str] = []
                for t in types:
                    target = self._graph.get(t, {}).get(name)
                    if target is not None:
                        holders.append(t)
                        reached.extend(x for x in target if x not in reached)
                if holders:
                    found = (name, tuple(reached), holders)
                    i = j
                    break
            if found is None:
                return self._bad(path, cannot)
            name, reached_types, holders = found
            levels += 1
            if levels > MAX_LEVELS:
                return self._bad(
                    path, f"You cannot expand more than {MAX_LEVELS} levels of a property. "
                    f"Property: {path}",
                )
            own = [self._field_permissions.get((h, name)) for h in holders]
            if all(own):
                step_needs = tuple(dict.fromkeys(p for p in own if p))
            else:
                step_list: list[str] = []
                for t in reached_types:
                    reader = self._readers.get(t)
                    if reader is None:
                        why = self._unreadable.get(t, "it is not in the permission catalog")
                        return Expansion(
                            path, (), tuple(steps), "unavailable",
                            f"Expanding '{path}' reaches {t} objects, which apps cannot read: "
                            f"{why}.",
                        )
                    if reader not in step_list:
                        step_list.append(reader)
                step_needs = tuple(step_list)
            steps.append(Step(name, reached_types, step_needs))
            needs.extend(n for n in step_needs if n not in needs)
            types = reached_types
        return Expansion(path, tuple(needs), tuple(steps))


def graph_from_documents(
    expansions_doc: Any, objects_doc: Any, field_permissions: Mapping[tuple[str, str], str]
) -> ExpansionGraph:
    return ExpansionGraph(expansions_doc["expansions"], objects_doc["objects"], field_permissions)
