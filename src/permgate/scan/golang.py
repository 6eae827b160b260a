"""Go backends (stripe-go): the plain call forms, found with tree-sitter-go.

Covered: resource packages (`customer.Get(id, params)` with the package imported from
`github.com/stripe/stripe-go/vNN/customer`) and client fields (`sc.V1Customers.Retrieve(...)`,
`sc.Customers.Get(...)`). The params passed to a call are read where they are built, in the
call or in the function's variable: `Expand: []*string{...}` and `params.AddExpand("...")`;
`StripeAccount:` (also nested, `Params: stripe.Params{StripeAccount: x}`),
`params.StripeAccount = x`, `params.Params.StripeAccount = x`, `SetStripeAccount(x)` mark a
connected account, unless the value names one fixed account. Clients and keys that are a
function's parameters, or a struct's fields, take what the project's call sites pass.
"""

from __future__ import annotations

import re
from functools import cache

import tree_sitter as ts
import tree_sitter_go as ts_go

from permgate.scan import oauthlibs
from permgate.scan.common import (
    Context,
    OriginRead,
    Project,
    bind_value,
    fixed_origin,
    key_account_why,
)
from permgate.scan.gowrap import Wrappers
from permgate.scan.model import EXPAND_AT_RUN_TIME, Account, Call, FileFindings, Scope
from permgate.scan.sdk import Route, table
from permgate.scan.tsutil import Enclosing, event_uses, query_captures, text

_QUERY = """
(call_expression) @call
(import_spec) @import
(function_declaration) @fn
(method_declaration) @fn
(short_var_declaration) @bind
(assignment_statement) @bind
(var_spec) @bind
(const_spec) @bind
(range_clause) @range
(composite_literal) @lit
(func_literal) @closure
(return_statement) @ret
"""
Client = tuple[Account, str]
_Key = tuple[int, int]  # a function's byte span; (0, 0) for the file
_TOP: _Key = (0, 0)
_NO_CALLER = "no call site the scan can see passes a known client or key"
_IMPORT = re.compile(r'"github\.com/stripe/stripe-go(?:/v\d+)?/([a-z0-9_/]+)"')
_IMPORT_PATH = re.compile(r'"([^"\s]{1,300})"')
_MAJOR = re.compile(r"v\d+")
_PACKAGE = re.compile(rb"(?m)^package\s+(\w+)")
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


def _param_names(fn: ts.Node) -> list[str]:
    """`func f(a, b string, c int)` -> ['a', 'b', 'c'] (the receiver is not one)."""
    ps = fn.child_by_field_name("parameters")
    out: list[str] = []
    for decl in ps.named_children if ps is not None else ():
        names = [text(c) for c in decl.children_by_field_name("name")]
        out.extend(names or ["_"])
    return out


def _receiver_type(fn: ts.Node) -> tuple[str, str] | None:
    """`func (s *Service) f()` -> ('s', 'Service')."""
    recv = fn.child_by_field_name("receiver")
    decl = recv.named_children[0] if recv is not None and recv.named_child_count else None
    if decl is None:
        return None
    name, typ = decl.child_by_field_name("name"), decl.child_by_field_name("type")
    if name is None or typ is None:
        return None
    return text(name), text(typ).lstrip("*").split("[")[0]


def _package(path: str) -> str:
    """The directory a Go package lives in, by its last path element (`github.com/o/app/
    internal/billing` and the file `internal/billing/pay.go` -> `billing`; a major version
    suffix `/v2` names its parent). Go imports a package by its directory's path, so the
    directory, not the identifier, tells two packages' functions of one name apart; only the
    last element is compared because the scan root need not be the module's root."""
    parts = [p for p in path.split("/") if p]
    if len(parts) > 1 and _MAJOR.fullmatch(parts[-1]):
        parts.pop()
    return parts[-1] if parts else ""


def _unwrap(node: ts.Node) -> ts.Node:
    """`&X{...}` -> `X{...}`; `stripe.String(x)` -> `x`."""
    for _ in range(4):
        if node.type == "unary_expression" and node.child_by_field_name("operand") is not None:
            node = node.child_by_field_name("operand")  # type: ignore[assignment]
        elif node.type == "call_expression" and text(node.child_by_field_name("function")) in (
                "stripe.String", "stripe.StringValue") and node.child_by_field_name("arguments"):
            args = node.child_by_field_name("arguments")
            if args is None or args.named_child_count != 1:
                return node
            node = args.named_children[0]
        elif node.type == "parenthesized_expression" and node.named_child_count == 1:
            node = node.named_children[0]
        else:
            return node
    return node


def _keyed(lit: ts.Node, depth: int = 0) -> list[tuple[str, ts.Node]]:
    """The `Key: value` elements of a composite literal, nested literals' too
    (`Params: stripe.Params{StripeAccount: x}`)."""
    body = lit.child_by_field_name("body")
    out: list[tuple[str, ts.Node]] = []
    if body is None or depth > 4:
        return out
    for el in body.named_children:
        if el.type != "keyed_element" or el.named_child_count != 2:
            continue
        k, v = el.named_children
        value = v.named_children[0] if v.type == "literal_element" and v.named_child_count else v
        out.append((text(k), value))
        inner = _unwrap(value)
        if inner.type == "composite_literal":
            out.extend(_keyed(inner, depth + 1))
    return out


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.project = ctx.project or Project()
        self.out = FileFindings()
        self.tree = ts.Parser(_language()).parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        # functions and closures, found without walking up the tree
        self.enclosing = Enclosing([*caps.get("fn", []), *caps.get("closure", [])])
        self.calls = caps.get("call", [])
        self.packages: dict[str, str] = {}  # local package name -> resource class
        # the project's functions are named by their package's directory (`billing/Charge`):
        # this file's own, and each import's by the local name the file calls it by
        rel = ctx.file.replace("\\", "/")
        self.pkg = _package(rel.rsplit("/", 1)[0]) if "/" in rel else ""
        if not self.pkg:  # the scan root's own package: its directory's name is not in the
            # tree, importers name it by the module path, whose last element the package
            # clause usually repeats (`package app` of `example.com/app`)
            clause = _PACKAGE.search(source[:4096])
            self.pkg = clause.group(1).decode() if clause else "."
        self.imported: dict[str, str] = {}
        self.stripe_locals: set[str] = set()  # stripe-go's packages, by their local names
        classes = _classes_by_package()
        # OAuth libraries that read the account with their token, by local package name
        self.oauth_pkgs: dict[str, oauthlibs.Library] = {}
        for spec in caps.get("import", []):
            alias = spec.child_by_field_name("name")
            path = _IMPORT_PATH.search(text(spec))
            lib = oauthlibs.find("go", "import", path.group(1)) if path is not None else None
            if lib is not None and path is not None:
                self.oauth_pkgs[text(alias) if alias is not None else _package(path.group(1))] = lib
            if path is not None and (alias is None or text(alias) not in ("_", ".")):
                pkg = _package(path.group(1))
                self.imported[text(alias) if alias is not None else pkg] = pkg
            m = _IMPORT.search(text(spec))
            if not m:
                if path is not None and "stripe/stripe-go" in path.group(1):
                    self.stripe_locals.add(text(alias) if alias is not None else "stripe")
                continue
            self.stripe_locals.add(text(alias) if alias is not None else m.group(1).rsplit(
                "/", 1)[-1])
            sub = m.group(1)
            alias = spec.child_by_field_name("name")
            local = text(alias) if alias is not None else sub.rsplit("/", 1)[-1]
            cls = classes.get(sub.replace("/", "").replace("_", ""))
            if cls:
                self.packages[local] = cls
        self.param_facts: dict[tuple[str, int], Client] = {}
        self.wanted: set[str] = set()
        # sc := client.New(key, nil) / stripe.NewClient(key) / sc.Init(key, nil): a client of
        # that key's account
        self.clients: dict[str, Client] = {}
        # what a params variable is built with, by (function, name): its literals, the
        # values set on it (`p.StripeAccount = x`, `p.SetStripeAccount(x)`), its expansions
        self.literals: dict[tuple[_Key, str], list[ts.Node]] = {}
        self.accounts: dict[tuple[_Key, str], list[ts.Node]] = {}
        self.expands: dict[tuple[_Key, str], list[ts.Node]] = {}
        for call in self.calls:
            fn = call.child_by_field_name("function")
            if fn is None or fn.type != "selector_expression":
                continue
            field = text(fn.child_by_field_name("field"))
            if field == "Init":  # `sc := &client.API{}; sc.Init(key, nil)`
                self._init(call, fn)
                continue
            if field not in ("AddExpand", "SetStripeAccount"):
                continue
            var = self._var(fn.child_by_field_name("operand"))
            args = self._args(call)
            if var and args:
                into = self.expands if field == "AddExpand" else self.accounts
                into.setdefault((self.scopes_of(call)[0], var), []).append(args[0])
        m = _GLOBAL_KEY.search(source.decode("utf-8", "replace"))
        self.global_account: Client = ("unknown", "stripe.Key is not set in this file")
        self.functions = caps.get("fn", [])
        self.rets = caps.get("ret", [])
        # what each variable is bound to, by (function, name): None for a value the scan
        # does not follow (one of several results, a `range` variable)
        self.bound: dict[tuple[_Key, str], list[ts.Node | None]] = {}
        for rng in caps.get("range", []):
            left = rng.child_by_field_name("left")
            for name in left.named_children if left is not None else ():
                self.bound.setdefault((self.scopes_of(rng)[0], text(name)), []).append(None)
        for bind in caps.get("bind", []):
            self._bind(bind)
        if m:
            acc, why = key_account_why(m.group(1))
            self.global_account = (acc, f"stripe.Key is set to {why}")
            settings = set()
            for bind in caps.get("bind", []):
                left = bind.child_by_field_name("left")
                right = bind.child_by_field_name("right")
                if left is not None and right is not None and text(left) == "stripe.Key" \
                        and right.named_child_count:
                    acc, why = self.key(right.named_children[0])
                    settings.add((acc, f"stripe.Key is set to {why}"))
            if len({acc for acc, _ in settings}) == 1:
                self.global_account = min(settings)
            elif settings:
                self.global_account = ("unknown", "stripe.Key is set to keys of different "
                                       "accounts in this file")
        self.lits = caps.get("lit", [])
        for lit in self.lits:
            self._struct_fields(lit)
        # factories: functions and methods that return a client, by name; those that build
        # it from one of their parameters (`func (c *C) sdk(secret string) *stripe.Client`)
        # take the key each call passes
        self.factories: dict[str, Client] = {}
        self.key_factories: dict[str, int] = {}
        for ret in caps.get("ret", []):
            self._factory(ret)
        self.out.partial = deep
        self.wraps = Wrappers(self)  # net/http requests and the file's wrappers of them

    def calls_in(self, fn: ts.Node) -> list[ts.Node]:
        return [c for c in self.calls if fn.start_byte <= c.start_byte < fn.end_byte]

    def where(self, node: ts.Node) -> tuple[str, int, int]:
        row, col = node.start_point
        return self.ctx.file, row + 1, col + 1

    def function(self, node: ts.Node) -> ts.Node | None:
        """The named function or method around `node`."""
        return next((n for n in self.enclosing.around(node.start_byte)
                     if n.type != "func_literal"), None)

    def scopes_of(self, node: ts.Node) -> list[_Key]:
        """The functions whose variables `node` sees, innermost first (closures see
        outward), then the file."""
        out: list[_Key] = []
        for n in self.enclosing.around(node.start_byte):
            out.append((n.start_byte, n.end_byte))
            if n.type != "func_literal":
                break
        out.append(_TOP)
        return out

    @staticmethod
    def _var(node: ts.Node | None) -> str:
        """`params`, `params.Params` -> 'params' (the variable a params value lives in)."""
        for _ in range(4):
            if node is None:
                return ""
            if node.type == "identifier":
                return text(node)
            if node.type == "unary_expression" or (node.type == "selector_expression" and text(
                    node.child_by_field_name("field")) in ("Params", "ListParams")):
                node = node.child_by_field_name("operand")
            else:
                return ""
        return ""

    def _bind(self, bind: ts.Node) -> None:
        if bind.type in ("var_spec", "const_spec"):
            names = bind.children_by_field_name("name")
            value_list = bind.child_by_field_name("value")
            lefts = list(names)
            rights = list(value_list.named_children) if value_list is not None else []
        else:
            left, right = bind.child_by_field_name("left"), bind.child_by_field_name("right")
            if left is None or right is None:
                return
            lefts, rights = list(left.named_children), list(right.named_children)
        scope = self.scopes_of(bind)[0]
        for i, left_name in enumerate(lefts):
            if left_name.type == "identifier":
                self.bound.setdefault((scope, text(left_name)), []).append(
                    rights[i] if len(rights) == len(lefts) else None)
        if not lefts or not rights:
            return
        target, value = lefts[0], rights[0]
        # `p.StripeAccount = x`, `p.Params.StripeAccount = x`, `p.Expand = ...`
        if target.type == "selector_expression":
            field = text(target.child_by_field_name("field"))
            var = self._var(target.child_by_field_name("operand"))
            if field == "StripeAccount" and var:
                self.accounts.setdefault((scope, var), []).append(value)
            elif field == "Expand" and var:
                self.expands.setdefault((scope, var), []).append(value)
        inner = _unwrap(value)
        if inner.type == "composite_literal" and target.type == "identifier":
            self.literals.setdefault((scope, text(target)), []).append(inner)
        if value.type != "call_expression":
            return
        ctor = text(value.child_by_field_name("function"))
        if ctor in ("client.New", "stripe.NewClient"):
            args = self._args(value)
            acc, why = self.key(args[0]) if args else key_account_why(None)
            row = value.start_point[0] + 1
            name = text(target)
            if target.type == "selector_expression":  # s.sc = client.New(...)
                name = text(target.child_by_field_name("field"))
            client = (acc, f"client built at {self.ctx.file}:{row} from {why}")
            bind_value(self.clients, name, client,
                       f"{name} is bound to clients of different accounts")

    def _init(self, call: ts.Node, fn: ts.Node) -> None:
        operand = fn.child_by_field_name("operand")
        args = self._args(call)
        if operand is None or len(args) != 2 or operand.type not in (
                "identifier", "selector_expression"):
            return
        name = text(operand) if operand.type == "identifier" else text(
            operand.child_by_field_name("field"))
        acc, why = self.key(args[0])
        client = (acc, f"client initialised at {self.ctx.file}:{call.start_point[0] + 1} "
                       f"from {why}")
        bind_value(self.clients, name, client, f"{name} is bound to clients of different accounts")

    def _factory(self, ret: ts.Node) -> None:
        fn = self.function(ret)
        values = ret.named_children[0].named_children if ret.named_child_count and (
            ret.named_children[0].type == "expression_list") else ret.named_children
        if fn is None or not values:
            return
        name = self.defined(fn)
        value = _unwrap(values[0])
        if value.type == "call_expression" and text(value.child_by_field_name("function")) in (
                "client.New", "stripe.NewClient"):
            args = self._args(value)
            params = _param_names(fn)
            if args and args[0].type == "identifier" and text(args[0]) in params:
                self.key_factories.setdefault(name, params.index(text(args[0])))
                return
        client = self.client_value(value) if value.type in (
            "call_expression", "identifier", "selector_expression") else None
        if client is None or client[1].startswith("an API key argument"):
            return
        fact = (client[0], f"returned by {name}() at {self.ctx.file}:{ret.start_point[0] + 1}: "
                           f"{client[1]}")
        bind_value(self.factories, name, fact, f"{name}() returns clients of different accounts")

    def defined(self, fn: ts.Node) -> str:
        """The name the project knows a function by: `billing/Charge` for a package's
        function, the bare name for a method (its receiver's type is not known at a call)."""
        name = text(fn.child_by_field_name("name"))
        return name if fn.type == "method_declaration" else f"{self.pkg}/{name}"

    def called(self, fn: ts.Node | None) -> str:
        """The name a call's function is known by: `billing.Charge(...)` of an imported
        package -> `billing/Charge` (its directory's), `Charge(...)` -> this package's,
        `s.Charge(...)` on a value -> `Charge` (a method)."""
        if fn is None:
            return ""
        if fn.type == "identifier":
            return f"{self.pkg}/{text(fn)}"
        if fn.type != "selector_expression":
            return ""
        operand, field = fn.child_by_field_name("operand"), text(fn.child_by_field_name("field"))
        if operand is not None and operand.type == "identifier" and (
                text(operand) in self.imported):
            return f"{self.imported[text(operand)]}/{field}"
        return field

    def factory_client(self, call: ts.Node) -> Client | None:
        """The client a call to a project factory returns (`c.sdk(secret).V1Accounts...`)."""
        name = self.called(call.child_by_field_name("function"))
        if not name:
            return None
        self.out.imports.add("go:" + name)
        idx = self.key_factories.get(name, self.project.key_params.get("go:" + name))
        args = self._args(call)
        if idx is not None and idx < len(args):
            acc, why = self.key(args[idx])
            arg = text(args[idx])[:40]
            return acc, f"client from {name}() built from its argument {arg}: {why}"
        got = self.factories.get(name) or self.project.factories.get("go:" + name)
        return None if got is None else (got[0], f"client from {name}(): {got[1]}")

    def _struct_fields(self, lit: ts.Node) -> None:
        """`&Service{sc: client}`: tell the project which client a struct's field holds."""
        typ = lit.child_by_field_name("type")
        if typ is None:
            return
        if typ.type == "type_identifier":
            name = f"{self.pkg}/{text(typ)}"
        elif typ.type == "qualified_type" and text(typ.child_by_field_name("package")) in (
                self.imported):  # `&billing.Service{sc: c}`
            name = (f"{self.imported[text(typ.child_by_field_name('package'))]}/"
                    f"{text(typ.child_by_field_name('name'))}")
        else:
            return
        for k, v in _keyed(lit)[:32]:
            client = self.client_value(v)
            if client is not None:
                self._note(f"{name}.{k}", 0, client, lit)

    def _note(self, callee: str, idx: int, client: Client, at: ts.Node) -> None:
        key = ("go:" + callee, idx)
        fact = (client[0], f"passed at {self.ctx.file}:{at.start_point[0] + 1}: {client[1]}")
        bind_value(self.param_facts, key, fact, f"{callee} is passed clients of different accounts")

    def _passed(self, callee: str, idx: int, what: str) -> Client:
        self.out.imports.add("go:" + callee)
        # files that call it are read even if they never say "stripe" (by its bare name)
        self.wanted.add(callee.rsplit(".", 1)[0].rsplit("/", 1)[-1])
        fact = self.project.param(self.ctx.file, callee, idx, "go:")
        if fact is None:
            return "unknown", f"{what}; {_NO_CALLER})"
        return fact[0], f"{what}: {fact[1]})"

    def param_flow(self, node: ts.Node) -> Client | None:
        """A parameter's value from the project's call sites; a receiver's field
        (`s.sc`) from the struct literals that fill it. None: neither."""
        fn = self.function(node)
        if fn is None:
            return None
        if node.type == "identifier":
            names = _param_names(fn)
            if text(node) not in names:
                return None
            name = self.defined(fn)
            idx = names.index(text(node))
            return self._passed(name, idx, f"{text(node)} (argument {idx + 1} of {name}()")
        if node.type == "selector_expression" and fn.type == "method_declaration":
            recv = _receiver_type(fn)
            operand = node.child_by_field_name("operand")
            if recv is not None and operand is not None and text(operand) == recv[0]:
                field = text(node.child_by_field_name("field"))
                return self._passed(f"{self.pkg}/{recv[1]}.{field}", 0,
                                    f"{text(node)} (the {recv[1]}.{field} field")
        return None

    def key(self, node: ts.Node) -> Client:
        """A key expression's account; a parameter's from what the callers pass first."""
        if node.type in ("identifier", "selector_expression"):
            flow = self.param_flow(node)
            if flow is not None and _NO_CALLER not in flow[1]:
                return flow
        return key_account_why(text(node))

    def client_value(self, node: ts.Node) -> Client | None:
        """The client or key an argument holds, when the scan can tell."""
        node = _unwrap(node)
        if node.type == "identifier" and text(node) in self.clients:
            return self.clients[text(node)]
        if node.type == "selector_expression" and text(
                node.child_by_field_name("field")) in self.clients:
            return self.clients[text(node.child_by_field_name("field"))]
        if node.type == "call_expression" and text(node.child_by_field_name("function")) in (
                "client.New", "stripe.NewClient"):
            args = self._args(node)
            acc, why = self.key(args[0]) if args else key_account_why(None)
            return acc, f"client built at {self.ctx.file}:{node.start_point[0] + 1} from {why}"
        if node.type in ("identifier", "selector_expression", "call_expression",
                         "index_expression") and len(text(node)) <= 100:
            if node.type == "identifier" and self.param_flow(node) is not None:
                return None  # the caller's own parameter: its callers decide
            acc, why = key_account_why(text(node))
            if acc != "unknown":
                return acc, f"an API key argument: {why}"
        return None

    def note_arguments(self, node: ts.Node) -> None:
        fn = node.child_by_field_name("function")
        name = self.called(fn)
        operand = fn.child_by_field_name("operand") if fn is not None and (
            fn.type == "selector_expression") else None
        if not name or name in ("AddExpand", "SetStripeAccount") or (
                operand is not None and text(operand) in self.stripe_locals):
            return  # the SDK's own functions (`client.New`, `stripe.String`)
        for idx, a in enumerate(self._args(node)[:16]):
            client = self.client_value(a)
            if client is not None:
                self._note(name, idx, client, node)

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
        self.wraps.uncalled()
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

    def oauth_library(self, node: ts.Node, fn: ts.Node) -> bool:
        """`goth.UseProviders(stripe.New(key, secret, callback))` with goth's Stripe provider
        imported: it reads the account with the token it obtains (`data/oauth_libraries.json`)."""
        operand = fn.child_by_field_name("operand") if fn.type == "selector_expression" else None
        lib = self.oauth_pkgs.get(text(operand)) if operand is not None else None
        if lib is None or text(fn.child_by_field_name("field")) != oauthlibs.use(
                lib, "constructor"):
            return False
        row, col = node.start_point
        self.out.calls.extend(oauthlibs.calls(self.ctx, lib, row + 1, col + 1, text(fn)))
        return True

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

    def root_client(self, root: ts.Node) -> Client:
        """The client a service call is made on (`sc` of `sc.Customers.Get`, `s.sc`)."""
        name = text(root) if root.type == "identifier" else text(
            root.child_by_field_name("field")) if root.type == "selector_expression" else ""
        if name in self.clients:
            return self.clients[name]
        if root.type == "call_expression":
            made = self.factory_client(root)
            if made is not None:
                return made
        flow = self.param_flow(root)
        if flow is not None:
            return flow
        return "unknown", f"a client the scan cannot trace ({text(root)[:40]})"

    def params(self, node: ts.Node, arg: ts.Node) -> tuple[list[ts.Node], list[ts.Node]]:
        """The StripeAccount values and Expand values a params argument is built with."""
        inner = _unwrap(arg)
        lits: list[ts.Node] = []
        accounts: list[ts.Node] = []
        expands: list[ts.Node] = []
        if inner.type == "composite_literal":
            lits.append(inner)
        elif inner.type == "identifier":
            for sc in self.scopes_of(node):
                k = (sc, text(inner))
                # the literal the variable holds at the call: the last assigned before it
                before = [lit for lit in self.literals.get(k, [])[-64:]
                          if lit.start_byte < node.start_byte]
                lits += before[-1:]
                accounts += self.accounts.get(k, [])[:16]
                expands += self.expands.get(k, [])[:64]
        elif inner.type == "call_expression" and (name := self.own_call(inner)) is not None:
            # `payout.New(s.params())` with a function of the file returning the params
            # literal: read in that function (issue 25), when all its returns agree
            rets = [_unwrap(r) for r in self._returned(name)]
            if rets and len({text(r) for r in rets}) == 1 and rets[0].type == "composite_literal":
                lits.append(rets[0])
        for lit in lits:
            for field, v in _keyed(lit):
                if field == "StripeAccount":
                    accounts.append(v)
                elif field == "Expand":
                    expands.append(v)
        return accounts, expands

    def fixed(self, value: ts.Node) -> str | None:
        """Why a StripeAccount value names one fixed account of the operator: as written, or
        (issue 25) through the function's variables (`acct := os.Getenv("X")`), the file's
        constants and the values its functions without parameters return
        (`common.fixed_origin`)."""
        return fixed_origin(value, self._origin, lambda n: text(_unwrap(n)))

    _returns: dict[str, list[ts.Node]] | None = None

    @staticmethod
    def own_call(node: ts.Node) -> str | None:
        """The function or method name a call without arguments names (`f()`, `s.f()`):
        read as the file's function of that name, if it has one."""
        fn = node.child_by_field_name("function")
        args = node.child_by_field_name("arguments")
        if fn is None or (args is not None and args.named_child_count):
            return None
        if fn.type == "identifier":
            return text(fn)
        return text(fn.child_by_field_name("field")) if fn.type == "selector_expression" \
            else None

    def _origin(self, node: ts.Node) -> OriginRead[ts.Node]:
        node = _unwrap(node)
        if node.type == "nil":
            return "null", ()
        if node.type == "identifier":
            fn = self.function(node)
            if fn is not None and text(node) in _param_names(fn):
                return "values", ()
            for sc in self.scopes_of(node):
                values = self.bound.get((sc, text(node)))
                if values is not None:
                    return "values", () if None in values else [v for v in values if v]
            return "values", ()
        if node.type == "call_expression":
            name = self.own_call(node)
            return "call", self._returned(name) if name is not None else ()
        # a value of one piece is judged by its text; another (a composite) is not followed
        return ("leaf", ()) if node.type in ("interpreted_string_literal", "raw_string_literal",
                                             "selector_expression", "index_expression") \
            else ("values", ())

    def _returned(self, name: str) -> list[ts.Node]:
        """The first values the file's functions and methods of that name return (read
        once; a closure's `return` is not its function's)."""
        if self._returns is None:
            self._returns = {}
            for ret in self.rets:
                inner = next(iter(self.enclosing.around(ret.start_byte)), None)
                values = ret.named_children[0].named_children if ret.named_child_count and (
                    ret.named_children[0].type == "expression_list") else ret.named_children
                if inner is None or inner.type == "func_literal" or not values:
                    continue
                self._returns.setdefault(text(inner.child_by_field_name("name")), []).append(
                    values[0])
        return self._returns.get(name, [])

    def call(self, node: ts.Node) -> None:
        fn = node.child_by_field_name("function")
        if fn is None:
            return
        if self.oauth_pkgs and self.oauth_library(node, fn):
            return
        if self.wraps.call(node):
            return
        route = self.route(fn)
        if route is None:
            self.note_arguments(node)
            return
        args = self._args(node)
        expand: list[str] = []
        notes: tuple[str, ...] = ()
        account, why = self.global_account
        operand = fn.child_by_field_name("operand")
        if operand is not None and operand.type == "selector_expression":
            root = operand.child_by_field_name("operand")
            if root is not None:
                account, why = self.root_client(root)
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension"
        connected = fixed = ""
        for a in args:
            accounts, expands = self.params(node, a)
            for v in expands:
                values = _strings(v)
                if values is None:
                    notes = (EXPAND_AT_RUN_TIME,)
                else:
                    expand.extend(values)
            for v in accounts:
                f = self.fixed(v)
                if f:
                    fixed = fixed or f
                else:
                    connected = connected or text(_unwrap(v))[:60]
        if not self.ctx.ui_extension and connected:
            account, why = "connected", f"StripeAccount on the params ({connected})"
        elif not self.ctx.ui_extension and fixed:
            account, why = "own", fixed
        row, col = node.start_point
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, text(fn), route[0], route[1], tuple(expand),
            account, notes, why,
        ))


def _strings(node: ts.Node) -> list[str] | None:
    """`"customer"`, `[]*string{stripe.String("customer")}` -> ['customer']; None: built
    at run time."""
    node = _unwrap(node)
    s = _string(node)
    if s is not None:
        return [s]
    if node.type != "composite_literal":
        return None
    body = node.child_by_field_name("body")
    out: list[str] = []
    for el in body.named_children if body is not None else ():
        v = _unwrap(el.named_children[0] if el.type == "literal_element" and (
            el.named_child_count) else el)
        s = _string(v)
        if s is None:
            return None
        out.append(s)
    return out


def extract(ctx: Context, source: bytes) -> FileFindings:
    return extract_and_index(ctx, source)[0]


def extract_and_index(ctx: Context, source: bytes) -> tuple[FileFindings, Project | None]:
    """The file's calls, and what it passes to the project's functions (value flow)."""
    f = _File(ctx, source)
    found = f.run()
    wrappers = f.wraps.exported()
    # files calling them are read even if they never say "stripe" (by the bare name)
    f.wanted |= {re.split(r"[/.:]", k)[-1] for k in wrappers}
    if not f.param_facts and not f.wanted and not f.factories and not f.key_factories and (
            not wrappers):
        return found, None
    return found, Project(params=dict(f.param_facts), wanted=set(f.wanted),
                          factories={"go:" + k: v for k, v in f.factories.items()},
                          key_params={"go:" + k: v for k, v in f.key_factories.items()},
                          wrappers=wrappers)

