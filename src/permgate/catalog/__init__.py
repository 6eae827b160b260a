"""Permissions, resources, implications and event rules; loaded once, immutable."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from permgate.catalog.model import (
    AlsoRequest,
    Catalog,
    EventRule,
    Level,
    Permission,
    UnknownPermission,
)

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "AlsoRequest", "Catalog", "EventRule", "Level", "Permission", "UnknownPermission",
    "catalog_from_documents", "load_catalog", "read_json", "stripe_catalog",
]


def read_json(source: str | Path) -> Any:
    """A data file: a path, or `package:file` for one of permgate's own data files."""
    if isinstance(source, str) and source.startswith("permgate:"):
        # The package's own data sits next to its modules (a plain path is much cheaper to
        # import than importlib.resources, and import time is part of every CLI call).
        source = _PACKAGE_ROOT / source.split(":", 1)[1]
    with open(source, "rb") as f:
        return json.loads(f.read())


def catalog_from_documents(name: str, permissions_doc: Any, events_doc: Any) -> Catalog:
    """Build a Catalog from the two documents `tools/gen_catalog.py` writes.

    A platform describing its own API writes documents of the same shape.
    """
    perms = [
        Permission(
            name=r["name"], level=r["level"], resource=r["resource"], product=r["product"],
            title=r["title"], description=r["description"], implies=tuple(r["implies"]),
            also_request=tuple(AlsoRequest(a["permission"], a["note"]) for a in r["also_request"]),
            sources=tuple(r["sources"]), refused=r.get("refused"),
        )
        for r in permissions_doc["permissions"]
    ]
    events = [
        EventRule(
            type=r["type"], permissions=tuple(r["permissions"]),
            event_read_only=bool(r.get("event_read_only")), source=r["source"], note=r.get("note"),
        )
        for r in events_doc["events"]
    ]
    meta = permissions_doc.get("_meta", {})
    return Catalog(
        name, perms, events, event_permission=meta.get("event_permission", "event_read"),
        typos=meta.get("typos", {}),
    )


def load_catalog(
    permissions: str | Path = "permgate:catalog/data/stripe_permissions.json",
    events: str | Path = "permgate:catalog/data/stripe_events.json",
    *,
    name: str = "stripe",
) -> Catalog:
    return catalog_from_documents(name, read_json(permissions), read_json(events))


@functools.cache
def stripe_catalog() -> Catalog:
    """Stripe's catalog, loaded once: `permgate.engine.catalog` is this same object, and the
    manifest layer reads it here without loading the API tables."""
    return load_catalog()
