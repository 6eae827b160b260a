"""The compiled call path and its pure-Python twin: which one a process runs, and when.

tools/build_compiled.py compiles the hot modules from their own source; permgate.gateway
imports them only while the build matches every source and PERMGATE_PURE is unset. The
suite's pure leg (scripts/test) runs the gateway's tests again with PERMGATE_PURE=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from permgate.gateway import _build

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "build_compiled.py"
PROBE = ("import permgate.gateway as g, permgate.gateway.native as n, "
         "permgate.gateway.logs as l;"
         "print(g.BUILD, n.__file__, l.__file__)")


def _probe(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True, timeout=120)
    return out.stdout.split()


def _tool_hot() -> tuple[str, ...]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_compiled", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.HOT)


def test_the_tool_builds_the_modules_the_package_loads() -> None:
    assert _tool_hot() == _build.COMPILED


def test_pure_is_the_py_files() -> None:
    build, native, logs = _probe(PERMGATE_PURE="1")
    assert build == "pure"
    assert native.endswith("gateway/native.py") and logs.endswith("gateway/logs.py")


@pytest.mark.skipif(_build.usable() is None,
                    reason="no current compiled build here (no C compiler, or not built)")
def test_a_current_build_is_the_one_imported() -> None:
    build, native, logs = _probe(PERMGATE_PURE="")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert build == "compiled"
    assert native.endswith(f"_compiled/native{suffix}") and logs.endswith(f"logs{suffix}")


def test_a_stale_build_is_never_used(tmp_path: Path) -> None:
    """A build whose recorded source differs from the source now (an edit, a checkout) is
    not current, nor one with a module missing."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    sources = {name: "0" * 64 for name in _build.COMPILED}
    for name in _build.COMPILED:
        (tmp_path / f"{name}{suffix}").write_bytes(b"")
    manifest = tmp_path / "SOURCES.json"
    manifest.write_text(json.dumps({"compiler": "mypyc", "sources": sources}))
    assert _build.usable(tmp_path) is None
    import hashlib

    gateway = Path(_build.__file__).parent
    sources = {name: hashlib.sha256((gateway / f"{name}.py").read_bytes()).hexdigest()
               for name in _build.COMPILED}
    manifest.write_text(json.dumps({"compiler": "mypyc", "sources": sources}))
    assert _build.usable(tmp_path) is not None
    (tmp_path / f"logs{suffix}").unlink()
    assert _build.usable(tmp_path) is None
    manifest.write_text("{not json")
    assert _build.usable(tmp_path) is None


def test_no_c_compiler_is_one_line_and_the_pure_modules(tmp_path: Path) -> None:
    """Where no C compiler is found the build says so in one line and exits 0 (the pure
    modules serve); --strict (CI's compiled leg) makes it a failure. Nothing is removed."""
    before = sorted(p.name for p in (Path(_build.__file__).parent / "_compiled").glob("*")) \
        if (Path(_build.__file__).parent / "_compiled").exists() else []
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "PATH": str(tmp_path)}
    for strict, code in ((False, 0), (True, 1)):
        out = subprocess.run([sys.executable, str(TOOL), "--force",
                              *(["--strict"] if strict else [])],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == code, out.stderr
        assert out.stdout == ""
        assert out.stderr.splitlines() == [
            "permgate: no C compiler found; the gateway runs its pure-Python modules"]
    after = sorted(p.name for p in (Path(_build.__file__).parent / "_compiled").glob("*")) \
        if (Path(_build.__file__).parent / "_compiled").exists() else []
    assert after == before
    assert shutil.which("python3", path=str(tmp_path)) is None
