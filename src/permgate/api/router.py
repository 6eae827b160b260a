"""The compiled router: (method, raw path) -> Operation, refusing what it cannot be sure of.

Templates are compiled once into a segment trie of plain dicts. A literal segment always wins
over a parameter and there is no backtracking, so `/v1/customers/search` can never be read as
`/v1/customers/{customer}`, and a path that would only match by taking a literal word for an
id is unknown. Ids are opaque, but a segment that fills a parameter must look like an id:
letters, digits, `_` and `-`, with single inner dots for the ids that have them (report
types: `balance.summary.1`). Nothing that any server could decode, split or normalise into
something else passes: no `%` at all (so no `%2e` or double-encoded `%252e`), no `;` (so no
`..;` or `;jsessionid` path parameters), no dot segments. The common case (`cus_123`)
passes one `isidentifier()` call, a UUID three cheap bytes operations (a path with UUIDs
costs about what one with short ids does); anything else gets the full check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from permgate.api.operations import Operation
from permgate.errors import BadPath as BadPath

MAX_PATH = 2048
_HOSTILE_ESCAPES = ("%2f", "%2e", "%00", "%5c", "%25")
# What fills a parameter: Stripe's ids (`cus_1`, `acct_1`, `file_1`, `price-gold`, `US`,
# `balance.summary.1`). Anything else is refused, not interpreted.
_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", re.ASCII)
# Keys that cannot collide with path segments (which are always str).
_PARAM = 0
_OPS = 1


def literal_reason(seg: str) -> str | None:
    """Why a segment is not safe anywhere in a path, literal or id, or None: what a server
    could decode, split or normalise into something else. A table's literal segments must
    pass this too (`Router._add`): a literal is matched before any check runs."""
    if not seg:
        return "the path has an empty segment ('//' or a trailing '/')"
    if seg in (".", ".."):
        return f"the path has a '{seg}' segment"
    if not (seg.isascii() and seg.isprintable()) or " " in seg:
        return "the path has characters outside printable ASCII"
    if "\\" in seg or "#" in seg:
        return "the path has a backslash or '#'"
    if "%" in seg:
        low = seg.lower()
        for esc in _HOSTILE_ESCAPES:
            if esc in low:
                return f"the path has a percent-encoded separator, dot or '%' ('{esc.upper()}')"
        return "the path has a percent-encoded character (ids never need one)"
    if ";" in seg:
        return "the path has a ';' (path parameters such as '..;' are read differently by servers)"
    return None


def segment_reason(seg: str) -> str | None:
    """Why one raw segment may not fill a parameter, or None."""
    reason = literal_reason(seg)
    if reason is not None:
        return reason
    if _ID.fullmatch(seg) is None:
        if seg[0] == "{" and seg[-1] == "}" and _ID.fullmatch(seg, 1, len(seg) - 1):
            # A template's placeholder (`{id}`), as tools that ask about templates (scan)
            # pass it; raw braces are not valid in a request URI and the gateway refuses them.
            return None
        return ("a path segment that holds an id may have only letters, digits, '_', '-' "
                "and single inner dots")
    return None


def hostile_reason(path: str) -> str | None:
    """Why a raw path must be refused, or None."""
    if len(path) > MAX_PATH:
        return f"the path is longer than {MAX_PATH} bytes"
    if not path.startswith("/"):
        return "the path must start with '/'"
    for seg in path.split("/")[1:]:
        reason = segment_reason(seg)
        if reason is not None:
            return reason
    return None


class Router:
    """Routes raw request paths to operations. Build once; `route` is the hot path."""

    __slots__ = ("_methods", "_root", "operations")

    def __init__(self, operations: Iterable[Operation]) -> None:
        self._root: dict[Any, Any] = {"": {}}  # the empty segment before the leading '/'
        self.operations: tuple[Operation, ...] = tuple(operations)
        for op in self.operations:
            self._add(op)
        self._methods = tuple(sorted({op.method for op in self.operations}))

    def _add(self, op: Operation) -> None:
        if not op.path.startswith("/"):
            raise ValueError(f"template must start with '/': {op.path}")
        node = self._root[""]
        for seg in op.path.split("/")[1:]:
            if not seg:
                raise ValueError(f"template has an empty segment: {op.path}")
            key = _PARAM if seg.startswith("{") and seg.endswith("}") else seg
            if key is seg and literal_reason(seg) is not None:
                # `route` matches literals before checking anything: a hostile one
                # (`%2e%2e`, `..`, `x;y`) would pass as the operation it names
                raise ValueError(f"template has a segment no request may carry "
                                 f"({literal_reason(seg)}): {op.path}")
            node = node.setdefault(key, {})
        ops = node.setdefault(_OPS, {})
        other = ops.get(op.method)
        if other is not None:
            # Two spellings of one route (sources name parameters differently) are harmless
            # when they decide alike; otherwise the table is ambiguous and must be fixed.
            if (other.permission, other.unavailable) != (op.permission, op.unavailable):
                raise ValueError(f"two templates for one route decide differently: {other}, {op}")
            return
        ops[op.method] = op

    def route(self, method: str, path: str) -> Operation | None:
        """The operation for a raw path (no query string), or None when unknown.

        Raises BadPath for hostile paths. This is the hot path: one split, then a dict
        lookup or two per segment.
        """
        if len(path) > MAX_PATH or not path.isascii():
            raise BadPath(hostile_reason(path) or "the path is not ASCII")
        node = self._root
        for seg in path.split("/"):
            if seg in node:
                node = node[seg]
            else:
                # Fast acceptance of an ASCII segment: `cus_123` (an identifier), then
                # `123`, `3f2a-...` UUIDs and `price-gold` (letters, digits and '-' only;
                # bytes.isalnum is a table lookup per byte, str.isalnum a Unicode one).
                # Anything else gets the full check. Correct only because non-ASCII paths
                # were refused above: str.isidentifier accepts fullwidth letters ('ａ').
                if not seg.isidentifier() and not seg.encode().replace(b"-", b"").isalnum():
                    reason = segment_reason(seg)
                    if reason is not None:
                        raise BadPath(reason)
                if _PARAM not in node:
                    if not path.startswith("/"):
                        raise BadPath("the path must start with '/'")
                    return None
                node = node[_PARAM]
        ops = node.get(_OPS)
        return None if ops is None else ops.get(method)

    def methods_at(self, path: str) -> tuple[str, ...]:
        """Methods known for a path (to tell a wrong method from an unknown path)."""
        try:
            return tuple(m for m in self._methods if self.route(m, path) is not None)
        except BadPath:
            return ()
