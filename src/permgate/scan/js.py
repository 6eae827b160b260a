"""TypeScript, TSX and JavaScript: Stripe calls found with the tree-sitter grammars."""

from __future__ import annotations

import re
from functools import cache

import tree_sitter as ts
import tree_sitter_javascript as ts_js
import tree_sitter_typescript as ts_ts

from permgate.scan.common import (
    HTTP_VERBS,
    Context,
    Piece,
    key_account,
    raw_target,
)
from permgate.scan.model import Account, Call, FileFindings, Unresolved
from permgate.scan.sdk import table
from permgate.scan.tsutil import event_uses

EXTENSIONS = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
}
DYNAMIC = "\x00"  # a computed member (`stripe[name]`) in a callee chain
_CLIENT_NAME = re.compile(r"stripe", re.I)
_UNWRAP = {"parenthesized_expression", "await_expression", "non_null_expression",
           "as_expression", "satisfies_expression", "type_assertion"}
_QUERY = """
(call_expression) @call
(variable_declarator) @bind
(assignment_expression) @bind
"""
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
        captures = ts.QueryCursor(_query(lang)).captures(self.tree.root_node)
        self.calls = captures.get("call", [])
        self.consts: dict[str, ts.Node] = {}
        self.clients: dict[str, Account] = {}
        ambiguous: set[str] = set()
        for bind in captures.get("bind", []):
            name = (bind.child_by_field_name("name") or bind.child_by_field_name("left")
                    or bind.child_by_field_name("property"))
            value = bind.child_by_field_name("value") or bind.child_by_field_name("right")
            key = _bound_name(name) if name is not None else None
            if key is None or value is None:
                continue
            value = _unwrap(value)
            if _constructs_client(value):
                account = self._client_account(value)
                # one name bound to clients of different accounts: cannot tell which one
                same = self.clients.get(key, account) == account
                self.clients[key] = account if same else "unknown"
            elif name is not None and name.type == "identifier":
                if key in self.consts:
                    ambiguous.add(key)
                self.consts[key] = value
        for key in ambiguous:  # reassigned: not a constant we can trust
            self.consts.pop(key, None)
        self.out = FileFindings()

    # --- values -------------------------------------------------------------

    def resolve(self, node: ts.Node, depth: int = 0) -> ts.Node:
        node = _unwrap(node)
        if node.type == "identifier" and depth < 8:
            target = self.consts.get(_text(node))
            if target is not None:
                return self.resolve(target, depth + 1)
        return node

    def pieces(self, node: ts.Node, depth: int = 0) -> list[Piece]:
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
                    out.extend(self.pieces(inner, depth + 1) if inner and depth < 8 else [None])
                elif child.type == "escape_sequence":
                    out.append(_text(child)[1:])
            return out
        if node.type == "binary_expression" and depth < 16:
            op = node.child_by_field_name("operator")
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if op is not None and _text(op) == "+" and left is not None and right is not None:
                return self.pieces(left, depth + 1) + self.pieces(right, depth + 1)
        return [None]

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def strings(self, node: ts.Node) -> list[str] | None:
        node = self.resolve(node)
        if node.type != "array":
            return None
        out: list[str] = []
        for el in node.named_children:
            if el.type == "comment":
                continue
            if el.type == "spread_element" and el.named_child_count:
                inner = self.strings(el.named_children[0])
                if inner is None:
                    return None
                out.extend(inner)
                continue
            s = self.string(el)
            if s is None:
                return None
            out.append(s)
        return out

    def props(self, node: ts.Node) -> dict[str, ts.Node] | None:
        node = self.resolve(node)
        if node.type != "object":
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
                out.update(self.props(p.named_children[0]) or {})
        return out

    def _client_account(self, construct: ts.Node) -> Account:
        if self.ctx.ui_extension:
            return "installing"
        args = _args(construct)
        for a in args[1:]:
            if _connected_options(self, a):
                return "connected"
        return key_account(_text(args[0]) if args else None)

    # --- calls --------------------------------------------------------------

    def run(self) -> FileFindings:
        for call in self.calls:
            self.call(call)
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
        return self.out

    def call(self, node: ts.Node) -> None:
        callee = node.child_by_field_name("function")
        if callee is None:
            return
        args = _args(node)
        segs = _chain(callee)
        if segs is not None and len(segs) >= 2:
            for i, seg in enumerate(segs[:-1]):
                known = seg in self.clients
                if known or (_CLIENT_NAME.search(seg) and seg != DYNAMIC):
                    if self.sdk_call(node, segs[i + 1:], self.clients.get(seg), known, args):
                        return
                    break
        self.http_call(node, segs, args)

    def where(self, node: ts.Node) -> tuple[str, int, int]:
        row, col = node.start_point
        return self.ctx.file, row + 1, col + 1

    def sdk_call(
        self, node: ts.Node, rest: list[str], client: Account | None, known: bool,
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
        account = self.account(args, client)
        self.out.calls.append(Call(
            *self.where(node), label, route[0], route[1], expand, account, notes,
        ))
        return True

    def expand_args(self, args: list[ts.Node]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        for a in args:
            p = self.props(a)
            if p and "expand" in p:
                values = self.strings(p["expand"])
                if values is None:
                    return (), ("expand is built at run time: its permissions are not counted",)
                return tuple(values), ()
        return (), ()

    def account(self, args: list[ts.Node], client: Account | None) -> Account:
        if self.ctx.ui_extension:
            return "installing"
        if any(_connected_options(self, a) for a in args):
            return "connected"
        return client or "unknown"

    def raw_request(
        self, node: ts.Node, label: str, client: Account | None, args: list[ts.Node]
    ) -> None:
        method = self.string(args[0]) if args else None
        target = raw_target(self.pieces(args[1]), require_host=False) if len(args) > 1 else None
        if method is None or target is None:
            self.out.unresolved.append(
                Unresolved(*self.where(node), label, "method or path built at run time")
            )
            return
        expand, notes = self.expand_args(args[2:3])
        self.out.calls.append(Call(
            *self.where(node), label, method.upper(), target.path, target.expand + expand,
            self.account(args[2:], client), notes,
        ))

    def http_call(self, node: ts.Node, segs: list[str] | None, args: list[ts.Node]) -> None:
        if not args:
            return
        first = args[0]
        config = self.props(first)
        url_node = config.get("url") if config else first
        if url_node is None:
            return
        pieces = self.pieces(url_node)
        if pieces and pieces[0] is not None and not pieces[0].startswith("http"):
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
        account: Account = "installing" if self.ctx.ui_extension else "unknown"
        if not self.ctx.ui_extension and any(_connected_options(self, a) for a in args):
            account = "connected"
        notes = ("query string built at run time",) if target.dynamic_query else ()
        self.out.calls.append(Call(
            *self.where(node), label, method or "GET", target.path, target.expand, account, notes,
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
            out.append("()")
            return out[::-1]
        else:
            return out[::-1] if out else None
    return None


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


def _connected_options(f: _File, node: ts.Node) -> bool:
    p = f.props(node)
    if not p:
        return False
    if "stripeAccount" in p or "stripe_account" in p:
        return True
    headers = f.props(p["headers"]) if "headers" in p else None
    return bool(headers) and any(k.lower() == "stripe-account" for k in headers or {})


def extract(ctx: Context, source: bytes, suffix: str) -> FileFindings:
    return _File(ctx, source, EXTENSIONS[suffix]).run()
