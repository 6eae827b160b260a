"""Layers import only downwards (docs/architecture.md, "Layers"): every `import` of every
module under src/permgate, at any depth (inside functions and TYPE_CHECKING blocks too), is
checked against the table below, which is the doc's table in code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "permgate"

# Layer -> rank. A module may import its own layer and any layer of lower rank; layers of
# the same rank are siblings and know nothing of each other, except SIDEWAYS.
RANK: dict[str, int] = {
    "errors": 0,
    "envvars": 1,  # the environment variables' declaration: every layer reads through it
    "sarif": 2, "_progress": 2, "boundedjson": 2, "http1": 2,  # leaf utilities
    "_build": 2,  # which build of the call path runs: imported first by `permgate`
    "catalog": 3,
    "api": 4,
    "engine": 5,  # permgate/__init__.py (the facade), decision.py, load.py
    "manifest": 6,
    "ownapi": 6,  # OpenAPI -> an API DIR; loads what it wrote through the engine
    "store": 7,
    # the services, and scan (which uses only the engine, manifest and sarif)
    "gateway": 8, "events": 8, "admin": 8, "oauth": 8, "console": 8, "scan": 8,
    "serve": 9,  # the composer: the gateway with the services mounted beside it
    "cli": 10,
}
# The only imports between siblings (docs/architecture.md says why each is there).
SIDEWAYS: frozenset[tuple[str, str]] = frozenset({
    ("admin", "events"),    # the admin API manages webhook endpoints: events' functions
    ("console", "events"),  # account sessions list and enable the account's endpoints
    ("console", "oauth"),   # the consent pages serve the OAuth install links and token
})
_ENGINE_MODULES = {"decision", "load"}
_TOP_MODULES = {"__main__": "cli", "__version__": "engine"}


def layer_of(module: str) -> str:
    """`permgate.x.y` -> the layer of `x`; the package itself is the engine's facade."""
    parts = module.split(".")
    if parts[0] != "permgate":
        raise ValueError(module)
    if len(parts) == 1:
        return "engine"
    head = parts[1]
    if head in _ENGINE_MODULES:
        return "engine"
    if head in _TOP_MODULES:
        return _TOP_MODULES[head]
    if head not in RANK:
        raise KeyError(f"{module}: no layer in tests/test_layers.py RANK (add it, and to "
                       "docs/architecture.md)")
    return head


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, permgate module) for every import in the tree, relative ones resolved; for
    `from permgate import x`, `permgate.x` when x is a module of the package."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "permgate":
                out += [(node.lineno, f"permgate.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value))
    return [(line, n) for line, n in out if n == "permgate" or n.startswith("permgate.")]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    here = layer_of(module)
    bad = []
    for line, name in imported(ast.parse(source), module, is_package):
        there = layer_of(name)
        if there == here or RANK[there] < RANK[here] or (here, there) in SIDEWAYS:
            continue
        kind = "sideways" if RANK[there] == RANK[here] else "upward"
        bad.append(f"{module}:{line} imports {name} ({kind}: {here} -> {there})")
    return bad


def package_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_every_module_imports_only_downwards() -> None:
    modules = package_modules()
    assert len(modules) > 80  # the walk found the package
    bad = []
    for module, path in modules:
        bad += violations(path.read_text(encoding="utf-8"), module,
                          is_package=path.name == "__init__.py")
    assert bad == []


def test_the_architecture_doc_states_the_same_ranks_and_exceptions() -> None:
    text = (SRC.parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    ranks = text.split("Ranks, lowest first:", 1)[1].split("\n\n", 2)[1]
    groups = [re.findall(r"(\w+)(?:/|\.py)?", g.split("(")[0])
              for g in " ".join(ranks.split()).split(" < ")]
    stated = {name: rank for rank, names in enumerate(groups) for name in names}
    assert stated == RANK
    exceptions = re.findall(r"^- (\w+) -> (\w+):", text, re.M)
    assert set(exceptions) == SIDEWAYS and len(exceptions) == len(SIDEWAYS)


@pytest.mark.parametrize(("module", "source", "kind"), [
    ("permgate.store.synthetic", "from permgate.gateway.app import Gateway\n", "upward"),
    ("permgate.catalog.synthetic", "import permgate.api\n", "upward"),
    ("permgate.manifest.synthetic", "from permgate import store\n", "upward"),
    ("permgate.gateway.synthetic",
     "def f():\n    if True:\n        from permgate.admin import create_admin_app\n", "sideways"),
    ("permgate.gateway.synthetic", "from ..events import ingest\n", "sideways"),
    ("permgate.events.synthetic", "from permgate.console import app\n", "sideways"),
    ("permgate.admin.synthetic", "import importlib\nimportlib.import_module('permgate.cli')\n",
     "upward"),
    ("permgate.gateway.synthetic", "from permgate.serve import build\n", "upward"),
])
def test_a_forbidden_import_is_found(module: str, source: str, kind: str) -> None:
    found = violations(source, module)
    assert len(found) == 1 and f"({kind}:" in found[0], found


@pytest.mark.parametrize(("module", "source"), [
    ("permgate.gateway.synthetic", "from permgate.store import Store\nimport permgate\n"),
    ("permgate.admin.synthetic", "from permgate.events.subscriptions import redact\n"),
    ("permgate.serve", "from permgate.admin import create_admin_app\n"),
    ("permgate.store.synthetic", "from . import keys\nfrom .. import errors\n"),
    ("permgate.cli.synthetic", "from permgate import serve, scan, __version__\n"),
])
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert violations(source, module) == []
