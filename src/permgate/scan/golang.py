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

from permgate.scan.common import Context, key_account
from permgate.scan.model import Account, Call, FileFindings
from permgate.scan.sdk import Route, table
from permgate.scan.tsutil import event_uses, text

_QUERY = """
(call_expression) @call
(import_spec) @import
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
        caps = ts.QueryCursor(_query()).captures(self.tree.root_node)
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
        self.global_account: Account = key_account(m.group(1)) if m else "unknown"
        self.out = FileFindings()

    @staticmethod
    def _args(call: ts.Node) -> list[ts.Node]:
        a = call.child_by_field_name("arguments")
        return [] if a is None else list(a.named_children)

    def run(self) -> FileFindings:
        for call in self.calls:
            self.call(call)
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
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
        account: Account = "installing" if self.ctx.ui_extension else self.global_account
        for a in args:
            name = text(a).lstrip("&")
            expand.extend(self.expands.get(name, ()))
            if name in self.connected_params or "StripeAccount" in text(a):
                account = "connected" if not self.ctx.ui_extension else account
        row, col = node.start_point
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, text(fn), route[0], route[1], tuple(expand),
            account,
        ))


def extract(ctx: Context, source: bytes) -> FileFindings:
    return _File(ctx, source).run()

