"""Small helpers over tree-sitter trees shared by the JS, Ruby and Go extractors."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate

import tree_sitter as ts

from permgate.scan.common import Context, event_literals, line_of
from permgate.scan.model import EventUse


def text(node: ts.Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


# Hostile nesting (tens of thousands of nested calls or arrays) makes tree-sitter's query
# cursor superlinear: a 200 kB file took 28 s. Matches start at most this deep in the tree, and
# a file nested deeper than real code is (brackets opened and not yet closed) is reported as
# read in part, so that its unseen traffic keeps grants from being called unused. A bracket
# level adds a few tree levels (a call and its arguments, a function and its body), so every
# node of a file within NEST_LIMIT is well within MAX_START_DEPTH.
MAX_START_DEPTH = 3_000
NEST_LIMIT = 256
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"()[]{}")))
_OPENS = bytes.maketrans(b"([{)]}", b"\x01\x01\x01\x00\x00\x00")


def nesting(source: bytes) -> int:
    """The deepest run of brackets opened and not yet closed (strings and comments included:
    an estimate that only ever errs towards deeper)."""
    brackets = source.translate(None, _NOT_BRACKET)
    if len(brackets) <= NEST_LIMIT:
        return len(brackets)
    # depth after the i-th bracket = opens so far - closes so far = 2 * opens - i
    return max(2 * opens - i for i, opens in enumerate(accumulate(brackets.translate(_OPENS)), 1))


def query_captures(
    query: ts.Query, tree: ts.Tree, source: bytes,
) -> tuple[dict[str, list[ts.Node]], str | None]:
    """The query's captures over the tree, bounded in depth, and why the file was read only
    in part (None: it was read whole)."""
    cursor = ts.QueryCursor(query)
    cursor.set_max_start_depth(MAX_START_DEPTH)
    depth = nesting(source)
    deep = (f"nested {depth} brackets deep (more than {NEST_LIMIT}): calls deeper than that "
            "may not be read") if depth > NEST_LIMIT else None
    # The cursor's order of one capture's nodes is not stable from one run to the next (seen
    # with nested calls: `stripe.x()` before or after an earlier call in one file), and the
    # extractors let the last binding or call site win: nodes in source order (start, outer
    # first), so that the output is a function of the input.
    return {name: sorted(nodes, key=lambda n: (n.start_byte, -n.end_byte))
            for name, nodes in cursor.captures(tree.root_node).items()}, deep


def event_uses(tree: ts.Tree, source: bytes, ctx: Context) -> list[EventUse]:
    """Quoted known event types that are string literals in code (not in comments)."""
    text_ = source.decode("utf-8", "replace")
    hits = list(event_literals(text_, ctx.event_types))
    if not hits:
        return []
    ascii_ = source.isascii()
    out = []
    for offset, event in hits:
        byte = offset if ascii_ else len(text_[:offset].encode("utf-8"))
        node: ts.Node | None = tree.root_node.descendant_for_byte_range(byte, byte + 1)
        in_code = True
        while node is not None:
            if "comment" in node.type:
                in_code = False
                break
            node = node.parent
        if in_code:
            col = offset - text_.rfind("\n", 0, offset)
            out.append(EventUse(ctx.file, line_of(text_, offset), col, event))
    return out


class Enclosing:
    """The nodes of a kind (functions, methods, closures) around a byte offset, innermost
    first, found by bisection: a tree-sitter node's `parent` walks down from the root through
    every sibling on the way, which on a large flat file costs more than the whole parse."""

    def __init__(self, nodes: Iterable[ts.Node]) -> None:
        self.nodes = sorted(nodes, key=lambda n: (n.start_byte, -n.end_byte))
        self.starts = [n.start_byte for n in self.nodes]
        self.ends = [n.end_byte for n in self.nodes]
        self.parent: list[int] = []  # index of the innermost node around each, -1: none
        stack: list[int] = []
        for i, start in enumerate(self.starts):
            while stack and self.ends[stack[-1]] <= start:
                stack.pop()
            self.parent.append(stack[-1] if stack else -1)
            stack.append(i)

    def around(self, offset: int) -> Iterator[ts.Node]:
        i = bisect_right(self.starts, offset) - 1
        # the innermost node around `offset` is the last one started before it, or one of
        # the nodes around that one (nodes nest); bounded: hostile nesting is not followed
        for _ in range(NEST_LIMIT):
            if i < 0 or self.ends[i] > offset:
                break
            i = self.parent[i]
        else:
            return
        for _ in range(NEST_LIMIT):
            if i < 0:
                return
            yield self.nodes[i]
            i = self.parent[i]
