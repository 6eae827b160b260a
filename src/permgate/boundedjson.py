"""JSON from hostile sources, bounded: nesting depth is checked before `json` parses.

`json.loads` recurses once per level, so 100k nested brackets end in a RecursionError deep
inside the parser; a linear pre-scan (strings skipped) refuses such input with a clear error
first. Used by the admin API and the events ingest; the manifest reader has its own bound.
"""

from __future__ import annotations

import json
import re
from typing import Any

from permgate.errors import PermgateError

MAX_DEPTH = 64
# A string (escapes included), or one bracket. Everything else cannot change the depth.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class JsonRefused(PermgateError, ValueError):
    """Not JSON we accept: malformed, not UTF-8, a non-finite number, or nested too deep."""


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects (0 for a scalar); linear, no recursion."""
    deepest = level = 0
    for m in _TOKEN.finditer(raw):
        c = raw[m.start()]
        if c in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif c in b"]}":
            level -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise JsonRefused(f"duplicate key {k!r} in one object")
        out[k] = v
    return out


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, unique_keys: bool = False) -> Any:
    """Parse JSON; raises JsonRefused (never RecursionError) on anything it does not accept.
    `unique_keys`: refuse an object that names a key twice (JSON says last wins, silently;
    a document read by people must not say one thing and mean another)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if depth(data) > max_depth:
        raise JsonRefused(f"the JSON is nested deeper than {max_depth} levels")
    try:
        if unique_keys:
            return json.loads(data, parse_constant=_no_constants, object_pairs_hook=_unique)
        return json.loads(data, parse_constant=_no_constants)
    except JsonRefused:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JsonRefused(f"not JSON: {e}") from None
    except ValueError as e:  # an integer of more than 4,300 digits, among others
        raise JsonRefused(f"not JSON we accept: {e}") from None
