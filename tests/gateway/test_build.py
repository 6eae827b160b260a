"""The compiled call path and its pure-Python twin: which one a process runs, and when.

tools/build_compiled.py compiles the call path's modules from their own source; `permgate`
(permgate/_build.py) imports them only while the build matches every source and
PERMGATE_PURE is unset. The suite's pure leg (scripts/test) runs the tests of every compiled
module again with PERMGATE_PURE=1.
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

from permgate import _build

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "build_compiled.py"
# Every compiled module, each imported first on its own (events before the gateway, too).
PROBE = ("import importlib; from permgate import _build;"
         "files = [importlib.import_module(m).__file__ for m in _build.COMPILED];"
         "import permgate.gateway as g; print(g.BUILD, *files)")


# Each test asks a fresh interpreter (or the build tool) what it imports: processes.
pytestmark = pytest.mark.slow


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
    build, *files = _probe(PERMGATE_PURE="1")
    assert build == "pure"
    assert files == [str(_build.source(m)) for m in _build.COMPILED]


@pytest.mark.skipif(_build.usable() is None,
                    reason="no current compiled build here (no C compiler, or not built)")
def test_a_current_build_is_the_one_imported() -> None:
    build, *files = _probe(PERMGATE_PURE="")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert build == "compiled"
    assert files == [str(_build.compiled_file(m)) for m in _build.COMPILED]
    assert files[0].endswith(f"_compiled/permgate/http1{suffix}")


def test_a_stale_build_is_never_used(tmp_path: Path) -> None:
    """A build whose recorded source differs from the source now (an edit, a checkout) is
    not current, nor one with a module missing."""
    sources = {name: "0" * 64 for name in _build.COMPILED}
    for name in _build.COMPILED:
        _build.compiled_file(name, tmp_path).parent.mkdir(parents=True, exist_ok=True)
        _build.compiled_file(name, tmp_path).write_bytes(b"")
    manifest = tmp_path / "SOURCES.json"
    manifest.write_text(json.dumps({"compiler": "mypyc", "sources": sources}))
    assert _build.usable(tmp_path) is None
    import hashlib

    sources = {name: hashlib.sha256(_build.source(name).read_bytes()).hexdigest()
               for name in _build.COMPILED}
    manifest.write_text(json.dumps({"compiler": "mypyc", "sources": sources}))
    assert _build.usable(tmp_path) is not None
    _build.compiled_file("permgate.http1", tmp_path).unlink()
    assert _build.usable(tmp_path) is None
    manifest.write_text("{not json")
    assert _build.usable(tmp_path) is None


def test_no_c_compiler_is_one_line_and_the_pure_modules(tmp_path: Path) -> None:
    """Where no C compiler is found the build says so in one line and exits 0 (the pure
    modules serve); --strict (CI's compiled leg) makes it a failure. Nothing is removed."""
    before = sorted(str(p) for p in _build.OUT.rglob("*"))
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "PATH": str(tmp_path)}
    for strict, code in ((False, 0), (True, 1)):
        out = subprocess.run([sys.executable, str(TOOL), "--force",
                              *(["--strict"] if strict else [])],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == code, out.stderr
        assert out.stdout == ""
        assert out.stderr.splitlines() == [
            "permgate: no C compiler found; the gateway runs its pure-Python modules"]
    after = sorted(str(p) for p in _build.OUT.rglob("*"))
    assert after == before
    assert shutil.which("python3", path=str(tmp_path)) is None
