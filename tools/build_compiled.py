"""Compile the gateway's call path (the same .py files) into extension modules, or say why not.

    .venv/bin/python tools/build_compiled.py [--force] [--strict] [--clean]
        [--compiler mypyc|cython]

The modules every API call runs (`HOT`: the native server's protocol, the upstream
connection's parser callbacks and pool, the fast path's admission, the caller resolution
and the decision, the mount lookup, the header relay, the access-log line, metrics,
`permgate authz`'s check) are compiled from their own source, unchanged, into
`src/permgate/_compiled/` (gitignored; each under its package path), with `SOURCES.json`:
the sha256 of each source they were built from. `permgate` imports them from there only
while every hash still matches its source and `PERMGATE_PURE` is unset (permgate/_build.py;
docs/gateway.md, "Compiled call path"), so an edit or a checkout falls back to the pure
modules until the next build, never to stale code. scripts/_venv runs this on every use: a
no-op when the build is current. No C compiler (or no mypyc): one line on stderr, nothing
built, exit 0 (the pure modules serve); `--strict` makes any failure to build exit 1. mypyc
is the compiler; `--compiler cython` (pip install cython) rebuilds with Cython, to compare
(docs/gateway.md, "Compiled call path").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
OUT = SRC / "permgate" / "_compiled"
MANIFEST = "SOURCES.json"
# Kept in step with permgate/_build.py `COMPILED` (a test checks they agree). http1's
# `Connection` is subclassed by events/transport.py and gateway/upstream.py, and proxy's
# `FullPath` by authz: a compiled class takes only compiled subclasses, so each family is
# compiled whole.
HOT = (
    "permgate.http1", "permgate.events.transport", "permgate.gateway.native",
    "permgate.gateway.calls", "permgate.gateway.fast", "permgate.gateway.logs",
    "permgate.gateway.metrics", "permgate.gateway.upstream", "permgate.gateway.mounts",
    "permgate.gateway.proxy", "permgate.gateway.authz",
)


def source(name: str) -> Path:
    return SRC.joinpath(*name.split(".")).with_suffix(".py")


def target(name: str) -> Path:
    parts = name.split(".")
    return OUT.joinpath(*parts[:-1], parts[-1] + sysconfig.get_config_var("EXT_SUFFIX"))


def digests() -> dict[str, str]:
    return {name: hashlib.sha256(source(name).read_bytes()).hexdigest() for name in HOT}


def current(compiler: str) -> bool:
    try:
        built = json.loads((OUT / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(built, dict) and built.get("sources") == digests()
            and built.get("compiler") == compiler
            and all(target(name).exists() for name in HOT))


def find_compiler() -> str | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(cc.split()[0])


def clean() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)


def _build_cython(work: Path) -> list[Path]:
    # Imported by name: neither is needed (nor typed) unless this build runs.
    cythonize: Any = importlib.import_module("Cython.Build").cythonize
    setuptools: Any = importlib.import_module("setuptools")
    Extension = setuptools.Extension

    extensions = [Extension(name, [str(source(name))]) for name in HOT]
    modules = cythonize(
        extensions, build_dir=str(work / "c"), quiet=True, nthreads=0,
        # Python's semantics, exactly: annotations stay annotations (a `float` annotation
        # would otherwise become a C double), so both builds behave alike.
        compiler_directives={"language_level": 3, "annotation_typing": False,
                             "binding": True, "embedsignature": False})
    return _run_build_ext(modules, work, setuptools.Distribution)


def _build_mypyc(work: Path) -> list[Path]:
    mypycify: Any = importlib.import_module("mypyc.build").mypycify
    setuptools: Any = importlib.import_module("setuptools")

    here = Path.cwd()
    os.chdir(SRC)  # mypyc names modules from paths relative to the current folder
    try:
        modules = mypycify([str(source(name).relative_to(SRC)) for name in HOT],
                           opt_level="3", target_dir=str(work / "c"))
    finally:
        os.chdir(here)
    return _run_build_ext(modules, work, setuptools.Distribution, cwd=SRC)


def _run_build_ext(modules: list[Any], work: Path, distribution: Any,
                   cwd: Path | None = None) -> list[Path]:
    dist = distribution({"name": "permgate-compiled", "ext_modules": modules})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(work / "lib")
    cmd.build_temp = str(work / "tmp")
    cmd.inplace = False
    cmd.ensure_finalized()
    here = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        cmd.run()
    finally:
        os.chdir(here)
    return sorted((work / "lib").rglob("*.so"))  # each under its package path


def build(compiler: str) -> None:
    with tempfile.TemporaryDirectory(prefix="permgate-build-") as tmp:
        work = Path(tmp)
        sources = digests()  # before: an edit during the build must not pass as built
        built = _build_cython(work) if compiler == "cython" else _build_mypyc(work)
        staging = OUT.with_name("_compiled.new")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        runtime = ""
        for path in built:
            relative = path.relative_to(work / "lib")
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / relative)
            if len(relative.parts) == 1:
                # mypyc's one shared library, a top-level module the others import by name:
                # permgate._build loads it from here (nothing goes on sys.path).
                runtime = path.name
        (staging / MANIFEST).write_text(json.dumps(
            {"compiler": compiler, "sources": sources, "runtime": runtime}, indent=1) + "\n")
        clean()
        staging.rename(OUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compiler", choices=("cython", "mypyc"), default="mypyc")
    parser.add_argument("--force", action="store_true", help="rebuild even when current")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when nothing could be built (CI)")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
        return 0
    if not args.force and current(args.compiler):
        return 0
    why = ""
    if find_compiler() is None:
        why = "no C compiler found"
    else:
        module = "Cython" if args.compiler == "cython" else "mypyc"
        if importlib.util.find_spec(module) is None:
            why = f"{args.compiler} is not installed"
    if not why:
        # The C compiler's output goes to a log, not the terminal: one line either way.
        log = OUT.parent / "_compiled.log"
        try:
            with open(log, "w") as sink:
                fd_out, fd_err = os.dup(1), os.dup(2)
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
                try:
                    build(args.compiler)
                finally:
                    os.dup2(fd_out, 1)
                    os.dup2(fd_err, 2)
                    os.close(fd_out)
                    os.close(fd_err)
        except (Exception, SystemExit) as e:  # setuptools reports a failed compile so
            why = f"the build failed ({type(e).__name__}; see {log.relative_to(ROOT)})"
            clean()
        else:
            log.unlink(missing_ok=True)
            print(f"permgate: compiled the gateway's call path with {args.compiler} "
                  f"({', '.join(n.removeprefix('permgate.') for n in HOT)})", file=sys.stderr)
            return 0
    # Nothing removed here: a build no longer current is never imported (its hashes).
    print(f"permgate: {why}; the gateway runs its pure-Python modules", file=sys.stderr)
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
