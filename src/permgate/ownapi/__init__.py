"""Your own API behind the same model: an OpenAPI document -> the tables the engine loads.

`init_api(spec, out)` writes an API DIR (five tables, api.toml, REVIEW.md; docs/own-api.md).
Uses the engine only to check that what it wrote loads.
"""

from __future__ import annotations

from permgate.ownapi.rules import Finding, Result, derive
from permgate.ownapi.spec import SpecError, read_spec
from permgate.ownapi.writer import init_api, render

__all__ = ["Finding", "Result", "SpecError", "derive", "init_api", "read_spec", "render"]
