"""API operations: method + path template -> the permission that governs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, eq=False)
class Operation:
    """One API operation and what an app needs to call it.

    Exactly one of `permission` (the requirement, e.g. "customer_read") and `unavailable`
    (why no app may call it) is set. Operations are unique objects of one table: they hash by
    identity, which keeps per-operation lookups on the decision path cheap.
    """

    method: str
    path: str  # template, e.g. "/v1/customers/{customer}"
    permission: str | None
    unavailable: str | None
    object: str | None  # object type returned (the element type for lists); None if several
    is_list: bool = False
    objects: tuple[str, ...] = ()  # every type it may return: the roots of expansions
    rule: str = field(default="", compare=False)
    sources: tuple[str, ...] = field(default=(), compare=False)
    # The query parameters the API's document declares (operations.json `query_params`):
    # any other is refused. None: not known (Stripe's table), nothing refused for that.
    query_params: frozenset[str] | None = field(default=None, compare=False)
    # (id prefix, the operation it is): one path whose last id names objects of several
    # types with different permissions (`/v1/customers/{c}/sources/src_1` is a Source)
    variants: tuple[tuple[str, Operation], ...] = field(default=(), compare=False)

    def variant(self, path: str) -> Operation:
        """The operation a concrete path is, by its last segment's prefix (self if none)."""
        last = path.rpartition("/")[2]
        for prefix, op in self.variants:
            if last.startswith(prefix):
                return op
        return self

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path}


def _names(row: Any) -> frozenset[str] | None:
    names = row.get("query_params")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names) \
            or len(names) > 1000:
        raise ValueError(f"operation {row['method']} {row['path']}: query_params must be a "
                         "list of parameter names")
    return frozenset(names)


def operations_from_document(doc: Any) -> list[Operation]:
    """Rows of a `stripe_operations.json`-shaped document (see tools/gen_api.py)."""
    out: list[Operation] = []
    for row in doc["operations"]:
        permission, unavailable = row.get("permission"), row.get("unavailable")
        if (permission is None) == (unavailable is None):
            raise ValueError(
                f"operation {row['method']} {row['path']}: exactly one of permission and "
                "unavailable must be set"
            )
        variants = tuple(
            (prefix, Operation(
                method=row["method"].upper(), path=row["path"], permission=v["permission"],
                unavailable=None, object=v["objects"][0] if len(v["objects"]) == 1 else None,
                objects=tuple(v["objects"]), rule=f"an id starting {prefix}",
                sources=tuple(row.get("sources") or ())))
            for prefix, v in sorted((row.get("by_id_prefix") or {}).items()))
        out.append(
            Operation(
                method=row["method"].upper(), path=row["path"], permission=permission,
                unavailable=unavailable, object=row.get("object"),
                is_list=bool(row.get("list")), rule=row.get("rule") or "",
                objects=tuple(row.get("objects") or ([row["object"]] if row.get("object") else [])),
                sources=tuple(row.get("sources") or ()), variants=variants,
                query_params=_names(row),
            )
        )
    return out
