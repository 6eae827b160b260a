"""The install is declared once (pyproject.toml) and locked (requirements/*.txt, written by
tools/lock.sh): what the package imports is declared, each declaration is pinned with
hashes, `serve` installs the runtime and demo only, and scripts/_venv reinstalls exactly
when the lock changes."""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"serve": ("demo",), "dev": ("dev", "demo", "servers", "bench")}
# Lines of a lock: `name==version ; marker \` (hash lines and comments are skipped).
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+?)(?: ; (.+?))?(?: \\)?$")


def requirements(*extras: str) -> list[Requirement]:
    extra = PROJECT["optional-dependencies"]
    return [Requirement(r) for r in PROJECT["dependencies"]] + [
        Requirement(r) for name in extras for r in extra[name]]


def pins(lock: str) -> dict[str, set[str]]:
    """Name -> the versions pinned (a universal lock may pin two, each under a marker)."""
    found: dict[str, set[str]] = {}
    text = (ROOT / "requirements" / f"{lock}.txt").read_text()
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            found.setdefault(canonicalize_name(m[1]), set()).add(m[2])
    assert found, f"no pins in requirements/{lock}.txt"
    return found


def test_no_dependency_is_declared_twice() -> None:
    for extras in ((), *[(e,) for e in PROJECT["optional-dependencies"]]):
        names = [canonicalize_name(r.name) for r in requirements(*extras)]
        assert sorted(names) == sorted(set(names)), extras


def test_every_third_party_import_of_the_package_is_a_runtime_dependency() -> None:
    """certifi was imported, never declared; granian alone may be optional (the `servers`
    extra, refused with a hint when absent: tests/gateway/test_settings.py)."""
    declared = {canonicalize_name(r.name) for r in requirements()}
    optional = {"granian"}
    owners = packages_distributions()
    missing: dict[str, str] = {}
    for path in (ROOT / "src" / "permgate").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("permgate", "__future__"):
                    continue
                dists = {canonicalize_name(d) for d in owners.get(top, [top])}
                if not dists & (declared | optional):
                    missing[top] = str(path.relative_to(ROOT))
    assert not missing, f"imported but not declared in [project] dependencies: {missing}"


def test_nothing_declared_goes_unused_by_uvicorn_standard() -> None:
    """uvicorn runs with uvloop and httptools, both declared; [standard] only added
    websockets, watchfiles, python-dotenv and PyYAML, which nothing here uses."""
    uvicorn = next(r for r in requirements() if r.name == "uvicorn")
    assert not uvicorn.extras
    assert "granian" not in {r.name for r in requirements()}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_pins_every_declaration_it_installs(lock: str) -> None:
    """Run tools/lock.sh after editing pyproject.toml's dependencies."""
    pinned = pins(lock)
    text = (ROOT / "requirements" / f"{lock}.txt").read_text()
    for req in requirements(*LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req} is not in requirements/{lock}.txt: run tools/lock.sh"
        assert any(req.specifier.contains(v, prereleases=True) for v in pinned[name]), (
            f"requirements/{lock}.txt pins {name} {pinned[name]}, outside {req.specifier}: "
            "run tools/lock.sh")
    assert "--hash=sha256:" in text and "tools/lock.sh" in text.splitlines()[1]


def test_ruff_and_mypy_are_pinned_exactly() -> None:
    for name in ("ruff", "mypy"):
        req = next(r for r in requirements("dev") if r.name == name)
        assert str(req.specifier).startswith("=="), req


def test_serve_installs_the_runtime_and_demo_only_at_the_tests_versions() -> None:
    serve, dev = pins("serve"), pins("dev")
    for tool in ("pytest", "ruff", "mypy", "selenium", "granian", "hypothesis", "casbin"):
        assert tool not in serve and tool in dev, tool
    for name, versions in serve.items():
        assert versions <= dev.get(name, set()), f"{name}: serve {versions}, dev {dev.get(name)}"


def _fake_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """scripts/_venv with the lock files, and a .venv whose python logs its arguments."""
    root = tmp_path / "clone"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv", root / "scripts" / "_venv")
    shutil.copytree(ROOT / "requirements", root / "requirements")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    log = tmp_path / "calls"
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # $FAIL names the pip command (install -r, or check) that fails, as pip would.
    python.write_text(f'''#!/bin/sh
echo "$*" >> "{log}"
case "$*" in *"$FAIL"*) [ -n "$FAIL" ] && echo "pip: $FAIL failed" && exit 1;; esac
exit 0
''')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return root, log


def _source(root: Path, lock_set: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'lock_set={lock_set}; . "{root}/scripts/_venv"'],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True,
        timeout=60, check=False)


def test_the_venv_is_set_up_again_exactly_when_the_lock_changes(tmp_path: Path) -> None:
    root, log = _fake_checkout(tmp_path)

    def installs(lock_set: str, **env: str) -> list[str]:
        log.unlink(missing_ok=True)
        done = _source(root, lock_set, **env)
        assert done.returncode == 0, done.stderr
        # Every run ends by (re)building the compiled call path (a no-op when current): not
        # an install.
        calls = log.read_text().splitlines() if log.exists() else []
        return [c for c in calls if not c.endswith("tools/build_compiled.py")]

    first = installs("serve")
    # The locked setuptools first (source-only packages are built with it), then the set
    # without build isolation, then permgate itself, then the check.
    build = root / ".venv" / ".permgate-build.txt"
    assert "--require-hashes -r " + str(build) in first[0]
    assert build.read_text().startswith("setuptools==") and "--hash=sha256:" in build.read_text()
    assert len(build.read_text().splitlines()) == 1 + build.read_text().count("--hash")
    assert "--require-hashes --no-build-isolation -r " + str(
        root / "requirements" / "serve.txt") in first[1]
    assert "--no-deps" in first[2] and "-e " + str(root) in first[2]
    assert installs("serve") == []  # nothing changed: nothing installed
    assert "dev.txt" in installs("dev")[1]  # more than serve's set
    assert installs("serve") == []  # the dev set holds the serve set
    with (root / "requirements" / "dev.txt").open("a") as f:
        f.write("# a new pin\n")
    assert "serve.txt" in installs("serve")[1]  # the lock changed
    assert "dev.txt" in installs("serve", PERMGATE_LOCK="dev")[1]
    done = _source(root, "serve", PERMGATE_LOCK="everything")
    assert done.returncode == 2 and "PERMGATE_LOCK must be serve or dev" in done.stderr


def test_a_failed_install_or_an_incomplete_lock_stops_with_a_reason_and_no_stamp(
    tmp_path: Path,
) -> None:
    """--no-deps trusts the lock: resolving permgate[extras] against the venv alone after
    the install catches a dependency the lock lacks (pyproject.toml changed without
    tools/lock.sh, or a platform's own need); an install that fails (offline) says so.
    Neither writes the stamp, so the next run tries again."""
    root, log = _fake_checkout(tmp_path)
    stamp = root / ".venv" / ".permgate-stamp"
    done = _source(root, "serve", FAIL="--dry-run")
    assert done.returncode == 1 and "pip: --dry-run failed" in done.stderr
    assert "lacks what pyproject.toml asks for here" in done.stderr
    assert "tools/lock.sh" in done.stderr and not stamp.exists()
    assert "-e " + str(root) in log.read_text()  # it got as far as permgate itself
    log.unlink()
    done = _source(root, "serve", FAIL="--no-build-isolation -r")
    assert done.returncode == 1 and "installing requirements/serve.txt failed" in done.stderr
    assert len(log.read_text().splitlines()) == 2 and not stamp.exists()  # nothing after it
    done = _source(root, "serve")
    assert done.returncode == 0 and stamp.read_text().startswith("serve ")
    check = [c for c in log.read_text().splitlines()  # the last pip call: with the set's
             if not c.endswith("tools/build_compiled.py")][-1]  # extras, against the venv
    assert "--dry-run --no-index" in check and check.endswith(f"-e {root}[demo]")
