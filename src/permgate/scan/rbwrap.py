"""Ruby requests to the API host with HTTParty, RestClient and Faraday, and thin wrappers
around them (issue 25, as JS/TS, Python, PHP and Go read them).

A request is `HTTParty.get(url, headers: {...})` (`send(method, url, ...)`),
`RestClient.post(url, payload, headers)`, `RestClient::Request.execute(method:, url:,
headers:)`, or a verb on a Faraday connection the file builds for the API host
(`conn = Faraday.new(url: BASE, headers: {...})`, then `conn.get(path)` /
`conn.run_request(method, path, body, headers)`); its account from its `Authorization` /
`Stripe-Account` header. A wrapper is a method whose request goes to the API base plus one of
its parameters (`"#{BASE}#{path}"`, `BASE + path`, through the method's locals, the file's
constants and instance variables given one value); its method a literal (`:get`), a parameter
passed on (`method.to_s.upcase`) or one it compares with verbs (`case method when :get`); its
key its parameter (each call site decides), an `@key` its `initialize` sets from a parameter
(each `new` decides), or a key expression (the key rules). Call sites in the file
(`request(:get, '/customers')`, `self.request(...)`, `api.request(...)` on `api =
Api.new(k)`) are the requests; wrappers of wrappers 3 deep; a wrapper never called in its
file, or called with a run-time path, keeps its request as unreadable traffic (unverified,
never unused). Shared: `common.Wrapper`, `wrapper_path`, `wrapper_request`, `raw_target`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tree_sitter as ts

from permgate.scan.common import (
    API_HOSTS,
    HTTP_VERBS,
    UNCALLED_WRAPPER,
    Piece,
    Wrapper,
    param_mark,
    raw_target,
    unmarked,
    wrapper_path,
    wrapper_request,
)
from permgate.scan.model import Account, Call, Unresolved
from permgate.scan.tsutil import text

if TYPE_CHECKING:
    from permgate.scan.ruby import _File

Client = tuple[Account, str]
_ROUNDS = 3
_SEND = frozenset({"send", "public_send", "__send__"})
_CASE = frozenset({"to_s", "upcase", "downcase", "to_sym", "strip"})
_TRIM = frozenset({"to_s", "delete_prefix", "sub", "strip"})
_VERB = r"""(?::(?i:get|post|delete|put|patch)\b|['"](?i:get|post|delete|put|patch)['"])"""
_MAX_FN = 20_000


def _span(node: ts.Node) -> tuple[int, int]:
    return node.start_byte, node.end_byte


def _pairs(node: ts.Node | None) -> dict[str, ts.Node]:
    """The `key => value` / `key: value` pairs of a hash or an argument list."""
    out: dict[str, ts.Node] = {}
    if node is None or node.type not in ("hash", "argument_list"):
        return out
    for p in node.named_children[:64]:
        if p.type == "pair":
            k, v = p.child_by_field_name("key"), p.child_by_field_name("value")
            if k is not None and v is not None:
                out[text(k).strip(":'\"")] = v
    return out


class Wrappers:
    def __init__(self, f: _File) -> None:
        self.f = f
        self.found: dict[tuple[int, str], Wrapper] = {}  # (class start or 0, name)
        self.inner: set[tuple[int, int]] = set()
        self.requests: dict[str, ts.Node] = {}
        self.used: set[str] = set()
        # each wrapper's parameters' defaults (`method = :post`): what a call site that
        # leaves the argument out passes
        self.defaults: dict[str, list[ts.Node | None]] = {}
        self.active = any(h.encode() in f.source for h in API_HOSTS)
        self.constants: dict[str, ts.Node | None] = {}
        # Faraday connections built for a base URL: name -> (base URL node, its `new` call)
        self.conns: dict[str, tuple[ts.Node, ts.Node]] = {}
        if not self.active:
            return
        for a in f.assigns:
            left, right = a.child_by_field_name("left"), a.child_by_field_name("right")
            if left is None or right is None:
                continue
            if left.type == "constant":
                old = self.constants.get(text(left), right)
                self.constants[text(left)] = right if old is not None and text(
                    old) == text(right) else None
            if right.type == "call" and text(right.child_by_field_name("receiver")) == (
                    "Faraday") and text(right.child_by_field_name("method")) == "new" and (
                    left.type in ("identifier", "instance_variable")):
                args = right.child_by_field_name("arguments")
                first = args.named_children[0] if args is not None and (
                    args.named_child_count) else None
                url = _pairs(args).get("url") or (
                    first if first is not None and first.type != "pair" else None)
                if url is not None:
                    self.conns[text(left)] = (url, right)
        for _ in range(_ROUNDS):
            before = len(self.found)
            for fn in f.functions:
                if fn.type != "method":
                    continue
                key = (self.class_start(fn), text(fn.child_by_field_name("name")))
                if key not in self.found:
                    self.wrapper_of(fn, key)
            if len(self.found) == before:
                break

    def class_start(self, node: ts.Node) -> int:
        cls = next((n for n in self.f.nesting.around(node.start_byte) if n.type == "class"),
                   None)
        return cls.start_byte if cls is not None else 0

    # --- values ---------------------------------------------------------------------------

    def pieces(self, node: ts.Node, marks: dict[str, int] | None = None,
               depth: int = 0) -> list[Piece]:
        f = self.f
        if depth > 12:
            return [None]
        t = node.type
        if t == "parenthesized_statements" and node.named_child_count == 1:
            return self.pieces(node.named_children[0], marks, depth + 1)
        if t == "string":
            out: list[Piece] = []
            for c in node.named_children:
                if c.type == "string_content":
                    out.append(text(c))
                elif c.type == "interpolation" and c.named_child_count == 1:
                    out += self.pieces(c.named_children[0], marks, depth + 1)
                else:
                    out.append(None)
            return out or [""]
        if t == "binary" and text(node.child_by_field_name("operator")) == "+":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if left is not None and right is not None:
                return self.pieces(left, marks, depth + 1) + self.pieces(right, marks, depth + 1)
        if t == "identifier":
            values = f.assigned.get((f.scope(node), text(node)))
            if marks and text(node) in marks and not values:
                return [param_mark(marks[text(node)])]
            return self.pieces(values[0], marks, depth + 1) if values and len(
                {text(v) for v in values}) == 1 else [None]
        if t == "instance_variable":
            values = f.assigned.get((f.scope(node), text(node)))
            return self.pieces(values[0], marks, depth + 1) if values and len(
                {text(v) for v in values}) == 1 else [None]
        if t == "constant":
            value = self.constants.get(text(node))
            return self.pieces(value, marks, depth + 1) if value is not None else [None]
        if t == "call" and marks and text(node.child_by_field_name("method")) in _TRIM:
            receiver = node.child_by_field_name("receiver")
            if receiver is not None and receiver.type == "identifier":
                return self.pieces(receiver, marks, depth + 1)
        return [None]

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        if node.type == "simple_symbol":
            return text(node)[1:]
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def method_param(self, node: ts.Node | None, marks: dict[str, int]) -> int | None:
        for _ in range(4):
            if node is None:
                return None
            if node.type == "identifier":
                return marks.get(text(node))
            if node.type == "call" and text(node.child_by_field_name("method")) in _CASE:
                node = node.child_by_field_name("receiver")
            else:
                return None
        return None

    def dispatch(self, fn: ts.Node, marks: dict[str, int]) -> int | None:
        body = (fn.text or b"")[:_MAX_FN].decode("utf-8", "replace")
        for name, idx in marks.items():
            v = r"\b" + re.escape(name) + r"(?:\.(?:to_s|to_sym|upcase|downcase))*"
            if re.search(rf"{v}\s*[!=]=\s*{_VERB}|{_VERB}\s*[!=]=\s*{v}", body) or re.search(
                    rf"case\s+{v}\s+when\s+{_VERB}", body):
                return idx
        return None

    # --- requests -------------------------------------------------------------------------

    def request_parts(self, call: ts.Node) -> tuple[str | None, ts.Node | None,
                                                    list[ts.Node], dict[str, ts.Node]] | None:
        """(fixed method, method argument, the nodes the URL is joined from (a Faraday
        connection's base, then the path), header pairs) of an HTTP request."""
        if call.type != "call":
            return None
        receiver = call.child_by_field_name("receiver")
        verb = text(call.child_by_field_name("method"))
        args = call.child_by_field_name("arguments")
        pos = [a for a in (args.named_children if args is not None else ())
               if a.type not in ("pair", "hash", "comment", "block_argument")]
        hashes = [_pairs(args)] + [_pairs(self.f.value(a)) for a in (
            args.named_children if args is not None else ()) if a.type in ("hash", "identifier")]
        headers: dict[str, ts.Node] = {}
        for h in hashes:
            headers |= _pairs(self.f.value(h["headers"])) if "headers" in h else {}
        recv = text(receiver) if receiver is not None else ""
        if recv == "RestClient::Request" and verb == "execute":
            h = hashes[0]
            if "url" not in h:
                return None
            m = h.get("method")
            return None, m, [h["url"]], headers
        if recv in ("HTTParty", "RestClient"):
            if recv == "RestClient":
                for h in hashes:
                    headers |= h
            if verb in HTTP_VERBS and pos:
                return verb.upper(), None, [pos[0]], headers
            if verb in _SEND and len(pos) >= 2:
                return None, pos[0], [pos[1]], headers
            return None
        conn = self.conns.get(recv)
        if conn is None:
            return None
        base, made = conn
        made_args = made.child_by_field_name("arguments")
        headers |= _pairs(self.f.value(_pairs(made_args)["headers"])) if "headers" in _pairs(
            made_args) else {}
        if verb in HTTP_VERBS:
            if len(pos) >= 3:  # `conn.get(path, params, headers)`, `conn.post(path, body, h)`
                headers |= _pairs(self.f.value(pos[2]))
            return verb.upper(), None, [base, *pos[:1]], headers
        if verb in _SEND | {"run_request"} and len(pos) >= 2:
            if verb == "run_request" and len(pos) >= 4:
                headers |= _pairs(self.f.value(pos[3]))
            return None, pos[0], [base, pos[1]], headers
        return None

    def url_pieces(self, nodes: list[ts.Node], marks: dict[str, int] | None) -> list[Piece]:
        out: list[Piece] = []
        for i, n in enumerate(nodes):
            p = self.pieces(n, marks)
            if i and out and isinstance(out[-1], str) and p and isinstance(p[0], str) and (
                    out[-1].endswith("/") and p[0].startswith("/")):
                p = [p[0][1:], *p[1:]]  # Faraday joins its base and a path with one slash
            elif i and out and isinstance(out[-1], str) and p and isinstance(p[0], str) and (
                    not out[-1].endswith("/") and not p[0].startswith("/")):
                p = ["/" + p[0], *p[1:]]
            out += p
        return out

    def account(self, headers: dict[str, ts.Node], marks: dict[str, int], fn: ts.Node | None
                ) -> tuple[Account, str, tuple[str, int] | None]:
        f = self.f
        norm = {k.lower().replace("_", "-"): v for k, v in headers.items()}
        if "stripe-account" in norm:
            fixed = f.fixed(norm["stripe-account"])
            return ("own", fixed, None) if fixed else ("connected", "a Stripe-Account header",
                                                        None)
        value = norm.get("authorization")
        if value is None:
            return "unknown", "an HTTP request whose key the scan cannot trace", None
        key = value
        if value.type == "string":
            inner = [c.named_children[0] for c in value.named_children
                     if c.type == "interpolation" and c.named_child_count == 1]
            key = inner[0] if len(inner) == 1 else value
        elif value.type == "binary" and value.child_by_field_name("right") is not None:
            key = value.child_by_field_name("right")  # type: ignore[assignment]
        name = text(key)
        if key.type == "identifier" and name in marks and fn is not None and not f.assigned.get(
                (f.scope(key), name)):
            return "unknown", "a key the call sites give", ("arg", marks[name])
        if key.type == "instance_variable" and name[1:] in f.field_params:
            return "unknown", "a key the constructor is given", (
                "init", f.field_params[name[1:]][1])
        acc, why = f.key(key)
        return acc, f"an Authorization header with {why}", None

    def wrapper_of(self, fn: ts.Node, key: tuple[int, str]) -> None:
        from permgate.scan.ruby import _params

        f = self.f
        params = _params(fn)
        if not params:
            return
        marks = {n: i for i, n in enumerate(params)}
        calls = [c for c in f.calls if fn.start_byte <= c.start_byte < fn.end_byte]
        for call in calls:
            key_from: tuple[str, int] | None
            inner = self.local(call)
            if inner is not None:
                w, args, _made = inner
                args = self.with_defaults(w, args)
                if len(args) <= w.path_index:
                    continue
                path = wrapper_path(w.prefix, w.path_pieces(
                    [unmarked(self.pieces(a, marks)) for a in args]))
                if path is None:
                    continue
                method, method_index = w.method, None
                if w.method_index is not None and len(args) > w.method_index:
                    method = self.string(args[w.method_index])
                    if method is None:
                        method_index = self.method_param(args[w.method_index], marks)
                        if method_index is None:
                            continue
                account, reason, key_from = w.account, w.reason, w.key_from
                if key_from is not None and key_from[0] == "arg":
                    a = args[key_from[1]] if len(args) > key_from[1] else None
                    if a is not None and a.type == "identifier" and text(a) in marks:
                        key_from = ("arg", marks[text(a)])
                    elif a is not None:
                        (account, reason), key_from = f.key(a), None
            else:
                parts = self.request_parts(call)
                if parts is None:
                    continue
                verb, marg, urls, headers = parts
                sym = unmarked(self.url_pieces(urls, marks))
                host = next((h for h in API_HOSTS if sym and isinstance(sym[0], str)
                             and sym[0].startswith(h)), None)
                path = wrapper_path("", [str(sym[0])[len(host):], *sym[1:]]) if host else None
                if path is None:
                    continue
                method, method_index = verb, None
                if method is None:
                    method = (self.string(marg) or "").upper() or None
                    if method is None:
                        method_index = self.method_param(marg, marks)
                        if method_index is None:
                            continue
                account, reason, key_from = self.account(headers, marks, fn)
            prefix, idx, rest = path
            if method_index is None and (d := self.dispatch(fn, marks)) is not None and d != idx:
                method, method_index = None, d
                for other in calls:
                    if self.request_parts(other) is not None or self.local(other) is not None:
                        self.inner.add(_span(other))
            defined = f"{f.ctx.file}:{fn.start_point[0] + 1}"
            ps = fn.child_by_field_name("parameters")
            self.defaults[defined] = [p.child_by_field_name("value") if (
                p.type == "optional_parameter") else None
                for p in (ps.named_children if ps is not None else ())]
            self.inner.add(_span(call))
            self.requests.setdefault(defined, call)
            if inner is not None:
                self.used.add(inner[0].defined)
            self.found[key] = Wrapper(prefix, idx, method and method.upper(), method_index,
                                      account, reason, defined, key_from, rest)
            return

    def local(self, node: ts.Node) -> tuple[Wrapper, list[ts.Node], ts.Node | None] | None:
        """(wrapper, positional arguments, the `X.new(...)` its object was built by) of a
        call of a method wrapper of the file: `m(...)` / `self.m(...)` in its class,
        `api.m(...)` where the method built `api = Api.new(...)` of the file's class."""
        if not self.found or node.type != "call":
            return None
        f = self.f
        name = text(node.child_by_field_name("method"))
        receiver = node.child_by_field_name("receiver")
        made: ts.Node | None = None
        if receiver is None or receiver.type == "self":
            cls = self.class_start(node)
        elif receiver.type in ("identifier", "instance_variable"):
            value = f.value(receiver)
            chain = (value.type == "call" and text(value.child_by_field_name("method")) == "new"
                     and value.child_by_field_name("receiver"))
            if not chain:
                return None
            made = value
            short = text(value.child_by_field_name("receiver")).rsplit("::", 1)[-1]
            cls = next((n.start_byte for n in f.nesting.nodes if n.type == "class" and text(
                n.child_by_field_name("name")).rsplit("::", 1)[-1] == short), -1)
        else:
            return None
        w = self.found.get((cls, name))
        if w is None:
            return None
        return w, f.positional(node.child_by_field_name("arguments")), made

    def with_defaults(self, w: Wrapper, args: list[ts.Node]) -> list[ts.Node]:
        """A call site's arguments, then the defaults of the parameters it leaves out."""
        out = list(args)
        for d in self.defaults.get(w.defined, [])[len(args):]:
            if d is None:
                break
            out.append(d)
        return out

    # --- calls ----------------------------------------------------------------------------

    def call(self, node: ts.Node) -> bool:
        f = self.f
        if not self.active:
            return False
        if _span(node) in self.inner:
            return True
        label = text(node.child_by_field_name("method"))
        found = self.local(node)
        if found is not None:
            w, args, made = found
            args = self.with_defaults(w, args)
            if len(args) <= w.path_index:
                return False
            self.used.add(w.defined)
            mtext = self.string(args[w.method_index]) if w.method_index is not None and len(
                args) > w.method_index else None
            request = wrapper_request(w, w.path_pieces([self.pieces(a) for a in args]), mtext)
            if isinstance(request, str):
                f.out.unresolved.append(Unresolved(*f.where(node), label,
                                                   f"{request} (wrapper at {w.defined})"))
                return True
            target, method = request
            acc, why = self.site_key(node, w, args, made) or (w.account, w.reason)
            self.record(node, label, method, target.path, target.expand, target.dynamic_query,
                        (acc, f"via the app's wrapper ({w.defined}): {why}"))
            return True
        parts = self.request_parts(node)
        if parts is None:
            return False
        verb, marg, urls, headers = parts
        pieces = self.url_pieces(urls, None)
        if not pieces or pieces[0] is None or not pieces[0].startswith("http"):
            return False
        raw_at = raw_target(pieces, require_host=True)
        if raw_at is None:
            return False
        sent = verb or (self.string(marg) or "").upper() or None
        if sent is None:
            f.out.unresolved.append(Unresolved(*f.where(node), label,
                                               "HTTP method chosen at run time"))
            return True
        acc, why, _ = self.account(headers, {}, None)
        self.record(node, label, sent.upper(), raw_at.path, raw_at.expand,
                    raw_at.dynamic_query, (acc, why))
        return True

    def site_key(self, node: ts.Node, w: Wrapper, args: list[ts.Node],
                 made: ts.Node | None) -> Client | None:
        if w.key_from is None:
            return None
        f = self.f
        kind, i = w.key_from
        if kind == "arg":
            return f.key(args[i]) if i < len(args) else None
        if made is not None:
            ctor = f.positional(made.child_by_field_name("arguments"))
            return f.key(ctor[i]) if i < len(ctor) else None
        init = next((m for m in f.functions if text(m.child_by_field_name("name")) == (
            "initialize") and self.class_start(m) == self.class_start(node)), None)
        if init is None:
            return None
        return f._passed(f.callee(init), i, "the key given to the constructor (argument")

    def record(self, node: ts.Node, label: str, method: str, path: str,
               expand: tuple[str, ...], dynamic: bool, client: Client) -> None:
        f = self.f
        acc, why = client
        if f.ctx.ui_extension:
            acc, why = "installing", "a UI extension"
        notes = ("query string built at run time",) if dynamic else ()
        f.out.calls.append(Call(*f.where(node), label, method, path, expand, acc, notes, why))

    def uncalled(self) -> None:
        for defined, req in self.requests.items():
            if defined not in self.used:
                self.f.out.unresolved.append(Unresolved(
                    *self.f.where(req), text(req.child_by_field_name("method")),
                    UNCALLED_WRAPPER))
