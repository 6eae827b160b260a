"""TypeScript, TSX and JavaScript: Stripe calls found with the tree-sitter grammars."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import TypeVar

import tree_sitter as ts
import tree_sitter_javascript as ts_js
import tree_sitter_typescript as ts_ts

from permgate.scan.common import (
    API_HOSTS,
    FORWARDED,
    HTTP_VERBS,
    KEY_NAMED,
    OPTIONS_ACCOUNT,
    UNCALLED_WRAPPER,
    Context,
    OriginRead,
    Piece,
    Project,
    Wrapper,
    bound_key,
    config_read,
    config_source,
    credential_escape,
    fallback_key,
    fixed_account,
    fixed_origin,
    key_account_why,
    own_by_name,
    param_mark,
    raw_target,
    row_key,
    unmarked,
    unread_call_key,
    wrapper_path,
    wrapper_request,
)
from permgate.scan.model import (
    EXPAND_AT_RUN_TIME,
    Account,
    Call,
    Escape,
    FileFindings,
    Scope,
    Unresolved,
)
from permgate.scan.sdk import table
from permgate.scan.tsutil import event_uses, query_captures

EXTENSIONS = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
}
DYNAMIC = "\x00"  # a computed member (`stripe[name]`) in a callee chain
_CLIENT_NAME = re.compile(r"stripe", re.I)
_BUILDS = re.compile(rb"Stripe(?:Client)?\s*\(|require\(\s*['\"]stripe")
_UNWRAP = {"parenthesized_expression", "await_expression", "non_null_expression",
           "as_expression", "satisfies_expression", "type_assertion"}
_QUERY = """
(call_expression) @call
(variable_declarator) @bind
(assignment_expression) @bind
(function_declaration) @fn
(method_definition) @fn
(arrow_function) @fn
(function_expression) @fn
(import_statement) @import
(new_expression) @new
"""
_WRAPPER_ROUNDS = 3  # wrappers of wrappers, at most this deep
_FUNCTION_TYPES = {"function_declaration", "method_definition", "arrow_function",
                   "function_expression", "generator_function_declaration"}
Client = tuple[Account, str]  # whose account, and why
_T = TypeVar("_T")
_FIELD = {"javascript": "(field_definition) @bind", "typescript": "(public_field_definition) @bind"}


@cache
def _language(name: str) -> ts.Language:
    if name == "javascript":
        return ts.Language(ts_js.language())
    if name == "typescript":
        return ts.Language(ts_ts.language_typescript())
    return ts.Language(ts_ts.language_tsx())


@cache
def _parser(name: str) -> ts.Parser:
    return ts.Parser(_language(name))


@cache
def _query(name: str) -> ts.Query:
    return ts.Query(_language(name), _QUERY + _FIELD.get(name, _FIELD["typescript"]))


def _text(node: ts.Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _unwrap(node: ts.Node) -> ts.Node:
    while node.type in _UNWRAP and node.named_child_count:
        inner = node.named_children[0] if node.type != "as_expression" else node.child(0)
        if inner is None:
            break
        node = inner
    return node


class _File:
    def __init__(self, ctx: Context, source: bytes, lang: str) -> None:
        self.ctx = ctx
        self.source = source
        self.tree = _parser(lang).parse(source)
        captures, deep = query_captures(_query(lang), self.tree, source)
        self.calls = captures.get("call", [])
        self.news = captures.get("new", [])
        self.functions = captures.get("fn", [])
        self.project = ctx.project or Project()
        self.out = FileFindings()
        self.out.partial = deep
        # the function whose locals `resolve` reads first (a URL kept in `const url = ...`),
        # set while a request's URL is read; locals computed once per function
        self.scope_fn: ts.Node | None = None
        self.locals_cache: dict[int, dict[str, ts.Node]] = {}
        # wrappers of wrappers -> their request (a call of the inner wrapper), and the
        # wrappers this file calls: an outer one it never calls keeps that request unread
        self.layered: dict[str, ts.Node] = {}
        self.wrappers_called: set[str] = set()
        self.wanted: set[str] = set()  # functions whose callers decide a client or key
        self._helper_props = {}  # the options a helper returns, by its return values
        self._subclasses: dict[int, Client] = {}  # a subclass of the SDK's client: its key
        # wrapper methods: name -> the class that has it (its start byte): another class's
        # method of that name is not the wrapper
        self.method_wrappers: dict[str, int] = {}
        # functions that request the URL given as their first argument: name -> HTTP method
        self.url_wrappers: dict[str, str] = {}
        # `axios.create({baseURL: 'https://api.stripe.com/v1', headers})`: name -> wrapper
        self.http_clients: dict[str, Wrapper] = {}
        self.imported: set[str] = set()
        self.namespaces: set[str] = set()  # the tree's modules imported whole
        self.packages: set[str] = set()  # names imported from packages (not the project)
        # local name -> (module specifier, exported name): constants are read by path
        self.import_from: dict[str, tuple[str, str]] = {}
        # class fields and `this.x = ...` (by field name, when the file binds it one way)
        self.fields: dict[str, ts.Node] = {}
        for imp in captures.get("import", []):
            src = imp.child_by_field_name("source")
            if src is not None and _string(src) not in ("stripe",):
                relative = _string(src).startswith((".", "@/", "~/", "/")) or (
                    ctx.modules is not None and ctx.modules.js_bare(_string(src)) is not None)
                for ident in _identifiers(imp):
                    self.imported.add(ident)
                    if not relative:
                        self.packages.add(ident)
                for ns in _descendants(imp, ("namespace_import",)) if relative else ():
                    # `import * as api from './stripe'`: `api.request(...)` is its function
                    self.namespaces |= set(_identifiers(ns))
                for spec in _descendants(imp, ("import_specifier",)):
                    orig = spec.child_by_field_name("name")
                    alias = spec.child_by_field_name("alias") or orig
                    if orig is not None and alias is not None:
                        self.import_from[_text(alias)] = (_string(src), _text(orig))
        self.consts: dict[str, ts.Node] = {}
        self.clients: dict[str, Client] = {}
        # HTTP clients made with headers (`axios.create({headers})`, `X.defaults.headers...`):
        # name -> header name -> value; full-URL calls on them send these (issue 25)
        self.client_headers: dict[str, dict[str, ts.Node]] = {}
        # names whose `stripeAccount` member the file assigns, by the function that assigns
        # it (its start byte, -1 at the top level): a name reused in another function is
        # other options (issue 25)
        self.account_options: dict[tuple[int, str], ts.Node] = {}
        # names bound to a project client or factory only count when imported or local
        for imported in sorted(self.imported):  # a set: its hash order is no order
            found = self.by_path(self.project.clients, imported) or self.project.clients.get(
                imported)
            if found is not None:
                acc, why = found
                self.clients[imported] = (acc, f"{imported} imported from the project: {why}")
        ambiguous: set[str] = set()
        for bind in captures.get("bind", []):
            name = (bind.child_by_field_name("name") or bind.child_by_field_name("left")
                    or bind.child_by_field_name("property"))
            value = bind.child_by_field_name("value") or bind.child_by_field_name("right")
            if name is None or value is None:
                continue
            value = _unwrap(value)
            client = self._client_of(value)
            if client is not None:
                for bound in _pattern_names(name):
                    # one name bound to clients of different accounts: cannot tell which one
                    old = self.clients.get(bound)
                    if old is not None and old[0] != client[0]:
                        self.clients[bound] = ("unknown", f"{bound} is bound to clients of "
                                               "different accounts in this file")
                    else:
                        self.clients[bound] = client
                continue
            owner = _account_option_owner(name)
            if owner is not None:  # `opts.stripeAccount = id`: options built by assignment
                self.account_options[(_scope(bind), owner)] = value
            header = _default_header(name)
            if header is not None:  # `http.defaults.headers.common.Authorization = ...`
                self.client_headers.setdefault(header[0], {})[header[1]] = value
            key = _bound_name(name)
            if key is None:
                continue
            if value.type in ("new_expression", "call_expression"):
                ctor = value.child_by_field_name("constructor") or value.child_by_field_name(
                    "function")
                if ctor is not None and _text(ctor) in self.packages:
                    self.packages.add(key)  # an object of a package's class
                if ctor is not None and _text(ctor).endswith(".create"):
                    http = self.http_client(value)
                    if http is not None:
                        self.http_clients[key] = http
                    cargs = _args(value)
                    cfg = self.props(cargs[0]) if cargs else None
                    hdrs = self.props(cfg["headers"]) if cfg and "headers" in cfg else None
                    if hdrs:
                        self.client_headers.setdefault(key, {}).update(
                            {h.lower(): v for h, v in hdrs.items()})
            if name.type == "identifier":
                if key in self.consts and _text(self.consts[key]) != _text(value):
                    ambiguous.add(key)
                self.consts[key] = value
            elif name.type in ("property_identifier", "private_property_identifier") or (
                name.type == "member_expression" and _text(name).startswith("this.")
            ):
                field = "." + key
                if field in self.fields and _text(self.fields[field]) != _text(value):
                    ambiguous.add(field)
                self.fields[field] = value
        for key in ambiguous:  # reassigned: not a constant we can trust
            self.consts.pop(key, None)
            self.fields.pop(key, None)
        self.param_facts: dict[tuple[str, int], Client] = {}
        self.wrapper_inner: set[int] = set()
        self.local_wrappers = self.find_wrappers()

    def _client_of(self, value: ts.Node) -> Client | None:
        """A client this expression builds or fetches: `new Stripe(key)`, `getStripe()`,
        `await getStripeClient()` (for `const {client} = ...` too)."""
        if value.type == "ternary_expression":  # `key ? new Stripe(key) : null`
            for side in ("consequence", "alternative"):
                branch = value.child_by_field_name(side)
                found = self._client_of(_unwrap(branch)) if branch is not None else None
                if found is not None:
                    return found
            return None
        if _constructs_client(value):
            return self._client_account(value)
        if value.type == "call_expression":
            fn = value.child_by_field_name("function")
            if fn is None:
                return None
            fname = _text(_unwrap(fn)).rsplit(".", 1)[-1]
            return self.factory_client(fname, value, fname in self.imported or "." in _text(fn))
        return None

    def factory_client(self, fname: str, call: ts.Node | None, reachable: bool) -> Client | None:
        """The client a call of the project's factory `fname` returns; a factory built from
        its parameter takes the account of the key this call passes."""
        local = self.local_factories().get(fname)
        base = local
        # by the path its import names first (two modules' factories of one name are not
        # confused), then by name
        found = self.by_path(self.project.factories, fname) or self.project.factories.get(fname)
        if base is None and reachable and found is not None:
            acc, why = found
            base = (acc, f"client from {fname}(): {why}")
        if base is None:
            return None
        idx = self._key_params.get(fname) if local is not None else (
            self.by_path(self.project.key_params, fname)
            if self.by_path(self.project.factories, fname) is not None
            else self.project.key_params.get(fname))
        if idx is not None and call is not None and call.type == "call_expression":
            args = _args(call)
            got = self.key_argument(_unwrap(args[idx])) if idx < len(args) else None
            if got is not None:
                return got[0], f"client from {fname}() built from the key passed here: {got[1]}"
        return base

    def by_path(self, facts: dict[str, _T], name: str) -> _T | None:
        """The project's fact for `name` keyed by the tree file its import names."""
        if name not in self.import_from or self.ctx.modules is None:
            return None
        spec, orig = self.import_from[name]
        if orig not in facts:  # each path-keyed fact has its name-keyed twin: cheap test
            return None
        path = self.ctx.modules.js_path(self.ctx.file, spec) or self.ctx.modules.js_bare(spec)
        return facts.get(f"mod:{path}:{orig}") if path is not None else None

    _factories_cache: dict[str, Client] | None = None
    _key_params: dict[str, int] = {}  # noqa: RUF012 (replaced per file by local_factories)

    def local_factories(self) -> dict[str, Client]:
        """Functions of this file that build a client and return it (or an object with it)."""
        if self._factories_cache is not None:
            return self._factories_cache
        out: dict[str, Client] = {}
        self._factories_cache = out  # guards against re-entry
        self._key_params = {}
        for fn in self.functions:
            name = _function_name(fn)
            if name is None:
                continue
            body = fn.text or b""
            inner = fn.child_by_field_name("body")
            # `(u) => new Stripe(u.token)`: an arrow function's expression body is returned
            returns = b"return" in body or (inner is not None and fn.type == "arrow_function"
                                            and inner.type != "statement_block")
            if not returns or not _BUILDS.search(body):
                continue  # cheap gate: no client can be built here
            accounts = []
            key_params: set[int | None] = set()
            params = _param_names(fn)
            for node in _descendants(fn, ("new_expression", "call_expression")):
                if _constructs_client(node):
                    cargs = _args(node)
                    key = _unwrap(cargs[0]) if cargs else None
                    key_params.add(params.index(_text(key)) if key is not None and (
                        key.type == "identifier" and _text(key) in params) else None)
                    accounts.append(self._client_account(node))
            if not accounts:
                continue
            row = fn.start_point[0] + 1
            if len(key_params) == 1 and (idx := next(iter(key_params))) is not None:
                # built from its parameter: each caller's key decides (not this file's facts,
                # which would change as the project learns about callers)
                self._key_params[name] = idx
                acc, why = key_account_why(params[idx])  # where no caller's key is seen
                out[name] = (acc, f"built in {name}() at {self.ctx.file}:{row} from its "
                                  f"parameter {idx + 1}: {why}")
                continue
            first = accounts[0]
            if all(a[0] == first[0] for a in accounts):
                out[name] = (first[0], f"built in {name}() at {self.ctx.file}:{row}: {first[1]}")
            else:
                out[name] = ("unknown", f"{name}() builds clients for different accounts")
        return out

    def find_wrappers(self) -> dict[str, Wrapper]:
        """Functions that send a path given as a parameter to the API host."""
        out: dict[str, Wrapper] = {}
        if b"api.stripe.com" not in self.source:
            return out
        for _ in range(_WRAPPER_ROUNDS):  # wrappers of wrappers (`get(path)` -> `request(...)`)
            before = len(out)
            for fn in self.functions:
                name = _function_name(fn)
                params = _param_names(fn)
                if name is None or not params or name in out:
                    continue
                self.scope_fn = fn  # `const url = `${API_BASE}${path}``: the function's locals
                try:
                    w = self._wrapper_of(fn, name, params, out)
                finally:
                    self.scope_fn = None
                if w is not None:
                    out[name] = w
                    if fn.type == "method_definition":  # reached as `this.name(...)` only
                        self.method_wrappers[name] = _class_start(fn)
            if len(out) == before:
                break
        return out

    def reached(self, call: ts.Node, found: dict[str, Wrapper]) -> tuple[str, Wrapper] | None:
        """The file's wrapper a call reaches: a function by its bare name, a method as
        `this.name(...)` in its own class (another object's `get` is not it)."""
        callee = call.child_by_field_name("function")
        segs = _chain(callee) if callee is not None else None
        w = found.get(segs[-1]) if segs else None
        if segs is None or w is None:
            return None
        name = segs[-1]
        if name in self.method_wrappers:
            if segs != ["this", name] or _class_start(call) != self.method_wrappers[name]:
                return None
        elif segs != [name]:
            return None
        return name, w

    def _sent(self, call: ts.Node, found: dict[str, Wrapper]) -> str | None:
        """The text of the URL a call requests, or of the path it gives a wrapper."""
        reached = self.reached(call, found)
        if reached is not None:
            args = _args(call)
            return _text(args[reached[1].path_index]) if len(args) > reached[1].path_index else None
        url = self._request_url(call)[2]
        return None if url is None else _text(url)

    def _inner(self, fn: ts.Node, name: str, params: list[str], call: ts.Node,
               found: dict[str, Wrapper]) -> Wrapper | None:
        """`fn` as a wrapper of the wrapper `call` reaches with `fn`'s own parameters."""
        reached = self.reached(call, found)
        if reached is None or reached[0] == name:
            return None
        w, args = reached[1], _args(call)
        path = wrapper_path(w.prefix, unmarked(w.path_pieces(
            [self.pieces(a, params=params) for a in args])))
        if path is None:
            return None
        method, method_index = w.method, None
        if w.method_index is not None:
            m = args[w.method_index] if len(args) > w.method_index else None
            method = self.string(m) if m is not None else None
            if method is None and (m is None or _bare_param(m) not in params):
                return None
            if method is None and m is not None:
                method_index = params.index(_bare_param(m))
        acc, why, key_from = w.account, w.reason, w.key_from
        if key_from is not None and key_from[0] == "arg":
            a = _unwrap(args[key_from[1]]) if len(args) > key_from[1] else None
            key_from = ("arg", params.index(_text(a))) if a is not None and (
                a.type == "identifier" and _text(a) in params) else None
            if a is not None and key_from is None and len(_text(a)) <= 100:
                acc, why = self.key_why(a)
        row = fn.start_point[0] + 1
        return Wrapper(path[0], path[1], method and method.upper(), method_index, acc, why,
                       f"{self.ctx.file}:{row}", key_from, path[2])

    def _request_url(self, call: ts.Node) -> tuple[list[ts.Node], dict[str, ts.Node] | None,
                                                   ts.Node | None]:
        """A call's arguments, its config object (`axios({method, url})`) and its URL."""
        args = _args(call)
        cfg = self.props(args[0]) if args else None
        return args, cfg, (cfg.get("url") if cfg else args[0]) if args else None

    def _wrapper_of(self, fn: ts.Node, name: str, params: list[str],
                    found: dict[str, Wrapper]) -> Wrapper | None:
        for call in _descendants(fn, ("call_expression",)):
            inner = self._inner(fn, name, params, call, found)
            if inner is not None:
                self.layered[name] = call
                return self._dispatched(fn, params, call, found, inner)
            args, cfg, url = self._request_url(call)
            if url is None:
                continue
            ps = self.pieces(url)
            callee = _text(call.child_by_field_name("function") or call)
            if len(ps) == 1 and ps[0] is None and _unwrap(url).type == "identifier" and (
                    params.index(_text(_unwrap(url))) == 0 if _text(_unwrap(url)) in params
                    else False):
                # `post(url)` around a request with a fixed method (issue 25): its call
                # sites that name the API host send that method
                verb = callee.rsplit(".")[-1]
                m = next((self.string(o["method"]) for o in (cfg, *(
                    self.props(a) for a in args[1:])) if o and "method" in o),
                    verb.upper() if verb.lower() in HTTP_VERBS else None)
                if m is not None:
                    self.url_wrappers[name] = m.upper()
                continue
            sym = unmarked(self.pieces(url, params=params))
            host = next((h for h in API_HOSTS if sym and isinstance(sym[0], str)
                         and sym[0].startswith(h)), None)
            path = wrapper_path("", [str(sym[0])[len(host):], *sym[1:]]) if host else None
            if path is None:
                continue
            prefix, idx, rest = path
            # the method: the request's options, else the callee's verb (`ctx.http.post`),
            # else the wrapper's name (`get(path)`), else GET
            verb = callee.rsplit(".")[-1].lower()
            method: str | None = verb.upper() if verb in HTTP_VERBS else (
                name.upper() if name.lower() in HTTP_VERBS else None)
            method_index = None
            opts = [o for o in (cfg, *(self.props(a) for a in args[1:])) if o]
            for o in opts:
                if "method" in o:
                    m = self.string(o["method"])
                    if m is not None:
                        method = m.upper()
                    elif _text(_unwrap(o["method"])) in params:
                        method_index = params.index(_text(_unwrap(o["method"])))
            if method is None and method_index is None and _dispatch_param(fn, params) is None:
                method = "GET"
            # a key that is the wrapper's parameter: each call site's key decides, before
            # the parameter's name (as for a client's key parameter)
            key_from = self._key_param(opts, params)
            given: Client = ("unknown", f"a key given as argument {key_from[1] + 1}") if (
                key_from is not None) else self._wrapper_account(fn)
            acc, why = given
            row = fn.start_point[0] + 1
            return self._dispatched(fn, params, call, found, Wrapper(
                prefix, idx, method, method_index, acc, why, f"{self.ctx.file}:{row}",
                key_from, rest))
        return None

    def _dispatched(self, fn: ts.Node, params: list[str], call: ts.Node,
                    found: dict[str, Wrapper], w: Wrapper) -> Wrapper:
        """`w`, its method a parameter when `fn` sends one request per verb chosen by it;
        its request (and the other verbs') marked as the wrapper's own, not call sites."""
        self.wrapper_inner.add(call.id)
        if w.method_index is None and (d := _dispatch_param(fn, params)) is not None and (
                d != w.path_index):
            sent = self._sent(call, found)
            for other in _descendants(fn, ("call_expression",)):
                if self._sent(other, found) == sent:
                    self.wrapper_inner.add(other.id)
            return replace(w, method=None, method_index=d)
        return w

    def _key_param(self, opts: list[dict[str, ts.Node]], params: list[str]
                   ) -> tuple[str, int] | None:
        """("arg", i) when the request's `Authorization` header is parameter i (`Bearer
        ${token}`, `token`): each call site's key decides (`send('/x', user.accessToken)`)."""
        for o in opts:
            hdrs = self.props(o["headers"]) if "headers" in o else None
            auth = next((v for k, v in (hdrs or {}).items() if k.lower() == "authorization"),
                        None)
            sym = unmarked(self.pieces(auth, params=params)) if auth is not None else []
            named = [p for p in sym if isinstance(p, int)]
            if len(named) == 1 and None not in sym:
                return "arg", named[0]
        return None

    def http_client(self, value: ts.Node) -> Wrapper | None:
        """`axios.create({baseURL: <API host>..., headers: {Authorization: ...}})`."""
        args = _args(value)
        cfg = self.props(args[0]) if args else None
        base = self.pieces(cfg["baseURL"]) if cfg and "baseURL" in cfg else None
        if not base or base[0] is None or len(base) > 1:
            return None
        host = next((h for h in API_HOSTS if base[0].startswith(h)), None)
        if host is None:
            return None
        acc: Account = "unknown"
        why = "an HTTP client whose key the scan cannot trace"
        headers = self.props(cfg["headers"]) if cfg and "headers" in cfg else None
        if headers and ("Stripe-Account" in headers or "stripe-account" in headers):
            acc, why = "connected", "a Stripe-Account header"
        elif headers:
            auth = headers.get("Authorization") or headers.get("authorization")
            if auth is not None:
                acc, why = self.key_why(auth)
        row = value.start_point[0] + 1
        return Wrapper(base[0][len(host):].rstrip("/"), 0, None, None, acc,
                       f"the HTTP client built at {self.ctx.file}:{row} for the API host: {why}",
                       f"{self.ctx.file}:{row}")

    def userinfo(self, url: ts.Node) -> str | None:
        """The run-time value written as the URL's user name (`'https://' + key + ':@'`)."""
        parts: list[str | ts.Node] = []

        def flat(n: ts.Node, d: int) -> None:
            n = self.resolve(n)
            if n.type == "string":
                parts.append(_string(n))
            elif n.type == "template_string":
                for c in n.named_children:
                    if c.type == "template_substitution" and c.named_child_count:
                        parts.append(c.named_children[0])
                    elif c.type != "template_substitution":
                        parts.append(_text(c))
            elif n.type == "binary_expression" and d < 16 and (
                    _text(n.child_by_field_name("operator") or n) == "+"):
                for side in ("left", "right"):
                    child = n.child_by_field_name(side)
                    if child is not None:
                        flat(child, d + 1)
            else:
                parts.append(n)

        flat(url, 0)
        for i in range(1, len(parts) - 1):
            before, value, after = parts[i - 1], parts[i], parts[i + 1]
            if isinstance(before, str) and before.endswith("://") and isinstance(
                    value, ts.Node) and isinstance(after, str) and after.startswith((":", "@")):
                return _text(value)
        return None

    def _wrapper_account(self, fn: ts.Node) -> Client:
        scope: ts.Node | None = fn
        while scope is not None and scope.type not in ("class_declaration", "class", "program"):
            scope = scope.parent
        for node in (fn, scope):
            if node is None:
                continue
            body = _text(node)
            if "stripeAccount" in body or re.search(r"stripe-account", body, re.I):
                return "connected", "the wrapper sends a Stripe-Account header"
            auth = re.search(r"(?i)(authorization|bearer|auth)[^\n,;]{0,120}", body)
            acc, why = key_account_why(auth.group(0) if auth else None)
            if acc != "unknown":
                return acc, f"the wrapper authenticates with {why}"
        return "unknown", "the wrapper's key is of unknown origin"

    # --- values -------------------------------------------------------------

    def local_values(self, fn: ts.Node | None) -> dict[str, ts.Node]:
        """The names `fn` declares once and never assigns again (`const url = ...`)."""
        if fn is None:
            return {}
        found = self.locals_cache.get(fn.id)
        if found is None:
            found = self.locals_cache[fn.id] = _fn_locals(fn)
        return found

    def resolve(self, node: ts.Node, depth: int = 0) -> ts.Node:
        node = _unwrap(node)
        seen: set[str] = set()
        scoped = self.local_values(self.scope_fn)
        # in a request being read, `{url, headers}` names its locals as `url` would
        names = ("identifier", "shorthand_property_identifier") if scoped else ("identifier",)
        while node.type in names and len(seen) < 8:
            name = _text(node)
            target = scoped.get(name) or self.consts.get(name)
            # `ctx = { ...ctx, a: 1 }`: a name whose value mentions itself is not followed
            if target is None or name in seen or _mentions(target, name):
                break
            seen.add(name)
            node = _unwrap(target)
        return node

    def pieces(self, node: ts.Node, depth: int = 0, params: Sequence[str] = ()) -> list[Piece]:
        """The literal and run-time pieces of a string expression; with `params`, each whole
        use of one of them is its `param_mark` (a wrapper's URL)."""
        if params and _unwrap(node).type in ("identifier", "shorthand_property_identifier") and (
                _text(_unwrap(node)) in params):
            return [param_mark(list(params).index(_text(_unwrap(node))))]
        node = self.resolve(node)
        if node.type == "string":
            return [_string(node)]
        if node.type == "template_string":
            out: list[Piece] = []
            for child in node.named_children:
                if child.type == "string_fragment":
                    out.append(_text(child))
                elif child.type == "template_substitution":
                    inner = child.named_children[0] if child.named_child_count else None
                    out.extend(self.pieces(inner, depth + 1, params) if inner and depth < 8
                               else [None])
                elif child.type == "escape_sequence":
                    out.append(_text(child)[1:])
            return out
        if node.type == "member_expression" and depth < 8:
            # `${this.baseUrl}${path}`: a field the class sets one way only (issue 25: a
            # wrapper class whose base URL is the API host)
            obj, prop = node.child_by_field_name("object"), node.child_by_field_name("property")
            field = self.fields.get("." + _text(prop).lstrip("#")) if (
                obj is not None and obj.type == "this" and prop is not None) else None
            if field is not None:
                return self.pieces(field, depth + 1, params)
        if node.type == "binary_expression" and depth < 16:
            op = node.child_by_field_name("operator")
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if op is not None and _text(op) == "+" and left is not None and right is not None:
                return (self.pieces(left, depth + 1, params)
                        + self.pieces(right, depth + 1, params))
        return [None]

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def strings(self, node: ts.Node, depth: int = 0) -> list[str] | None:
        node = self.resolve(node)
        if node.type == "member_expression" and depth < 8:
            # `this.expand`, `Service.EXPAND`: a class field the file sets one way only
            prop = node.child_by_field_name("property")
            field = self.fields.get("." + _text(prop)) if prop is not None else None
            if field is not None:
                return self.strings(field, depth + 1)
        if node.type == "identifier" and _text(node) in self.import_from:
            spec, name = self.import_from[_text(node)]
            modules = self.ctx.modules
            found = modules.js_list(self.ctx.file, spec, name) if modules is not None else None
            return list(found) if found is not None else None
        if node.type != "array":
            return None
        out: list[str] = []
        for el in node.named_children:
            if el.type == "comment":
                continue
            if el.type == "spread_element" and el.named_child_count:
                inner = self.strings(el.named_children[0], depth + 1)
                if inner is None:
                    return None
                out.extend(inner)
                continue
            s = self.string(el)
            if s is None:
                return None
            out.append(s)
        return out

    def props(self, node: ts.Node, depth: int = 0) -> dict[str, ts.Node] | None:
        node = self.resolve(node)
        if node.type == "member_expression" and depth <= 8:
            # `headers: this.headers`: an object field the class sets one way only
            obj, prop = node.child_by_field_name("object"), node.child_by_field_name("property")
            field = self.fields.get("." + _text(prop).lstrip("#")) if (
                obj is not None and obj.type == "this" and prop is not None) else None
            return self.props(field, depth + 1) if field is not None else None
        if node.type == "ternary_expression" and depth <= 8:  # `id ? {stripeAccount: id} : {}`
            merged: dict[str, ts.Node] = {}
            for side in ("consequence", "alternative"):
                branch = node.child_by_field_name(side)
                merged.update((self.props(branch, depth + 1) or {}) if branch else {})
            return merged or None
        if node.type == "call_expression" and depth <= 8 and not _args(node):
            # `stripe.balance.retrieve(requestOptions())`, `this.header()`: the options a
            # helper of the file without parameters builds (issue 25)
            # read once per helper (a helper returning helpers many times over cannot
            # make the work grow with the product of their returns); {} while being read
            rets = self.returns(node)
            key = tuple(r.start_byte for r in rets)
            if key not in self._helper_props:
                self._helper_props[key] = {}
                found: dict[str, ts.Node] = {}
                for value in rets:
                    found.update(self.props(value, depth + 1) or {})
                self._helper_props[key] = found
            return self._helper_props[key] or None
        if node.type != "object" or depth > 8:
            return None
        out: dict[str, ts.Node] = {}
        for p in node.named_children:
            if p.type == "pair":
                k, v = p.child_by_field_name("key"), p.child_by_field_name("value")
                if k is not None and v is not None:
                    out[_string(k) if k.type == "string" else _text(k)] = v
            elif p.type == "shorthand_property_identifier":
                out[_text(p)] = p
            elif p.type == "spread_element" and p.named_child_count:
                out.update(self.props(p.named_children[0], depth + 1) or {})
        return out

    _by_name: dict[str, list[ts.Node]] | None = None
    _helper_props: dict[tuple[int, ...], dict[str, ts.Node]]  # set in __init__
    _binds: dict[int, dict[str, list[tuple[ts.Node, ts.Node | None]]]] | None = None

    def _bindings(self, fn: ts.Node) -> dict[str, list[tuple[ts.Node, ts.Node | None]]]:
        """The names a function binds (`x = v`, `const {x} = v`) -> (left, value), walked
        once per function (a function of many calls is not walked at each one). A name
        bound in any other way (`for (x of xs)`, `[x] = v`, `x += v`, `catch (x)`, a
        parameter of a function inside) gets the value None: what it holds is not followed."""
        if self._binds is None:
            self._binds = {}
        got = self._binds.get(fn.start_byte)
        if got is not None:
            return got
        got = {}
        body = fn.child_by_field_name("body")
        for bind in _descendants(body, ("variable_declarator", "assignment_expression",
                                        *_OTHER_BINDS, *_FUNCTION_TYPES)) \
                if body is not None else ():
            if bind.type in _FUNCTION_TYPES or bind.type in _OTHER_BINDS:
                written = (bind.child_by_field_name("parameters")
                           or bind.child_by_field_name("parameter")
                           or bind.child_by_field_name("left")
                           or bind.child_by_field_name("argument"))
                for n in _descendants(written, ("identifier",
                                                "shorthand_property_identifier_pattern")) \
                        if written is not None else ():
                    got.setdefault(_text(n), []).append((n, None))
                continue
            left = bind.child_by_field_name("name") or bind.child_by_field_name("left")
            value = bind.child_by_field_name("value") or bind.child_by_field_name("right")
            if left is None or value is None:
                continue
            if left.type not in ("identifier", "object_pattern", "member_expression",
                                 "subscript_expression"):
                value = None  # `[x] = v`: which element, not followed
            for name in ([_text(left)] if left.type == "identifier" else
                         _pattern_names(left) if left.type in ("object_pattern",
                                                               "array_pattern") else []):
                got.setdefault(name, []).append((left, value))
        self._binds[fn.start_byte] = got
        return got

    def fixed_value(self, node: ts.Node) -> str | None:
        """Why an account value names one fixed account of the operator (`fixed_account`),
        else None. A name that a function around it binds or takes as a parameter is that
        function's, followed by `common.fixed_origin`: not another function's constant of
        the same name (the file-wide `consts` of `resolve`)."""
        inner = _unwrap(node)
        fn = _enclosing_function(inner) if inner.type == "identifier" else None
        for _ in range(16):
            if fn is None:
                break
            if _text(inner) in _param_names(fn) or _text(inner) in self._bindings(fn):
                return self._fixed_origin(node)
            fn = _enclosing_function(fn)
        fixed = fixed_account(_text(self.resolve(node)))
        if fixed is not None and self.filled_with_configuration(node):
            return fixed
        return self._fixed_origin(node)

    def _fixed_origin(self, node: ts.Node) -> str | None:
        return fixed_origin(node, self._origin, lambda n: _text(_unwrap(n)),
                            self.filled_with_configuration)

    def filled_with_configuration(self, node: ts.Node) -> bool:
        """Whether the object a configuration read starts from is configuration
        (`config.stripe.accountId`): a parameter or a module's name is (the name says so, as
        the key rules read it); a local of a function around it only when every value it is
        given is read from configuration or loaded at start-up (`config_source`), not a
        record (`const config = await Settings.findOne({ shop })`). True when the value
        reads no configuration."""
        root = _unwrap(node)
        if not config_read(_text(root)):
            return True
        for _ in range(32):
            nxt = root.child_by_field_name("function" if root.type == "call_expression"
                                           else "object")
            if root.type not in ("member_expression", "subscript_expression",
                                 "call_expression") or nxt is None:
                break
            root = _unwrap(nxt)
        if root.type != "identifier":
            return True
        name = _text(root)
        fn = _enclosing_function(root)
        for _ in range(16):
            if fn is None or name in _param_names(fn):
                return True
            values = self._bindings(fn).get(name)
            if values is not None:
                return all(v is not None and config_source(_text(v)) for _, v in values)
            fn = _enclosing_function(fn)
        return True

    def _origin(self, node: ts.Node) -> OriginRead[ts.Node]:
        """How `common.fixed_origin` reads one value (issue 25): `null`/`undefined` name no
        account; `a || b`, `a ?? b` and ternaries each side; a call of the file's function
        the values it returns (its text is not judged); a local of the function that uses
        it every value it is given, destructured or not (a parameter is data)."""
        node = _unwrap(node)
        t = node.type
        if t in ("null", "undefined"):
            return "null", ()
        op = node.child_by_field_name("operator") if t == "binary_expression" else None
        sides = (("left", "right") if op is not None and _text(op) in ("||", "??") else
                 ("consequence", "alternative") if t == "ternary_expression" else ())
        if sides:
            return "values", [c for c in map(node.child_by_field_name, sides) if c is not None]
        if t in ("string", "template_string", "member_expression", "subscript_expression"):
            return "leaf", ()
        if t == "call_expression":
            fn = node.child_by_field_name("function")
            if fn is not None and _text(fn) == "String" and _args(node):  # `String(map[t])`
                return "values", _args(node)[:1]
            return "values", self.returns(node)
        if t in ("identifier", "shorthand_property_identifier"):
            return "values", self._local_values(node)
        return "values", ()

    def _local_values(self, node: ts.Node) -> list[ts.Node]:
        """The values a local name of the function around `node` is given (`const acct =
        ...`, `acct = ...`, `const { acct } = await ctx()`: that field of each object the
        function returns); none when one is not known: a parameter is data."""
        name = _text(node)
        fn = _enclosing_function(node)
        if fn is None or name in _param_names(fn):
            return []
        found: list[ts.Node] = []
        for left, value in self._bindings(fn).get(name, []):
            if value is None:
                return []
            if left.type == "identifier":
                found.append(value)
            elif left.type == "object_pattern":
                # `const { stripeAccount } = await getContext(t)`: that field of each object
                # the function returns
                key = name
                for p in left.named_children:
                    v = p.child_by_field_name("value")
                    k = p.child_by_field_name("key")
                    if p.type == "pair_pattern" and v is not None and k is not None and (
                            _text(v) == name):
                        key = _text(k)
                inner = _unwrap(value)
                rets = self.returns(inner) if inner.type == "call_expression" else [inner]
                for r in rets:
                    field = (self.props(r) or {}).get(key)
                    if field is None:
                        return []
                    found.append(field)
        return found

    def key_why(self, node: ts.Node | None) -> tuple[Account, str]:
        """Whose account a key expression acts on (`key_account_why`). A name that is "own"
        only by its name (`apiKey`, also inside `` `Bearer ${apiKey}` ``) is followed where
        the function around it binds it (`const k = v`, `const { k } = v`, the file's own
        functions' returns): its values decide, a tenant's record is connected, a call the
        scan cannot read is unknown (issue 25)."""
        if node is None:
            return key_account_why(None)
        text = _text(node)
        acc, why = self._record_key(node, key_account_why(text))
        inner = _unwrap(node)
        subs = [c for c in inner.named_children if c.type == "template_substitution"] if (
            inner.type == "template_string") else []
        if len(subs) == 1 and subs[0].named_children:
            inner = _unwrap(subs[0].named_children[0])
        if acc != "own" or inner.type != "identifier" or not own_by_name(_text(inner)):
            return acc, why
        fn = _enclosing_function(inner)
        name = _text(inner)
        if fn is None or name in _param_names(fn) or name not in self._bindings(fn):
            return acc, why  # a parameter or a module's name: not bound here, its name decides
        return bound_key(name, self._key_values(inner, [0], 0))

    def _key_values(self, node: ts.Node, steps: list[int], depth: int,
                    field: str | None = None) -> list[tuple[Account, str]]:
        """The accounts of the keys `node` can hold (its property `field`, when it is
        destructured `const { field } = node`). At most 64 values in one question, 8 deep."""
        node = _unwrap(node)
        steps[0] += 1
        if depth > 8 or steps[0] > 64:
            return [("unknown", "a key bound through more values than the scan follows")]
        t = _text(node)
        if node.type in ("null", "undefined"):
            return []
        op = node.child_by_field_name("operator") if node.type == "binary_expression" else None
        either = op is not None and _text(op) in ("||", "??")
        sides = ((node.child_by_field_name("left"), node.child_by_field_name("right"))
                 if either else (
            node.child_by_field_name("consequence"), node.child_by_field_name("alternative"))
            if node.type == "ternary_expression" else ())
        if sides:
            found = [f for side in sides if side is not None
                     for f in self._key_values(side, steps, depth + 1, field)]
            # `a || b`: whichever is set (`fallback_key`); a ternary: either value
            return [fallback_key(found, t[:60])] if either and found else found
        if field is not None and node.type == "object":
            value = (self.props(node) or {}).get(field)
            return [("unknown", f"a key ({field}) the object {t[:40]} does not name")] if (
                value is None) else self._key_values(value, steps, depth + 1)
        if node.type == "call_expression":
            rets = self.returns(node)
            if not rets:
                return [self._record_key(node, unread_call_key(t)) if field is None else
                        _field_of(t, field, "a call the scan cannot read")]
            return [f for r in rets for f in self._key_values(r, steps, depth + 1, field)]
        fn = _enclosing_function(node) if node.type == "identifier" else None
        if fn is not None and t not in _param_names(fn) and t in self._bindings(fn):
            bound: list[tuple[Account, str]] = []
            for left, value in self._bindings(fn)[t]:
                if value is None or (field is not None and left.type != "identifier"):
                    return [("unknown", f"a key ({t}) bound in a way the scan does not follow")]
                bound += self._key_values(value, steps, depth + 1, field if (
                    left.type == "identifier") else self._pattern_key(left, t))
            return bound
        if field is not None:
            return [_field_of(t, field, "")]
        return [self._record_key(node, key_account_why(t))]

    def _record_key(self, node: ts.Node, found: Client) -> Client:
        """`found` (the key text's own reading) when it is known; else the record the key is
        read from, followed to the one way its function binds it (issue 25): an item of a
        `for (const c of connections)` loop (read as `connections[i].apiKey`) or a row loaded
        by id (`const shop = await Shop.findById(id)`, `row_key`). A record bound any other
        way, or more than once, or a parameter, says nothing."""
        if found[0] != "unknown" or not KEY_NAMED.search(_text(node)):
            return found  # a field that names no credential (`c.id`): not read as a key
        root = _unwrap(node)
        while root.type in ("member_expression", "subscript_expression", "call_expression"):
            nxt = root.child_by_field_name(
                "function" if root.type == "call_expression" else "object")
            if nxt is None:
                return found
            root = _unwrap(nxt)
        fn = _enclosing_function(root)
        name = _text(root)
        if root.type != "identifier" or root == _unwrap(node) or fn is None or (
                name in _param_names(fn)):
            return found
        binds = self._bindings(fn).get(name, [])
        if len(binds) != 1:
            return found
        left, value = binds[0]
        if value is not None:
            return row_key(name, _text(value)) or found if left.type == "identifier" else found
        loop = left.parent
        while loop is not None and loop.type not in ("for_in_statement", *_FUNCTION_TYPES):
            loop = loop.parent
        over = loop.child_by_field_name("right") if loop is not None and (
            loop.type == "for_in_statement") else None
        op = loop.child_by_field_name("operator") if loop is not None else None
        if over is None or op is None or _text(op) != "of" or over.type not in (
                "identifier", "member_expression") or left.type != "identifier":
            return found  # `for (k in obj)` walks keys, not records
        item = f"{_text(over)}[i]{_text(node)[len(name):]}"
        got = key_account_why(item)
        return got if got[0] in ("installing", "connected") else found

    @staticmethod
    def _pattern_key(pattern: ts.Node, name: str) -> str:
        """The property `const { key: name } = v` (or `{ name }`) reads into `name`."""
        for p in pattern.named_children:
            v = p.child_by_field_name("value")
            k = p.child_by_field_name("key")
            if p.type == "pair_pattern" and v is not None and k is not None and (
                    _text(v) == name):
                return _text(k)
        return name

    def returns(self, call: ts.Node) -> list[ts.Node]:
        """The values the file's function that `call` names returns (`fn(...)`, `await
        fn(...)`, `this.fn(...)` in its own class): its `return` values, not those of the
        functions inside it, or an arrow function's expression body. Empty when the file
        defines that name more than once, or not at all."""
        if self._by_name is None:
            self._by_name = {}
            for fn in self.functions:
                name = _function_name(fn)
                if name is not None:
                    self._by_name.setdefault(name, []).append(fn)
        callee = call.child_by_field_name("function")
        chain = _chain(callee) if callee is not None else None
        if chain is None or not (len(chain) == 1 or (len(chain) == 2 and chain[0] == "this")):
            return []
        fns = self._by_name.get(chain[-1], [])
        if len(fns) != 1 or (len(chain) == 2) != (fns[0].type == "method_definition") or (
                len(chain) == 2 and _class_start(fns[0]) != _class_start(call)):
            return []
        body = fns[0].child_by_field_name("body")
        if body is None:
            return []
        if body.type != "statement_block":
            return [body]
        out = []
        for ret in _descendants(body, ("return_statement",)):
            if _enclosing_function(ret) == fns[0] and ret.named_child_count:
                out.append(ret.named_children[0])
        return out

    def _client_account(self, construct: ts.Node) -> Client:
        row = construct.start_point[0] + 1
        where = f"client built at {self.ctx.file}:{row}"
        if self.ctx.ui_extension:
            return "installing", f"{where} in a UI extension: the installing account"
        args = _args(construct)
        for a in args[1:]:
            if _connected_options(self, a)[0]:
                return "connected", f"{where} with a stripeAccount option"
        key_arg = _unwrap(args[0]) if args else None
        if key_arg is not None and key_arg.type == "identifier":
            # the key is a parameter: what the project's call sites pass decides, before its
            # name does (`apiKey` that callers fill with an OAuth access token)
            passed = self.param_client(construct, _text(key_arg))
            if passed is not None and passed[0] is not None:
                return passed[0], f"{where} from {passed[1]}"
        key = self.resolve(args[0]) if args else None
        acc, why = self.key_why(args[0] if args else None)
        # a name that says nothing (`key`) is read through the file's constants; one that
        # `key_why` followed to an unknown value stays unknown
        if acc == "unknown" and key is not None and key is not args[0] and key_account_why(
                _text(args[0]))[0] == "unknown":
            acc, why = key_account_why(_text(key))
        return acc, f"{where} from {why}"

    # --- calls --------------------------------------------------------------

    def run(self) -> FileFindings:
        for new in self.news:  # `new Billing(client)`: the client reaches Billing's constructor
            ctor = new.child_by_field_name("constructor")
            if ctor is not None and new.child_by_field_name("arguments") is not None:
                self.note_client_arguments(_text(ctor).rsplit(".", 1)[-1], _args(new))
        failed = 0
        for call in self.calls:
            try:
                self.call(call)
            except RecursionError:
                failed += 1
        if failed:
            self.out.partial = f"{failed} call(s) too deeply nested to analyse"
        for name, req in self.layered.items():
            if name not in self.wrappers_called:
                self.out.unresolved.append(Unresolved(
                    *self.where(req), _text(req.child_by_field_name("function") or req),
                    UNCALLED_WRAPPER))
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
        if self.out.events:
            self.scopes()
        return self.out

    def scopes(self) -> None:
        for fn in self.functions:
            name = _function_name(fn) or "<anonymous>"
            self.out.scopes.append(Scope(name, fn.start_point[0] + 1, fn.end_point[0] + 1))
        for call in self.calls:
            callee = call.child_by_field_name("function")
            segs = _chain(callee) if callee is not None else None
            if segs and (len(segs) == 1 or segs[0] == "this"):
                self.out.local_calls.append((call.start_point[0] + 1, segs[-1]))
        self.out.source = self.source  # `event.account` lines: read only if a handler asks

    def call(self, node: ts.Node) -> None:
        callee = node.child_by_field_name("function")
        if callee is None:
            return
        args = _args(node)
        segs = _chain(callee)
        if segs:
            self.note_client_arguments(segs[-1], args)
        if segs is not None and len(segs) >= 2:
            for i, seg in enumerate(segs[:-1]):
                client = self.clients.get(seg)
                if client is None and i == 1 and segs[0] == "this":
                    field = self.field_client(node, seg)
                    if field is not None:
                        client = field if field[0] is not None else None  # type: ignore[assignment]
                if client is None and i == 0 and seg == "this" and len(segs) >= 3:
                    client = self.subclass_client(node)
                if i == 0 and seg != "this":
                    param = self.param_client(node, seg)
                    if param is not None:
                        client = param if param[0] is not None else None  # type: ignore[assignment]
                if client is None and i == 0 and seg.startswith("new "):
                    client = self._client_of(_base(callee))
                    if client is None:
                        break  # an object of some other class
                elif client is None and seg.endswith("()"):
                    inner = _base(callee) if i == 0 else None
                    client = self.factory_client(seg[:-2], inner, seg[:-2] in self.imported)
                known = client is not None
                if known or (_CLIENT_NAME.search(seg) and seg != DYNAMIC):
                    if self.sdk_call(node, segs[i + 1:], client, known, args):
                        return
                    break
        if segs and self.wrapper_call(node, segs, args):
            return
        root = segs[0].removeprefix("new ").removesuffix("()") if segs else ""
        if segs and root in self.packages and not self.ctx.ui_extension:
            for a in args:
                a = _unwrap(a)
                value = a.type in ("identifier", "member_expression")
                if credential_escape(segs, _text(a), value) is not None:
                    row = node.start_point[0] + 1
                    self.out.escapes.append(Escape(self.ctx.file, row, ".".join(segs), _text(a)))
                    break
        self.http_call(node, segs, args)

    def subclass_client(self, node: ts.Node) -> Client | None:
        """`class Pay extends Stripe { ... this.payouts.create(...) }`: `this` is a client of
        the key the constructor hands to `super(key)` (issue 25); None outside such a class."""
        cls = node.parent
        while cls is not None and cls.type not in ("class_declaration", "class"):
            cls = cls.parent
        heritage = next((c for c in cls.named_children if c.type == "class_heritage"),
                        None) if cls is not None else None
        if cls is None or heritage is None:
            return None
        # JS gives the heritage the parent's expression, TS an `extends_clause` around it
        parent = heritage.named_children[0] if heritage.named_child_count else None
        if parent is not None and parent.type == "extends_clause" and parent.named_child_count:
            parent = parent.named_children[0]
        name = _text(parent) if parent is not None else ""
        if name != "Stripe" and not name.endswith(".Stripe"):
            return None
        known = self._subclasses.get(cls.start_byte)  # the class is read once, not at each call
        if known is not None:
            return known
        got: Client = "unknown", (f"this, a subclass of {name} built outside the class: whose key, "
                          "the scan cannot tell")
        for call in _descendants(cls, ("call_expression",)):
            fn = call.child_by_field_name("function")
            if fn is not None and fn.type == "super":
                acc, why = self._client_account(call)
                got = acc, f"this, a subclass of {name}: {why}"
                break
        self._subclasses[cls.start_byte] = got
        return got

    def param_client(self, node: ts.Node, name: str) -> tuple[Account | None, str] | None:
        """If `name` is a parameter of the function around `node`: the client the project's
        call sites pass there ((None, why) when none is known); None if not a parameter."""
        fn = _enclosing_function(node)
        if fn is None:
            return None
        params = _param_names(fn)
        if name not in params:
            return None
        fname = _function_name(fn) or ""
        # read again once the project-wide pass knows callers; have the callers read
        self.out.imports |= {fname, f"{self.ctx.file}:{fname}"}
        self.wanted.add(fname)
        passed = self.project.param(self.ctx.file, fname, params.index(name))
        if passed is None:
            return None, ""
        acc, why = passed
        return acc, f"{name} is parameter {params.index(name) + 1} of {fname}(), {why}"

    def field_client(self, node: ts.Node, field: str) -> tuple[Account | None, str] | None:
        """`this.<field>` set from a constructor parameter (`constructor(private stripe:
        Stripe)`, `this.client = client`): the client the project's `new Class(...)` pass
        there ((None, why) when none is known); None if the field is not set that way."""
        cls: ts.Node | None = node.parent
        while cls is not None and cls.type not in ("class_declaration", "class"):
            cls = cls.parent
        name_node = cls.child_by_field_name("name") if cls is not None else None
        body = cls.child_by_field_name("body") if cls is not None else None
        if name_node is None or body is None:
            return None
        ctor = next((m for m in body.named_children if m.type == "method_definition" and (
            _text(m.child_by_field_name("name") or m) == "constructor")), None)
        if ctor is None:
            return None
        params = _param_names(ctor)
        idx: int | None = None
        plist = ctor.child_by_field_name("parameters")
        for i, p in enumerate(plist.named_children if plist is not None else []):
            if i < len(params) and params[i] == field and any(
                c.type in ("accessibility_modifier", "readonly") for c in p.children
            ):
                idx = i
        if idx is None:
            for a in _descendants(ctor, ("assignment_expression",)):
                left, right = a.child_by_field_name("left"), a.child_by_field_name("right")
                if left is not None and right is not None and _text(left) == f"this.{field}" \
                        and _text(right) in params:
                    idx = params.index(_text(right))
        if idx is None:
            return None
        cname = _text(name_node)
        # read again once the project-wide pass knows callers; have the callers read
        self.out.imports |= {cname, f"{self.ctx.file}:{cname}"}
        self.wanted.add(cname)
        passed = self.project.param(self.ctx.file, cname, idx)
        if passed is None:
            return None, ""
        return passed[0], (f"this.{field} (set from {cname}() argument {idx + 1}), "
                           f"{passed[1]}")

    def callee_key(self, fname: str) -> str:
        """`path:name` when the import of `fname` resolves to a file of the tree (imports by
        path: two modules' functions of one name are not confused), `file:name` for a
        function of this file, else the bare name."""
        if fname in self.import_from:
            spec, orig = self.import_from[fname]
            path = self.ctx.modules.js_path(self.ctx.file, spec) if self.ctx.modules else None
            return f"{path}:{orig}" if path is not None else fname
        if fname not in self.imported and fname in self.local_names():
            return f"{self.ctx.file}:{fname}"
        return fname

    _local_names: set[str] | None = None

    def local_names(self) -> set[str]:
        """Functions and classes this file defines (by name)."""
        if self._local_names is None:
            names = {_function_name(fn) or "" for fn in self.functions}
            for top in self.tree.root_node.named_children:  # top-level classes (cheap)
                decl = top.named_children[0] if top.type == "export_statement" and (
                    top.named_child_count) else top
                if decl.type == "class_declaration" and (
                    n := decl.child_by_field_name("name")
                ) is not None:
                    names.add(_text(n))
            self._local_names = names
        return self._local_names

    def key_argument(self, a: ts.Node) -> Client | None:
        """An argument that is an API key whose account its text tells (`tokens.access_token`,
        `process.env.STRIPE_SECRET_KEY`, a pasted `sk_` key); not a parameter of the caller
        (its own callers decide that), not any other literal."""
        text = _text(a)
        if len(text) > 100 or a.type in ("object", "array", "arrow_function", "number"):
            return None
        if a.type in ("string", "template_string") and not re.match(r"['\"`][sr]k_", text):
            return None
        if a.type == "identifier":
            fn = _enclosing_function(a)
            if fn is not None and text in _param_names(fn):
                return None
        acc, why = self.key_why(a)
        return None if acc == "unknown" else (acc, f"an API key argument: {why}")

    def note_client_arguments(self, fname: str, args: list[ts.Node]) -> None:
        """`handler(stripe, ...)`: tell the project which client reaches which parameter."""
        for idx, a in enumerate(args):
            a = _unwrap(a)
            client: Client | None = None
            if a.type == "identifier" and _text(a) in self.clients:
                client = self.clients[_text(a)]
            elif a.type == "member_expression" and a.child_by_field_name("object") is not None:
                prop = a.child_by_field_name("property")
                if prop is not None and _text(a).startswith("this.") and _text(prop) in (
                    self.clients
                ):
                    client = self.clients[_text(prop)]
            elif a.type in ("call_expression", "new_expression"):
                client = self._client_of(a)
            elif a.type == "identifier" and FORWARDED.search(_text(a)):
                # a client parameter handed on (`outer(client)` -> `inner(client)`): what
                # reaches this function's parameter reaches the callee's (issue 25)
                got = self.param_client(a, _text(a))
                if got is not None and got[0] is not None:
                    client = (got[0], got[1])
            if client is None:
                client = self.key_argument(a)
            if client is not None:
                row = a.start_point[0] + 1
                key = (self.callee_key(fname), idx)
                acc, why = client
                fact = (acc, f"passed at {self.ctx.file}:{row}: {why}")
                old = self.param_facts.get(key)
                if old is not None and old[0] != acc:
                    fact = ("unknown", f"{fname}() is passed clients of different accounts")
                self.param_facts[key] = fact

    def wrapper_call(self, node: ts.Node, segs: list[str], args: list[ts.Node]) -> bool:
        if node.id in self.wrapper_inner:
            return True  # a wrapper's own request (of another wrapper): its call sites count
        name = segs[-1]
        found = self.reached(node, self.local_wrappers)
        w = found[1] if found is not None else None
        if found is not None:
            self.wrappers_called.add(name)
        owner = segs[-2] if len(segs) == 2 or (len(segs) == 3 and segs[0] == "this") else ""
        if w is None and owner in self.http_clients and name.lower() in HTTP_VERBS:
            # `http.get('/x')`, `this.http.get('/x')` on a client made for the API host
            w = self.http_clients[owner]
            w = Wrapper(w.prefix, 0, name.upper(), None, w.account, w.reason, w.defined)
        if w is None and len(segs) == 1 and name in self.imported:
            w = self.project.wrappers.get(name)
        if w is None and len(segs) == 2 and segs[0] in self.namespaces:
            self.out.imports.add(name)  # read again once the project knows the wrapper
            w = self.project.wrappers.get(name)
        if w is None or len(args) <= w.path_index:
            return False
        label = _text(node.child_by_field_name("function") or node)
        self.scope_fn = _enclosing_function(node)  # `const path = `/x/${id}``
        try:
            method_text = (self.string(args[w.method_index]) if w.method_index is not None
                           and len(args) > w.method_index else None)
            # `this.get(name)`: a path known only at run time is unreadable traffic
            request = wrapper_request(w, w.path_pieces([self.pieces(a) for a in args]),
                                      method_text)
        finally:
            self.scope_fn = None
        if isinstance(request, str):
            self.out.unresolved.append(Unresolved(
                *self.where(node), label, f"{request} (wrapper {name} at {w.defined})"))
            return True
        target, method = request
        acc: Account = w.account
        why = f"via the app's wrapper {name} ({w.defined}): {w.reason}"
        site = self._site_key(node, args, w)
        if site is not None:
            acc, why = site[0], f"via the app's wrapper {name} ({w.defined}): {site[1]}"
        if self.ctx.ui_extension:
            acc, why = "installing", "a UI extension: the installing account"
        elif any(_connected_options(self, a)[0] for a in args):
            acc, why = "connected", "a stripeAccount option"
        self.out.calls.append(Call(*self.where(node), label, method, target.path,
                                   target.expand, acc, (), why))
        return True

    def _site_key(self, node: ts.Node, args: list[ts.Node], w: Wrapper) -> Client | None:
        """The account of the key a call site gives a wrapper that takes it as an argument:
        a parameter of the caller by what its callers pass, else by its text."""
        if w.key_from is None or w.key_from[0] != "arg" or len(args) <= w.key_from[1]:
            return None
        a = _unwrap(args[w.key_from[1]])
        if a.type == "identifier":
            passed = self.param_client(node, _text(a))
            if passed is not None:
                return None if passed[0] is None else (passed[0], passed[1])
        text = _text(a)
        if len(text) > 100:
            return None
        acc, why = self.key_why(a)
        row = node.start_point[0] + 1
        return acc, f"a key given at {self.ctx.file}:{row}: {why}"

    def where(self, node: ts.Node) -> tuple[str, int, int]:
        row, col = node.start_point
        return self.ctx.file, row + 1, col + 1

    def sdk_call(
        self, node: ts.Node, rest: list[str], client: Client | None, known: bool,
        args: list[ts.Node],
    ) -> bool:
        """Record an SDK call; False if `rest` is not an SDK member chain at all."""
        if rest and rest[0] == "v1":
            rest = rest[1:]
        callee = node.child_by_field_name("function")
        label = _text(callee) if callee is not None else "?"
        if not rest:
            return False
        sdk = table()
        if rest == ["rawRequest"]:
            self.raw_request(node, label, client, args)
            return True
        if DYNAMIC in rest:
            if rest[0] in sdk.roots["node"] or rest[0] == DYNAMIC:
                self.out.unresolved.append(
                    Unresolved(*self.where(node), label, "SDK member chosen at run time")
                )
                return True
            return False
        route = sdk.get("node", ".".join(rest))
        if route is None:
            if known and rest[0] in sdk.roots["node"] and len(rest) >= 2:
                self.out.unresolved.append(Unresolved(
                    *self.where(node), label,
                    f"not a method of stripe-node {sdk.meta.get('node_sdk', '')}".rstrip(),
                ))
                return True
            return False
        expand, notes = self.expand_args(args)
        account, why = self.account(args, client, route[1])
        self.out.calls.append(Call(
            *self.where(node), label, route[0], route[1], expand, account, notes, why,
        ))
        return True

    def expand_args(self, args: list[ts.Node]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        for a in args:
            p = self.props(a)
            if p and "expand" in p:
                values = self.strings(p["expand"])
                if values is None:
                    return (), (EXPAND_AT_RUN_TIME,)
                return tuple(values), ()
        return (), ()

    def account(self, args: list[ts.Node], client: Client | None,
                path: str | None = None) -> Client:
        if self.ctx.ui_extension:
            return "installing", "a UI extension: the installing account"
        for a in args:
            found, value = _connected_options(self, a)
            if found:
                fixed = self.fixed_value(value) if value is not None else None
                if fixed is not None:
                    return "own", fixed
                return "connected", "a stripeAccount option on the call"
        # request options passed as a value named after the option (issue 25): an argument
        # past the path's ids in the params' or the options' place (stripe-node tells an
        # options hash by its keys) is the options (`customers.create(params,
        # stripeAccount)`, `applicationFees.updateRefund(id, refundId, stripeAccount)`)
        if path is not None and len(args) > path.count("{"):
            last = _unwrap(args[-1])
            name = _text(last).rsplit(".", 1)[-1] if last.type in (
                "identifier", "member_expression") else ""
            if OPTIONS_ACCOUNT.fullmatch(name):
                fixed = self.fixed_value(last)
                if fixed is not None:
                    return "own", fixed
                return "connected", f"request options named {name} on the call"
        if client is None:
            return "unknown", ("a client the scan cannot trace (a parameter, or built "
                               "outside the project)")
        return client

    def raw_request(
        self, node: ts.Node, label: str, client: Client | None, args: list[ts.Node]
    ) -> None:
        method = self.string(args[0]) if args else None
        target = raw_target(self.pieces(args[1]), require_host=False) if len(args) > 1 else None
        if method is None or target is None:
            self.out.unresolved.append(
                Unresolved(*self.where(node), label, "method or path built at run time")
            )
            return
        expand, notes = self.expand_args(args[2:3])
        acc, why = self.account(args[2:], client)
        self.out.calls.append(Call(
            *self.where(node), label, method.upper(), target.path, target.expand + expand,
            acc, notes, why,
        ))

    def http_call(self, node: ts.Node, segs: list[str] | None, args: list[ts.Node]) -> None:
        if not args or node.id in self.wrapper_inner:
            return
        if b"api.stripe.com" in self.source:  # `const url = `${API}/x``: a local
            self.scope_fn = _enclosing_function(node)
        try:
            self._http_call(node, segs, args)
        finally:
            self.scope_fn = None

    def _http_call(self, node: ts.Node, segs: list[str] | None, args: list[ts.Node]) -> None:
        first = args[0]
        config = self.props(first)
        url_node = config.get("url") if config else first
        if url_node is None:
            return
        pieces = self.pieces(url_node)
        if pieces and pieces[0] is not None and not pieces[0].startswith(("http", "//")):
            return
        target = raw_target(pieces, require_host=True)
        label = _text(node.child_by_field_name("function") or node)
        if target is None:
            if pieces and pieces[0] is not None and pieces[0].rstrip("/") in (
                "https://api.stripe.com", "https://api.stripe.com/v1"
            ):
                self.out.unresolved.append(
                    Unresolved(*self.where(node), label, "API path built at run time")
                )
            return
        method = None
        verb = segs[-1].lower() if segs else ""
        if verb in HTTP_VERBS:
            method = verb.upper()
        elif segs and len(segs) == 1 and segs[0] in self.url_wrappers:
            method = self.url_wrappers[segs[0]]
        opts = [o for o in (config, *(self.props(a) for a in args[1:])) if o]
        for o in opts:
            if "method" in o:
                m = self.string(o["method"])
                if m is None:
                    self.out.unresolved.append(
                        Unresolved(*self.where(node), label, "HTTP method chosen at run time")
                    )
                    return
                method = m.upper()
        account: Account = "unknown"
        why = "an HTTP call whose key the scan cannot trace"
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension: the installing account"
        elif any(_connected_options(self, a)[0] for a in args):
            account, why = "connected", "a Stripe-Account header"
        else:
            for o in opts:
                hdrs = self.props(o["headers"]) if "headers" in o else None
                auth = next((v for k, v in (hdrs or {}).items()
                             if k.lower() == "authorization"), None)
                if auth is not None:
                    acc, w = self.key_why(auth)
                    if acc != "unknown":
                        account, why = acc, f"authenticated with {w}"
            owner = segs[-2] if segs and len(segs) >= 2 else ""
            sent = self.client_headers.get(owner, {})
            if account == "unknown" and "stripe-account" in sent:
                account, why = "connected", (f"the HTTP client {owner} sends a Stripe-Account "
                                             "header")
            elif account == "unknown" and "authorization" in sent:
                acc, w = key_account_why(_text(sent["authorization"]))
                account, why = acc, f"the HTTP client {owner} authenticates with {w}"
            userinfo = self.userinfo(url_node)
            if account == "unknown" and userinfo is not None:
                # `https://${token}:@api.stripe.com/...`: the key is the URL's user name
                acc, w = key_account_why(userinfo)
                account, why = acc, f"the key written into the URL: {w}"
        notes = ("query string built at run time",) if target.dynamic_query else ()
        self.out.calls.append(Call(
            *self.where(node), label, method or "GET", target.path, target.expand, account, notes,
            why,
        ))

def _string(node: ts.Node) -> str:
    raw = _text(node)
    return raw[1:-1] if len(raw) >= 2 and raw[0] in "'\"`" else raw


def _args(call: ts.Node) -> list[ts.Node]:
    a = call.child_by_field_name("arguments")
    if a is None:
        return []
    return [c for c in a.named_children if c.type != "comment"]


def _chain(node: ts.Node) -> list[str] | None:
    """`this.stripe.customers.list` -> ['this', 'stripe', 'customers', 'list']."""
    out: list[str] = []
    node = _unwrap(node)
    for _ in range(32):
        if node.type == "member_expression":
            prop = node.child_by_field_name("property")
            out.append(_text(prop) if prop is not None else DYNAMIC)
            obj = node.child_by_field_name("object")
            if obj is None:
                return None
            node = _unwrap(obj)
        elif node.type == "subscript_expression":
            idx = node.child_by_field_name("index")
            idx_u = _unwrap(idx) if idx is not None else None
            out.append(_string(idx_u) if idx_u is not None and idx_u.type == "string" else DYNAMIC)
            obj = node.child_by_field_name("object")
            if obj is None:
                return None
            node = _unwrap(obj)
        elif node.type in ("identifier", "this", "property_identifier"):
            out.append(_text(node))
            return out[::-1]
        elif node.type == "call_expression":
            fn = node.child_by_field_name("function")
            inner = _chain(fn) if fn is not None else None
            out.append((inner[-1] if inner else "") + "()")
            return out[::-1]
        elif node.type == "new_expression" and out:
            # `new Stripe(key).customers.list()`, `new Syncer(db).run(token)`: the object built
            ctor = node.child_by_field_name("constructor")
            out.append(f"new {_text(ctor) if ctor is not None else ''}()")
            return out[::-1]
        else:
            return out[::-1] if out else None
    return None


def _base(node: ts.Node) -> ts.Node:
    """The object at the root of a member chain (`new Stripe(k)` in `new Stripe(k).x.y`)."""
    node = _unwrap(node)
    for _ in range(32):
        if node.type not in ("member_expression", "subscript_expression"):
            break
        obj = node.child_by_field_name("object")
        if obj is None:
            break
        node = _unwrap(obj)
    return node


def _mentions(node: ts.Node, name: str) -> bool:
    return any(_text(n) == name for n in _descendants(node, ("identifier",)))


def _descendants(node: ts.Node, types: tuple[str, ...]) -> list[ts.Node]:
    """Nodes of the given types under `node` (iterative: no recursion limit to hit)."""
    out: list[ts.Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type in types:
            out.append(n)
        stack.extend(reversed(n.named_children))
    return out


def _identifiers(node: ts.Node) -> list[str]:
    return [_text(n) for n in _descendants(node, ("identifier",))]


def _pattern_names(node: ts.Node) -> list[str]:
    """`stripe`, `this.stripe` -> [stripe]; `{ client }` / `{ client: c }` -> [client] / [c]."""
    if node.type in ("object_pattern", "array_pattern"):
        out = []
        for n in _descendants(node, ("shorthand_property_identifier_pattern", "identifier")):
            out.append(_text(n))
        return out
    name = _bound_name(node)
    return [name] if name else []


def _function_name(fn: ts.Node) -> str | None:
    name = fn.child_by_field_name("name")
    if name is not None:
        return _text(name).lstrip("#")
    parent = fn.parent
    if parent is not None and parent.type in ("variable_declarator", "pair",
                                              "public_field_definition", "field_definition",
                                              "assignment_expression"):
        key = (parent.child_by_field_name("name") or parent.child_by_field_name("key")
               or parent.child_by_field_name("property") or parent.child_by_field_name("left"))
        if key is not None:
            return _bound_name(key) or _text(key).strip("'\"")
    return None


_VERB = re.compile(r"""^["'`](?i:get|post|put|patch|delete)["'`]$""")
_CASE_METHODS = ("toUpperCase", "toLowerCase")


def _bare_param(node: ts.Node) -> str:
    """`method.toUpperCase()` -> `method`: the name under a change of case."""
    node = _unwrap(node)
    for _ in range(4):
        f = node.child_by_field_name("function") if node.type == "call_expression" else None
        prop = f.child_by_field_name("property") if f is not None and (
            f.type == "member_expression") else None
        if f is None or prop is None or _text(prop) not in _CASE_METHODS:
            break
        node = _unwrap(f.child_by_field_name("object") or node)
    return _text(node) if node.type == "identifier" else ""


def _dispatch_param(fn: ts.Node, params: list[str]) -> int | None:
    """The parameter a wrapper chooses its request by (`if (method === 'GET') ...`,
    `switch (method) { case 'POST': ... }`): compared with HTTP verbs."""
    for node in _descendants(fn, ("binary_expression", "switch_statement")):
        if node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            sides = [node.child_by_field_name("left"), node.child_by_field_name("right")]
            if op is None or _text(op) not in ("===", "==", "!==", "!=") or None in sides:
                continue
            texts = [_text(x) for x in sides if x is not None]
            names = [_bare_param(x) for x in sides if x is not None]
        else:
            value = node.child_by_field_name("value")
            body = node.child_by_field_name("body")
            if value is None or body is None:
                continue
            names = [_bare_param(value)]
            texts = [_text(c.child_by_field_name("value") or c) for c in body.named_children
                     if c.type == "switch_case"]
        if any(_VERB.match(t) for t in texts):
            for n in names:
                if n in params:
                    return params.index(n)
    return None


def _fn_locals(fn: ts.Node) -> dict[str, ts.Node]:
    """The names a function declares once, to one value, and never assigns again (its
    parameters, loop variables and names assigned or declared twice are not values)."""
    values: dict[str, ts.Node] = {}
    other = set(_param_names(fn))
    for node in _descendants(fn, ("variable_declarator", "assignment_expression",
                                  "augmented_assignment_expression", "for_in_statement")):
        if node.type == "variable_declarator":
            name, value = node.child_by_field_name("name"), node.child_by_field_name("value")
            if name is None or name.type != "identifier" or value is None:
                continue
            if _text(name) in values:
                other.add(_text(name))
            values[_text(name)] = value
        else:
            left = node.child_by_field_name("left")
            if left is not None:
                other |= {_text(n) for n in (left, *_descendants(left, ("identifier",)))
                          if n.type == "identifier"}
    return {k: v for k, v in values.items() if k not in other}


def _param_names(fn: ts.Node) -> list[str]:
    params = fn.child_by_field_name("parameters") or fn.child_by_field_name("parameter")
    if params is None:
        return []
    if params.type == "identifier":
        return [_text(params)]
    out = []
    for p in params.named_children:
        ident = p if p.type == "identifier" else (
            p.child_by_field_name("pattern") or p.child_by_field_name("left"))
        out.append(_text(ident) if ident is not None and ident.type == "identifier" else "")
    return out


def _bound_name(node: ts.Node) -> str | None:
    if node.type in ("identifier", "property_identifier", "private_property_identifier"):
        return _text(node).lstrip("#")
    if node.type == "member_expression":  # this.stripe = new Stripe(...)
        prop = node.child_by_field_name("property")
        return _text(prop) if prop is not None else None
    return None


def _constructs_client(node: ts.Node) -> bool:
    if node.type not in ("new_expression", "call_expression"):
        return False
    fn = node.child_by_field_name("constructor") or node.child_by_field_name("function")
    if fn is None:
        return False
    fn = _unwrap(fn)
    name = _text(fn)
    if name in ("Stripe", "stripe") or name.endswith(".Stripe"):
        return True
    # require('stripe')(key)
    return fn.type == "call_expression" and _text(fn).replace('"', "'") == "require('stripe')"


def _default_header(left: ts.Node) -> tuple[str, str] | None:
    """`http.defaults.headers.common.Authorization` / `...['Stripe-Account']` on the left of
    an assignment: (`http`, the header's name in lower case)."""
    if left.type not in ("member_expression", "subscript_expression"):
        return None
    prop = left.child_by_field_name("property") or left.child_by_field_name("index")
    obj = left.child_by_field_name("object")
    if prop is None or obj is None:
        return None
    header = (_string(prop) if prop.type == "string" else _text(prop)).lower()
    chain = _text(obj).split(".")
    if header not in ("authorization", "stripe-account") or len(chain) < 3 or (
            chain[1:3] != ["defaults", "headers"]):
        return None
    return chain[0], header


# Ways a name is bound other than `x = v` / `const x = v` (their written part, by field)
_OTHER_BINDS = ("for_in_statement", "augmented_assignment_expression", "update_expression",
                "catch_clause")


def _field_of(record: str, field: str, why: str) -> Client:
    """A key destructured from a record or a call's result (`const { secretKey } = req.user`,
    `const { apiKey } = await req.json()`): read as `record.field`, the request's or a tenant's
    record says whose (issue 25); any other record stays unknown."""
    acc, reason = key_account_why(f"{record}.{field}") if len(record) <= 80 else ("unknown", "")
    if acc in ("installing", "connected"):
        return acc, reason
    return "unknown", f"a key read from {record[:40]}" + (f": {why}" if why else "")


def _enclosing_function(node: ts.Node) -> ts.Node | None:
    """The innermost function, method or arrow function around `node`, if any."""
    fn = node.parent
    while fn is not None and fn.type not in _FUNCTION_TYPES:
        fn = fn.parent
    return fn


def _class_start(node: ts.Node) -> int:
    """The start byte of the class around `node` (-1 outside any class)."""
    cls = node.parent
    while cls is not None and cls.type not in ("class_declaration", "class"):
        cls = cls.parent
    return -1 if cls is None else cls.start_byte


def _scope(node: ts.Node) -> int:
    """The start byte of the function around `node` (-1 at the top level): a scope's key."""
    fn = _enclosing_function(node)
    return -1 if fn is None else fn.start_byte


def _account_option_owner(left: ts.Node) -> str | None:
    """`opts.stripeAccount` / `opts['stripeAccount']` (or `stripe_account`) on the left of an
    assignment: `opts`, the options object built by assignment."""
    if left.type not in ("member_expression", "subscript_expression"):
        return None
    obj = left.child_by_field_name("object")
    prop = left.child_by_field_name("property") or left.child_by_field_name("index")
    if obj is None or prop is None or obj.type != "identifier":
        return None
    key = _string(prop) if prop.type == "string" else _text(prop)
    return _text(obj) if key in ("stripeAccount", "stripe_account") else None


def _connected_options(f: _File, node: ts.Node) -> tuple[bool, ts.Node | None]:
    """Whether the options name a connected account, and the value that names it."""
    bare = _unwrap(node)
    if bare.type == "identifier":
        # set in the function around the call, else at the top level
        for scope in (_scope(bare), -1):
            if (scope, _text(bare)) in f.account_options:
                return True, f.account_options[(scope, _text(bare))]
    p = f.props(node)
    if not p:
        return False, None
    for k in ("stripeAccount", "stripe_account"):
        if k in p:
            return True, p[k]
    headers = f.props(p["headers"]) if "headers" in p else None
    for k in headers or {}:
        if k.lower() == "stripe-account":
            return True, (headers or {})[k]
    return False, None


def extract(ctx: Context, source: bytes, suffix: str) -> FileFindings:
    return extract_and_index(ctx, source, suffix, index=False)[0]


def extract_and_index(
    ctx: Context, source: bytes, suffix: str, *, index: bool = True
) -> tuple[FileFindings, Project | None]:
    """One parse: what the file calls, and (with `index`) what it offers the project."""
    f = _File(ctx, source, EXTENSIONS[suffix])
    found = f.run()
    found.imports |= f.imported
    if index:
        return found, _index(f)
    return found, (Project(params=dict(f.param_facts), wanted=set(f.wanted))
                   if f.param_facts or f.wanted else None)


def module_lists(source: bytes, suffix: str) -> dict[str, tuple[str, ...]]:
    """The module's top-level (exported or not) constants that are lists of strings."""
    lang = EXTENSIONS.get(suffix)
    if lang is None:
        return {}
    f = _File(Context("", False, frozenset()), source, lang)
    out: dict[str, tuple[str, ...]] = {}
    for node in f.tree.root_node.named_children:
        decl = node.named_children[0] if node.type == "export_statement" and (
            node.named_child_count) else node
        if decl.type not in ("lexical_declaration", "variable_declaration"):
            continue
        for d in decl.named_children:
            name, value = d.child_by_field_name("name"), d.child_by_field_name("value")
            if name is None or value is None or name.type != "identifier":
                continue
            found = f.strings(value)
            if found is not None:
                out[_text(name)] = tuple(found)
    return out


def _index(f: _File) -> Project:
    """The project-wide facts one file offers: factories, module clients, wrappers (by name,
    and factories and module clients also by `mod:file:name` for imports resolved by path)."""
    p = Project()
    p.factories.update(f.local_factories())
    # "mod:" keeps these apart from the parameter facts' `file:name` (each name learnt
    # afresh makes the files using it read again)
    p.factories.update({f"mod:{f.ctx.file}:{k}": v for k, v in f.local_factories().items()})
    for node in f.tree.root_node.named_children:
        decl = node.named_children[0] if node.type == "export_statement" and (
            node.named_child_count) else node
        if decl.type in ("lexical_declaration", "variable_declaration"):
            for d in decl.named_children:
                name = d.child_by_field_name("name")
                if name is not None and _bound_name(name) in f.clients:
                    key = _bound_name(name) or ""
                    p.clients[key] = p.clients[f"mod:{f.ctx.file}:{key}"] = f.clients[key]
    p.wrappers.update(f.local_wrappers)
    p.params.update(f.param_facts)
    p.wanted |= f.wanted
    f.local_factories()
    p.key_params.update(f._key_params)
    p.key_params.update({f"mod:{f.ctx.file}:{k}": v for k, v in f._key_params.items()})
    return p
