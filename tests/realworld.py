"""The real-world manifests of ../shared/data/real-world-manifests, read through its INDEX.json.

They stay outside the repository: 69 public apps' files whose repositories (a held-out measure)
and licences are not recorded here. Beside our own checkouts the tests read them; in a public
clone those tests skip with one line (`SKIP_IF_ABSENT`, `require()`).

The files are named `rw-NNN__<basename>` and INDEX.json gives each one's path inside its
repository and, for a local manifest, the file it extends. Tests go through this module so the
naming scheme lives in one place.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.vendored import SHARED, VENDOR

DATA = VENDOR  # the example manifests and schemas, which are vendored
DIR = SHARED / "data" / "real-world-manifests"
AVAILABLE = (DIR / "INDEX.json").is_file()
ABSENT = ("../shared/data/real-world-manifests absent: public apps' manifests kept outside the "
          "repository (sources and licences not recorded), read only beside our own checkouts")
SKIP_IF_ABSENT = pytest.mark.skipif(not AVAILABLE, reason=ABSENT)


def require() -> None:
    if not AVAILABLE:
        pytest.skip(ABSENT)


@dataclass(frozen=True)
class Entry:
    file: Path            # the local copy, rw-NNN__...
    path: str             # where it lives in its repository
    extends: Path | None  # the local copy of its base, for a local (dev) manifest


def _index() -> list[Entry]:
    rows = json.loads((DIR / "INDEX.json").read_text(encoding="utf-8"))
    out = [Entry(DIR / r["file"], r["path"], DIR / r["extends"] if "extends" in r else None)
           for r in rows]
    listed = {e.file.name for e in out}
    on_disk = {p.name for p in DIR.glob("*.json")} - {"INDEX.json"}
    # A file the index does not list (or lists but lacks) would silently drop out of every test.
    assert listed == on_disk, f"INDEX.json and the folder disagree: {listed ^ on_disk}"
    for e in out:
        assert e.extends is None or e.extends.name in listed, e
    return sorted(out, key=lambda e: e.file.name)


INDEX = _index() if AVAILABLE else []
REAL_WORLD = [e.file for e in INDEX]
LOCAL_MANIFESTS = [e for e in INDEX if e.extends is not None]


def by_file(name: str) -> Entry:
    return next(e for e in INDEX if e.file.name == name)


def lay_out(entry: Entry, root: Path) -> Path:
    """Copy `entry` (and its base) under `root` at their paths in the repository."""
    for e in (entry, by_file(entry.extends.name)) if entry.extends else (entry,):
        assert not Path(e.path).is_absolute() and ".." not in Path(e.path).parts, e.path
        target = root / e.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(e.file, target)
    return root / entry.path
