"""OpenAPI document -> the five tables the engine loads, with every decision's provenance.

The rules (docs/own-api.md says them for people; each row's `rule` field names the one used):
- object: `x-permgate-object`, else the 2xx response schema (arrays and list envelopes
  unwrapped), else the first tag, else the first static path segment;
- level: `x-permgate-level`, else the scope names, else the method (a POST whose id or path
  says search/query/lookup/preview/validate reads);
- names: the API's own OAuth scopes when every secured operation has them, else
  `<object>_read/_write` (`permissions="scopes"|"objects"`);
- a read scope and its write twin on one operation mean "either" (flagged);
- write implies read within an object; more only from `x-permgate-implies`;
- expansions only from `x-permgate-expand` (or Stripe's `x-expansionResources`);
- events from `webhooks` / `x-webhooks`, each needing its payload object's read and
  `event_read`; operations without security are flagged, never open.
Anything decided by a heuristic becomes a `Finding` for REVIEW.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from permgate.api.router import literal_reason
from permgate.catalog.model import implication_closure
from permgate.ownapi.spec import SpecError, deref

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_OPERATIONS = 20_000
MAX_WEBHOOKS = 5_000
_READ_WORDS = ("search", "query", "lookup", "preview", "validate")
_WORD = re.compile(r"[a-z0-9]+")
_ENVELOPES = ("data", "items", "results", "records", "entries", "values", "list",
              "elements", "content", "objects")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_PLACEHOLDER = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# `read:pets`, `pets.read`, `pets_read`, `drive.readonly`, Microsoft's `User.Read.All`;
# `write:pets`, `pets.write`, `orders:manage`, `User.ReadWrite.All`. A breadth qualifier
# (`.All`) stays in the stem: `User.Read` (the signed-in user) and `User.Read.All` (every
# user) are different families, and one never implies the other.
_SCOPE_READ = re.compile(r"^(?:read[:_.](?P<a>.+)|(?P<b>.+?)[:_.](?:read|readonly|read_only)"
                         r"(?P<all>[:_.]all)?)$", re.IGNORECASE)
_SCOPE_WRITE = re.compile(r"^(?:(?:write|manage)[:_.](?P<a>.+)|(?P<b>.+?)[:_.]"
                          r"(?:write|manage|readwrite)(?P<all>[:_.]all)?)$", re.IGNORECASE)
# RFC 6749 section 3.3: a scope token is 1*( %x21 / %x23-5B / %x5D-7E ); 128 is our bound
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")
# the manifest's event type shape (manifest/validate.py): what apps can subscribe to
_EVENT_TYPE = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")
Style = Literal["auto", "scopes", "objects"]
Level = Literal["read", "write"]


@dataclass
class Finding:
    """One decision a person should check: what, about which operation/object, why."""

    kind: str
    subject: str
    detail: str


@dataclass
class Op:
    method: str
    template: str  # as in the document
    path: str  # base path + template: what the gateway routes
    operation_id: str | None
    object: str | None = None
    object_rule: str = ""
    is_list: bool = False
    level: Level = "read"
    level_rule: str = ""
    permission: str | None = None
    unavailable: str | None = None
    rule: str = ""
    scopes: list[list[str]] = field(default_factory=list)  # requirement alternatives
    tag: str | None = None
    dropped: bool = False  # not routable at all: left out of operations.json
    secured: bool = True
    # The query parameters the document declares (path item's and operation's); None when
    # one of them cannot be named (a form-exploded object spreads its properties as keys).
    query_params: list[str] | None = None


@dataclass
class Result:
    name: str
    title: str
    style: Literal["scopes", "objects"]
    base_paths: list[str]
    upstream_url: str
    auth_schemes: list[str]
    upstream_auth: str
    body_encodings: list[str]
    expand_style: str
    expand_param: str
    error_style: str
    account_header: str
    permissions: list[dict[str, Any]]
    events: list[dict[str, Any]]
    operations: list[dict[str, Any]]
    objects: dict[str, dict[str, Any]]
    expansions: dict[str, dict[str, Any]]
    findings: list[Finding]
    suggestions: list[tuple[str, str, str]]  # (object, field, target guess)
    ops: list[Op]


GUESS = "(guessed)"  # marks a heuristic's `how`: REVIEW.md lists the decision


def _kind_of(m: str, n: str) -> bool:
    """`m` is a kind of `n`, on `_` word boundaries: `deleted_customer` of `customer`."""
    return m == n or m.startswith(n + "_") or m.endswith("_" + n)


def snake(name: str) -> str:
    """`PaymentIntent`, `payment-intent`, `Payment Intents` -> `payment_intent(s)`; dots kept
    (Stripe's `billing.meter`)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s).lower()
    s = re.sub(r"[^a-z0-9.]+", "_", s).strip("_.")
    return s or "object"


def resource_of(obj: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", obj)


def slug(title: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    s = re.sub(r"^[^a-z]+", "", s)[:40].rstrip("-_")
    return s or "api"


def classify_scope(scope: str) -> tuple[Level | None, str]:
    """(read/write/None, the stem it is about): `read:pets` -> (read, pets)."""
    for level, rx in (("read", _SCOPE_READ), ("write", _SCOPE_WRITE)):
        m = rx.match(scope)
        if m:
            stem = (m.group("a") or m.group("b")).lower() + (".all" if m.group("all") else "")
            return level, stem  # type: ignore[return-value]
    return None, scope.lower()


class Deriver:
    def __init__(self, doc: dict[str, Any], where: str, style: Style, name: str | None) -> None:
        self.doc = doc
        self.where = where
        self.style_wanted = style
        self.name_wanted = name
        self.findings: list[Finding] = []
        self.schemes: dict[str, Any] = {}
        comps = doc.get("components")
        if isinstance(comps, dict) and isinstance(comps.get("securitySchemes"), dict):
            self.schemes = {k: deref(doc, v)[0] for k, v in comps["securitySchemes"].items()}

    def flag(self, kind: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(kind, subject, detail))

    # -- the document's shape ----------------------------------------------------------------

    def base(self) -> tuple[list[str], str]:
        servers = self.doc.get("servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
            self.flag("edge", "servers", "no `servers`: base path '' and upstream "
                      "http://127.0.0.1:8000 assumed; set [upstream] url in api.toml")
            return [""], "http://127.0.0.1:8000"
        urls = []
        for s in servers:
            if not isinstance(s, dict) or not isinstance(s.get("url"), str):
                continue
            url = s["url"]
            variables = s.get("variables") or {}
            if not isinstance(variables, dict):
                raise SpecError(f"{self.where}: servers: 'variables' must be a mapping")
            for var, spec in variables.items():
                if isinstance(spec, dict) and spec.get("default") is not None:
                    url = url.replace("{" + var + "}", str(spec["default"]))
            urls.append(url)
        if not urls:
            return [""], "http://127.0.0.1:8000"
        parts = urlsplit(urls[0])
        base = parts.path.rstrip("/")
        if "{" in base:
            raise SpecError(f"{self.where}: servers[0] has a path variable without a default: "
                            f"{urls[0]!r}")
        if parts.scheme in ("http", "https") and parts.netloc:
            upstream = f"{parts.scheme}://{parts.netloc}"
        else:
            upstream = "http://127.0.0.1:8000"
            self.flag("edge", "servers", f"servers[0] {urls[0]!r} names no host: upstream "
                      f"{upstream} assumed; set [upstream] url in api.toml or serve --upstream")
        others = sorted({urlsplit(u).path.rstrip("/") for u in urls[1:]} - {base})
        if others:
            self.flag("edge", "servers", f"only the first server's path {base!r} is routed; "
                      f"also listed: {', '.join(others)}")
        return [base], upstream

    def security_of(self, op: dict[str, Any]) -> tuple[bool, list[list[str]]]:
        """(secured, the scopes of each alternative requirement)."""
        sec = op.get("security", self.doc.get("security"))
        if not isinstance(sec, list) or not sec:
            return False, []
        alts: list[list[str]] = []
        secured = True
        for req in sec:
            if not isinstance(req, dict) or not req:
                secured = False  # `{}`: anonymous access is one of the alternatives
                continue
            scopes: list[str] = []
            for scheme, names in req.items():
                if not isinstance(names, list):
                    raise SpecError(f"{self.where}: security requirement {scheme!r} must list "
                                    "scopes")
                scopes.extend(self.scope_name(n, f"security requirement {scheme!r}")
                              for n in names)
            alts.append(scopes)
        return secured, alts

    def scope_name(self, n: Any, where: str) -> str:
        """A scope that becomes a permission name: an RFC 6749 scope token, or refused (it
        reaches consent pages, manifests and REVIEW.md)."""
        if not isinstance(n, str) or not _SCOPE_TOKEN.fullmatch(n):
            raise SpecError(f"{self.where}: {where}: scope {str(n)[:60]!r} is not an OAuth "
                            "scope token (1-128 printable ASCII characters, no space, '\"' "
                            "or '\\')")
        return n

    # -- objects -----------------------------------------------------------------------------

    def schema_object(self, schema: Any, depth: int = 0) -> tuple[str | None, bool, str]:
        """(object name, is a list, how) for a response or payload schema. A `how` that
        contains GUESS came from a heuristic (REVIEW.md lists it)."""
        node, ref = deref(self.doc, schema)
        if not isinstance(node, dict) or depth > 4:
            return None, False, ""
        explicit = node.get("x-permgate-object")
        if isinstance(explicit, str) and explicit:
            return snake(explicit), False, "x-permgate-object on the schema"
        if node.get("type") == "array" or "items" in node:
            obj, _, how = self.schema_object(node.get("items"), depth + 1)
            return obj, True, f"array of {how}" if obj else ""
        for key in ("oneOf", "anyOf"):
            alts = node.get(key)
            if isinstance(alts, list) and alts:
                found = [self.schema_object(a, depth + 1) for a in alts]
                names = {n for n, _, _ in found}
                names.discard(None)
                if len(names) == 1:
                    only = names.pop()
                    guessed = any(GUESS in how for n, _, how in found if n)
                    return only, False, f"{key} of one object" + (
                        f" ({'; '.join(h for n, _, h in found if n and GUESS in h)})"
                        if guessed else "")
                # several: the one every other is a kind of (`deleted_customer` of
                # `customer`), on `_` word boundaries (`card` is not in `discard_request`)
                strs = [n for n in names if n]
                common = [n for n in strs if all(_kind_of(m, n) for m in strs)]
                if len(common) == 1:
                    return common[0], False, (f"{key}: {sorted(map(str, names))} share "
                                              f"{common[0]} {GUESS}")
                if names:
                    return None, False, f"{key} of several objects: {sorted(map(str, names))}"
        props = node.get("properties")
        if isinstance(props, dict):
            arrays = []
            for k, v in props.items():
                pv, _ = deref(self.doc, v)
                if isinstance(pv, dict) and (pv.get("type") == "array" or "items" in pv):
                    arrays.append(k)
            env = [k for k in arrays if k.lower() in _ENVELOPES]
            if len(env) == 1 and (ref is None or len(props) <= 6):
                obj, _, how = self.schema_object(props[env[0]], depth + 1)
                if obj:
                    return obj, True, f"list envelope '{env[0]}' of {how}"
        rid = node.get("x-resourceId")
        named = snake(rid) if isinstance(rid, str) and rid else snake(ref) if ref else None
        if named:
            how = f"schema {ref or rid}" + (" (x-resourceId)" if rid else "")
            gone = isinstance(props, dict) and "deleted" in props
            if gone and named.startswith("deleted_") and len(named) > 8:
                # a deletion's tombstone (`deleted: true`) is about the object it deleted
                return named[8:], False, f"{how}, the tombstone of {named[8:]} {GUESS}"
            return named, False, how
        title = node.get("title")
        if isinstance(title, str) and title and node.get("type", "object") == "object":
            return snake(title), False, f"response schema titled {title!r} {GUESS}"
        return None, False, ""

    def response_schema(self, op: dict[str, Any]) -> Any:
        responses, _ = deref(self.doc, op.get("responses"))
        if not isinstance(responses, dict):
            return None
        codes = sorted(str(c) for c in responses if str(c).startswith("2"))
        for code in codes:
            resp, _ = deref(self.doc, responses[code])
            content = resp.get("content") if isinstance(resp, dict) else None
            if not isinstance(content, dict) or not content:
                continue
            media = next((m for m in content if "json" in m.lower()), next(iter(content)))
            entry = content[media]
            if isinstance(entry, dict) and "schema" in entry:
                return entry["schema"]
        return None

    def op_object(self, o: Op, raw: dict[str, Any]) -> None:
        explicit = raw.get("x-permgate-object")
        if isinstance(explicit, str) and explicit:
            o.object, o.object_rule = snake(explicit), "x-permgate-object"
            return
        schema = self.response_schema(raw)
        if schema is not None:
            obj, is_list, how = self.schema_object(schema)
            if obj:
                o.object, o.is_list, o.object_rule = obj, is_list, f"2xx response: {how}"
                if GUESS in how:
                    self.flag("object", f"{o.method} {o.path}", f"object {obj!r} from {how}")
                return
        tags = raw.get("tags")
        if isinstance(tags, list) and tags and isinstance(tags[0], str) and tags[0].strip():
            o.tag = tags[0]
        o.object_rule = ""  # decided in fallbacks(), once every operation's response is known

    def fallbacks(self, ops: list[Op]) -> None:
        """No explicit object, no response object: the object another operation of the same
        path returns (`DELETE /orders/{order}` beside `GET /orders/{order}`), else the tag,
        else the first static path segment."""
        by_template: dict[str, str] = {}
        for o in sorted(ops, key=lambda o: o.method != "GET"):
            if o.object and o.object_rule:
                by_template.setdefault(o.template, o.object)
        for o in ops:
            if o.object_rule:
                continue
            subject = f"{o.method} {o.path}"
            if o.template in by_template:
                o.object = by_template[o.template]
                o.object_rule = f"the object other operations of its path return {GUESS}"
                self.flag("object", subject, f"object {o.object!r}: what other operations of "
                          "its path return (it returns no object)")
                continue
            if o.tag:
                o.object, o.object_rule = snake(o.tag), f"tag {o.tag!r} (no response object)"
                self.flag("object", subject, f"object {o.object!r} from its tag")
                continue
            self.path_object(o)

    def path_object(self, o: Op) -> None:
        # version and API prefixes (`/v1`, `/api`) name no object
        segs = [s for s in o.template.split("/") if s and not s.startswith("{")
                and not re.fullmatch(r"v\d+(?:\.\d+)?|api|rest", s, re.IGNORECASE)]
        o.object = snake(segs[0]) if segs else "root"
        o.object_rule = "first static path segment (no response object, no tag)"
        self.flag("object", f"{o.method} {o.path}",
                  f"object {o.object!r} from the first path segment")

    # -- levels ------------------------------------------------------------------------------

    def op_level(self, o: Op, raw: dict[str, Any]) -> None:
        explicit = raw.get("x-permgate-level")
        if explicit in ("read", "write"):
            o.level, o.level_rule = explicit, "x-permgate-level"
            return
        if explicit is not None:
            raise SpecError(f"{self.where}: {o.method} {o.template}: x-permgate-level must be "
                            f"'read' or 'write', not {str(explicit)[:60]!r}")
        flat = sorted({s for alt in o.scopes for s in alt})
        kinds = {classify_scope(s) for s in flat}
        levels = {k for k, _ in kinds}
        if flat and None not in levels and self.twins(flat) is None:
            if levels == {"read"}:
                o.level, o.level_rule = "read", f"scopes {flat} are read scopes"
                return
            if len(o.scopes) == 1 or levels == {"write"}:
                o.level, o.level_rule = "write", f"scopes {flat} include a write scope"
                return
        if o.method in READ_METHODS:
            o.level, o.level_rule = "read", f"method {o.method}"
            return
        said = _read_words(o)
        if o.method == "POST" and said:
            o.level, o.level_rule = "read", f"POST that says {said[0]!r}"
            self.flag("level", f"{o.method} {o.path}", f"read, because its id or path says "
                      f"{said[0]!r}; set x-permgate-level: write if it changes anything")
            return
        o.level, o.level_rule = "write", f"method {o.method}"

    @staticmethod
    def twins(scopes: list[str]) -> tuple[str, str] | None:
        """(read, write) when the scopes are exactly one read scope and its write twin."""
        if len(scopes) != 2:
            return None
        a, b = (classify_scope(s) for s in scopes)
        if a[1] != b[1] or {a[0], b[0]} != {"read", "write"}:
            return None
        read = scopes[0] if a[0] == "read" else scopes[1]
        write = scopes[1] if read == scopes[0] else scopes[0]
        return read, write

    # -- the whole document ------------------------------------------------------------------

    def operations(self, base: str) -> list[Op]:
        paths = self.doc.get("paths") or {}
        ops: list[Op] = []
        ids: dict[str, str] = {}
        shapes: dict[tuple[str, str], str] = {}
        for template, item in paths.items():
            if not template.startswith("/"):
                raise SpecError(f"{self.where}: path {template!r} must start with '/'")
            item, _ = deref(self.doc, item)
            if not isinstance(item, dict):
                continue
            for m in METHODS:
                raw = item.get(m)
                if not isinstance(raw, dict):
                    continue
                if len(ops) >= MAX_OPERATIONS:
                    raise SpecError(f"{self.where}: more than {MAX_OPERATIONS} operations")
                method = m.upper()
                oid = raw.get("operationId")
                oid = oid if isinstance(oid, str) else None
                if oid is not None:
                    if oid in ids:
                        raise SpecError(f"{self.where}: duplicate operationId {oid!r} "
                                        f"({ids[oid]} and {method} {template})")
                    ids[oid] = f"{method} {template}"
                shape = re.sub(r"\{[^}/]*\}", "{}", template.rstrip("/") or "/")
                key = (method, shape)
                if key in shapes and shapes[key] != template:
                    raise SpecError(f"{self.where}: colliding path templates: {method} "
                                    f"{shapes[key]} and {method} {template} match the same "
                                    "requests")
                shapes[key] = template
                full = base + template if template != "/" or not base else base
                self.check_segments(template, full)
                o = Op(method=method, template=template, path=full,
                       operation_id=oid)
                o.secured, o.scopes = self.security_of(raw)
                o.query_params = self.query_params(item, raw)
                self.op_object(o, raw)
                self.op_level(o, raw)
                bad = self.unroutable(o.path)
                if bad:
                    o.unavailable = f"permgate cannot route this template: {bad}"
                    o.dropped = "empty segment" in bad
                    self.flag("route", f"{method} {o.path}", o.unavailable + (
                        "; left out of the table: the gateway answers it as unknown (404)"
                        if o.dropped else ""))
                if o.query_params is None:
                    self.flag("parameters", f"{method} {o.path}",
                              "a query parameter cannot be named (a form-exploded object): "
                              "the gateway forwards any query parameter here except those "
                              "named like an expansion")
                if _shadowed(o.path):
                    self.flag("route", f"{method} {o.path}",
                              "the gateway serves this path itself (health, metrics, admin, "
                              "consent pages, OAuth or webhook ingest): `serve --api` refuses "
                              "the DIR until the API lives under a base path")
                if not o.secured:
                    self.flag("security", f"{method} {o.path}",
                              "the document declares no security requirement (or allows "
                              "anonymous access); permgate still requires the permission "
                              "below: decide whether apps should need it")
                ops.append(o)
        self.fallbacks(ops)
        self.owners(ops)
        return ops

    def query_params(self, item: dict[str, Any], raw: dict[str, Any]) -> list[str] | None:
        """The names of the query parameters an operation declares (the gateway forwards
        no other), or None when they cannot all be named."""
        names: set[str] = set()
        for source in (item.get("parameters"), raw.get("parameters")):
            for p in source if isinstance(source, list) else ():
                p, _ = deref(self.doc, p)
                if not isinstance(p, dict) or p.get("in") != "query":
                    continue
                name = p.get("name")
                if not isinstance(name, str) or not name:
                    return None
                schema, _ = deref(self.doc, p.get("schema"))
                style = p.get("style", "form")
                if isinstance(schema, dict) and schema.get("type") == "object" \
                        and style == "form" and p.get("explode", True):
                    return None  # its properties are the keys: not known here
                names.add(name)
        return sorted(names)

    def owners(self, ops: list[Op]) -> None:
        """A path under another resource's id (`/customers/{customer}/cards`) acts on that
        owner: its object is the owner's (the nearest one), as in Stripe's model, where
        listing a customer's cards needs customer_read; but an object with endpoints of its
        own keeps its permission (a customer's subscriptions need subscription_read)."""
        known: dict[str, str] = {}
        # Objects with endpoints of their own (a path with no id before its last segment
        # returns them) keep their own permission wherever they appear.
        own = {o.object for o in ops if o.object and o.object_rule.startswith("2xx")
               and "{" not in o.template.rpartition("/")[0]}
        for o in sorted(ops, key=lambda o: (o.template.count("/"), o.method != "GET")):
            if "x-permgate-object" not in o.object_rule and o.object not in own:
                segs = o.template.split("/")
                for i in range(len(segs) - 2, 0, -1):
                    prefix = "/".join(segs[:i + 1])
                    if segs[i].startswith("{") and prefix in known:
                        owner = known[prefix]
                        if owner != o.object:
                            o.object_rule = (f"sub-path of {prefix}: its owner {owner!r} "
                                             f"(the response: {o.object!r})")
                            self.flag("owner", f"{o.method} {o.path}",
                                      f"object {owner!r}, the owner of {prefix}, not "
                                      f"{o.object!r} of its response")
                            o.object, o.is_list = owner, o.is_list
                        break
            if o.object:
                known.setdefault(o.template, o.object)

    def check_segments(self, template: str, full: str) -> None:
        """Refuse a template whose literal segments a request could not carry safely: the
        router matches literals before it checks anything, so `/files/%2e%2e/admin` would
        be decided as itself while an upstream that decodes serves `/admin`."""
        for seg in full.split("/")[1:]:
            if not seg:
                continue  # the root or a trailing '/': left out of the table (unroutable)
            if seg[0] == "{" and seg[-1] == "}" and "{" not in seg[1:-1]:
                if not _PLACEHOLDER.fullmatch(seg[1:-1]):
                    raise SpecError(f"{self.where}: path {template!r}: parameter name "
                                    f"{seg!r} may have only letters, digits, '_', '-' and '.'")
                continue
            reason = literal_reason(seg)
            if reason is not None:
                raise SpecError(f"{self.where}: path {template!r}: {reason} (segment {seg!r}): "
                                "a server could decode or normalise it into another path")

    @staticmethod
    def unroutable(path: str) -> str | None:
        segs = path.split("/")[1:]
        if any(s == "" for s in segs):
            return "an empty segment (the root '/', a trailing '/' or '//')"
        for s in segs:
            if ("{" in s or "}" in s) and not re.fullmatch(r"\{[^{}/]+\}", s):
                return f"segment {s!r} mixes a parameter with text"
        return None


def derive(doc: dict[str, Any], where: str, *, style: Style = "auto",
           name: str | None = None) -> Result:
    d = Deriver(doc, where, style, name)
    info_raw = doc.get("info")
    info: dict[str, Any] = info_raw if isinstance(info_raw, dict) else {}
    title = str(info.get("title") or "API")
    api_name = name or slug(title)
    if not _NAME.fullmatch(api_name):
        raise SpecError(f"catalog name {api_name!r} must match [a-z][a-z0-9_-]{{0,39}}")
    bases, upstream = d.base()
    base = bases[0]
    ops = d.operations(base)
    if not ops:
        raise SpecError(f"{where}: the document has no operations")
    # -- names: the API's scopes, or Stripe-style object names ---------------------------
    secured = [o for o in ops if o.secured]
    all_scoped = bool(secured) and all(any(alt for alt in o.scopes) for o in secured)
    if style == "auto":
        chosen: Literal["scopes", "objects"] = "scopes" if all_scoped else "objects"
    else:
        chosen = style
    if style == "scopes" and not all_scoped:
        d.flag("names", "permissions", "--permissions scopes, but not every secured operation "
               "names OAuth scopes: those get <object>_read/_write names")
    perms: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}  # permission -> "scope" | "object" | "event": who made it
    scope_desc = _scope_descriptions(d, d.schemes)

    shared: dict[str, str] = {}  # a name both a scope and generated -> the generated's object

    def same_meaning(pname: str, lv: str, res: str) -> None:
        """A scope and a generated name spelt alike must mean the same (`pets_read`: read
        pets); otherwise holding one would grant the other. Checked by name here and by the
        operations the scope guards once all are known (`_check_shared`)."""
        kind, stem = classify_scope(pname)
        if kind != lv or resource_of(snake(stem)) != res:
            _clash(where, pname, lv, res)
        shared[pname] = res

    def object_perm(obj: str, level: Level, why: str) -> str:
        res = resource_of(obj)
        for lv in ("read", "write"):
            pname = f"{res}_{lv}"
            if pname in perms:
                if origin[pname] != "object":
                    same_meaning(pname, lv, res)
                continue
            perms[pname] = _perm_row(pname, lv, res, obj, title,
                                     f"{'Read' if lv == 'read' else 'Write'} access to "
                                     f"{obj} objects", [], f"object {obj!r}: {why}")
            origin[pname] = "object"
        return f"{res}_{level}"

    def scope_perm(scope: str, level: Level, obj: str | None, why: str) -> str:
        if scope in perms:
            if origin[scope] == "object":
                same_meaning(scope, perms[scope]["level"], perms[scope]["resource"])
            return scope
        lv, stem = classify_scope(scope)
        perms[scope] = _perm_row(scope, lv or level, resource_of(snake(stem)), obj or stem,
                                 title, scope_desc.get(scope) or f"OAuth scope {scope}", [],
                                 f"OAuth scope of the document ({why})")
        origin[scope] = "scope"
        return scope

    for o in ops:
        obj = o.object or "root"
        subject = f"{o.method} {o.path}"
        rule = f"object: {o.object_rule}; level: {o.level_rule}"
        alts = [a for a in o.scopes if a]
        if chosen == "objects" or not alts:
            o.permission = object_perm(obj, o.level, o.level_rule)
            o.rule = f"{rule}; name: <object>_{o.level}"
            if chosen == "scopes":
                d.flag("names", subject, f"names no OAuth scope: {o.permission}, an object "
                       "name, is required")
        else:
            flat = sorted({s for a in alts for s in a})
            pair = d.twins(flat)
            if pair is not None:
                o.permission = scope_perm(pair[0] if o.level == "read" else pair[1], o.level,
                                          obj, "twin")
                scope_perm(pair[0], "read", obj, "twin")
                scope_perm(pair[1], "write", obj, "twin")
                # the document itself pairs these two on one operation: that exact
                # implication, whatever else shares their stem
                if pair[0] not in perms[pair[1]]["implies"]:
                    perms[pair[1]]["implies"].append(pair[0])
                    perms[pair[1]]["rule"] += (f"; implies {pair[0]} (paired with it on "
                                               f"{subject})")
                o.rule = f"{rule}; scopes {flat}: a read scope and its write twin = either"
                d.flag("any-of", subject, f"{pair[0]} and {pair[1]} read as one requirement "
                       f"met by either (so {pair[1]} implies {pair[0]}); needs "
                       f"{o.permission}")
            elif len(alts) == 1 and len(alts[0]) == 1:
                o.permission = scope_perm(alts[0][0], o.level, obj, "the operation's one scope")
                o.rule = f"{rule}; scope {alts[0][0]}"
            elif len(alts) > 1 and all(len(a) == 1 for a in alts):
                # any of several unrelated scopes: one of them is required (never looser)
                pick = alts[0][0]
                o.permission = scope_perm(pick, o.level, obj, "first alternative")
                o.rule = f"{rule}; any of {flat}: the first kept"
                d.flag("any-of", subject, f"the document accepts any of {flat}; permgate "
                       f"requires {pick} only: add x-permgate-implies to widen")
            else:
                o.unavailable = o.unavailable or (
                    f"the document requires all of {flat}; a permgate operation needs one "
                    "permission: give it one scope, or use --permissions objects")
                o.rule = f"{rule}; all of {flat}: not expressible"
                d.flag("all-of", subject, o.unavailable)
        if o.unavailable:
            o.permission = None
    # every scope the document declares is a permission, used or not
    if chosen == "scopes":
        for scope in scope_desc:
            lv, _ = classify_scope(scope)
            scope_perm(scope, lv or "write", None, "declared in securitySchemes")
    for pname, res in sorted(shared.items()):
        guarded = {resource_of(o.object or "root") for o in ops
                   if o.permission == pname and any(o.scopes)}
        if guarded - {res}:
            _clash(where, pname, perms[pname]["level"], res)
    _scope_levels(d, ops, perms, origin)
    _implications(d, ops, perms, origin, chosen)
    _no_stray_twins(d, perms)
    readers, readers_rule = _readers(d, ops, perms)
    # -- expansions and events ---------------------------------------------------------------
    expansions, suggestions, stripe_style = _expansions(d, readers)
    for targets in list(expansions.values()):
        for entry in targets.values():
            for t in entry:
                if t not in readers:
                    readers[t] = object_perm(t, "read", "expansion target") \
                        if chosen == "objects" else ""
    objects: dict[str, dict[str, Any]] = {}
    for obj, p in sorted(readers.items()):
        objects[obj] = ({"permission": p, "rule": readers_rule.get(obj, "read permission of "
                                                                   "its read operations")}
                        if p else {"unavailable": readers_rule.get(
                            obj, "no operation of the document reads it")})
    hooks = doc.get("webhooks") or doc.get("x-webhooks")
    if hooks and origin.get("event_read") == "scope" and {
            o.object for o in ops if o.permission == "event_read"} - {"event"}:
        # every event needs event_read: a scope of that name guarding other objects would
        # grant both meanings at once
        raise SpecError(f"{where}: the document has a scope named 'event_read' guarding "
                        "other objects, and every event needs a permission of that name: "
                        "rename the scope, or use --permissions objects")
    events = _events(d, readers, perms, origin, chosen, object_perm, title)
    # -- the edge ----------------------------------------------------------------------------
    auth, up_auth = _auth(d)
    encodings = _encodings(doc)
    expand_style, expand_param = _expand_style(doc, expansions, stripe_style)
    _flag_refused_params(d, ops, expand_style, expand_param)
    perm_rows = [perms[k] for k in sorted(perms)]
    op_rows = []
    for o in ops:
        if o.dropped:
            continue
        op_rows.append({
            "method": o.method, "path": o.path, "permission": o.permission,
            "unavailable": o.unavailable, "object": o.object,
            "objects": [o.object] if o.object else [], "list": o.is_list,
            "sources": ["openapi"], "rule": o.rule,
            "operation_id": o.operation_id, "secured": o.secured,
            **({} if o.query_params is None else {"query_params": o.query_params}),
        })
    return Result(
        name=api_name, title=title, style=chosen, base_paths=bases, upstream_url=upstream,
        auth_schemes=auth, upstream_auth=up_auth, body_encodings=encodings,
        expand_style=expand_style, expand_param=expand_param,
        error_style="problem", account_header=_account_header(d),
        permissions=perm_rows, events=events, operations=op_rows, objects=objects,
        expansions=expansions, findings=d.findings, suggestions=suggestions, ops=ops,
    )


def _perm_row(name: str, level: str, resource: str, obj: str, product: str,
              description: str, implies: list[str], rule: str) -> dict[str, Any]:
    return {"name": name, "level": level, "resource": resource, "product": product,
            "title": obj.replace("_", " ").replace(".", " ").title(),
            "description": description, "implies": implies, "also_request": [],
            # "reference": the API's own document is the reference (requestable)
            "sources": ["reference"], "refused": None, "rule": rule}


def _read_twin(pname: str, perms: dict[str, dict[str, Any]]) -> str:
    row = perms[pname]
    if row["level"] == "read":
        return pname
    for other in perms.values():
        if other["level"] == "read" and other["name"] in row["implies"]:
            return str(other["name"])
    twin = f"{row['resource']}_read"
    return twin if twin in perms else pname


def _clash(where: str, pname: str, level: str, res: str) -> None:
    raise SpecError(f"{where}: scope {pname!r} has the name permgate gives "
                    f"{res.replace('_', ' ')} objects' {level} permission, with another "
                    "meaning: use --permissions objects, or rename the scope")


def _scope_descriptions(d: Deriver, schemes: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for sname, s in schemes.items():
        if not isinstance(s, dict) or s.get("type") != "oauth2":
            continue
        flows = s.get("flows")
        for flow in (flows.values() if isinstance(flows, dict) else []):
            scopes = flow.get("scopes") if isinstance(flow, dict) else None
            if isinstance(scopes, dict):
                for k, v in scopes.items():
                    d.scope_name(k, f"security scheme {sname!r}")
                    out.setdefault(k, v if isinstance(v, str) else "")
    return out


def _read_words(o: Op) -> list[str]:
    """The read words (search, query, ...) an operation's id or path says."""
    words = set(_WORD.findall(f"{o.operation_id or ''} {o.template}".lower()))
    words |= set(_WORD.findall(snake(o.operation_id or "")))
    return sorted(w for w in _READ_WORDS if w in words)


def _method_level(o: Op) -> Level:
    """The level the method (and the read words of a POST) says."""
    if o.method in READ_METHODS:
        return "read"
    return "read" if o.method == "POST" and _read_words(o) else "write"


def _scope_levels(d: Deriver, ops: list[Op], perms: dict[str, dict[str, Any]],
                  origin: dict[str, str]) -> None:
    """A scope whose name says no level takes it from every operation it guards: write if
    any of them writes (the first one's level would describe `repo`, full control, as read
    access on consent pages). Operations whose method and scope disagree are flagged."""
    levels: dict[str, set[str]] = {}
    for o in ops:
        if o.permission and origin.get(o.permission) == "scope":
            levels.setdefault(o.permission, set()).add(o.level)
            said = _method_level(o)
            kind, _ = classify_scope(o.permission)
            if kind is not None and kind != said and "x-permgate-level" not in o.level_rule:
                d.flag("level", f"{o.method} {o.path}", f"the method says {said}, its scope "
                       f"{o.permission} says {kind}: level {o.level}; set x-permgate-level "
                       "if that is wrong")
    for pname, seen in sorted(levels.items()):
        if classify_scope(pname)[0] is not None:
            continue
        level = "write" if "write" in seen else "read"
        if perms[pname]["level"] != level:
            perms[pname]["level"] = level
            perms[pname]["rule"] += f"; level {level}: the operations it guards"
        if len(seen) > 1:
            d.flag("level", pname, "guards read and write operations: level write (consent "
                   "pages describe it as write access)")


def _implications(d: Deriver, ops: list[Op], perms: dict[str, dict[str, Any]],
                  origin: dict[str, str], style: str) -> None:
    """Write implies read within an object: the catalog adds `<resource>_read` for object
    names. For scope names only within one family (`pets.write` -> `pets.read`; never
    `User.ReadWrite` -> `User.Read.All`, a broader scope) and only when the family has
    exactly one read and one write scope guarding the same objects; anything else is
    flagged and implies nothing. Independent of the document's order."""
    if style == "scopes":
        objects: dict[str, set[str]] = {}
        for o in ops:
            if o.permission and o.object:
                objects.setdefault(o.permission, set()).add(o.object)
        families: dict[str, dict[str, list[str]]] = {}
        for pname in sorted(perms):
            kind, stem = classify_scope(pname)
            if kind is not None and origin.get(pname) == "scope":
                families.setdefault(stem, {"read": [], "write": []})[kind].append(pname)
        for stem, fam in sorted(families.items()):
            reads, writes = fam["read"], fam["write"]
            if not reads or not writes:
                continue
            if len(reads) != 1 or len(writes) != 1:
                d.flag("implies", f"scopes of {stem!r}", f"read {reads} and write {writes}: "
                       "which write implies which read is not certain, so none does "
                       "(x-permgate-implies says it)")
                continue
            w, r = writes[0], reads[0]
            ow, orr = objects.get(w, set()), objects.get(r, set())
            if ow and orr and not ow & orr:
                d.flag("implies", w, f"does not imply {r}: they guard different objects "
                       f"({sorted(ow)} and {sorted(orr)}); x-permgate-implies says it")
                continue
            if r not in perms[w]["implies"]:
                perms[w]["implies"].append(r)
                perms[w]["rule"] += f"; implies {r} (write implies read)"
    extra = d.doc.get("x-permgate-implies")
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise SpecError(f"{d.where}: x-permgate-implies must map a permission to a list")
    for src, targets in extra.items():
        if src not in perms or not isinstance(targets, list):
            raise SpecError(f"{d.where}: x-permgate-implies: unknown permission {src!r} (or "
                            "its value is not a list)")
        for t in targets:
            if not isinstance(t, str) or t not in perms:
                raise SpecError(f"{d.where}: x-permgate-implies: {src} names unknown "
                                f"permission {str(t)[:60]!r}")
            if t not in perms[src]["implies"]:
                perms[src]["implies"].append(t)
                perms[src]["rule"] += f"; implies {t} (x-permgate-implies)"


def _no_stray_twins(d: Deriver, perms: dict[str, dict[str, Any]]) -> None:
    """The catalog makes every write imply `<its resource>_read` when that exists. A scope's
    resource comes from its name (`repo` -> `repo`), so an unrelated `repo_read` (an object
    name) would be implied: such a scope gets a resource of its own."""
    for pname in sorted(perms):
        row = perms[pname]
        if row["level"] != "write":
            continue
        twin = f"{row['resource']}_read"
        if twin not in perms or twin in row["implies"] or pname == f"{row['resource']}_write":
            continue
        res = row["resource"]
        while f"{res}_read" in perms:
            res += "_scope"
        row["resource"] = res
        row["rule"] += f"; resource {res} (so that it does not imply {twin})"


def _closure(perms: dict[str, dict[str, Any]]) -> dict[str, frozenset[str]]:
    """Each permission -> what holding it satisfies, by the catalog's own rule."""
    return implication_closure(
        (name, row["level"], row["resource"], row["implies"]) for name, row in perms.items())


def _readers(d: Deriver, ops: list[Op], perms: dict[str, dict[str, Any]]
             ) -> tuple[dict[str, str], dict[str, str]]:
    """(object -> the permission its events and expansions need, or "" for none; object ->
    why). Whoever receives an object's data must be allowed to read all of it: when its read
    operations need different permissions (a public view and the full one, `/me` and
    `/users/{id}`) that is the one that satisfies all the others; when none does, nobody
    (flagged). The root `x-permgate-object-permissions` decides explicitly."""
    reads: dict[str, set[str]] = {}
    writes: dict[str, set[str]] = {}
    for o in ops:
        if o.permission and o.object:
            (reads if o.level == "read" else writes).setdefault(o.object, set()).add(
                o.permission)
    for obj, ws in writes.items():
        if obj not in reads:
            reads[obj] = {_read_twin(w, perms) for w in ws}
    readers: dict[str, str] = {}
    why: dict[str, str] = {}
    explicit = d.doc.get("x-permgate-object-permissions", {})
    if not isinstance(explicit, dict):
        raise SpecError(f"{d.where}: x-permgate-object-permissions must map an object to a "
                        "permission")
    for obj_raw, p in explicit.items():
        if not isinstance(p, str) or p not in perms:
            raise SpecError(f"{d.where}: x-permgate-object-permissions: {obj_raw}: unknown "
                            f"permission {str(p)[:60]!r}")
        obj = snake(obj_raw)
        readers[obj], why[obj] = p, "x-permgate-object-permissions"
    implied = _closure(perms)
    for obj, cands in sorted(reads.items()):
        if obj in readers:
            continue
        if len(cands) == 1:
            readers[obj] = next(iter(cands))
            continue
        names = sorted(cands)
        strict = [p for p in names if cands <= implied[p]]
        if strict:
            readers[obj] = strict[0]
            why[obj] = f"read under {names}: {strict[0]} satisfies them all"
            d.flag("reader", obj, f"read under several permissions {names}: its events and "
                   f"expansions need {strict[0]}, which satisfies them all; set "
                   "x-permgate-object-permissions to choose")
        else:
            readers[obj] = ""
            why[obj] = (f"read under {names}, none of which satisfies the others: no app "
                        "receives its data (x-permgate-object-permissions)")
            d.flag("reader", obj, f"read under several permissions {names}, none of which "
                   "satisfies the others: its events and expansions are denied to every app "
                   "until x-permgate-object-permissions names the one they need")
    return readers, why


_ID_FIELD = re.compile(r"^(?P<stem>.+?)(?:_id|Id|ID)$")


def _expansions(d: Deriver, readers: dict[str, str]
                ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str]], bool]:
    """Explicit expansions only; id-looking fields become suggestions."""
    comps = d.doc.get("components")
    schemas = comps.get("schemas") if isinstance(comps, dict) else None
    out: dict[str, dict[str, Any]] = {}
    suggestions: list[tuple[str, str, str]] = []
    stripe_style = False
    if not isinstance(schemas, dict):
        return out, suggestions, stripe_style
    for sname, raw in schemas.items():
        schema, _ = deref(d.doc, raw)
        if not isinstance(schema, dict):
            continue
        rid = schema.get("x-resourceId")
        explicit = schema.get("x-permgate-object")
        obj = snake(explicit if isinstance(explicit, str) and explicit
                    else rid if isinstance(rid, str) and rid else sname)
        if obj not in readers:
            continue  # only objects some operation returns can be expanded
        props = schema.get("properties")
        if not isinstance(props, dict):
            continue
        for fname, pv_raw in props.items():
            pv, _ = deref(d.doc, pv_raw)
            if not isinstance(pv, dict):
                continue
            targets: list[str] = []
            exp = pv.get("x-permgate-expand")
            if exp is not None:
                names = [exp] if isinstance(exp, str) else exp
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise SpecError(f"{d.where}: schema {sname}.{fname}: x-permgate-expand "
                                    "must name an object or a list of objects")
                targets = [snake(n) for n in names]
            elif isinstance(pv.get("x-expansionResources"), dict):
                stripe_style = True
                for alt in pv["x-expansionResources"].get("oneOf") or []:
                    # by the object rules: `deleted_customer` is a tombstone of `customer`
                    target, _, _ = d.schema_object(alt)
                    if target:
                        targets.append(target)
            if targets:
                out.setdefault(obj, {})[fname] = sorted(set(targets))
                continue
            m = _ID_FIELD.match(fname)
            guess = snake(m.group("stem")) if m else (snake(fname) if snake(fname) in readers
                                                       and pv.get("type") == "string" else None)
            if guess and guess in readers:
                suggestions.append((obj, fname, guess))
    return out, suggestions, stripe_style


def _events(d: Deriver, readers: dict[str, str], perms: dict[str, dict[str, Any]],
            origin: dict[str, str], style: str, object_perm: Any, title: str
            ) -> list[dict[str, Any]]:
    hooks = d.doc.get("webhooks")
    key = "webhooks"
    if not isinstance(hooks, dict):
        hooks, key = d.doc.get("x-webhooks"), "x-webhooks"
    if not isinstance(hooks, dict) or not hooks:
        return []
    if len(hooks) > MAX_WEBHOOKS:
        raise SpecError(f"{d.where}: more than {MAX_WEBHOOKS} webhooks")
    if "event_read" not in perms:
        origin["event_read"] = "event"
        perms["event_read"] = _perm_row("event_read", "read", "event", "event", title,
                                        "Receive events (each also needs the read permission "
                                        "of its payload's object)", [],
                                        "events need event_read, as in Stripe's model")
    out = []
    for etype, item_raw in sorted(hooks.items()):
        if not _EVENT_TYPE.fullmatch(etype):
            d.flag("event", etype, "not an event type apps can subscribe to (lowercase "
                   "dotted words, `pet.created`): apps' manifests cannot name it")
        item, _ = deref(d.doc, item_raw)
        obj = None
        how = ""
        for m in METHODS:
            raw = item.get(m) if isinstance(item, dict) else None
            if not isinstance(raw, dict):
                continue
            explicit = raw.get("x-permgate-object")
            if isinstance(explicit, str) and explicit:
                obj, how = snake(explicit), "x-permgate-object"
                break
            body, _ = deref(d.doc, raw.get("requestBody"))
            content = body.get("content") if isinstance(body, dict) else None
            if isinstance(content, dict) and content:
                media = next((c for c in content if "json" in c.lower()), next(iter(content)))
                entry = content[media]
                if isinstance(entry, dict) and "schema" in entry:
                    obj, _, how = d.schema_object(entry["schema"])
                    if obj and GUESS in how:
                        d.flag("event", etype, f"payload object {obj!r} from {how}")
                    break
        permission = readers.get(obj) if obj else None
        if obj and obj not in readers and style == "objects":
            permission = object_perm(obj, "read", f"payload of event {etype}")
            readers[obj] = permission
        if permission:
            note = f"{key}: payload {how} -> {obj}: {permission} and event_read"
            out.append({"type": etype, "permissions": [permission], "event_read_only": False,
                        "source": "derived", "note": note, "rule": note})
        else:
            why = (f"payload object {obj!r} is read under several permissions (see "
                   "x-permgate-object-permissions)" if obj and obj in readers
                   else f"payload object {obj!r} has no read permission" if obj
                   else "its payload names no object")
            d.flag("event", etype, f"{why}: no app receives it until x-permgate-object or "
                   "x-permgate-object-permissions says what it needs")
            out.append({"type": etype, "permissions": [], "event_read_only": False,
                        "source": "derived", "note": f"{key}: {why}", "rule": why})
    return out


def _auth(d: Deriver) -> tuple[list[str], str]:
    kinds: set[str] = set()
    for name, s in d.schemes.items():
        if not isinstance(s, dict):
            continue
        t = s.get("type")
        if t in ("oauth2", "openIdConnect"):
            kinds.add("bearer")
        elif t == "http" and str(s.get("scheme", "")).lower() in ("bearer", "basic"):
            kinds.add(str(s["scheme"]).lower())
        else:
            d.flag("edge", f"security scheme {name}", f"type {t!r} is not one permgate's edge "
                   "accepts (basic, bearer): apps present their permgate key as a bearer token")
    if not kinds:
        kinds = {"bearer"}
    return sorted(kinds), ("bearer" if "bearer" in kinds else "basic")


def _encodings(doc: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    paths = doc.get("paths")
    for item_raw in (paths.values() if isinstance(paths, dict) else []):
        item, _ = deref(doc, item_raw)  # path items and request bodies may be `$ref`s
        for m in METHODS:
            op = item.get(m) if isinstance(item, dict) else None
            body, _ = deref(doc, op.get("requestBody")) if isinstance(op, dict) else (None, None)
            content = body.get("content") if isinstance(body, dict) else None
            for media in (content if isinstance(content, dict) else {}):
                if "json" in media:
                    seen.add("json")
                elif "x-www-form-urlencoded" in media:
                    seen.add("form")
    return sorted(seen) or ["json"]


def _expand_style(doc: dict[str, Any], expansions: dict[str, Any], stripe: bool
                  ) -> tuple[str, str]:
    if not expansions:
        return "none", "expand"
    if stripe:
        return "stripe", "expand"
    style = doc.get("x-permgate-expand-style")
    if style in ("stripe", "comma", "include"):
        return str(style), "include" if style == "include" else "expand"
    return "comma", "expand"


def _account_header(d: Deriver) -> str:
    explicit = d.doc.get("x-permgate-account-header")
    if isinstance(explicit, str) and explicit:
        return explicit
    d.flag("edge", "account header",
           "no account header (x-permgate-account-header): the upstream would be told no "
           "account, so every install acts on the same upstream data. `serve` refuses this "
           "DIR until api.toml names the header ([edge] account_header) or says "
           "[edge] single_tenant = true")
    return ""


def _shadowed(path: str) -> bool:
    from permgate.api.profile import gateway_path

    return gateway_path(path)


def _flag_refused_params(d: Deriver, ops: list[Op], style: str, param: str) -> None:
    """A declared query parameter named like an expansion (include, embed, fields, ...) is
    refused by the gateway in every style but Stripe's, unless it is the expand parameter:
    say so, since calls that use it will get a 400."""
    if style == "stripe":
        return
    from permgate.api.params import REFUSED_PARAMS, param_word

    for o in ops:
        for name in o.query_params or ():
            if name != param and param_word(name) in REFUSED_PARAMS:
                d.flag("parameters", f"{o.method} {o.path}",
                       f"query parameter {name!r} reads as an expansion: the gateway refuses "
                       "it (400) unless the document marks it with x-permgate-expand "
                       "(then it is the API's expand parameter)")
