"""The repository is the whole project: a clone of the current commit into an empty folder,
with no ../shared beside it, passes `scripts/test --quick` (it may reuse pip's cache)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.vendored import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True, timeout=300)
    return done.stdout.strip()


def test_a_fresh_clone_with_nothing_beside_it_passes_the_quick_tests(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("git, or a git checkout to clone, is missing: run from a git clone")
    commit = _git("rev-parse", "HEAD")
    empty = tmp_path / "empty"
    empty.mkdir()
    clone = empty / "permgate"
    _git("clone", "--quiet", "--no-checkout", str(REPO), str(clone), cwd=empty)
    _git("checkout", "--quiet", "--detach", commit, cwd=clone)
    assert sorted(p.name for p in empty.iterdir()) == ["permgate"]  # no ../shared beside it
    # Nothing of this run leaks in: our venv, our settings, the outer pytest and its workers.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERMGATE_", "PYTEST_", "VIRTUAL_ENV", "HYPOTHESIS_"))}
    done = subprocess.run([str(clone / "scripts" / "test"), "--quick", "-p", "no:cacheprovider"],
                          cwd=clone, env=env, capture_output=True, text=True, check=False,
                          timeout=1800)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    summary = done.stdout.strip().splitlines()[-1]
    # "2 xfailed" is not a failure: only a count of failed tests or errors is
    bad = re.search(r"\b\d+ (?:failed|errors?)\b", summary)
    assert re.search(r"\d+ passed", summary) and not bad, summary
    # The provenance checks said, in one line, why they did not run.
    assert "../shared absent" in out, out[-3000:]
