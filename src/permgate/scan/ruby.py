"""Ruby backends (stripe-ruby): the plain call forms, found with tree-sitter-ruby.

Covered: `Stripe::Customer.retrieve(id, {expand: [...]}, {stripe_account: acct})`,
`Stripe::Checkout::Session.create(...)`, and `StripeClient` services
(`client.v1.customers.retrieve(...)`). Arguments are read when they are literals.
"""

from __future__ import annotations

import re
from functools import cache

import tree_sitter as ts
import tree_sitter_ruby as ts_ruby

from permgate.scan.common import Context, Project, fixed_account, key_account_why
from permgate.scan.model import EXPAND_AT_RUN_TIME, Account, Call, FileFindings, Scope, Unresolved
from permgate.scan.sdk import table
from permgate.scan.tsutil import event_uses, query_captures, text

_QUERY = """
(call) @call
(assignment) @assign
(method) @fn
(singleton_method) @fn
"""
Client = tuple[Account, str]
# stripe-ruby names a few class methods differently from stripe-python.
_METHOD_ALIASES = {"update": "modify"}


@cache
def _language() -> ts.Language:
    return ts.Language(ts_ruby.language())


@cache
def _parser() -> ts.Parser:
    return ts.Parser(_language())


@cache
def _query() -> ts.Query:
    return ts.Query(_language(), _QUERY)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _chain(node: ts.Node) -> list[str] | None:
    out: list[str] = []
    for _ in range(32):
        if node.type == "call":
            method = node.child_by_field_name("method")
            receiver = node.child_by_field_name("receiver")
            if method is None:
                return None
            out.append(text(method))
            if receiver is None:
                return out[::-1]
            node = receiver
        elif node.type == "scope_resolution":
            name = node.child_by_field_name("name")
            scope = node.child_by_field_name("scope")
            out.append(text(name))
            if scope is None:
                return out[::-1]
            node = scope
        elif node.type in ("constant", "identifier", "instance_variable"):
            out.append(text(node).lstrip("@"))
            return out[::-1]
        else:
            return None
    return None


def _hash_keys(node: ts.Node) -> dict[str, ts.Node]:
    out: dict[str, ts.Node] = {}
    if node.type not in ("hash", "argument_list"):
        return out
    for p in node.named_children:
        if p.type == "pair":
            k, v = p.child_by_field_name("key"), p.child_by_field_name("value")
            if k is not None and v is not None:
                out[text(k).strip(":'\"")] = v
    return out


def _strings(node: ts.Node) -> list[str] | None:
    if node.type != "array":
        return None
    out = []
    for el in node.named_children:
        if el.type != "string" or any(c.type == "interpolation" for c in el.named_children):
            return None
        out.append("".join(text(c) for c in el.named_children if c.type == "string_content"))
    return out


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.tree = _parser().parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        self.calls = caps.get("call", [])
        self.functions = caps.get("fn", [])
        self.clients: dict[str, Client] = {}
        self.key_set = False
        project_key = ctx.project.module_key if ctx.project is not None else None
        self.module_account: Client = project_key or ("unknown", "Stripe.api_key is not set "
                                                      "in the project")
        for assign in caps.get("assign", []):
            name, value = assign.child_by_field_name("left"), assign.child_by_field_name("right")
            if name is None or value is None:
                continue
            chain = _chain(value) if value.type == "call" else None
            if chain and chain[-2:] == ["StripeClient", "new"]:
                self.clients[text(name).lstrip("@")] = self.client_account(value)
            elif text(name) == "Stripe.api_key":
                self.key_set = True
                acc, why = key_account_why(text(value))
                row = assign.start_point[0] + 1
                self.module_account = (acc, f"Stripe.api_key set at {ctx.file}:{row} to {why}")
        self.out = FileFindings()
        self.out.partial = deep

    def client_account(self, construct: ts.Node) -> Client:
        where = f"client built at {self.ctx.file}:{construct.start_point[0] + 1}"
        if self.ctx.ui_extension:
            return "installing", "a UI extension"
        args = construct.child_by_field_name("arguments")
        if args is not None and any(
            "stripe_account" in _hash_keys(a) for a in (args, *args.named_children)
        ):
            return "connected", f"{where} with stripe_account"
        first = args.named_children[0] if args is not None and args.named_child_count else None
        acc, why = key_account_why(text(first) if first is not None else None)
        return acc, f"{where} from {why}"

    def run(self) -> FileFindings:
        for node in self.calls:
            try:
                self.call(node)
            except RecursionError:
                self.out.partial = "some calls are too deeply nested to analyse"
        self.out.events.extend(event_uses(self.tree, self.source, self.ctx))
        if self.out.events:
            for fn in self.functions:
                self.out.scopes.append(Scope(text(fn.child_by_field_name("name")),
                                             fn.start_point[0] + 1, fn.end_point[0] + 1))
            for node in self.calls:
                if node.child_by_field_name("receiver") is None:
                    method = node.child_by_field_name("method")
                    self.out.local_calls.append((node.start_point[0] + 1, text(method)))
            self.out.source = self.source  # `event.account` lines: read only if a handler asks
        return self.out

    def call(self, node: ts.Node) -> None:
        parent = node.parent
        # `client.v1.customers` inside `client.v1.customers.list`: only a link of the chain.
        is_link = parent is not None and parent.type == "call" and parent.child_by_field_name(
            "receiver"
        ) == node
        chain = _chain(node)
        if not chain or len(chain) < 2:
            return
        sdk = table()
        route: tuple[str, str] | None = None
        client: Client | None = None
        if chain[0] == "Stripe" and len(chain) >= 3 and chain[-2][:1].isupper():
            ns = [_snake(c) for c in chain[1:-2]]
            cls = ".".join([*ns, chain[-2]])
            method = _METHOD_ALIASES.get(chain[-1], chain[-1])
            if cls not in sdk.resource_classes:
                return
            route = sdk.get("resource", f"{cls}.{method}") or sdk.get(
                "resource", f"{cls}.{chain[-1]}"
            )
            client = self.module_account
        elif chain[0] in self.clients and len(chain) >= 3:
            rest = chain[1:]
            route = sdk.get("service", ".".join(rest)) or sdk.get(
                "service", "v1." + ".".join(rest)
            )
            client = self.clients[chain[0]]
            if route is None and rest[0] not in sdk.roots["service"]:
                return
        else:
            return
        row, col = node.start_point
        label = ".".join(chain) if chain[0] != "Stripe" else "::".join(chain[:-1]) + "." + chain[-1]
        if route is None:
            if is_link:
                return
            self.out.unresolved.append(Unresolved(
                self.ctx.file, row + 1, col + 1, label, "not a method the SDK table knows"
            ))
            return
        args = node.child_by_field_name("arguments")
        hashes = [] if args is None else [_hash_keys(args)] + [
            _hash_keys(a) for a in args.named_children
        ]
        expand: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        assert client is not None
        account: Account = client[0]
        why = client[1]
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension"
        # stripe-ruby takes the request options last, and a String there is the API key:
        # `Stripe::Charge.create(attrs, user.secret_key)`. Only a value whose origin the key
        # rules can tell counts (`params`, `opts` say nothing).
        positional = [] if args is None else [
            a for a in args.named_children if a.type not in ("pair", "comment")]
        if chain[0] == "Stripe" and len(positional) >= 2 and not self.ctx.ui_extension and \
                positional[-1].type in ("identifier", "call", "instance_variable",
                                        "element_reference", "constant", "scope_resolution"):
            acc, w = key_account_why(text(positional[-1]))
            if acc != "unknown":
                account, why = acc, f"the API key passed on the call: {w}"
        for h in hashes:
            if "expand" in h:
                values = _strings(h["expand"])
                if values is None:
                    notes = (EXPAND_AT_RUN_TIME,)
                else:
                    expand = tuple(values)
            if "stripe_account" in h and not self.ctx.ui_extension:
                fixed = fixed_account(text(h["stripe_account"]))
                account, why = ("own", fixed) if fixed else (
                    "connected", "a stripe_account option on the call")
            elif "api_key" in h and not self.ctx.ui_extension:
                account, w = key_account_why(text(h["api_key"]))
                why = f"api_key on the call: {w}"
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, label, route[0], route[1], expand, account, notes,
            why,
        ))


def extract(ctx: Context, source: bytes) -> FileFindings:
    return extract_and_index(ctx, source)[0]


def extract_and_index(ctx: Context, source: bytes) -> tuple[FileFindings, Project | None]:
    """The file's calls, and the project-wide key if it sets `Stripe.api_key`."""
    f = _File(ctx, source)
    found = f.run()
    if not f.key_set:
        found.imports.add("<module key>")
        return found, None
    return found, Project(module_key=f.module_account)
