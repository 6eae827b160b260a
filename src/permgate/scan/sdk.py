"""The SDK method table (`data/sdk_methods.json`, written by `tools/gen_sdk_methods.py`)."""

from __future__ import annotations

import json
from functools import cache, cached_property
from importlib import resources
from typing import Any, Literal

Kind = Literal["node", "service", "resource"]
Route = tuple[str, str]  # (HTTP method, path template)


class SdkTable:
    def __init__(self, doc: list[Any]) -> None:
        self.meta: dict[str, str] = doc[0]["_meta"]
        self.rows: dict[str, dict[str, Route]] = {"node": {}, "service": {}, "resource": {}}
        for kind, call, method, path in doc[1:]:
            rows = self.rows.get(kind)
            if rows is not None:
                rows[call] = (method, path)
        # First segments of every call: a chain starting with one is an SDK call even when the
        # method is not in the table (then it is reported as unresolved, not ignored).
        self.roots: dict[str, frozenset[str]] = {
            k: frozenset(c.split(".", 1)[0] for c in v) for k, v in self.rows.items()
        }
        # Loose keys (case, `_` and `.` folded) for SDKs whose naming differs (Go, Ruby).
        self.folded: dict[str, Route] = {}
        for kind in ("service", "resource"):
            for call, route in self.rows[kind].items():
                self.folded.setdefault(fold(call), route)

    def get(self, kind: Kind, call: str) -> Route | None:
        return self.rows[kind].get(call)

    @cached_property  # asked once per SDK call: computed once
    def resource_classes(self) -> frozenset[str]:
        """`Customer`, `checkout.Session`, ... (Python resource classes)."""
        return frozenset(c.rsplit(".", 1)[0] for c in self.rows["resource"])


def fold(call: str) -> str:
    head, _, last = call.rpartition(".")
    return head.replace("_", "").replace(".", "").lower() + "." + last.replace("_", "").lower()


@cache
def table() -> SdkTable:
    text = resources.files("permgate.scan").joinpath("data/sdk_methods.json").read_text("utf-8")
    return SdkTable(json.loads(text))


@cache
def route_classes() -> dict[Route, str]:
    """The resource class whose object a service call returns, by its route
    (`$stripe->charges->retrieve`, `client.v1.charges.retrieve` -> Charge): the class whose
    retrieve, create or modify it is. Methods called on that object (`charge.save`) are
    looked up in its rows."""
    out: dict[Route, str] = {}
    for call, route in table().rows["resource"].items():
        cls, _, method = call.rpartition(".")
        if method in ("retrieve", "create", "modify"):
            out.setdefault(route, cls)
    return out
