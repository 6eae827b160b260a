"""The one loader: catalog + operations + expansion graph -> Engine.

Stripe's tables ship in the package; a platform loads its own API's documents (same shapes as
the generated files, see docs/architecture.md) through the same function.
"""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

from permgate.api.expand import graph_from_documents
from permgate.api.operations import operations_from_document
from permgate.api.params import STRIPE_EXPAND, ExpandReader
from permgate.api.profile import ApiDirError, ApiProfile, read_profile, spec_changed
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
    expand: ExpandReader = STRIPE_EXPAND,
) -> Engine:
    """An Engine from five documents (paths, or `permgate:` package data names); `expand`:
    how the API names expansions (Stripe's `expand[]=` unless told)."""
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
    return Engine(catalog, operations_from_document(read_json(operations)), graph,
                  expand=expand)


TABLES = ("permissions", "events", "operations", "objects", "expansions")
MAX_TABLE = 64 << 20  # bytes per table of an API DIR: Stripe's largest is ~2 MB


def read_api_dir(directory: str | Path, *, check_spec: bool = False
                 ) -> tuple[Engine, ApiProfile]:
    """The Engine and ApiProfile of an API DIR (`permgate init --from-openapi` writes one:
    five tables and api.toml, docs/own-api.md). ApiDirError (one line naming the file) when
    it cannot be used; with `check_spec`, also when the spec changed since the tables were
    made (the message gives the command to run again)."""
    profile = read_profile(directory)
    if check_spec:
        why = spec_changed(profile)
        if why is not None:
            raise ApiDirError(f"--api {directory}: {why}")
    paths = {t: Path(directory) / f"{t}.json" for t in TABLES}
    import hashlib

    fingerprint = hashlib.sha256()
    for p in paths.values():
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                raise ApiDirError(f"{p}: not a regular file")
            size = st.st_size
            if size > MAX_TABLE:
                raise ApiDirError(f"{p}: larger than {MAX_TABLE >> 20} MiB")
            data = p.read_bytes()
        except OSError as e:
            raise ApiDirError(f"{p}: cannot be read ({e.strerror or e})") from None
        # The store records it: grants consented under other tables are not reused unseen.
        fingerprint.update(hashlib.sha256(data).digest())
    profile = dataclasses.replace(profile, tables_sha256=fingerprint.hexdigest())
    try:
        engine = load(*(str(paths[t]) for t in TABLES), name=profile.name,
                      expand=ExpandReader(profile.expand_style, profile.expand_param,
                                          profile.refuse_params))
    except ApiDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        # json's errors are ValueErrors; a missing key or a wrong type is a table's mistake.
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ApiDirError(f"--api {directory}: its tables cannot be loaded "
                          f"({type(e).__name__}: {what[:300]})") from None
    return engine, profile
