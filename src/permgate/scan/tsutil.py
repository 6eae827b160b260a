"""Small helpers over tree-sitter trees shared by the JS, Ruby and Go extractors."""

from __future__ import annotations

import tree_sitter as ts

from permgate.scan.common import Context, event_literals, line_of
from permgate.scan.model import EventUse


def text(node: ts.Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


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
