"""Imports resolved by module path, not by name (issue 25): a constant a file imports
(`import {EXPAND} from './consts'`, `from app.consts import EXPAND`) is read from the file the
import names, on demand, once per file, within a bound on the work.

Only what the extractors ask for is read: a module-level list of string literals (an
expansion list). Two modules that define the same name are never confused: the path decides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from permgate.scan.files import read_source
from permgate.scan.model import Skipped

Lists = dict[str, tuple[str, ...]]
MAX_MODULES = 400  # files read for their constants in one scan (a hostile tree has many)
_MAX_FOUND = 100_000  # import paths resolved and remembered in one scan (bounded memory)
_JS_SUFFIXES = ("", ".ts", ".tsx", ".js", ".mjs", ".cjs", ".jsx",
                "/index.ts", "/index.tsx", "/index.js")


class Modules:
    """Module-level string lists of the scanned tree's files, by path."""

    def __init__(self, root: Path) -> None:
        self.root = root if root.is_dir() else root.parent
        self._cache: dict[str, Lists] = {}
        self.read = 0
        self._found: dict[str, str | None] = {}  # import base -> tree file (None: not one)
        self._found_py: dict[str, tuple[str, ...]] = {}  # Python import -> tree files

    def _lists(self, rel: str, parse: Callable[[bytes, str], Lists]) -> Lists | None:
        if rel in self._cache:
            return self._cache[rel]
        path = self.root / rel
        if not path.is_file() or path.is_symlink():
            return None
        if self.read >= MAX_MODULES:
            return None
        self.read += 1
        data = read_source(path)
        found: Lists = {}
        if not isinstance(data, Skipped):
            try:
                found = parse(data, path.suffix)
            except (SyntaxError, RecursionError, MemoryError, ValueError):
                found = {}
        self._cache[rel] = found
        return found

    def js_path(self, importer: str, spec: str) -> str | None:
        """The tree file a JS/TS import of `spec` from `importer` names, if it is in the tree."""
        base = _js_base(importer, spec)
        if base is None:
            return None
        if base in self._found:
            return self._found[base]
        found = None
        for suffix in _JS_SUFFIXES:
            rel = _inside(base + suffix)
            if rel is not None and (self.root / rel).is_file():
                found = rel
                break
        if len(self._found) < _MAX_FOUND:
            self._found[base] = found
        return found

    def js_bare(self, spec: str) -> str | None:
        """The tree file a bare import (`lib/sync`, `src/lib/sync`: a TypeScript `baseUrl`)
        names, if it is in the tree; a package's name (`axios`, `@scope/pkg`) names none."""
        if spec.startswith(("@", ".", "/")) or "/" not in spec:
            return None
        key = "\x00" + spec  # remembered beside js_path's bases (never a path)
        if key in self._found:
            return self._found[key]
        found = None
        for base in (spec, "src/" + spec):
            for suffix in _JS_SUFFIXES[1:]:
                rel = _inside(base + suffix)
                if rel is not None and (self.root / rel).is_file():
                    found = rel
                    break
            if found is not None:
                break
        if len(self._found) < _MAX_FOUND:
            self._found[key] = found
        return found

    def py_paths(self, importer: str, module: str, level: int) -> list[str]:
        """The tree files `from <level dots><module> import ...` in `importer` may name."""
        here = PurePosixPath(importer).parent
        key = f"{here}\x00{module}\x00{level}"
        if key in self._found_py:
            return list(self._found_py[key])
        parts = [p for p in module.split(".") if p]
        if level:  # `.` is the importer's folder, each further dot one folder up
            ups = level - 1
            anchors = [here] if ups == 0 else (
                [here.parents[ups - 1]] if ups <= len(here.parents) else [])
        else:
            # absolute: from the scanned root, or from a folder above the importer (a
            # project under src/ or a package folder)
            anchors = [PurePosixPath("."), *here.parents, here]
        out: list[str] = []
        for anchor in anchors:
            target = anchor.joinpath(*parts) if parts else anchor
            for rel in (f"{target}.py", f"{target}/__init__.py"):
                inside = _inside(rel)
                if inside is not None and inside not in out and (self.root / inside).is_file():
                    out.append(inside)
        if len(self._found_py) < _MAX_FOUND:  # each import resolved once per scan (bounded)
            self._found_py[key] = tuple(out)
        return out

    def js_list(self, importer: str, spec: str, name: str) -> tuple[str, ...] | None:
        """The string list `name` exported by the module `spec` imports from `importer`."""
        from permgate.scan import js

        rel = self.js_path(importer, spec)
        lists = self._lists(rel, js.module_lists) if rel is not None else None
        return None if lists is None else lists.get(name)

    def py_list(self, importer: str, module: str, level: int, name: str) -> tuple[str, ...] | None:
        """The string list `name` of the module `from <level dots><module> import name` reads."""
        from permgate.scan import python

        for rel in self.py_paths(importer, module, level):
            lists = self._lists(rel, lambda d, _s: python.module_lists(d))
            if lists is not None and name in lists:
                return lists[name]
        return None


def _inside(rel: str) -> str | None:
    """`rel` normalised, or None if it leaves the scanned tree."""
    parts: list[str] = []
    for p in PurePosixPath(rel).parts:
        if p in (".", ""):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts) if parts else None


def _js_base(importer: str, spec: str) -> str | None:
    if spec.startswith(("./", "../")):
        return str(PurePosixPath(importer).parent / spec)
    if spec.startswith(("@/", "~/")):  # the usual alias for the project's src/
        return "src/" + spec[2:]
    return None
