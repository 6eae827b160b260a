"""A small JSON reader that keeps the source offset of every value.

Edits are made on the original text (so everything outside the changed entry stays
byte-identical), which needs spans that `json` does not give. It also accepts what people
really write in manifests, `//` and `/* */` comments and trailing commas, and records where
they are so that a writer can remove them.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from permgate.errors import JsonSyntaxError as JsonSyntaxError

Kind = Literal["object", "array", "string", "number", "literal"]
JunkKind = Literal["comment", "trailing comma"]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_WHITESPACE = " \t\n\r"
# Manifests are a few levels deep; a bound keeps hostile nesting from exhausting the stack
# (100k-deep input used to end in a RecursionError traceback).
MAX_DEPTH = 64


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of an offset; O(offset), for one-off use."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class LineIndex:
    """Line starts of a text, so that many lookups cost a bisect each (lint and validate ask
    for the place of every finding: scanning from the start each time was quadratic)."""

    __slots__ = ("_starts",)

    def __init__(self, text: str) -> None:
        starts = [0]
        find = text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        self._starts = starts

    def line_column(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


@dataclass(slots=True)
class Member:
    key: str
    key_start: int
    key_end: int
    value: Node


@dataclass(slots=True)
class Node:
    kind: Kind
    start: int
    end: int  # exclusive
    value: Any
    members: list[Member] = field(default_factory=list)  # objects, in source order
    items: list[Node] = field(default_factory=list)  # arrays
    # Built on first lookup (members do not change after parsing).
    _by_key: dict[str, Member] | None = field(default=None, repr=False, compare=False)

    def member(self, key: str) -> Member | None:
        """The last member with this key (the one `json` keeps), or None."""
        if self._by_key is None:
            self._by_key = {m.key: m for m in self.members}  # later duplicates win
        return self._by_key.get(key)


@dataclass(slots=True)
class Junk:
    kind: JunkKind
    start: int
    end: int


@dataclass(slots=True)
class Document:
    root: Node
    junk: list[Junk]
    duplicate_keys: list[tuple[str, int]]  # (key, offset of the repeated key)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.junk: list[Junk] = []
        self.duplicates: list[tuple[str, int]] = []
        self.depth = 0

    def fail(self, message: str, offset: int | None = None) -> JsonSyntaxError:
        return JsonSyntaxError(message, self.text, self.pos if offset is None else offset)

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in _WHITESPACE:
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                end = n if end < 0 else end
                self.junk.append(Junk("comment", self.pos, end))
                self.pos = end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.junk.append(Junk("comment", self.pos, end + 2))
                self.pos = end + 2
            else:
                return

    def value(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("expected a value, found the end of the file")
        c = self.text[self.pos]
        if c in "{[":
            if self.depth >= MAX_DEPTH:
                raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
            self.depth += 1
            node = self.object() if c == "{" else self.array()
            self.depth -= 1
            return node
        if c == '"':
            start = self.pos
            text = self.string()
            return Node("string", start, self.pos, text)
        m = _NUMBER.match(self.text, self.pos)
        if m:
            try:
                number = json.loads(m.group())
            except ValueError:  # more digits than Python converts (4,300)
                raise self.fail("the number is too long") from None
            self.pos = m.end()
            return Node("number", m.start(), m.end(), number)
        for word, val in _LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return Node("literal", self.pos - len(word), self.pos, val)
        raise self.fail(f"expected a value, found {self._found()}")

    def _found(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the file"
        return repr(self.text[self.pos])

    def string(self) -> str:
        start = self.pos
        text, i, n = self.text, self.pos + 1, len(self.text)
        while i < n:
            c = text[i]
            if c == '"':
                self.pos = i + 1
                try:
                    out: str = json.loads(text[start : i + 1])
                except json.JSONDecodeError as e:
                    raise self.fail(f"invalid string: {e.msg}", start + e.pos) from None
                return out
            if c == "\\":
                i += 2
                continue
            if c == "\n":
                break
            if ord(c) < 0x20:
                raise self.fail("control character in a string", i)
            i += 1
        raise self.fail("unterminated string", start)

    def _after_comma(self, close: str, comma: int) -> bool:
        """After a comma: True (and the comma noted) when the container closes right away."""
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] == close:
            self.junk.append(Junk("trailing comma", comma, comma + 1))
            return True
        return False

    def object(self) -> Node:
        node = Node("object", self.pos, self.pos, {})
        self.pos += 1
        out: dict[str, Any] = node.value
        self.skip()
        if self._peek() == "}":
            self.pos += 1
            node.end = self.pos
            return node
        while True:
            self.skip()
            if self._peek() != '"':
                raise self.fail(f"expected a member name in double quotes, found {self._found()}")
            key_start = self.pos
            key = self.string()
            key_end = self.pos
            self.skip()
            if self._peek() != ":":
                raise self.fail(f"expected ':' after the member name, found {self._found()}")
            self.pos += 1
            val = self.value()
            if key in out:
                self.duplicates.append((key, key_start))
            out[key] = val.value
            node.members.append(Member(key, key_start, key_end, val))
            self.skip()
            c = self._peek()
            if c == ",":
                comma = self.pos
                self.pos += 1
                if self._after_comma("}", comma):
                    self.pos += 1
                    break
            elif c == "}":
                self.pos += 1
                break
            else:
                raise self.fail(f"expected ',' or '}}' after a member, found {self._found()}")
        node.end = self.pos
        return node

    def array(self) -> Node:
        node = Node("array", self.pos, self.pos, [])
        self.pos += 1
        self.skip()
        if self._peek() == "]":
            self.pos += 1
            node.end = self.pos
            return node
        while True:
            item = self.value()
            node.items.append(item)
            node.value.append(item.value)
            self.skip()
            c = self._peek()
            if c == ",":
                comma = self.pos
                self.pos += 1
                if self._after_comma("]", comma):
                    self.pos += 1
                    break
            elif c == "]":
                self.pos += 1
                break
            else:
                raise self.fail(f"expected ',' or ']' after an item, found {self._found()}")
        node.end = self.pos
        return node

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def read(text: str) -> Document:
    """Parse JSON (plus comments and trailing commas) keeping spans; raises JsonSyntaxError."""
    r = _Reader(text)
    root = r.value()
    r.skip()
    if r.pos != len(text):
        raise r.fail(f"unexpected {r._found()} after the end of the document")
    return Document(root, r.junk, r.duplicates)


def without_junk(text: str, junk: list[Junk]) -> str:
    """The text with comments and trailing commas removed; a comment alone on its line takes
    the line with it, so that no blank lines are left behind."""
    out = text
    for j in sorted(junk, key=lambda j: j.start, reverse=True):
        start, end = j.start, j.end
        if j.kind == "comment":
            line_start = out.rfind("\n", 0, start) + 1
            line_end = out.find("\n", end)
            line_end = len(out) if line_end < 0 else line_end
            before, after = out[line_start:start], out[end:line_end]
            if not before.strip() and not after.strip():
                start, end = line_start, min(line_end + 1, len(out))
            else:
                while start > line_start and out[start - 1] in " \t":
                    start -= 1
        out = out[:start] + out[end:]
    return out
