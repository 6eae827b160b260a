"""Which build of the call path this process runs: compiled (`_compiled/`) or pure.

Imported by `permgate` before any other of its modules, so the choice is made once, before
any compiled module could be imported in its pure form (events/transport.py subclasses
http1.py's `Connection`, the gateway's upstream pool too: a compiled class takes a compiled
base only). The compiled modules are extension modules built from the same .py files
(tools/build_compiled.py), one per module of `COMPILED`, kept in `_compiled/` under their
package path. They are imported (a finder first on `sys.meta_path`, for exactly those
names) only when the build's recorded sha256 of every source matches the source now, so a
stale build is never run, and never when `PERMGATE_PURE` is set (the test suite's pure leg,
scripts/test). `BUILD` says which; docs/gateway.md, "Compiled call path".
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from permgate import envvars

# The modules every call runs (tools/build_compiled.py `HOT`, in step; a test checks).
COMPILED = (
    "permgate.http1",  # the upstream answer's parser callbacks
    "permgate.events.transport",  # subclasses http1's Connection (so compiled with it)
    "permgate.gateway.native",
    "permgate.gateway.calls",  # the caller-cache lookup and the decision
    "permgate.gateway.fast",
    "permgate.gateway.logs",
    "permgate.gateway.metrics",
    "permgate.gateway.upstream",
    "permgate.gateway.mounts",  # the mount lookup
    "permgate.gateway.proxy",  # the answer's header relay
    "permgate.gateway.authz",  # `permgate authz`'s check
)
_SRC = Path(__file__).resolve().parent.parent  # the folder holding the package `permgate`
OUT = Path(__file__).resolve().parent / "_compiled"


def source(module: str) -> Path:
    return _SRC.joinpath(*module.split(".")).with_suffix(".py")


def compiled_file(module: str, out: Path = OUT) -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    parts = module.split(".")
    return out.joinpath(*parts[:-1], parts[-1] + suffix)


def usable(out: Path = OUT) -> dict[str, str] | None:
    """The manifest of the build in `out` when it is current (every module there, built
    from the source beside us now), else None."""
    try:
        built = json.loads((out / "SOURCES.json").read_text())
        sources = built["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # never built (or half removed): the pure modules
    if not isinstance(sources, dict):
        return None
    for name in COMPILED:
        try:
            digest = hashlib.sha256(source(name).read_bytes()).hexdigest()
        except OSError:
            return None
        if sources.get(name) != digest or not compiled_file(name, out).exists():
            return None
    runtime = built.get("runtime")
    if isinstance(runtime, str) and runtime and not (out / runtime).is_file():
        return None  # mypyc's shared library gone: the modules could not import
    return {k: v for k, v in built.items() if isinstance(v, str)}


class _Finder(importlib.abc.MetaPathFinder):
    """Finds exactly the compiled modules, in `_compiled/`; every other import goes on to
    the usual finders."""

    def __init__(self, out: Path) -> None:
        self.files = {name: compiled_file(name, out) for name in COMPILED}

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def _load_runtime(out: Path, filename: str) -> bool:
    """mypyc's shared library of the build (a top-level module the compiled modules import
    by name), loaded from our folder so that nothing is added to sys.path."""
    name = filename.split(".")[0]
    if name in sys.modules:
        return True
    spec = importlib.util.spec_from_file_location(name, out / filename)
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
    if runtime and not _load_runtime(OUT, runtime):
        return "pure"
    sys.meta_path.insert(0, _Finder(OUT))
    return "compiled"


BUILD: str = _choose()
