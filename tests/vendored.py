"""The public source data vendored in data/vendor/, read through tools/vendored.py (one loader
for the generators and the tests), and the upstream folder that only provenance checks read.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# The upstream originals beside our own checkouts; a public clone has no such folder.
SHARED = REPO.parent / "shared"


def _load() -> ModuleType:
    if "vendored" in sys.modules:  # the generators import it as a top-level module too
        return sys.modules["vendored"]
    spec = importlib.util.spec_from_file_location("vendored", REPO / "tools" / "vendored.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vendored"] = module
    spec.loader.exec_module(module)
    return module


_vendored = _load()
VENDOR: Path = _vendored.VENDOR
REFERENCE_FACTS: Path = _vendored.REFERENCE_FACTS
REFERENCE_TEXT: str = _vendored.REFERENCE_TEXT


def read_json(rel: str, data: Path = VENDOR) -> Any:
    return _vendored.read_json(rel, data)


def read_bytes(rel: str, data: Path = VENDOR) -> bytes:
    data_bytes: bytes = _vendored.read_bytes(rel, data)
    return data_bytes


def shared() -> Path:
    """The upstream folder, for a provenance check; skips (one line) where it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared absent ({SHARED}): provenance check against the upstream "
                    "originals, run only beside the project's own checkouts")
    return SHARED
