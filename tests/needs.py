"""Optional prerequisites outside Python (PostgreSQL server binaries, chromium): one rule for
a missing one, so no test is ever dropped silently."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest


def missing(what: str, how: str) -> NoReturn:
    """Skip with one line saying what is missing and how to get it; under CI (`CI=true`, as
    `.ci/run` installs everything) fail instead, so CI never passes with a test left out."""
    message = f"{what} not found: {how}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI is set: .ci/run installs it)")
    pytest.skip(message)


def npm_ci(node_dir: Path, installed: Path) -> None:
    """`npm ci` in `node_dir` unless `installed` exists; one at a time across test workers (two
    `npm ci` in one folder break each other's node_modules)."""
    if installed.exists():
        return
    if shutil.which("npm") is None:
        pytest.fail("npm is needed (a prerequisite: see the README)")
    tag = hashlib.sha256(str(node_dir.resolve()).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"permgate-npm-{tag}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
        if not installed.exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=node_dir, check=True,
                           capture_output=True, timeout=300)
