"""PHP thin HTTP wrappers (issue 25, as JS/TS and Python read them): a function or method whose
request goes to the API base plus one of its parameters (`wp_remote_request(self::BASE .
$path, ['method' => $method, ...])`, `$this->http->request($method, $url)` with `$url =
"{$this->base}{$path}"`), its method a literal or a parameter (passed on, or one the wrapper
compares with HTTP verbs), its key from its `Authorization` header: a literal or configured
key, its own parameter (each call site decides), or a field its constructor sets from a
parameter (each `new` decides). Its call sites in the file (`stripe_request('GET',
'/customers')`, `$this->get('/balance')`, `$api->post(...)` on `$api = new Api($k)`) are the
requests; wrappers of wrappers are read 3 deep. A wrapper its file never calls keeps its
request as unreadable traffic (callers elsewhere may pass any path: unverified, not unused).
The path reading, the wrapper record and the request built from a call site are shared with
the other languages (`common.Wrapper`, `wrapper_path`, `wrapper_request`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tree_sitter as ts

from permgate.scan.common import (
    API_HOSTS,
    HTTP_VERBS,
    UNCALLED_WRAPPER,
    Wrapper,
    unmarked,
    wrapper_path,
    wrapper_request,
)
from permgate.scan.model import Account, Call, Unresolved
from permgate.scan.tsutil import text

if TYPE_CHECKING:
    from permgate.scan.php import _File

Client = tuple[Account, str]
_Key = tuple[str, int, str]  # ("fn", 0, name) or ("m", the class's start, name)
_ROUNDS = 3  # wrappers of wrappers, at most this deep
_WP = {"wp_remote_get": "GET", "wp_remote_post": "POST", "wp_remote_request": None,
       "wp_safe_remote_get": "GET", "wp_safe_remote_post": "POST",
       "wp_safe_remote_request": None}
_CASE = frozenset({"strtoupper", "strtolower", "trim"})
_VERB = r"""['"](?i:get|post|delete|put|patch)['"]"""
_MAX_FN = 20_000  # a wrapper's text read for verb comparisons, at most (bounded regex work)


def _span(node: ts.Node) -> tuple[int, int]:
    return node.start_byte, node.end_byte


class Wrappers:
    """The file's wrappers, found once per file (only when it names the API host)."""

    def __init__(self, f: _File) -> None:
        self.f = f
        self.found: dict[_Key, Wrapper] = {}
        self.inner: set[tuple[int, int]] = set()  # the wrappers' own requests
        self.requests: dict[str, ts.Node] = {}  # wrapper (file:line) -> its request
        self.used: set[str] = set()
        # each wrapper's parameters' defaults (`$method = 'POST'`): what a call site that
        # leaves the argument out passes
        self.defaults: dict[str, list[ts.Node | None]] = {}
        self.classes = {_span(c): c for c in f.classes}
        if not any(h.encode() in f.source for h in API_HOSTS):
            return
        for _ in range(_ROUNDS):
            before = len(self.found)
            for fn in f.functions:
                key = self.key_of(fn)
                if key is not None and key not in self.found:
                    self.wrapper_of(fn, key)
            if len(self.found) == before:
                break

    def class_of(self, node: ts.Node) -> ts.Node | None:
        n = node.parent
        for _ in range(64):
            if n is None or n.type == "class_declaration":
                return n
            n = n.parent
        return None

    def key_of(self, fn: ts.Node) -> _Key | None:
        name = text(fn.child_by_field_name("name"))
        if fn.type == "function_definition":
            return "fn", 0, name
        cls = self.class_of(fn)
        return None if cls is None else ("m", cls.start_byte, name)

    # --- a wrapper's own request --------------------------------------------------------

    def request_parts(self, call: ts.Node) -> tuple[str | None, ts.Node | None, ts.Node,
                                                    list[ts.Node]] | None:
        """(fixed method, method argument, URL, options) of an HTTP request."""
        args = self.f._args(call)
        if call.type == "function_call_expression":
            name = text(call.child_by_field_name("function")).lstrip("\\")
            if name not in _WP or not args:
                return None
            opts = self.f.array(args[1]) if len(args) > 1 else None
            # the arguments' `method` wins over the function's own (WordPress merges its
            # default under them: `wp_remote_post($url, ['method' => 'GET'])` is a GET)
            marg = (opts or {}).get("method")
            return (None if marg is not None else _WP[name]), marg, args[0], args[1:]
        if call.type != "member_call_expression":
            return None
        verb = text(call.child_by_field_name("name")).lower()
        if verb == "request" and len(args) >= 2:
            return None, args[0], args[1], args[2:]
        if verb in HTTP_VERBS and args:
            return verb.upper(), None, args[0], args[1:]
        return None

    def method_param(self, node: ts.Node | None, marks: dict[str, int]) -> int | None:
        """The wrapper parameter a method argument is (`$method`, `strtoupper($method)`)."""
        for _ in range(3):
            if node is None:
                return None
            if node.type == "variable_name":
                return marks.get(text(node).lstrip("$"))
            if node.type == "function_call_expression" and text(
                    node.child_by_field_name("function")).lstrip("\\") in _CASE:
                args = self.f._args(node)
                node = args[0] if args else None
            else:
                return None
        return None

    def dispatch(self, fn: ts.Node, marks: dict[str, int]) -> int | None:
        """A parameter the wrapper compares with HTTP verbs (`if ($method === 'GET')`,
        `switch (strtoupper($method)) { case 'POST': ...}`, `match ($method)`): the
        method its call sites choose."""
        body = (fn.text or b"")[:_MAX_FN].decode("utf-8", "replace")
        for name, idx in marks.items():
            # possessive spaces and a call's name read from its start: linear on a hostile
            # body (a long run of spaces or of word characters), not quadratic
            v = r"(?:(?<![\w$])\w++\(\s*+)?\$" + re.escape(name) + r"\b\s*+\)?"
            eq = r"\s*+[!=]==?\s*+"
            if re.search(rf"{v}{eq}{_VERB}|{_VERB}{eq}{v}", body) or re.search(
                    rf"(?:switch|match)\s*+\(\s*+{v}\s*+\)\s*+\{{\s*+(?:case\s++)?{_VERB}", body):
                return idx
        return None

    def account(self, call: ts.Node, opts: list[ts.Node],
                marks: dict[str, int]) -> tuple[Account, str, tuple[str, int] | None]:
        """Whose key the wrapper's request sends: its Authorization header (or Guzzle's
        `auth`, Laravel's `withToken`), a Stripe-Account header; a parameter of the wrapper
        or its constructor is left to the call sites (`key_from`)."""
        f = self.f
        keys: list[ts.Node] = []
        obj = call.child_by_field_name("object")
        for _ in range(4):  # `Http::withToken($key)->get($url)`
            if obj is None or obj.type not in ("member_call_expression", "scoped_call_expression"):
                break
            if text(obj.child_by_field_name("name")) in ("withToken", "withBasicAuth"):
                keys += f._args(obj)[:1]
            obj = obj.child_by_field_name("object")
        for a in opts:
            arr = f.array(a) or {}
            headers = f.array(arr["headers"]) if "headers" in arr else None
            for k, v in (headers or {}).items():
                if k.lower() == "stripe-account":
                    fixed = f.fixed(v)
                    return (("own", fixed, None) if fixed else
                            ("connected", "a Stripe-Account header", None))
                if k.lower() == "authorization":
                    keys.append(v)
            if "auth" in arr:
                auth = f.resolve(arr["auth"])
                first = auth.named_children[0] if auth.type == "array_creation_expression" and (
                    auth.named_child_count) else None
                keys += first.named_children[-1:] if first is not None else []
        for v in keys[:1]:
            key = self.key_part(v)
            if key is None:
                break
            if key.type == "variable_name" and text(key).lstrip("$") in marks and not (
                    f._lookup(f.assigned, text(key).lstrip("$"), key)):
                return "unknown", "a key the call sites give", ("arg", marks[text(key)[1:]])
            if key.type == "member_access_expression" and text(
                    key.child_by_field_name("object")) == "$this":
                field = text(key.child_by_field_name("name"))
                if field in f.field_params:  # `$this->key = $key` in the constructor
                    return ("unknown", "a key the constructor is given",
                            ("init", f.field_params[field][1]))
            acc, why = f.key(key)
            return acc, f"an Authorization header with {why}", None
        return "unknown", "a wrapper's request whose key the scan cannot trace", None

    def key_part(self, node: ts.Node) -> ts.Node | None:
        """The key in an Authorization value: `'Bearer ' . $key`, `"Bearer {$key}"`, or the
        value itself."""
        node = self.f.resolve(node)
        if node.type == "binary_expression" and text(node.child_by_field_name("operator")) == ".":
            return node.child_by_field_name("right")
        if node.type == "encapsed_string":
            inner = [c for c in node.named_children if c.type not in (
                "string_content", "string_value", "escape_sequence")]
            return inner[0] if len(inner) == 1 else None
        return node

    def wrapper_of(self, fn: ts.Node, key: _Key) -> None:
        f = self.f
        from permgate.scan.php import _params

        params = [text(p.child_by_field_name("name")).lstrip("$") for p in _params(fn)]
        if not params:
            return
        marks = {n: i for i, n in enumerate(params)}
        calls = [c for c in f.calls if fn.start_byte <= c.start_byte and c.end_byte <= (
            fn.end_byte)]
        for call in calls:
            key_from: tuple[str, int] | None
            inner = self.local(call)
            if inner is not None:
                w, args, _site = inner
                args = self.with_defaults(w, args)
                if len(args) <= w.path_index:
                    continue
                path = wrapper_path(w.prefix, w.path_pieces(
                    [unmarked(f.pieces(a, marks=marks)) for a in args]))
                if path is None:
                    continue
                method, method_index = w.method, None
                if w.method_index is not None and len(args) > w.method_index:
                    m = args[w.method_index]
                    method = f.string(m)
                    if method is None:
                        method_index = self.method_param(m, marks)
                        if method_index is None:
                            continue
                account, reason, key_from = w.account, w.reason, w.key_from
                if key_from is not None and key_from[0] == "arg":
                    a = args[key_from[1]] if len(args) > key_from[1] else None
                    if a is not None and a.type == "variable_name" and a.text is not None and (
                            text(a).lstrip("$") in marks):
                        key_from = ("arg", marks[text(a).lstrip("$")])
                    elif a is not None:
                        (account, reason), key_from = f.key(a), None
            else:
                parts = self.request_parts(call)
                if parts is None:
                    continue
                verb, marg, url, opts = parts
                sym = unmarked(f.pieces(url, marks=marks))
                host = next((h for h in API_HOSTS if sym and isinstance(sym[0], str)
                             and sym[0].startswith(h)), None)
                path = wrapper_path("", [str(sym[0])[len(host):], *sym[1:]]) if host else None
                if path is None:
                    continue
                method, method_index = verb, None
                if method is None:
                    method = (f.string(marg) or "").upper() or None if marg is not None else None
                    if method is None:
                        method_index = self.method_param(marg, marks)
                        if method_index is None:
                            continue
                account, reason, key_from = self.account(call, opts, marks)
            prefix, idx, rest = path
            if method_index is None and (d := self.dispatch(fn, marks)) is not None and d != idx:
                # one request per verb, chosen by a method parameter: its call sites say which
                method, method_index = None, d
                for other in calls:
                    if self.request_parts(other) is not None or self.local(other) is not None:
                        self.inner.add(_span(other))
            defined = f"{f.ctx.file}:{fn.start_point[0] + 1}"
            self.defaults[defined] = [p.child_by_field_name("default_value")
                                      for p in _params(fn)]
            self.inner.add(_span(call))
            self.requests.setdefault(defined, call)
            if inner is not None:
                self.used.add(inner[0].defined)
            self.found[key] = Wrapper(prefix, idx, method and method.upper(), method_index,
                                      account, reason, defined, key_from, rest)
            return

    # --- call sites -----------------------------------------------------------------------

    def local(self, node: ts.Node) -> tuple[Wrapper, list[ts.Node], ts.Node | None] | None:
        """(wrapper, arguments, the `new` its object was built by) of a call of a wrapper of
        the file: `f(...)`, `$this->m(...)` / `self::m(...)` in its class, `$api->m(...)`
        where the function built `$api = new Api(...)` of the file's class."""
        if not self.found and node.type != "function_call_expression":
            return None  # a function may be another file's wrapper: asked below
        f = self.f
        if node.type == "function_call_expression":
            name = text(node.child_by_field_name("function")).rsplit("\\", 1)[-1]
            w = self.found.get(("fn", 0, name)) or self.elsewhere(node, name)
            return (w, f._args(node), None) if w is not None else None
        if node.type not in ("member_call_expression", "scoped_call_expression"):
            return None
        name = text(node.child_by_field_name("name"))
        obj = node.child_by_field_name("object") or node.child_by_field_name("scope")
        made: ts.Node | None = None
        if obj is not None and text(obj) in ("$this", "self", "static"):
            cls = self.class_of(node)
        elif obj is not None and obj.type == "variable_name":
            made = f.resolve(obj)
            cls = self.class_named(made) if made.type == "object_creation_expression" else None
        else:
            cls = None
        w = self.found.get(("m", cls.start_byte, name)) if cls is not None else None
        return (w, f._args(node), made) if w is not None else None

    def elsewhere(self, node: ts.Node, name: str) -> Wrapper | None:
        """A function wrapper another file of the project defines (PHP functions are global),
        for a call that passes a literal (a path or a method): the file is read again once
        the project learns it."""
        if not any(a.type in ("string", "encapsed_string") for a in self.f._args(node)):
            return None
        self.f.out.imports.add("php:" + name)
        return self.f.project.wrappers.get("php:" + name)

    def exported(self) -> dict[str, Wrapper]:
        """The file's function wrappers, for the other files' call sites."""
        return {"php:" + k[2]: w for k, w in self.found.items() if k[0] == "fn"}

    def with_defaults(self, w: Wrapper, args: list[ts.Node]) -> list[ts.Node]:
        """A call site's arguments, then the defaults of the parameters it leaves out."""
        out = list(args)
        for d in self.defaults.get(w.defined, [])[len(args):]:
            if d is None:
                break
            out.append(d)
        return out

    def class_named(self, construct: ts.Node) -> ts.Node | None:
        """The file's class a `new X(...)` builds (by its short name)."""
        cls = construct.named_children[0] if construct.named_child_count else None
        short = text(cls).rsplit("\\", 1)[-1] if cls is not None else ""
        return next((c for c in self.classes.values()
                     if text(c.child_by_field_name("name")) == short), None)

    def call(self, node: ts.Node, label: str) -> bool:
        """A call of the app's wrapper: the request it sends (or the wrapper's own request,
        whose call sites are the calls)."""
        if _span(node) in self.inner:
            return True
        found = self.local(node)
        if found is None:
            return False
        w, args, made = found
        args = self.with_defaults(w, args)
        if len(args) <= w.path_index:
            return False
        f = self.f
        self.used.add(w.defined)
        method_text = (f.string(args[w.method_index])
                       if w.method_index is not None and len(args) > w.method_index else None)
        request = wrapper_request(w, w.path_pieces([f.pieces(a) for a in args]), method_text)
        if isinstance(request, str):
            f.out.unresolved.append(Unresolved(*f.where(node), label,
                                               f"{request} (wrapper at {w.defined})"))
            return True
        target, method = request
        acc, why = self.site_key(node, w, args, made) or (w.account, w.reason)
        notes = ("query string built at run time",) if target.dynamic_query else ()
        f.out.calls.append(Call(*f.where(node), label, method, target.path, target.expand, acc,
                                notes, f"via the app's wrapper ({w.defined}): {why}"))
        return True

    def site_key(self, node: ts.Node, w: Wrapper, args: list[ts.Node],
                 made: ts.Node | None) -> Client | None:
        """The key this call site gives the wrapper: its argument, or the constructor's
        argument of the object it is called on (`new Api($user->token)`, or the callers of
        the class's constructor for `$this->m(...)`)."""
        if w.key_from is None:
            return None
        f = self.f
        kind, i = w.key_from
        if kind == "arg":
            return f.key(args[i]) if i < len(args) else None
        if made is not None:
            ctor = f._args(made)
            return f.key(ctor[i]) if i < len(ctor) else None
        cls = self.class_of(node)
        if cls is None:
            return None
        name = f.namespace + text(cls.child_by_field_name("name"))
        return f._passed(name, i, "the key given to the constructor (argument")

    def uncalled(self) -> None:
        """A wrapper its own file never calls: its request is unreadable traffic."""
        for defined, req in self.requests.items():
            if defined not in self.used:
                self.f.out.unresolved.append(Unresolved(
                    *self.f.where(req), text(req.child_by_field_name("function")
                                             or req.child_by_field_name("name")) or "?",
                    UNCALLED_WRAPPER))

