"""Where the generators and tests find the public source data: `data/vendor/` in the repository.

The folder mirrors the layout of the upstream data folder (`../shared/data` beside our own
checkouts) for the files it keeps, so `--shared` (read the upstream originals, a provenance
check) and the default (read the vendored copy) name files the same way. Big files are kept
gzipped (`name.gz`); `path()` and `read_json()` look for both spellings.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "data" / "vendor"
# The Stripe Apps permissions reference is prose: the repository keeps only the facts extracted
# from its object table (tools/gen_catalog.py --shared re-extracts them and checks).
REFERENCE_FACTS = VENDOR / "stripe-apps-permissions-reference.object-table.json"
REFERENCE_TEXT = "docs/stripe-apps-permissions-reference.txt"  # relative to ../shared


def path(rel: str, data: Path = VENDOR) -> Path:
    """`data/rel`, or `data/rel.gz` when only the compressed copy exists."""
    plain = data / rel
    if plain.exists():
        return plain
    packed = data / (rel + ".gz")
    if packed.exists():
        return packed
    raise SystemExit(f"missing input: {plain} (nor {packed.name})")


def read_bytes(rel: str, data: Path = VENDOR) -> bytes:
    p = path(rel, data)
    raw = p.read_bytes()
    return gzip.decompress(raw) if p.suffix == ".gz" else raw


def read_json(rel: str, data: Path = VENDOR) -> Any:
    return json.loads(read_bytes(rel, data).decode("utf-8"))
