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


# Names a test runner picks up, whose files are tests only when they hold tests (issue 25): a
# Flask app saved as `stripe_connect_test.py` is the app. Not Go's `_test.go` (the toolchain
# never builds them into the program), nor set-up files and stories (named for the tooling).
_NAMED_LIKE_A_TEST = re.compile(
    r"(\.(test|spec)\.[cm]?[jt]sx?$)|(_test\.(py|rb)$)|(^test_.*\.py$)|(_spec\.rb$)|(Test\.php$)")
# What test code says early, per language: a test framework imported or required, a test
# function, class or block.
_TEST_MARKS = {
    "python": re.compile(rb"(?m)^\s*(?:(?:import|from)\s+(?:pytest|unittest|nose2?|hypothesis)\b|"
                         rb"(?:async\s+)?def\s+test|class\s+Test|@pytest\b)"),
    "ruby": re.compile(rb"(?m)^\s*(?:(?:RSpec\.)?describe\b|context\b|it\s*[\s('\"{]|def\s+test_|"
                       rb"class\s+\w+\s*<\s*(?:Minitest::Test|Test::Unit|ActiveSupport::TestCase|"
                       rb"ActionDispatch::IntegrationTest|ActionController::TestCase)|"
                       rb"require(?:_relative)?\s*\(?\s*['\"](?:test_helper|spec_helper|rails_helper|"
                       rb"minitest|rspec))"),
    "js": re.compile(rb"\b(?:describe|it|test|suite|beforeEach|beforeAll)(?:\.\w+)?\s*\(|"
                     rb"['\"](?:vitest|jest|@jest/globals|mocha|chai|ava|tap|node:test|"
                     rb"@playwright/test|supertest)['\"]"),
    "php": re.compile(rb"extends\s+\\?(?:[\w\\]+\\)?\w*TestCase\b|function\s+test\w*\s*\(|@test\b|"
                      rb"PHPUnit|\b(?:it|test|describe)\s*\(\s*['\"]"),
}
_HEAD_BYTES = 65_536  # test code says so near its top; a bounded read per such file


def is_test_path(rel: str) -> bool:
    parts = rel.replace("\\", "/").split("/")
    return bool(_TEST_FILE.search(parts[-1])) or any(p in TEST_DIRS for p in parts[:-1])


def _only_named_like_a_test(rel: str) -> bool:
    """A test by its file name alone (not a test folder, not a name that always is one)."""
    parts = rel.replace("\\", "/").split("/")
    return not any(p in TEST_DIRS for p in parts[:-1]) and bool(
        _NAMED_LIKE_A_TEST.search(parts[-1]))


def _holds_tests(path: Path) -> bool:
    """Whether a file named like a test holds test code (`_TEST_MARKS`): unreadable is taken
    for a test, as its name says."""
    marks = _TEST_MARKS.get(LANGUAGES.get(path.suffix, ""))
    if marks is None:
        return True
    head = _read_regular(path, _HEAD_BYTES)
    # an empty placeholder stays a test, as its name says (it holds no app either)
    return isinstance(head, Skipped) or not head.strip() or marks.search(head) is not None


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
            rel = path.relative_to(root).as_posix()
            if not include_tests and is_test_path(rel) and not (
                    _only_named_like_a_test(rel) and not _holds_tests(path)):
                if on_test is not None:
                    on_test()
                continue
            yield path
    yield from errors


def read_source(path: Path) -> bytes | Skipped:
    data = _read_regular(path, MAX_BYTES + 1)
    if isinstance(data, Skipped):
        return data
    if b"\x00" in data[:8192]:
        return Skipped(str(path), "binary", dropped=False)
    return data


def _read_regular(path: Path, limit: int) -> bytes | Skipped:
    """At most `limit` bytes of a regular file (not a pipe or a device: never blocks)."""
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
                return f.read(limit)
        finally:
            os.close(fd)
    except OSError as e:
        return Skipped(str(path), f"unreadable: {e.strerror or e}")
