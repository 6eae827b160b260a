"""Write `src/permgate/scan/data/sdk_methods.json`: SDK method -> (HTTP method, path template).

The map comes from the SDKs themselves, not from our guesses:
- Python: the installed `stripe` package. `StripeClient` services (`client.v1.customers.list`)
  and the older resource classes (`stripe.Customer.retrieve`) are read with `ast` from their
  source, plus the paths the resource base classes build at run time (`class_url()`).
- Node: the `stripe` npm package, walked by node itself: every resource object reachable from a
  `Stripe` instance, with the request each method makes (read from the method's source text).

Usage: python tools/gen_sdk_methods.py [--npm-dir DIR]
`--npm-dir` holds `node_modules/stripe`; without it the package is installed into
`tools/.node/` (gitignored via node_modules/).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib
import inspect
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src/permgate/scan/data/sdk_methods.json"
PARAM = re.compile(r"\{[^}]*\}")
REQUEST_FUNCS = {
    "_request", "_static_request", "_static_request_stream", "_request_and_refresh",
    "_request_stream",
}

Row = dict[str, Any]


def shape(path: str) -> str:
    return PARAM.sub("*", path)


# ---------------------------------------------------------------- Python SDK


def _literal_path(node: ast.expr, class_url: str | None, local: dict[str, ast.expr]) -> str | None:
    """The path template an SDK path expression builds, or None if it is not a known form."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in local:
        return _literal_path(local[node.id], class_url, {})
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        attr = node.func.attr
        if attr == "format":
            return _literal_path(node.func.value, class_url, local)
        if attr == "class_url" and class_url:
            return class_url
        if attr in ("instance_url", "_build_instance_url") and class_url:
            return class_url + "/{id}"
    if (
        isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
        and isinstance(node.left, ast.Constant) and node.left.value == "%s/%s"
        and isinstance(node.right, ast.Tuple) and class_url
    ):
        return class_url + "/{id}"
    return None


def _requests_in(func: ast.FunctionDef, class_url: str | None) -> list[tuple[str, str]]:
    local: dict[str, ast.expr] = {}
    for n in ast.walk(func):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            local[n.targets[0].id] = n.value
    found: list[tuple[str, str]] = []
    for n in ast.walk(func):
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
            continue
        if n.func.attr == "_search":
            for kw in n.keywords:
                if kw.arg == "search_url" and isinstance(kw.value, ast.Constant):
                    found.append(("GET", str(kw.value.value)))
            continue
        if n.func.attr not in REQUEST_FUNCS or len(n.args) < 2:
            continue
        m = n.args[0]
        if not (isinstance(m, ast.Constant) and isinstance(m.value, str)):
            continue
        path = _literal_path(n.args[1], class_url, local)
        if path is not None:
            found.append((m.value.upper(), path))
    return found


def _class_methods(cls: type, class_url: str | None) -> dict[str, tuple[str, str]]:
    source = inspect.getsource(sys.modules[cls.__module__])
    tree = ast.parse(source)
    out: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ClassDef) and node.name == cls.__name__):
            continue
        for f in node.body:
            if not isinstance(f, ast.FunctionDef):
                continue  # async twins map to the same request; the scanner strips `_async`
            name = f.name.removeprefix("_cls_")
            if name.startswith("_") or name in out:
                continue
            reqs = _requests_in(f, class_url)
            if reqs:
                out[name] = reqs[0]
    return out


def _service_rows(stripe: Any) -> list[Row]:
    client = stripe.StripeClient("sk_test_generator")
    rows: list[Row] = []
    seen: set[type] = set()

    def walk(service: Any, prefix: str) -> None:
        cls = type(service)
        module = sys.modules[cls.__module__]
        for name, (method, path) in sorted(_class_methods(cls, None).items()):
            rows.append({"call": f"{prefix}.{name}", "method": method, "path": path})
        subs: dict[str, tuple[str, str]] = getattr(module, "_subservices", {})
        if cls in seen:
            return
        seen.add(cls)
        for attr in sorted(subs):
            walk(getattr(service, attr), f"{prefix}.{attr}")
        seen.discard(cls)

    walk(client.v1, "v1")
    walk(client.v2, "v2")
    return rows


def _names(mod: Any) -> list[str]:
    # The SDK imports lazily: its `_import_map` lists what `dir()` cannot see yet.
    return sorted(set(dir(mod)) | set(getattr(mod, "_import_map", {})))


def _resource_classes(stripe: Any) -> list[tuple[str, type]]:
    base = stripe.APIResource
    out: list[tuple[str, type]] = []
    namespaces: list[tuple[str, Any]] = [("", stripe)]
    seen: set[str] = set()
    while namespaces:
        prefix, mod = namespaces.pop()
        for name in _names(mod):
            if name.startswith("_") or name in ("error", "v2"):
                continue
            obj = getattr(mod, name, None)
            if inspect.ismodule(obj) and obj.__name__.startswith("stripe."):
                if obj.__name__ not in seen:
                    seen.add(obj.__name__)
                    namespaces.append((prefix + name + ".", obj))
            elif (
                inspect.isclass(obj) and issubclass(obj, base) and obj is not base
                and getattr(obj, "OBJECT_NAME", None)
            ):
                out.append((prefix + name, obj))
    return out


def _resource_rows(stripe: Any) -> list[Row]:
    rows: list[Row] = []
    for dotted, cls in _resource_classes(stripe):
        try:
            class_url: str | None = cls.class_url()  # type: ignore[attr-defined]
        except Exception:  # resources that cannot be addressed on their own (nested)
            class_url = None
        methods = _class_methods(cls, class_url)
        if class_url:
            singleton = issubclass(cls, stripe.SingletonAPIResource)
            inherited = {
                "retrieve": ("GET", class_url if singleton else class_url + "/{id}"),
                "list": ("GET", class_url),
                "create": ("POST", class_url),
                "modify": ("POST", class_url + "/{id}"),
                "delete": ("DELETE", class_url + "/{id}"),
            }
            mixins = {
                "retrieve": stripe.APIResource,
                "list": stripe.ListableAPIResource,
                "create": stripe.CreateableAPIResource,
                "modify": stripe.UpdateableAPIResource,
                "delete": stripe.DeletableAPIResource,
            }
            for name, mixin in mixins.items():
                if name not in methods and issubclass(cls, mixin):
                    methods[name] = inherited[name]
        for name, (method, path) in sorted(methods.items()):
            rows.append({"call": f"{dotted}.{name}", "method": method, "path": path})
    return rows


def python_rows() -> tuple[str, list[Row]]:
    stripe = importlib.import_module("stripe")
    rows = _service_rows(stripe)
    # Deprecated spelling `client.customers...` (no `v1.`) still works in this SDK.
    rows += [
        {**r, "call": r["call"].removeprefix("v1.")} for r in rows if r["call"].startswith("v1.")
    ]
    rows = [{**r, "kind": "service"} for r in rows]
    rows += [{**r, "kind": "resource"} for r in _resource_rows(stripe)]
    return str(stripe.VERSION), rows


# ---------------------------------------------------------------- Node SDK

NODE_WALKER = r"""
const Stripe = require(process.argv[2]);
const s = new Stripe('sk_test_generator');
const rows = [];
const seen = new Set();
const call = /_makeRequest\(\s*'([A-Z]+)'\s*,\s*(`[^`]*`|'[^']*')/g;
const spec = /method:\s*'([A-Z]+)'[^}]*?fullPath:\s*'([^']*)'/g;
function walk(obj, path) {
  if (!obj || typeof obj !== 'object' || seen.has(obj) || path.length > 6) return;
  seen.add(obj);
  const proto = Object.getPrototypeOf(obj);
  if (typeof obj._makeRequest === 'function' || typeof obj._request === 'function') {
    const names = new Set([...Object.getOwnPropertyNames(proto), ...Object.keys(obj)]);
    for (const name of names) {
      if (name === 'constructor' || name.startsWith('_')) continue;
      const fn = obj[name];
      if (typeof fn !== 'function') continue;
      const src = fn.toString();
      let m = call.exec(src); call.lastIndex = 0;
      if (!m) { m = spec.exec(src); spec.lastIndex = 0; }
      if (m) rows.push({call: path.concat(name).join('.'), method: m[1], raw: m[2]});
    }
  }
  for (const k of Object.keys(obj)) if (!k.startsWith('_')) walk(obj[k], path.concat(k));
}
walk(s, []);
console.log(JSON.stringify({version: Stripe.PACKAGE_VERSION || s.VERSION || '', rows}));
"""


def _node_template(raw: str) -> str:
    text = raw.strip("`'")
    return re.sub(r"\$\{[^}]*?\(?(\w+)\)?\}", r"{\1}", text)


def node_rows(npm_dir: Path) -> tuple[str, list[Row]]:
    pkg = npm_dir / "node_modules" / "stripe"
    with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as f:
        f.write(NODE_WALKER)
        script = f.name
    proc = subprocess.run(
        ["node", script, str(pkg)], capture_output=True, text=True, check=True
    )
    doc = json.loads(proc.stdout)
    version = json.loads((pkg / "package.json").read_text())["version"]
    rows = [
        {"call": r["call"], "method": r["method"], "path": _node_template(r["raw"]), "kind": "node"}
        for r in doc["rows"]
    ]
    return version, rows


def ensure_npm(npm_dir: Path | None) -> Path:
    if npm_dir is not None:
        return npm_dir
    target = ROOT / "tools" / ".node"
    if not (target / "node_modules" / "stripe").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(target), "--no-save", "--no-audit", "--no-fund",
             "stripe"], check=True,
        )
    return target


# ---------------------------------------------------------------- output


def canonical(rows: list[Row]) -> list[Row]:
    """Name path parameters as the Python services do (`{customer}`, not `{id}`)."""
    by_shape: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["kind"] == "service":
            by_shape.setdefault((r["method"], shape(r["path"])), r["path"])
    any_method = {s: p for (_, s), p in by_shape.items()}
    out = []
    for r in rows:
        key = (r["method"], shape(r["path"]))
        path = by_shape.get(key) or any_method.get(key[1]) or r["path"]
        out.append({**r, "path": path})
    return out


def write(out: Path, py_version: str, node_version: str, rows: list[Row]) -> None:
    rows = sorted(
        {(r["kind"], r["call"]): r for r in rows}.values(), key=lambda r: (r["kind"], r["call"])
    )
    meta = {
        "python_sdk": f"stripe {py_version}", "node_sdk": f"stripe {node_version}",
        "generated": dt.date.today().isoformat(), "generator": "tools/gen_sdk_methods.py",
    }
    lines = [json.dumps({"_meta": meta})]
    lines += [
        json.dumps([r["kind"], r["call"], r["method"], r["path"]], separators=(",", ":"))
        for r in rows
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    # One JSON array holding one row per line: diffs stay readable when an SDK changes.
    out.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--npm-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    py_version, py_rows = python_rows()
    node_version, n_rows = node_rows(ensure_npm(args.npm_dir))
    rows = canonical(py_rows + n_rows)
    write(args.out, py_version, node_version, rows)
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
