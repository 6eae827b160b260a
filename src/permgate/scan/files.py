"""Which files a scan reads: source files under the root, hostile ones skipped with a reason."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from permgate.scan.model import Skipped

LANGUAGES = {
    ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "js", ".ts": "js", ".mts": "js",
    ".cts": "js", ".tsx": "js", ".py": "python", ".rb": "ruby", ".go": "go",
}
# Dependencies and build output: scanning them would report other people's calls, or the
# app's own calls twice.
SKIP_DIRS = frozenset({
    "node_modules", "vendor", "dist", "build", "out", "coverage", "__pycache__", "venv",
    "site-packages", "bower_components",
})
MAX_BYTES = 2_000_000


def language_of(path: Path) -> str | None:
    name = path.name
    if name.endswith((".d.ts", ".min.js")):
        return None
    return LANGUAGES.get(path.suffix)


def source_files(root: Path) -> Iterator[Path | Skipped]:
    """Source files under `root` (or `root` itself), depth first, in a stable order.

    Symlinked directories are not followed (no loops, no escaping the tree); symlinked files
    are read if they resolve to a regular file.
    """
    if root.is_file():
        yield root
        return

    def on_error(e: OSError) -> None:
        errors.append(Skipped(str(e.filename or root), f"unreadable directory: {e.strerror}"))

    errors: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        yield from errors
        errors.clear()
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
        )
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if language_of(path) is not None:
                yield path
    yield from errors


def read_source(path: Path) -> bytes | Skipped:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return Skipped(str(path), f"larger than {MAX_BYTES // 1_000_000} MB")
        if not path.is_file():
            return Skipped(str(path), "not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return Skipped(str(path), f"unreadable: {e.strerror or e}")
    if b"\x00" in data[:8192]:
        return Skipped(str(path), "binary")
    return data
