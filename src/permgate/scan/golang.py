"""Go backends (stripe-go): the plain call forms, found with tree-sitter-go.

Covered: resource packages (`customer.Get(id, params)` with the package imported from
`github.com/stripe/stripe-go/vNN/customer`) and client fields (`sc.V1Customers.Retrieve(...)`,
`sc.Customers.Get(...)`). Expansions come from `params.AddExpand("...")` on the params
variable passed to the call; `SetStripeAccount` / `StripeAccount:` mark a connected account.
"""

from __future__ import annotations

import re
from functools import cache

import tree_sitter as ts
import tree_sitter_go as ts_go

from permgate.scan.common import Context, key_account_why
from permgate.scan.model import Account, Call, FileFindings, Scope
from permgate.scan.sdk import Route, table
from permgate.scan.tsutil import event_uses, query_captures, text

_QUERY = """
(call_expression) @call
(import_spec) @import
(function_declaration) @fn
(method_declaration) @fn
(short_var_declaration) @bind
(assignment_statement) @bind
"""
_IMPORT = re.compile(r'"github\.com/stripe/stripe-go(?:/v\d+)?/([a-z0-9_/]+)"')
# stripe-go's verbs for the CRUD methods the other SDKs spell out.
_GLOBAL_KEY = re.compile(r"\bstripe\.Key\s*=\s*([^\n]+)")
_VERBS = {"get": "retrieve", "new": "create", "del": "delete", "update": "modify"}


@cache
def _language() -> ts.Language:
    return ts.Language(ts_go.language())


@cache
def _query() -> ts.Query:
    return ts.Query(_language(), _QUERY)


@cache
def _classes_by_package() -> dict[str, str]:
    """`checkout/session` -> `checkout.Session` (stripe-go packages are folded class names)."""
    out: dict[str, str] = {}
    for cls in table().resource_classes:
        out.setdefault(cls.replace(".", "").replace("_", "").lower(), cls)
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _string(node: ts.Node) -> str | None:
    if node.type in ("interpreted_string_literal", "raw_string_literal"):
        return text(node)[1:-1]
    return None


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.tree = ts.Parser(_language()).parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        self.calls = caps.get("call", [])
        self.packages: dict[str, str] = {}  # local package name -> resource class
        classes = _classes_by_package()
        for spec in caps.get("import", []):
            m = _IMPORT.search(text(spec))
            if not m:
                continue
            sub = m.group(1)
            alias = spec.child_by_field_name("name")
            local = text(alias) if alias is not None else sub.rsplit("/", 1)[-1]
            cls = classes.get(sub.replace("/", "").replace("_", ""))
            if cls:
                self.packages[local] = cls
        self.expands: dict[str, list[str]] = {}
        self.connected_params: set[str] = set()
        for call in self.calls:
            fn = call.child_by_field_name("function")
            if fn is None or fn.type != "selector_expression":
                continue
            field = text(fn.child_by_field_name("field"))
            operand = text(fn.child_by_field_name("operand"))
            args = self._args(call)
            if field == "AddExpand" and args and (s := _string(args[0])) is not None:
                self.expands.setdefault(operand, []).append(s)
            elif field == "SetStripeAccount":
                self.connected_params.add(operand)
        m = _GLOBAL_KEY.search(source.decode("utf-8", "replace"))
        self.global_account: tuple[Account, str] = ("unknown", "stripe.Key is not set in "
                                                    "this file")
        if m:
            acc, why = key_account_why(m.group(1))
            self.global_account = (acc, f"stripe.Key is set to {why}")
        # sc := client.New(key, nil) / stripe.NewClient(key): a client of that key's account
        self.clients: dict[str, tuple[Account, str]] = {}
        for bind in caps.get("bind", []):
            left, right = bind.child_by_field_name("left"), bind.child_by_field_name("right")
            if left is None or right is None or not left.named_child_count:
                continue
            value = right.named_children[0] if right.named_child_count else right
            if value.type != "call_expression":
                continue
            ctor = text(value.child_by_field_name("function"))
            if ctor in ("client.New", "stripe.NewClient"):
                args = self._args(value)
                acc, why = key_account_why(text(args[0]) if args else None)
                row = value.start_point[0] + 1
                self.clients[text(left.named_children[0])] = (
                    acc, f"client built at {ctx.file}:{row} from {why}")
        self.functions = caps.get("fn", [])
        self.out = FileFindings()
        self.out.partial = deep

    @staticmethod
    def _args(call: ts.Node) -> list[ts.Node]:
        a = call.child_by_field_name("arguments")
        return [] if a is None else list(a.named_children)

    def run(self) -> FileFindings:
        for call in self.calls:
            try:
                self.call(call)
            except RecursionError:
                self.out.partial = "some calls are too deeply nested to analyse"
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
        if self.out.events:
            for decl in self.functions:
                self.out.scopes.append(Scope(text(decl.child_by_field_name("name")),
                                             decl.start_point[0] + 1, decl.end_point[0] + 1))
            for call in self.calls:
                callee = call.child_by_field_name("function")
                if callee is not None and callee.type == "identifier":
                    self.out.local_calls.append((call.start_point[0] + 1, text(callee)))
            self.out.source = self.source  # `event.account` lines: read only if a handler asks
        return self.out

    def route(self, fn: ts.Node) -> Route | None:
        if fn.type != "selector_expression":
            return None
        method = text(fn.child_by_field_name("field"))
        operand = fn.child_by_field_name("operand")
        if operand is None:
            return None
        snake = _VERBS.get(method.lower(), _snake(method))
        if operand.type == "identifier" and text(operand) in self.packages:
            cls = self.packages[text(operand)]
            return table().get("resource", f"{cls}.{snake}")
        if operand.type == "selector_expression":  # sc.V1Customers.Retrieve
            service = text(operand.child_by_field_name("field"))
            if not service[:1].isupper():
                return None
            key = service.lower() if service.startswith(("V1", "V2")) else "v1" + service.lower()
            folded = table().folded
            return folded.get(f"{key}.{snake.replace('_', '')}") or folded.get(
                f"{key}.{method.lower()}"
            )
        return None

    def call(self, node: ts.Node) -> None:
        fn = node.child_by_field_name("function")
        if fn is None:
            return
        route = self.route(fn)
        if route is None:
            return
        args = self._args(node)
        expand: list[str] = []
        account, why = self.global_account
        operand = fn.child_by_field_name("operand")
        if operand is not None and operand.type == "selector_expression":
            root = operand.child_by_field_name("operand")
            if root is not None and text(root) in self.clients:
                account, why = self.clients[text(root)]
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension"
        for a in args:
            name = text(a).lstrip("&")
            expand.extend(self.expands.get(name, ()))
            if (name in self.connected_params or "StripeAccount" in text(a)) and (
                not self.ctx.ui_extension
            ):
                account, why = "connected", "SetStripeAccount / StripeAccount on the params"
        row, col = node.start_point
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, text(fn), route[0], route[1], tuple(expand),
            account, (), why,
        ))


def extract(ctx: Context, source: bytes) -> FileFindings:
    return _File(ctx, source).run()

