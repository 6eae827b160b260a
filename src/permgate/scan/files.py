"""Which files a scan reads: source files under the root, hostile ones skipped with a reason.

`.gitignore` files (of the root, its folders, and its parents up to the repository's top) are
honoured with `pathspec`'s git semantics; test files are left out unless asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from permgate.scan.model import Skipped

LANGUAGES = {
    ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "js", ".ts": "js", ".mts": "js",
    ".cts": "js", ".tsx": "js", ".py": "python", ".rb": "ruby", ".go": "go", ".php": "php",
}
# Dependencies and build output: scanning them would report other people's calls, or the
# app's own calls twice.
SKIP_DIRS = frozenset({
    "node_modules", "vendor", "dist", "build", "out", "coverage", "__pycache__", "venv",
    "site-packages", "bower_components",
})
MAX_BYTES = 2_000_000
# Test code exercises handlers with made-up events and clients: it is not the app's traffic.
TEST_DIRS = frozenset({
    "test", "tests", "__tests__", "__mocks__", "spec", "specs", "e2e", "testdata", "testing",
    "fixtures", "__fixtures__", "cypress", "playwright",
})
_TEST_FILE = re.compile(
    r"(\.(test|spec|e2e|stories)\.[cm]?[jt]sx?$)|(_test\.(go|py|rb)$)|(^test_.*\.py$)|"
    r"(_spec\.rb$)|(^conftest\.py$)|(Test\.php$)|(^jest\.setup\.[jt]s$)|(^setupTests\.[jt]sx?$)"
)


def language_of(path: Path) -> str | None:
    name = path.name
    if name.endswith((".d.ts", ".min.js")):
        return None
    return LANGUAGES.get(path.suffix)


def is_test_path(rel: str) -> bool:
    parts = rel.replace("\\", "/").split("/")
    return bool(_TEST_FILE.search(parts[-1])) or any(p in TEST_DIRS for p in parts[:-1])


class _Ignore:
    """The `.gitignore` rules in force: (folder, spec) pairs, checked on paths below folder."""

    def __init__(self) -> None:
        self.specs: list[tuple[Path, Any]] = []

    def add(self, folder: Path) -> None:
        gi = folder / ".gitignore"
        try:
            if not gi.is_file():
                return
            lines = gi.read_text("utf-8", "replace").splitlines()[:10_000]
        except OSError:
            return
        import pathspec  # only trees that have a .gitignore pay for the import

        self.specs.append((folder, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(self, path: Path, is_dir: bool) -> bool:
        for base, spec in self.specs:
            try:
                rel = path.relative_to(base).as_posix()
            except ValueError:
                continue
            if spec.match_file(rel + "/" if is_dir else rel):
                return True
        return False


def _parents_to_repo_top(root: Path) -> list[Path]:
    """Folders above `root` whose .gitignore applies: up to the one holding `.git`."""
    out: list[Path] = []
    here = root.resolve()
    for parent in here.parents:
        out.append(parent)
        if (parent / ".git").exists():
            return out[::-1]
    return []  # not in a repository: only the tree's own .gitignore files count


def source_files(
    root: Path, *, include_tests: bool = False, on_test: Callable[[], None] | None = None,
) -> Iterator[Path | Skipped]:
    """Source files under `root` (or `root` itself), depth first, in a stable order.

    Symlinked directories are not followed (no loops, no escaping the tree); symlinked files
    are read if they resolve to a regular file. `on_test` is told of each test file left out.
    """
    if root.is_file():
        yield root
        return

    def on_error(e: OSError) -> None:
        errors.append(Skipped(str(e.filename or root), f"unreadable directory: {e.strerror}"))

    errors: list[Skipped] = []
    ignore = _Ignore()
    for parent in _parents_to_repo_top(root):
        ignore.add(parent)
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        yield from errors
        errors.clear()
        here = Path(dirpath)
        if ".gitignore" in filenames:
            ignore.add(here)
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            and not (ignore.specs and ignore.ignored(here / d, True))
        )
        for name in sorted(filenames):
            path = here / name
            if language_of(path) is None:
                continue
            if ignore.specs and ignore.ignored(path, False):
                continue
            if not include_tests and is_test_path(path.relative_to(root).as_posix()):
                if on_test is not None:
                    on_test()
                continue
            yield path
    yield from errors


def read_source(path: Path) -> bytes | Skipped:
    import stat

    try:
        # one open and one fstat: what is checked is what is read (no race with a swap)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return Skipped(str(path), "not a regular file")
            if st.st_size > MAX_BYTES:
                return Skipped(str(path), f"larger than {MAX_BYTES // 1_000_000} MB")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as e:
        return Skipped(str(path), f"unreadable: {e.strerror or e}")
    if b"\x00" in data[:8192]:
        return Skipped(str(path), "binary", dropped=False)
    return data
