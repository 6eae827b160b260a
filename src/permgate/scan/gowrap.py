"""Go requests to the API host with net/http, and thin wrappers around them (issue 25, as
JS/TS and Python read them).

A request is `http.NewRequest(method, url, body)` (`NewRequestWithContext` too); its account
comes from the headers its function sets on that request (`req.Header.Set("Authorization",
"Bearer "+key)`, `req.SetBasicAuth(key, "")`, `Stripe-Account`). A wrapper is a function or
method whose request goes to the API base plus one of its parameters (`baseURL + path`,
`fmt.Sprintf("%s%s", base, path)`, through the function's variables, the package's constants
and a struct field the file's literals fill with one value); its method a literal
(`http.MethodGet`), a parameter passed on, or one it compares with HTTP verbs; its key a
parameter (each call site decides) or another key expression (the key rules). Call sites in
the file (`do(...)`, `c.do(...)` in a method of the same receiver type) are the requests;
wrappers of wrappers 3 deep; a wrapper never called in its file, or called with a run-time
path, keeps its request as unreadable traffic (unverified, never unused). Shared with the
other languages: `common.Wrapper`, `wrapper_path`, `wrapper_request`, `raw_target`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tree_sitter as ts

from permgate.scan.common import (
    API_HOSTS,
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
    from permgate.scan.golang import _File

Client = tuple[Account, str]
_Key = tuple[str, str]  # (receiver type or "", name)
_ROUNDS = 3
_NEW_REQUEST = {"http.NewRequest": 0, "http.NewRequestWithContext": 1}
_METHODS = {f"http.Method{m.title()}": m for m in ("GET", "POST", "DELETE", "PUT", "PATCH")}
_CASE = frozenset({"strings.ToUpper", "strings.ToLower", "strings.TrimSpace"})
_TRIM = frozenset({"strings.TrimPrefix", "strings.TrimLeft", "strings.TrimSuffix",
                   "strings.TrimRight", "strings.Trim"})
_VERB = r"""(?:"(?i:get|post|delete|put|patch)"|http\.Method(?:Get|Post|Delete|Put|Patch))"""
_MAX_FN = 20_000  # a wrapper's text read for verb comparisons, at most


def _span(node: ts.Node) -> tuple[int, int]:
    return node.start_byte, node.end_byte


def _receiver(fn: ts.Node) -> tuple[str, str]:
    """(receiver variable, receiver type) of a method; ("", "") for a function."""
    recv = fn.child_by_field_name("receiver")
    decl = recv.named_children[0] if recv is not None and recv.named_child_count else None
    if decl is None:
        return "", ""
    name, typ = decl.child_by_field_name("name"), decl.child_by_field_name("type")
    return (text(name) if name is not None else ""), text(typ).lstrip("*") if typ else ""


class Wrappers:
    def __init__(self, f: _File) -> None:
        self.f = f
        self.found: dict[_Key, Wrapper] = {}
        self.inner: set[tuple[int, int]] = set()
        self.requests: dict[str, ts.Node] = {}
        self.used: set[str] = set()
        self._fields: dict[str, ts.Node | None] | None = None
        # a request to the API names its host in the file (as a wrapper's base does)
        self.active = any(h.encode() in f.source for h in API_HOSTS)
        if not self.active:
            return
        for _ in range(_ROUNDS):
            before = len(self.found)
            for fn in f.functions:
                key = (_receiver(fn)[1], text(fn.child_by_field_name("name")))
                if key not in self.found:
                    self.wrapper_of(fn, key)
            if len(self.found) == before:
                break

    # --- values ---------------------------------------------------------------------------

    def pieces(self, node: ts.Node, marks: dict[str, int] | None = None,
               depth: int = 0) -> list[Piece]:
        """The literal pieces of a string expression (None: built at run time); `marks`:
        a wrapper's parameters, each read as its `param_mark` when used whole."""
        f = self.f
        if depth > 12:
            return [None]
        while node.type == "parenthesized_expression" and node.named_child_count:
            node = node.named_children[0]
        t = node.type
        if t in ("interpreted_string_literal", "raw_string_literal"):
            return [text(node)[1:-1].replace('\\"', '"')]
        if t == "binary_expression" and text(node.child_by_field_name("operator")) == "+":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if left is not None and right is not None:
                return self.pieces(left, marks, depth + 1) + self.pieces(right, marks, depth + 1)
        if t == "identifier":
            fn = f.function(node)
            if marks and text(node) in marks and fn is not None and not f.bound.get(
                    (_span(fn), text(node))):
                return [param_mark(marks[text(node)])]
            for sc in f.scopes_of(node):
                values = f.bound.get((sc, text(node)))
                if values is not None:
                    one = {text(v) for v in values if v is not None}
                    return self.pieces(values[0], marks, depth + 1) if (
                        len(one) == 1 and None not in values and values[0] is not None) else [None]
            return [None]
        if t == "selector_expression":  # `c.baseURL`: a field the file fills one way
            value = self.field(text(node.child_by_field_name("field")))
            return self.pieces(value, marks, depth + 1) if value is not None else [None]
        if t == "call_expression":
            callee = text(node.child_by_field_name("function"))
            args = f._args(node)
            if callee in _TRIM and args and marks:
                return self.pieces(args[0], marks, depth + 1)
            if callee == "fmt.Sprintf" and args:
                form = self.pieces(args[0], None, depth + 1)
                if len(form) == 1 and form[0] is not None:
                    out: list[Piece] = []
                    parts = re.split(r"%[-+# 0-9.]*[a-zA-Z]", form[0])
                    for i, lit in enumerate(parts):
                        if lit:
                            out.append(lit)
                        if i + 1 < len(parts):
                            out += self.pieces(args[i + 1], marks, depth + 1) if (
                                i + 1 < len(args)) else [None]
                    return out
        return [None]

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        if text(node) in _METHODS:
            return _METHODS[text(node)]
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def field(self, name: str) -> ts.Node | None:
        """The value a struct field is given in the file's literals (`&Client{baseURL:
        "https://api.stripe.com/v1"}`), when one (fields are kept by name for the file)."""
        if self._fields is None:
            found: dict[str, list[ts.Node]] = {}
            for lit in self.f.lits:
                for k, v in _keyed_once(lit):
                    found.setdefault(k, []).append(v)
            self._fields = {k: v[0] if len({text(x) for x in v}) == 1 else None
                            for k, v in found.items()}
        return self._fields.get(name)

    # --- wrappers -------------------------------------------------------------------------

    def method_param(self, node: ts.Node | None, marks: dict[str, int]) -> int | None:
        for _ in range(3):
            if node is None:
                return None
            if node.type == "identifier":
                return marks.get(text(node))
            if node.type == "call_expression" and text(
                    node.child_by_field_name("function")) in _CASE:
                args = self.f._args(node)
                node = args[0] if args else None
            else:
                return None
        return None

    def dispatch(self, fn: ts.Node, marks: dict[str, int]) -> int | None:
        """A parameter compared with HTTP verbs (`if method == http.MethodGet`, `switch
        method { case "POST": ...}`)."""
        body = (fn.text or b"")[:_MAX_FN].decode("utf-8", "replace")
        for name, idx in marks.items():
            # possessive spaces: linear on a hostile body (a long run of spaces), not quadratic
            v = r"(?:strings\.To(?:Upper|Lower)\(\s*+)?\b" + re.escape(name) + r"\b\s*+\)?"
            if re.search(rf"{v}\s*+[!=]=\s*+{_VERB}|{_VERB}\s*+[!=]=\s*+{v}", body) or re.search(
                    rf"switch\s++{v}\s*+\{{\s*+case\s++{_VERB}", body):
                return idx
        return None

    def headers(self, fn: ts.Node, req: str) -> tuple[list[ts.Node], list[ts.Node]]:
        """(keys, Stripe-Account values) the function sets on the request variable `req`."""
        keys: list[ts.Node] = []
        accounts: list[ts.Node] = []
        for call in self.f.calls_in(fn):
            callee = call.child_by_field_name("function")
            if callee is None or callee.type != "selector_expression":
                continue
            field = text(callee.child_by_field_name("field"))
            operand = text(callee.child_by_field_name("operand"))
            args = self.f._args(call)
            if field == "SetBasicAuth" and operand == req and args:
                keys.append(args[0])
            elif field in ("Set", "Add") and operand == f"{req}.Header" and len(args) == 2:
                name = (self.string(args[0]) or "").lower()
                if name == "authorization":
                    keys.append(args[1])
                elif name == "stripe-account":
                    accounts.append(args[1])
        return keys, accounts

    def key_part(self, node: ts.Node) -> ts.Node:
        """The key in an Authorization value: `"Bearer " + key`, `fmt.Sprintf("Bearer %s",
        key)`, or the value itself."""
        if node.type == "binary_expression" and text(node.child_by_field_name("operator")) == "+":
            right = node.child_by_field_name("right")
            return right if right is not None else node
        if node.type == "call_expression" and text(node.child_by_field_name(
                "function")) == "fmt.Sprintf":
            args = self.f._args(node)
            return args[1] if len(args) == 2 else node
        return node

    def account(self, fn: ts.Node, req: str, marks: dict[str, int]
                ) -> tuple[Account, str, tuple[str, int] | None]:
        f = self.f
        keys, accounts = self.headers(fn, req) if req else ([], [])
        for v in accounts[:1]:
            fixed = f.fixed(v)
            return ("own", fixed, None) if fixed else ("connected", "a Stripe-Account header",
                                                        None)
        for v in keys[:1]:
            key = self.key_part(v)
            if key.type == "identifier" and text(key) in marks and not f.bound.get(
                    (_span(fn), text(key))):
                return "unknown", "a key the call sites give", ("arg", marks[text(key)])
            acc, why = f.key(key)
            return acc, f"an Authorization header with {why}", None
        return "unknown", "an HTTP request whose key the scan cannot trace", None

    def request_of(self, call: ts.Node) -> tuple[ts.Node | None, ts.Node, str] | None:
        """(method argument, URL, the request's variable) of `http.NewRequest(...)`."""
        at = _NEW_REQUEST.get(text(call.child_by_field_name("function")))
        args = self.f._args(call)
        if at is None or len(args) < at + 2:
            return None
        parent = call.parent
        req = ""
        if parent is not None and parent.type == "expression_list":
            parent = parent.parent
        if parent is not None and parent.type in ("short_var_declaration", "assignment_statement"):
            left = parent.child_by_field_name("left")
            first = left.named_children[0] if left is not None and left.named_child_count else None
            req = text(first) if first is not None else ""
        return args[at], args[at + 1], req

    def wrapper_of(self, fn: ts.Node, key: _Key) -> None:
        from permgate.scan.golang import _param_names

        f = self.f
        params = _param_names(fn)
        if not params:
            return
        marks = {n: i for i, n in enumerate(params) if n != "_"}
        calls = f.calls_in(fn)
        for call in calls:
            key_from: tuple[str, int] | None
            inner = self.local(call)
            if inner is not None:
                w, args = inner
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
                found = self.request_of(call)
                if found is None:
                    continue
                marg, url, req = found
                sym = unmarked(self.pieces(url, marks))
                host = next((h for h in API_HOSTS if sym and isinstance(sym[0], str)
                             and sym[0].startswith(h)), None)
                path = wrapper_path("", [str(sym[0])[len(host):], *sym[1:]]) if host else None
                if path is None:
                    continue
                method, method_index = self.string(marg), None
                if method is None:
                    method_index = self.method_param(marg, marks)
                    if method_index is None:
                        continue
                account, reason, key_from = self.account(fn, req, marks)
            prefix, idx, rest = path
            if method_index is None and (d := self.dispatch(fn, marks)) is not None and d != idx:
                method, method_index = None, d
                for other in calls:
                    if self.request_of(other) is not None or self.local(other) is not None:
                        self.inner.add(_span(other))
            defined = f"{f.ctx.file}:{fn.start_point[0] + 1}"
            self.inner.add(_span(call))
            self.requests.setdefault(defined, call)
            if inner is not None:
                self.used.add(inner[0].defined)
            self.found[key] = Wrapper(prefix, idx, method and method.upper(), method_index,
                                      account, reason, defined, key_from, rest)
            return

    def local(self, node: ts.Node) -> tuple[Wrapper, list[ts.Node]] | None:
        """A call of a wrapper of the file: `do(...)`, or `c.do(...)` on the receiver of a
        method of the wrapper's receiver type."""
        f = self.f
        fn_node = node.child_by_field_name("function")
        if fn_node is None:
            return None
        w: Wrapper | None = None
        if fn_node.type == "identifier":
            w = self.found.get(("", text(fn_node))) or self.elsewhere(
                node, f"{f.pkg}/{text(fn_node)}")
        elif fn_node.type == "selector_expression":
            around = f.function(node)
            var, typ = _receiver(around) if around is not None else ("", "")
            operand = fn_node.child_by_field_name("operand")
            field = text(fn_node.child_by_field_name("field"))
            if var and operand is not None and text(operand) == var:
                w = self.found.get((typ, field)) or self.elsewhere(node, f"{f.pkg}/{typ}.{field}")
            elif operand is not None and text(operand) in f.imported:  # `stripeapi.Do(...)`
                w = self.elsewhere(node, f"{f.imported[text(operand)]}/{field}")
        return (w, f._args(node)) if w is not None else None

    def elsewhere(self, node: ts.Node, name: str) -> Wrapper | None:
        """A wrapper another file of the project defines (`billing/Do`, a method
        `billing/Client.do`), for a call that passes a literal (a path or a method): the
        file is read again once the project learns it."""
        if not any(a.type in ("interpreted_string_literal", "raw_string_literal") or text(
                a) in _METHODS for a in self.f._args(node)):
            return None
        self.f.out.imports.add("go:" + name)
        return self.f.project.wrappers.get("go:" + name)

    def exported(self) -> dict[str, Wrapper]:
        """The file's wrappers, for the other files of its package and its importers."""
        pkg = self.f.pkg
        return {f"go:{pkg}/{typ}.{name}" if typ else f"go:{pkg}/{name}": w
                for (typ, name), w in self.found.items()}

    # --- calls ----------------------------------------------------------------------------

    def call(self, node: ts.Node) -> bool:
        """A wrapper's call site, a wrapper's own request, or a request to the API host."""
        f = self.f
        if _span(node) in self.inner:
            return True
        label = text(node.child_by_field_name("function"))
        found = self.local(node)
        if found is not None:
            w, args = found
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
            acc, why = w.account, w.reason
            if w.key_from is not None and w.key_from[1] < len(args):
                acc, why = f.key(args[w.key_from[1]])
            self.record(node, label, method, target.path, target.expand, target.dynamic_query,
                        (acc, f"via the app's wrapper ({w.defined}): {why}"))
            return True
        raw = self.request_of(node)
        if raw is None:
            return False
        marg, url, req = raw
        pieces = self.pieces(url)
        if not pieces or pieces[0] is None or not pieces[0].startswith("http"):
            return False
        raw_at = raw_target(pieces, require_host=True)
        verb = self.string(marg)
        if raw_at is None or verb is None:
            if raw_at is not None or pieces[0].rstrip("/") in API_HOSTS:
                f.out.unresolved.append(Unresolved(*f.where(node), label,
                                                   "HTTP method or API path built at run time"))
            return True
        fn = f.function(node)
        acc, why, _ = self.account(fn, req, {}) if fn is not None else (
            "unknown", "an HTTP request whose key the scan cannot trace", None)
        self.record(node, label, verb.upper(), raw_at.path, raw_at.expand,
                    raw_at.dynamic_query, (acc, why))
        return True

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
                    *self.f.where(req), text(req.child_by_field_name("function")),
                    UNCALLED_WRAPPER))


def _keyed_once(lit: ts.Node) -> list[tuple[str, ts.Node]]:
    """The `Key: value` elements of a composite literal (not nested ones)."""
    body = lit.child_by_field_name("body")
    out: list[tuple[str, ts.Node]] = []
    for el in body.named_children[:64] if body is not None else ():
        if el.type == "keyed_element" and el.named_child_count == 2:
            k, v = el.named_children
            v = v.named_children[0] if v.type == "literal_element" and v.named_child_count else v
            k = k.named_children[0] if k.type == "literal_element" and k.named_child_count else k
            out.append((text(k), v))
    return out
