"""PHP backends (stripe-php and plain HTTP), found with tree-sitter-php.

Covered: `StripeClient` services (`$stripe->customers->retrieve($id, ['expand' => [...]])`,
`$this->stripe->checkout->sessions->create(...)`), static resources
(`\\Stripe\\Customer::retrieve(...)`, `\\Stripe\\Checkout\\Session::create(...)`) with the key of
`\\Stripe\\Stripe::setApiKey(...)`, and HTTP calls to the API host (`wp_remote_get`,
`wp_remote_post`, `wp_remote_request`, Guzzle-style `->request('GET', $url)` / `->get($url)`).
stripe-php names its services and methods as stripe-node does, except `all` for `list` and
`delete` for `del`; the node rows of the SDK table are used with those two renamings.
"""

from __future__ import annotations

import re
from functools import cache

import tree_sitter as ts
import tree_sitter_php as ts_php

from permgate.scan.common import (
    HTTP_VERBS,
    Context,
    Piece,
    fixed_account,
    key_account_why,
    raw_target,
)
from permgate.scan.model import EXPAND_AT_RUN_TIME, Account, Call, FileFindings, Scope, Unresolved
from permgate.scan.sdk import Route, table
from permgate.scan.tsutil import event_uses, query_captures, text

Client = tuple[Account, str]
_QUERY = """
(member_call_expression) @call
(scoped_call_expression) @call
(function_call_expression) @call
(assignment_expression) @assign
(function_definition) @fn
(method_declaration) @fn
(namespace_use_declaration) @use
"""
_WP = {"wp_remote_get": "GET", "wp_remote_post": "POST", "wp_remote_request": None,
       "wp_safe_remote_get": "GET", "wp_safe_remote_post": "POST",
       "wp_safe_remote_request": None}
_STATIC = {"all": "list", "update": "modify"}


@cache
def _language() -> ts.Language:
    return ts.Language(ts_php.language_php())


@cache
def _query() -> ts.Query:
    return ts.Query(_language(), _QUERY)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _node_method(method: str) -> str:
    if method == "all":
        return "list"
    if method.startswith("all") and method[3:4].isupper():
        return "list" + method[3:]
    if method == "delete":
        return "del"
    return method


def _name(node: ts.Node | None) -> str:
    return text(node).lstrip("$") if node is not None else ""


def _chain(node: ts.Node) -> list[str] | None:
    """`$this->stripe->customers->retrieve` -> ['this', 'stripe', 'customers', 'retrieve']."""
    out: list[str] = []
    for _ in range(32):
        if node.type in ("member_call_expression", "member_access_expression",
                         "nullsafe_member_call_expression", "nullsafe_member_access_expression"):
            out.append(_name(node.child_by_field_name("name")))
            obj = node.child_by_field_name("object")
            if obj is None:
                return None
            node = obj
        elif node.type == "variable_name":
            out.append(_name(node))
            return out[::-1]
        else:
            return None
    return None


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.tree = ts.Parser(_language()).parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        self.calls = caps.get("call", [])
        self.functions = caps.get("fn", [])
        self.consts: dict[str, ts.Node] = {}
        # every value assigned to a variable in the file, for what a key variable holds
        self.assigned: dict[str, list[ts.Node]] = {}
        self.clients: dict[str, Client] = {}
        # `use Stripe\Checkout\Session;` -> {"Session": "Stripe\Checkout\Session"}: a class
        # is resolved by the path it was imported from, not by its short name
        self.aliases: dict[str, str] = {}
        for u in caps.get("use", []):
            self._use(u)
        self.module: Client = ("unknown", "\\Stripe\\Stripe::setApiKey is not called in this "
                               "file")
        ambiguous: set[str] = set()
        for a in caps.get("assign", []):
            left, right = a.child_by_field_name("left"), a.child_by_field_name("right")
            if left is None or right is None:
                continue
            key = _name(left.child_by_field_name("name")) if left.type.startswith(
                "member_access") else _name(left) if left.type == "variable_name" else ""
            if not key:
                continue
            if right.type == "object_creation_expression" and text(right).replace(
                "\\", "").split("(")[0].strip().endswith("StripeClient"):
                self.clients[key] = self._client_account(right)
            elif left.type == "variable_name":
                self.assigned.setdefault(key, []).append(right)
                if key in self.consts and text(self.consts[key]) != text(right):
                    ambiguous.add(key)
                self.consts[key] = right
        for k in ambiguous:
            self.consts.pop(k, None)
        for call in self.calls:
            if call.type == "scoped_call_expression" and _name(
                call.child_by_field_name("name")
            ) == "setApiKey" and text(call.child_by_field_name("scope")).endswith("Stripe"):
                args = self._args(call)
                acc, why = self.key(args[0] if args else None)
                row = call.start_point[0] + 1
                self.module = (acc, f"setApiKey at {ctx.file}:{row} with {why}")
        self.out = FileFindings()
        self.out.partial = deep

    def _use(self, decl: ts.Node) -> None:
        prefix = ""
        for c in decl.named_children:
            if c.type == "namespace_name":
                prefix = text(c).strip("\\") + "\\"
            group = c.named_children if c.type == "namespace_use_group" else [c]
            for clause in group:
                if clause.type != "namespace_use_clause" or not clause.named_children:
                    continue
                names = clause.named_children
                full = prefix + text(names[0]).strip("\\")
                alias = text(names[-1]) if len(names) > 1 else full.rsplit("\\", 1)[-1]
                self.aliases[alias] = full

    def key(self, node: ts.Node | None) -> Client:
        """Whose account a key expression acts for; a variable is followed to the values the
        file assigns it (`$k = get_user_meta($id, 'stripe_access_token')`), when they agree."""
        if node is None:
            return key_account_why(None)
        if node.type == "variable_name":
            values = self.assigned.get(_name(node), [])
            if values and len(values) <= 8:
                found = {key_account_why(text(v)) for v in values}
                accounts = {a for a, _ in found}
                if len(accounts) == 1 and "unknown" not in accounts:
                    acc, why = min(found)
                    return acc, f"{text(node)}, assigned {why}"
        return key_account_why(text(node))

    @staticmethod
    def _args(call: ts.Node) -> list[ts.Node]:
        a = call.child_by_field_name("arguments")
        if a is None:
            # `new X(...)`: tree-sitter-php gives the arguments no field name there
            a = next((c for c in call.children if c.type == "arguments"), None)
        if a is None:
            return []
        out = []
        for arg in a.named_children:
            if arg.type == "argument" and arg.named_child_count:
                out.append(arg.named_children[-1])
            elif arg.type != "comment":
                out.append(arg)
        return out

    def _client_account(self, construct: ts.Node) -> Client:
        row = construct.start_point[0] + 1
        where = f"client built at {self.ctx.file}:{row}"
        args = self._args(construct)
        if not args:
            return "unknown", f"{where} without a key"
        arr = self.array(args[0])
        if arr is not None:
            if "stripe_account" in arr:
                return "connected", f"{where} with stripe_account"
            acc, why = self.key(arr.get("api_key"))
        else:
            acc, why = self.key(args[0])
        return acc, f"{where} from {why}"

    # --- values -------------------------------------------------------------

    def resolve(self, node: ts.Node) -> ts.Node:
        seen: set[str] = set()
        while node.type == "variable_name" and len(seen) < 8:
            name = _name(node)
            target = self.consts.get(name)
            if target is None or name in seen:
                break
            seen.add(name)
            node = target
        return node

    def pieces(self, node: ts.Node, depth: int = 0) -> list[Piece]:
        node = self.resolve(node)
        if node.type in ("string", "encapsed_string"):
            out: list[Piece] = []
            for c in node.named_children:
                if c.type == "string_content" or c.type == "string_value":
                    out.append(text(c))
                elif c.type == "escape_sequence":
                    out.append(text(c)[1:])
                else:
                    out.append(None)
            return out or [""]
        if node.type == "binary_expression" and depth < 16:
            op = node.child_by_field_name("operator")
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if op is not None and text(op) == "." and left is not None and right is not None:
                return self.pieces(left, depth + 1) + self.pieces(right, depth + 1)
        return [None]

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def array(self, node: ts.Node, depth: int = 0) -> dict[str, ts.Node] | None:
        node = self.resolve(node)
        if node.type != "array_creation_expression" or depth > 8:
            return None
        out: dict[str, ts.Node] = {}
        for el in node.named_children:
            if el.type == "array_element_initializer" and el.named_child_count == 2:
                k = self.string(el.named_children[0])
                if k is not None:
                    out[k] = el.named_children[1]
        return out

    def strings(self, node: ts.Node) -> list[str] | None:
        node = self.resolve(node)
        if node.type != "array_creation_expression":
            return None
        out = []
        for el in node.named_children:
            if el.type != "array_element_initializer" or el.named_child_count != 1:
                return None
            s = self.string(el.named_children[0])
            if s is None:
                return None
            out.append(s)
        return out

    # --- calls --------------------------------------------------------------

    def run(self) -> FileFindings:
        for call in self.calls:
            try:
                self.call(call)
            except RecursionError:
                self.out.partial = "some calls are too deeply nested to analyse"
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
        if self.out.events:
            for fn in self.functions:
                self.out.scopes.append(Scope(_name(fn.child_by_field_name("name")),
                                             fn.start_point[0] + 1, fn.end_point[0] + 1))
            for call in self.calls:
                if call.type == "function_call_expression":
                    self.out.local_calls.append(
                        (call.start_point[0] + 1, text(call.child_by_field_name("function"))))
                elif call.type == "member_call_expression":
                    chain = _chain(call)
                    if chain and chain[0] == "this" and len(chain) == 2:
                        self.out.local_calls.append((call.start_point[0] + 1, chain[1]))
            self.out.source = self.source  # `event.account` lines: read only if a handler asks
        return self.out

    def where(self, node: ts.Node) -> tuple[str, int, int]:
        row, col = node.start_point
        return self.ctx.file, row + 1, col + 1

    def call(self, node: ts.Node) -> None:
        if node.type == "member_call_expression":
            chain = _chain(node)
            if chain and self.service_call(node, chain):
                return
            if chain:
                verb = chain[-1].lower()
                args = self._args(node)
                if verb == "request" and len(args) >= 2:
                    self.http(node, self.string(args[0]), args[1], args[2:])
                elif verb in HTTP_VERBS and args:
                    self.http(node, verb.upper(), args[0], args[1:])
        elif node.type == "scoped_call_expression":
            self.static_call(node)
        elif node.type == "function_call_expression":
            fn = text(node.child_by_field_name("function")).lstrip("\\")
            if fn in _WP:
                args = self._args(node)
                if args:
                    self.http(node, _WP[fn], args[0], args[1:])

    def service_call(self, node: ts.Node, chain: list[str]) -> bool:
        for i, seg in enumerate(chain[:-1]):
            client = self.clients.get(seg)
            if client is None and not re.search(r"stripe", seg, re.I):
                continue
            rest = chain[i + 1:]
            if rest and rest[0] == "v1":
                rest = rest[1:]
            if len(rest) < 2:
                return False
            call = ".".join([*rest[:-1], _node_method(rest[-1])])
            route = table().get("node", call) or table().get("node", ".".join(rest))
            label = "->".join(chain)
            if route is None:
                if client is not None and rest[0] in table().roots["node"]:
                    self.out.unresolved.append(Unresolved(
                        *self.where(node), label, "not a method the SDK table knows"))
                    return True
                return False
            acc, why = client or ("unknown", "a client the scan cannot trace")
            self.record(node, label, route, (acc, why))
            return True
        return False

    def static_call(self, node: ts.Node) -> None:
        raw = text(node.child_by_field_name("scope"))
        scope = raw.lstrip("\\")
        if not raw.startswith("\\"):
            head, _, tail = scope.partition("\\")
            if head in self.aliases:
                scope = self.aliases[head] + ("\\" + tail if tail else "")
        method = _name(node.child_by_field_name("name"))
        parts = scope.split("\\")
        if not parts or parts[0] != "Stripe" or len(parts) < 2:
            return
        cls = ".".join([*(_snake(p) for p in parts[1:-1]), parts[-1]])
        if cls not in table().resource_classes:
            return
        route = None
        for name in (_STATIC.get(method, method), method, _snake(_node_method(method))):
            route = table().get("resource", f"{cls}.{name}")
            if route is not None:
                break
        label = f"\\{scope}::{method}"
        if route is None:
            self.out.unresolved.append(Unresolved(
                *self.where(node), label, "not a method the SDK table knows"))
            return
        self.record(node, label, route, self.module)

    def record(self, node: ts.Node, label: str, route: Route, client: Client) -> None:
        expand: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        acc, why = client
        if self.ctx.ui_extension:
            acc, why = "installing", "a UI extension"
        for a in self._args(node):
            arr = self.array(a)
            if not arr:
                continue
            if "expand" in arr:
                values = self.strings(arr["expand"])
                if values is None:
                    notes = (EXPAND_AT_RUN_TIME,)
                else:
                    expand = tuple(values)
            if "stripe_account" in arr:
                fixed = fixed_account(text(self.resolve(arr["stripe_account"])))
                acc, why = ("own", fixed) if fixed else (
                    "connected", "a stripe_account option on the call")
            if "api_key" in arr:
                acc, w = self.key(arr["api_key"])
                why = f"api_key on the call: {w}"
        self.out.calls.append(Call(*self.where(node), label, route[0], route[1], expand, acc,
                                   notes, why))

    def http(self, node: ts.Node, method: str | None, url: ts.Node,
             rest: list[ts.Node]) -> None:
        pieces = self.pieces(url)
        if not pieces or pieces[0] is None or not pieces[0].startswith("http"):
            return
        target = raw_target(pieces, require_host=True)
        fn = node.child_by_field_name("function") or node.child_by_field_name("name")
        label = text(fn) if fn is not None else "?"
        if target is None:
            if pieces[0].rstrip("/") in ("https://api.stripe.com", "https://api.stripe.com/v1"):
                self.out.unresolved.append(Unresolved(*self.where(node), label,
                                                      "API path built at run time"))
            return
        acc: Account = "unknown"
        why = "an HTTP call whose key the scan cannot trace"
        for a in rest:
            opts = self.array(a) or {}
            if "method" in opts:
                method = (self.string(opts["method"]) or "").upper() or None
            headers = self.array(opts["headers"]) if "headers" in opts else None
            for k, v in (headers or {}).items():
                if k.lower() == "stripe-account":
                    acc, why = "connected", "a Stripe-Account header"
                elif k.lower() == "authorization" and acc == "unknown":
                    acc, w = key_account_why(text(v))
                    why = f"an Authorization header with {w}"
            if "auth" in opts and acc == "unknown":
                acc, w = key_account_why(text(opts["auth"]))
                why = f"auth with {w}"
        if self.ctx.ui_extension:
            acc, why = "installing", "a UI extension"
        if method is None:
            self.out.unresolved.append(Unresolved(*self.where(node), label,
                                                  "HTTP method chosen at run time"))
            return
        notes = ("query string built at run time",) if target.dynamic_query else ()
        self.out.calls.append(Call(*self.where(node), label, method.upper(), target.path,
                                   target.expand, acc, notes, why))


def extract(ctx: Context, source: bytes) -> FileFindings:
    return _File(ctx, source).run()
