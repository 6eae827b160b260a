"""The one loader: catalog + operations + expansion graph -> Engine.

Stripe's tables ship in the package; a platform loads its own API's documents (same shapes as
the generated files, see docs/architecture.md) through the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from permgate.api.expand import graph_from_documents
from permgate.api.operations import operations_from_document
from permgate.catalog import catalog_from_documents, read_json, stripe_catalog
from permgate.decision import Engine

Source = str | Path

STRIPE = {
    "permissions": "permgate:catalog/data/stripe_permissions.json",
    "events": "permgate:catalog/data/stripe_events.json",
    "operations": "permgate:api/data/stripe_operations.json",
    "objects": "permgate:api/data/stripe_objects.json",
    "expansions": "permgate:api/data/stripe_expansions.json",
}


def load(
    permissions: Source = STRIPE["permissions"],
    events: Source = STRIPE["events"],
    operations: Source = STRIPE["operations"],
    objects: Source = STRIPE["objects"],
    expansions: Source = STRIPE["expansions"],
    *,
    name: str = "stripe",
) -> Engine:
    """An Engine from five documents (paths, or `permgate:` package data names)."""
    if (permissions, events, name) == (STRIPE["permissions"], STRIPE["events"], "stripe"):
        catalog = stripe_catalog()  # the one copy of Stripe's catalog, shared
    else:
        catalog = catalog_from_documents(name, read_json(permissions), read_json(events))
    exp_doc: Any = read_json(expansions)
    field_permissions = {
        (r["object"], r["field"]): r["permission"] for r in exp_doc.get("field_permissions", [])
    }
    unknown = set(field_permissions.values()) - set(catalog.permissions)
    if unknown:
        raise ValueError(f"field_permissions name unknown permissions: {sorted(unknown)}")
    graph = graph_from_documents(exp_doc, read_json(objects), field_permissions)
    return Engine(catalog, operations_from_document(read_json(operations)), graph)
