"""The manifest as read from disk: original text, parsed data, spans, warnings."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from permgate.errors import ManifestError as ManifestError
from permgate.manifest import jsontext
from permgate.manifest.jsontext import Document, JsonSyntaxError, Node

DEFAULT_NAME = "stripe-app.json"
# Real manifests are a few KB; the cap keeps `validate /dev/zero` or a huge file from
# exhausting memory (every command that reads a manifest reads it through `load`).
MAX_MANIFEST_BYTES = 1 << 20
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Problem:
    """A validation error: where (JSON pointer), what (a plain sentence), and a stable code."""

    pointer: str
    message: str
    code: str
    line: int | None = None
    column: int | None = None
    file: str | None = None  # set when the problem is in another file (a local manifest's base)


@dataclass(frozen=True, slots=True)
class Advice:
    """A lint finding: not an error, but worth fixing."""

    pointer: str
    message: str
    code: str
    severity: Literal["warning", "note"]
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """What an edit did. `action` is "added", "updated", "unchanged" or "removed"."""

    action: Literal["added", "updated", "unchanged", "removed"]
    permission: str
    pointers: tuple[str, ...]  # the entries touched (before removal, for "removed")
    message: str


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Manifest:
    """One `stripe-app.json` (or local manifest). Edit it with `grant`/`revoke`, write it with
    `save`: edits change the text in place, so everything else stays byte-identical."""

    __slots__ = ("_bom", "_doc", "_lines", "data", "path", "text", "warnings")

    def __init__(self, text: str, path: str | Path | None = None) -> None:
        self.path: Path | None = None if path in (None, "<string>") else Path(path)
        self._bom = text.startswith(_BOM)
        self.text = text[1:] if self._bom else text
        self.warnings: list[str] = []
        self.data: dict[str, Any] = {}
        self._lines: jsontext.LineIndex | None = None
        self._doc = self._read(self.text)
        self._note_leniencies()

    @property
    def name(self) -> str:
        """How messages refer to this manifest."""
        return str(self.path) if self.path is not None else "<string>"

    def _read(self, text: str) -> Document:
        try:
            doc = jsontext.read(text)
        except JsonSyntaxError as e:
            raise ManifestError(
                f"not valid JSON: {e.reason}", self.name, e.line, e.column
            ) from None
        if doc.root.kind != "object":
            raise ManifestError(
                f"a manifest must be a JSON object, not {_describe(doc.root.value)}",
                self.name, *jsontext.line_column(text, doc.root.start),
            )
        self.data = doc.root.value
        return doc

    def line_column(self, offset: int) -> tuple[int, int]:
        """1-based line and column of an offset in the text (indexed once per text)."""
        if self._lines is None:
            self._lines = jsontext.LineIndex(self.text)
        return self._lines.line_column(offset)

    def _note_leniencies(self) -> None:
        for j in self._doc.junk:
            line, col = self.line_column(j.start)
            self.warnings.append(
                f"{self.name}:{line}:{col}: {j.kind} accepted, but it is not JSON "
                "(it is removed when permgate writes this file)"
            )
        for key, offset in self._doc.duplicate_keys:
            line, col = self.line_column(offset)
            self.warnings.append(
                f"{self.name}:{line}:{col}: member '{key}' appears twice; the last one counts"
            )

    # -- used by the editing and checking modules -------------------------------------------

    @property
    def root(self) -> Node:
        return self._doc.root

    def replace_text(self, text: str) -> None:
        """Take new text (after an edit) and re-read it; the edit must keep it an object."""
        self._doc = self._read(text)
        self.text = text
        self._lines = None

    def strip_junk(self) -> bool:
        """Remove comments and trailing commas from the text; True if there were any."""
        if not self._doc.junk:
            return False
        self.replace_text(jsontext.without_junk(self.text, self._doc.junk))
        return True

    def encoded(self) -> bytes:
        return ((_BOM if self._bom else "") + self.text).encode("utf-8")

    def node_at(self, ptr: str) -> Node | None:
        """The value a JSON pointer names, or None."""
        node: Node | None = self._doc.root
        if not ptr:
            return node
        for raw in ptr.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if node is None:
                return None
            if node.kind == "object":
                m = node.member(part)
                node = m.value if m else None
            elif node.kind == "array" and part.isdigit() and int(part) < len(node.items):
                node = node.items[int(part)]
            else:
                return None
        return node

    def locate(self, ptr: str) -> tuple[int, int]:
        """Line and column of what a pointer names, or of its nearest existing parent."""
        while True:
            node = self.node_at(ptr)
            if node is not None:
                if ptr:
                    # point at the member name, which is where editors show the problem
                    parent = self.node_at(ptr.rsplit("/", 1)[0])
                    key = ptr.rsplit("/", 1)[1].replace("~1", "/").replace("~0", "~")
                    if parent is not None and parent.kind == "object":
                        m = parent.member(key)
                        if m is not None:
                            return self.line_column(m.key_start)
                return self.line_column(node.start)
            ptr = ptr.rsplit("/", 1)[0] if ptr else ""

    @property
    def permission_entries(self) -> list[tuple[int, str, Any]]:
        """(index, permission name, purpose or None) of each well-formed entry, in order."""
        perms = self.data.get("permissions")
        if not isinstance(perms, list):
            return []
        out = []
        for i, e in enumerate(perms):
            if isinstance(e, dict) and isinstance(e.get("permission"), str):
                out.append((i, e["permission"], e.get("purpose")))
        return out

    @property
    def permission_names(self) -> list[str]:
        """Requested permission names, in order, as written (entries that have one)."""
        return [name for _, name, _ in self.permission_entries]

    def __repr__(self) -> str:
        return f"Manifest({self.name!r}, {len(self.permission_names)} permissions)"


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "an object"


def describe(value: Any) -> str:
    """'an array', 'a string', ... for messages."""
    return _describe(value)


def parse(text: str, path: str | Path = "<string>") -> Manifest:
    """A manifest from text; raises ManifestError (with line and column) if it is unusable."""
    return Manifest(text, path)


def load(path: str | Path) -> Manifest:
    """A manifest from a file; raises ManifestError for a missing, unreadable or bad file.

    Only regular files are read (a device, FIFO or socket is refused before any read; the
    file is opened non-blocking so a FIFO cannot stall), and at most MAX_MANIFEST_BYTES."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest found (looked for {p.absolute()})", p
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"is a folder; expected {DEFAULT_NAME} inside it", p) from None
    except OSError as e:
        raise ManifestError(f"cannot read: {e.strerror}", p) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ManifestError(f"is a folder; expected {DEFAULT_NAME} inside it", p)
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError("not a regular file (a device, pipe or socket); a manifest "
                                "must be a file", p)
        if info.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"larger than {MAX_MANIFEST_BYTES} bytes; not a manifest", p)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)  # the file may grow after the fstat
    except OSError as e:
        raise ManifestError(f"cannot read: {e.strerror}", p) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"larger than {MAX_MANIFEST_BYTES} bytes; not a manifest", p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"not UTF-8 text (byte {e.start})", p) from None
    return Manifest(text, p)
