"""Which build of the call path this process runs: compiled (`_compiled/`) or pure.

Imported by `permgate.gateway` before any of its modules. The compiled modules are
extension modules built from the same .py files (tools/build_compiled.py); they are put
first on the package's `__path__` only when the build's recorded sha256 of every source
matches the source now, so a stale build is never run, and never when `PERMGATE_PURE` is
set (the test suite's pure leg, scripts/test).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import sysconfig
from pathlib import Path

from permgate import envvars

# The modules every API call runs (tools/build_compiled.py `HOT`, in step).
COMPILED = ("native", "fast", "logs", "metrics")
_HERE = Path(__file__).resolve().parent
_OUT = _HERE / "_compiled"


def usable(out: Path = _OUT) -> dict[str, str] | None:
    """The manifest of the build in `out` when it is current (every module there, built
    from the source beside us now), else None."""
    try:
        built = json.loads((out / "SOURCES.json").read_text())
        sources = built["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # never built (or half removed): the pure modules
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in COMPILED:
        try:
            digest = hashlib.sha256((_HERE / f"{name}.py").read_bytes()).hexdigest()
        except OSError:
            return None
        if sources.get(name) != digest or not (out / f"{name}{suffix}").exists():
            return None
    runtime = built.get("runtime")
    if isinstance(runtime, str) and runtime and not (out / runtime).is_file():
        return None  # mypyc's shared library gone: the modules could not import
    return {k: v for k, v in built.items() if isinstance(v, str)}


def _load_runtime(filename: str) -> bool:
    """mypyc's shared library of the build (a top-level module the compiled modules import
    by name), loaded from our folder so that nothing is added to sys.path."""
    name = filename.split(".")[0]
    if name in sys.modules:
        return True
    spec = importlib.util.spec_from_file_location(name, _OUT / filename)
    if spec is None or spec.loader is None:
        return False
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except (ImportError, OSError):  # missing or broken (another Python's): the pure modules
        sys.modules.pop(name, None)
        return False
    return True


def _choose() -> str:
    if envvars.PURE.get():
        return "pure"
    built = usable()
    if built is None:
        return "pure"
    runtime = built.get("runtime", "")
    if runtime and not _load_runtime(runtime):
        return "pure"
    package = sys.modules[__name__.rpartition(".")[0]]
    # Searched first: the finder takes an extension module there before the .py beside us.
    package.__path__.insert(0, str(_OUT))
    return "compiled"


BUILD: str = _choose()
