"""The public source data vendored in data/vendor/: documented, and (provenance) still the
upstream originals, which live outside the repository; those checks skip where it is absent."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.vendored import REPO, VENDOR, read_bytes, shared

FILES = sorted(p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file())
# Upstream files kept under the same name (a `.gz` is the gzipped original); the README and the
# reference's extracted facts are ours.
OURS = {"README.md", "stripe-apps-permissions-reference.object-table.json",
        # licence texts kept beside the data (the upstream folder has them elsewhere)
        "LICENSE.stripe-python", "stripe-apps-schema/LICENSE", "example-manifests/LICENSE"}
COPIES = [f.removesuffix(".gz") for f in FILES if f not in OURS]


def test_every_vendored_file_is_described_in_the_readme() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    folders = {f.split("/", 1)[0] + "/" for f in FILES if "/" in f}
    undescribed = [f for f in FILES if "/" not in f and f not in OURS and f"`{f}`" not in readme]
    undescribed += [d for d in sorted(folders) if f"`{d}`" not in readme]
    assert not undescribed, f"add provenance and licence to data/vendor/README.md: {undescribed}"
    assert "Licence" in readme and "MIT" in readme


def test_big_files_are_compressed() -> None:
    big = [f for f in FILES if not f.endswith(".gz") and (VENDOR / f).stat().st_size > 128_000]
    assert not big, f"gzip these (gzip -9n): {big}"


@pytest.mark.parametrize("rel", COPIES)
def test_vendored_copy_is_the_upstream_original(rel: str) -> None:
    upstream = shared() / "data" / rel
    assert upstream.is_file(), f"{rel} is not in ../shared/data any more"
    assert read_bytes(rel) == upstream.read_bytes(), f"{rel} differs from ../shared/data/{rel}"


@pytest.mark.parametrize("tool", ["gen_catalog.py", "gen_api.py", "gen_event_fixtures.py"])
@pytest.mark.slow
def test_generator_reproduces_the_tables_from_the_upstream_originals(tool: str) -> None:
    # gen_catalog also re-extracts the reference's facts from its text and compares them.
    done = subprocess.run([sys.executable, str(REPO / "tools" / tool), "--check",
                           "--shared", str(shared())],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr

