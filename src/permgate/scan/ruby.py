"""Ruby backends (stripe-ruby): the plain call forms, found with tree-sitter-ruby.

Covered: `Stripe::Customer.retrieve(id, {expand: [...]}, {stripe_account: acct})`,
`Stripe::Checkout::Session.create(...)`, and `StripeClient` services
(`client.v1.customers.retrieve(...)`). Arguments are read when they are literals, or local
variables their method assigns once (`opts = {stripe_account: id}`, `opts[:api_key] = k`,
`args = [id, key]` splatted as `*args`). Methods of an object a call returned
(`charge = Stripe::Charge.retrieve(...); charge.save`) act on that call's account; a key or
client that is a method's parameter takes what the project's call sites pass.
"""

from __future__ import annotations

import itertools
import re
from functools import cache
from typing import TYPE_CHECKING

import tree_sitter as ts
import tree_sitter_ruby as ts_ruby

from permgate.scan import oauthlibs
from permgate.scan.common import (
    Context,
    OriginRead,
    Piece,
    Project,
    bind_value,
    config_source,
    fixed_origin,
    key_account_why,
    raw_target,
)
from permgate.scan.model import EXPAND_AT_RUN_TIME, Account, Call, FileFindings, Scope, Unresolved
from permgate.scan.rbwrap import Wrappers
from permgate.scan.sdk import route_classes, table
from permgate.scan.tsutil import Enclosing, event_uses, query_captures, text

if TYPE_CHECKING:
    from collections.abc import Iterable

_QUERY = """
(call) @call
(assignment) @assign
(operator_assignment) @assign
(method) @fn
(do_block) @block
(block) @block
(singleton_method) @fn
(class) @nest
(module) @nest
"""
Client = tuple[Account, str]
# stripe-ruby names a few class methods differently from stripe-python.
_METHOD_ALIASES = {"update": "modify", "all": "list"}
# class methods that build an object locally, without a request (`Stripe::Event.construct_from`)
_LOCAL = frozenset({"construct_from", "resource_url", "object_name"})
# instance methods of a returned object whose row has another name (`charge.save`)
_INSTANCE = {"save": "modify", "refresh": "retrieve"}
# methods that run a block on each object of a list
_ITERATE = frozenset({"each", "auto_paging_each", "map", "each_with_index", "select", "find",
                      "filter_map", "flat_map"})
_Key = tuple[int, int]  # a method's byte span; (0, 0) for the file (and instance variables)
_TOP: _Key = (0, 0)
_NO_CALLER = "no call site the scan can see passes a known client or key"
_TRY = re.compile(r"\.try\(:(\w+)\)|&\.")


def _key_text(node: ts.Node) -> str:
    """A key expression as the key rules read it: `user.try(:secret_key)` and
    `user&.secret_key` are `user.secret_key`."""
    return _TRY.sub(lambda m: "." + m.group(1) if m.group(1) else ".", text(node))


def _returns_early(body: ts.Node) -> bool:
    """Whether a method's body returns anywhere but in its last statement (bounded walk)."""
    stack = list(body.named_children[:-1])
    last = body.named_children[-1] if body.named_child_count else None
    if last is not None and last.type != "return":
        stack.append(last)
    elif last is not None:
        stack.extend(last.named_children)
    for _ in range(4096):
        if not stack:
            return False
        n = stack.pop()
        if n.type == "return":
            return True
        stack.extend(n.named_children)
    return True


def _identifiers_of(node: ts.Node | None) -> list[str]:
    """The identifiers in a pattern (`a`, `a, b`), none for None."""
    if node is None:
        return []
    return [text(node)] if node.type == "identifier" else [
        text(n) for n in node.named_children if n.type == "identifier"]


def _params(method: ts.Node) -> list[str]:
    ps = method.child_by_field_name("parameters")
    out = []
    for p in ps.named_children if ps is not None else ():
        name = p if p.type == "identifier" else p.child_by_field_name("name")
        out.append(text(name) if name is not None else "")
    return out


def _const_path(nesting: Iterable[ts.Node]) -> list[str]:
    """The constant path the classes and modules around a place name, outermost first
    (`module Pay; class Billing` and `class Pay::Billing` -> ['Pay', 'Billing'])."""
    out: list[str] = []
    for n in nesting:  # innermost first
        name = text(n.child_by_field_name("name"))
        out[:0] = name.lstrip(":").split("::")
        if name.startswith("::"):  # `class ::Billing`: from the top
            break
    return out


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


def _strings(node: ts.Node, depth: int = 0) -> list[str] | None:
    """An `expand` list's values: literal strings and symbols (`[:customer]`, `%w[a b]`,
    `%i[a]`), and nested arrays flattened into one list, as stripe-ruby encodes them
    (`Util.flatten_params_array` sends `[['data.invoice'], ['data.customer']]` as two
    `expand[]` values); None when a part is built at run time."""
    if node.type in ("string_array", "symbol_array"):
        if any(c.type == "interpolation" for el in node.named_children for c in el.children):
            return None  # `%W[#{x}]`
        return [text(el) for el in node.named_children]
    if node.type != "array" or depth > 8:
        return None
    out: list[str] = []
    for el in node.named_children:
        if el.type == "simple_symbol":
            out.append(text(el)[1:])
            continue
        if el.type in ("array", "string_array", "symbol_array"):
            inner = _strings(el, depth + 1)
            if inner is None:
                return None
            out += inner
            continue
        if el.type not in ("string", "delimited_symbol") or any(
                c.type == "interpolation" for c in el.named_children):
            return None  # `:"#{x}"`, `"data.#{x}"`
        out.append("".join(text(c) for c in el.named_children if c.type == "string_content"))
    return out


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.project = ctx.project or Project()
        self.out = FileFindings()
        self.tree = _parser().parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        self.enclosing = Enclosing(caps.get("fn", []))  # methods, found without walking up
        self.blocks = Enclosing(caps.get("block", []))  # `.each do |charge| ... end`
        # post-order (inner calls first): `Stripe::Charge.retrieve(id).capture` knows its object
        self.calls = sorted(caps.get("call", []), key=lambda n: (n.end_byte, -n.start_byte))
        self.functions = caps.get("fn", [])
        self.nesting = Enclosing(caps.get("nest", []))  # classes and modules
        self.names_omniauth = b"OmniAuth" in source  # once: not at each `provider` call
        self.subclasses = [n for n in caps.get("nest", []) if n.type == "class"
                           and n.child_by_field_name("superclass") is not None]
        self.clients: dict[str, Client] = {}
        # values assigned to local variables, by (method, name); `opts[:k] = v` likewise
        self.assigned: dict[tuple[_Key, str], list[ts.Node]] = {}
        self.subs: dict[tuple[_Key, str], dict[str, ts.Node]] = {}
        # objects a call returned: their class and the account of that call
        self.objects: dict[tuple[_Key, str], tuple[str, Client]] = {}
        self.returned: dict[_Key, tuple[str, Client]] = {}
        # `@client = client` in `initialize`: field -> (class, parameter index)
        self.field_params: dict[str, tuple[str, int]] = {}
        self.param_facts: dict[tuple[str, int], Client] = {}
        self.wanted: set[str] = set()
        self.key_set = False
        project_key = ctx.project.module_key if ctx.project is not None else None
        self.module_account: Client = project_key or ("unknown", "Stripe.api_key is not set "
                                                      "in the project")
        builds: list[tuple[ts.Node, ts.Node]] = []
        key_assigns: list[ts.Node] = []
        self.scoped_module: dict[_Key, Client] = {}
        for assign in caps.get("assign", []):
            name, value = assign.child_by_field_name("left"), assign.child_by_field_name("right")
            if name is None or value is None:
                continue
            chain = _chain(value) if value.type == "call" else None
            if chain and chain[-2:] == ["StripeClient", "new"]:
                builds.append((name, value))
            elif text(name) == "Stripe.api_key":
                self.key_set = True
                key_assigns.append(assign)
            elif name.type in ("identifier", "instance_variable"):
                self.assigned.setdefault((self.scope(name), text(name)), []).append(value)
                if name.type == "instance_variable" and value.type == "identifier":
                    self._field_param(assign, text(name).lstrip("@"), text(value))
            elif name.type == "element_reference" and name.named_child_count == 2:
                var, k = name.named_children
                if var.type in ("identifier", "instance_variable") and k.type in (
                        "simple_symbol", "string"):
                    self.subs.setdefault((self.scope(var), text(var)), {})[
                        text(k).strip(":'\"")] = value
        for name, value in builds:
            self.clients[text(name).lstrip("@")] = self.client_account(value)
        # factories: methods whose value is a client (`def stripe; @stripe ||=
        # Stripe::StripeClient.new(key); end`), by name across the project
        self.factories: dict[str, Client] = {}
        for fn in self.functions:
            self._factory(fn)
        # the oauth2 gem: `OAuth2::Client.new(id, secret, site: ...)`, and the access tokens
        # it gives (`client.auth_code.get_token(code)`, `OAuth2::AccessToken.new(client, t)`),
        # by (scope, name) -> the client's site ("" when not known)
        self.oauth_sites: dict[tuple[_Key, str], str] = {}
        self.tokens: dict[tuple[_Key, str], str] = {}
        for assign in caps.get("assign", []):
            self._oauth(assign)
        agreed: Client | None = None
        for assign in key_assigns:
            acc, why = self.key(assign.child_by_field_name("right"))  # type: ignore[arg-type]
            row = assign.start_point[0] + 1
            self.module_account = (acc, f"Stripe.api_key set at {ctx.file}:{row} to {why}")
            # a method that sets the key itself uses its own (the last it sets)
            self.scoped_module[self.scope(assign)] = self.module_account
            agreed = self.module_account if agreed is None or agreed[0] == acc else (
                "unknown", f"Stripe.api_key is set to keys of different accounts in {ctx.file}")
        # a method that does not set it: the file's top-level setting, else the one account
        # all the file's settings agree on (unknown when they disagree)
        if agreed is not None:
            self.module_account = self.scoped_module.get(_TOP, agreed)
        self.out.partial = deep
        self.assigns = caps.get("assign", [])
        self.wraps = Wrappers(self)  # HTTP requests to the API host and the file's wrappers

    def _factory(self, fn: ts.Node) -> None:
        body = fn.child_by_field_name("body")
        last = body.named_children[-1] if body is not None and body.named_child_count else None
        if last is not None and last.type in ("assignment", "operator_assignment"):
            last = last.child_by_field_name("right")
        if last is None or last.type != "call" or (_chain(last) or [])[-2:] != [
                "StripeClient", "new"]:
            return
        name = text(fn.child_by_field_name("name"))
        client = self.client_account(last)
        bind_value(self.factories, name, client, f"{name} returns clients of different accounts")

    def _oauth(self, assign: ts.Node) -> None:
        left, value = assign.child_by_field_name("left"), assign.child_by_field_name("right")
        if left is None or value is None or value.type != "call" or left.type not in (
                "identifier", "instance_variable"):
            return
        chain = _chain(value) or []
        key = (self.scope(left), text(left))
        args = value.child_by_field_name("arguments")
        if chain == ["OAuth2", "Client", "new"]:
            site = _hash_keys(args).get("site") if args is not None else None
            self.oauth_sites[key] = (_literal(site) or "") if site is not None else ""
        elif chain[-2:] == ["auth_code", "get_token"] and len(chain) == 3:
            self.tokens[key] = self.oauth_sites.get((self.scope(value), chain[0]), "")
        elif chain[:2] == ["OAuth2", "AccessToken"] and chain[-1] in ("new", "from_hash"):
            first = args.named_children[0] if args is not None and args.named_child_count \
                else None
            self.tokens[key] = self.oauth_sites.get((self.scope(value), text(first)), "") if (
                first is not None) else ""

    def oauth_call(self, node: ts.Node, chain: list[str]) -> bool:
        """`token.get('https://api.stripe.com/v1/account')`: a request an OAuth client
        library sends with the access token it holds, the installing account's."""
        receiver = node.child_by_field_name("receiver")
        verb = chain[-1]
        if receiver is None or verb not in ("get", "post", "put", "patch", "delete", "request"):
            return False
        site = self.tokens.get((self.scope(receiver), text(receiver)))
        if site is None:
            return False
        args = self.positional(node.child_by_field_name("arguments"))
        if verb == "request":
            if len(args) < 2:
                return False
            verb, args = text(args[0]).lstrip(":").strip("'\""), args[1:]
        url = _pieces(args[0]) if args else []
        if url and url[0] is not None and url[0].startswith("/"):
            url = [site.rstrip("/") + url[0], *url[1:]]
        target = raw_target(url, require_host=True) if url else None
        if target is None:
            return False
        why = ("an OAuth client's access token (the oauth2 gem) sends it: the installing "
               "account")
        row, col = node.start_point
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, ".".join(chain), verb.upper(), target.path,
            target.expand, "installing", (), "a UI extension" if self.ctx.ui_extension else why,
        ))
        return True

    def oauth_library(self, node: ts.Node, chain: list[str], first: ts.Node | None = None
                      ) -> bool:
        """`provider :stripe_connect, id, secret` (OmniAuth::Builder), `config.omniauth
        :stripe_connect` (Devise), `use OmniAuth::Strategies::StripeConnect`, a subclass of
        the strategy (`first`: its superclass): an OmniAuth strategy that reads the account
        with the token it obtains (`data/oauth_libraries.json`)."""
        if first is None:
            if chain[-1] not in ("provider", "omniauth", "use"):
                return False
            # `provider` is OmniAuth::Builder's only where the builder is named: another
            # DSL's `provider :stripe` (a payment gateway's) is no OAuth strategy
            if chain[-1] == "provider" and not self.names_omniauth:
                return False
            args = self.positional(node.child_by_field_name("arguments"))
            first = args[0] if args else None
        lib = None
        if first is not None and first.type in ("simple_symbol", "string"):
            lib = oauthlibs.find("ruby", "omniauth", text(first).lstrip(":").strip("'\""))
        elif first is not None and first.type in ("scope_resolution", "constant"):
            path = _chain(first) or []
            if first.type == "constant" and chain == ["class"]:  # inside the gem's namespace
                path = [*_const_path(self.nesting.around(node.start_byte))[:-1], *path]
            if path[:2] == ["OmniAuth", "Strategies"] and len(path) == 3:
                lib = oauthlibs.find("ruby", "strategy", path[2])
        if lib is None or first is None:
            return False
        if lib.skipped_by and chain != ["class"] and self.option_true(node, lib.skipped_by):
            return True  # the strategy's request is not made
        row, col = node.start_point
        self.out.calls.extend(oauthlibs.calls(self.ctx, lib, row + 1, col + 1,
                                              f"{'.'.join(chain)} {text(first)}"))
        return True

    def option_true(self, node: ts.Node, option: str) -> bool:
        """`provider :stripe_connect, id, secret, skip_info: true` (or `:skip_info => true`,
        a trailing `{...}`): the strategy's `option` set to the literal `true` (a lambda,
        `skip_info: ->(uid) {...}`, skips only some logins: not this)."""
        args = node.child_by_field_name("arguments")
        if args is None:
            return False
        opts = [_hash_keys(args), *(_hash_keys(a) for a in args.named_children
                                    if a.type == "hash")]
        return any(o[option].type == "true" for o in opts if option in o)

    def callee(self, method: ts.Node) -> str:
        """The name callers use: a method's, or for `initialize` its class's constant path
        (`Pay::Billing`; a constant is Ruby's path to a class, as Zeitwerk's to its file)."""
        name = text(method.child_by_field_name("name"))
        if name != "initialize":
            return name
        return "::".join(_const_path(self.nesting.around(method.start_byte))) or name

    def constants(self, ref: ts.Node) -> list[str]:
        """The classes `X.new` can name where it is written, as Ruby looks a constant up:
        in each module around it, innermost first, then at the top (`::X`: the top only)."""
        written = text(ref)
        if written.startswith("::"):
            return [written[2:]]
        around = _const_path(self.nesting.around(ref.start_byte))
        return [*("::".join([*around[:i], written]) for i in range(len(around), 0, -1)),
                written][-8:]

    def method_of(self, node: ts.Node) -> ts.Node | None:
        return next(self.enclosing.around(node.start_byte), None)

    def scope(self, node: ts.Node) -> _Key:
        """Local variables are the method's; instance variables the file's."""
        if node.type == "instance_variable":
            return _TOP
        m = self.method_of(node)
        return _TOP if m is None else (m.start_byte, m.end_byte)

    def _field_param(self, assign: ts.Node, field: str, value: str) -> None:
        m = self.method_of(assign)
        if m is None or text(m.child_by_field_name("name")) != "initialize":
            return
        names = _params(m)
        if value in names:
            self.field_params.setdefault(field, (self.callee(m), names.index(value)))

    def value(self, node: ts.Node) -> ts.Node:
        """A local variable's value when its method assigns it once (`opts = {...}`), or the
        hash a method of the file without parameters returns (`header`, `self.header`)."""
        for _ in range(4):
            helper = self.hash_helper(node)
            if helper is not None:
                return helper
            if node.type not in ("identifier", "instance_variable"):
                return node
            values = self.assigned.get((self.scope(node), text(node)), [])
            if len(values) != 1:
                return node
            node = values[0]
        return node

    _helpers: dict[str, ts.Node | None] | None = None

    def hash_helper(self, node: ts.Node) -> ts.Node | None:
        """`Stripe::Balance.retrieve(header)` with `def header; {stripe_account: id}; end` in
        the file: the request options a method builds (issue 25)."""
        found = self.helper_value(node)
        return found if found is not None and found.type == "hash" else None

    def helper_name(self, node: ts.Node) -> str | None:
        """The method of the file a bare name or `self.name` calls: Ruby reads a bare name
        that is not a local variable or parameter as a call of the method."""
        if node.type == "call" and text(node.child_by_field_name("receiver")) == "self" and (
                node.child_by_field_name("arguments") is None):
            return text(node.child_by_field_name("method"))
        if node.type != "identifier" or (self.scope(node), text(node)) in self.assigned or (
                self._bound(node)):
            return None
        return text(node)

    def _bound(self, node: ts.Node) -> bool:
        """Whether a name is a parameter of its method or a block's or loop's variable
        (`list.each do |header|`, `->(header) {}`, `for header in list`): data the caller
        or the loop gives, not a method of the file."""
        m = self.method_of(node)
        if m is not None and text(node) in _params(m):
            return True
        up = node.parent
        while up is not None and up != m:
            if text(node) in (_params(up) if up.type in ("block", "do_block", "lambda")
                              else _identifiers_of(up.child_by_field_name("pattern"))
                              if up.type == "for" else ()):
                return True
            up = up.parent
        return False

    def helper_value(self, node: ts.Node) -> ts.Node | None:
        """The value a method of the file without parameters returns (its last expression,
        `return x`, `@h ||= x`) when `node` calls it (`helper_name`); a name the file defines
        twice with different bodies is neither."""
        name = self.helper_name(node)
        if name is None:
            return None
        if self._helpers is None:
            self._helpers = {}
            for fn in self.functions:
                body = fn.child_by_field_name("body")
                last = body.named_children[-1] if body is not None and (
                    body.named_child_count) else None
                if last is not None and last.type in ("assignment", "operator_assignment"):
                    last = last.child_by_field_name("right")  # `@h ||= {...}`
                if last is not None and last.type == "return":  # `return x`
                    inner = last.named_children[0] if last.named_child_count else None
                    last = inner.named_children[0] if inner is not None and (
                        inner.type == "argument_list" and inner.named_child_count == 1) \
                        else None
                if fn.type != "method" or _params(fn) or last is None:
                    continue
                key = text(fn.child_by_field_name("name"))
                if body is not None and _returns_early(body):
                    # `return params[:acct] if x` before the last expression: that is a
                    # value too, so the method has no one value to read
                    self._helpers[key] = None
                    continue
                old = self._helpers.get(key, last)
                self._helpers[key] = last if old is not None and text(old) == text(last) \
                    else None
        return self._helpers.get(name)

    def fixed(self, value: ts.Node) -> str | None:
        """Why a `stripe_account` value names one fixed account of the operator: as written,
        or (issue 25) through its method's local variables, the file's methods' values
        (`def stripe_account_id; Rails.application.credentials.dig(:stripe, :account_id);
        end`), fallbacks (`||`) and conditionals: the shared walk `common.fixed_origin`,
        with a configuration read counted only from a local filled with configuration."""
        return fixed_origin(value, self._origin, text, self.filled_with_configuration)

    def filled_with_configuration(self, node: ts.Node) -> bool:
        """Whether the local a configuration read starts from (`config` of `config[:acct]`)
        holds configuration: every value its method gives it is read from configuration or
        loaded at start-up (`config_source`), not a record (`config = shop.settings`). A name
        the method does not assign (a method, a parameter) is read by its name."""
        root = node
        for _ in range(32):
            nxt = root.child_by_field_name("receiver" if root.type == "call" else "object")
            if root.type not in ("call", "element_reference") or nxt is None:
                break
            root = nxt
        if root is node or root.type not in ("identifier", "instance_variable"):
            return True
        values = self.assigned.get((self.scope(root), text(root)), [])
        return all(config_source(text(v)) for v in values)

    def _origin(self, node: ts.Node) -> OriginRead[ts.Node]:
        t = node.type
        if t == "nil":
            return "null", ()
        if t == "parenthesized_statements":
            return "values", node.named_children[-1:]
        if t == "binary" and text(node.child_by_field_name("operator")) in ("||", "or"):
            return "values", [c for c in (node.child_by_field_name("left"),
                                          node.child_by_field_name("right")) if c is not None]
        if t == "conditional":
            return "values", [c for c in (node.child_by_field_name("consequence"),
                                          node.child_by_field_name("alternative"))
                              if c is not None]
        if t == "instance_variable":
            return "values", self.assigned.get((_TOP, text(node)), [])
        if t == "identifier" and self._bound(node):
            # a parameter (also one given a default, `acct ||= ENV[...]`) or a block's
            # variable holds data: not followed
            return "values", ()
        if t == "identifier" and (self.scope(node), text(node)) in self.assigned:
            return "values", self.assigned[(self.scope(node), text(node))]
        if self.helper_name(node) is not None:
            # the file's method without parameters: its value (`helper_value`, the same
            # reading as request options a helper returns)
            found = self.helper_value(node)
            return "call", [] if found is None else [found]
        # a value of one piece is judged by its text; a compound one (`if`, `case`) could
        # mention the environment beside data: not followed
        return ("leaf", ()) if t in ("string", "constant", "scope_resolution",
                                     "element_reference", "call") else ("values", ())

    def hash_of(self, node: ts.Node) -> dict[str, ts.Node]:
        """An options hash: a literal, or a variable assigned one (and `opts[:k] = v`)."""
        out = dict(_hash_keys(self.value(node)))
        if node.type in ("identifier", "instance_variable"):
            out.update(self.subs.get((self.scope(node), text(node)), {}))
        return out

    def positional(self, args: ts.Node | None) -> list[ts.Node]:
        """The positional arguments, a splatted local array spread (`*args`, `args =
        [id, key].compact`)."""
        out: list[ts.Node] = []
        for a in args.named_children if args is not None else ():
            if a.type in ("pair", "comment", "block_argument"):
                continue
            if a.type == "splat_argument" and a.named_child_count:
                v = self.value(a.named_children[0])
                if v.type == "call" and text(v.child_by_field_name("method")) == "compact" \
                        and v.child_by_field_name("receiver") is not None:
                    v = v.child_by_field_name("receiver")  # type: ignore[assignment]
                if v.type == "array":
                    out.extend(v.named_children)
                    continue
            out.append(a)
        return out

    def param_flow(self, node: ts.Node) -> Client | None:
        """What the project's call sites pass to the parameter `node` names (None: not one)."""
        m = self.method_of(node)
        if m is None or node.type != "identifier":
            return None
        names = _params(m)
        if text(node) not in names or self.assigned.get((self.scope(node), text(node))):
            return None
        return self._passed(self.callee(m), names.index(text(node)),
                            f"{text(node)} (argument")

    def _passed(self, callee: str, idx: int, what: str) -> Client:
        self.out.imports.add("rb:" + callee)
        self.wanted.add(callee.rsplit("::", 1)[-1])  # files read for it: by its bare name
        fact = self.project.param(self.ctx.file, callee, idx, "rb:")
        if fact is None:
            return "unknown", f"{what} {idx + 1} of {callee}; {_NO_CALLER})"
        return fact[0], f"{what} {idx + 1} of {callee}: {fact[1]})"

    def key(self, node: ts.Node) -> Client:
        """A key expression's account: a parameter's from its callers first, a local
        variable's from the value its method assigns it, else by what the text names."""
        flow = self.param_flow(node)
        if flow is not None and _NO_CALLER not in flow[1]:
            return flow
        return key_account_why(_key_text(self.value(node)))

    def client_of(self, node: ts.Node, *, sdk_chain: bool = False) -> Client | None:
        """The client a value holds (a variable or field bound to one, a parameter whose
        callers pass one, `@client` set from the constructor). `sdk_chain`: the value is
        used as a client (`x.v1.customers.list`), so a parameter or field no caller passes
        a known client to is an unknown client, not something else."""
        name = text(node).lstrip("@")
        if node.type in ("identifier", "instance_variable") and name in self.clients:
            return self.clients[name]
        if node.type == "identifier" and self.param_flow(node) is None:
            made = self.factories.get(name)  # a method that returns a client
            if made is None:
                self.out.imports.add("rb:" + name)
                got = self.project.factories.get("rb:" + name)
                made = None if got is None else (got[0], f"client from {name}: {got[1]}")
            if made is not None:
                return made
        keep = sdk_chain or "stripe" in name.lower()
        if node.type == "identifier":
            flow = self.param_flow(node)
            if flow is not None and (keep or _NO_CALLER not in flow[1]):
                return flow
        if node.type == "instance_variable" and name in self.field_params:
            cls, idx = self.field_params[name]
            got = self._passed(cls, idx, f"@{name} (set from {cls}.new argument")
            if keep or _NO_CALLER not in got[1]:
                return got
        return None

    def note_arguments(self, node: ts.Node, chain: list[str] | None) -> None:
        """`sync(client)`, `Billing.new(client)`, `charge(user.access_token)`: tell the
        project which client or key reaches which parameter of which method (by name)."""
        method = text(node.child_by_field_name("method"))
        receiver = node.child_by_field_name("receiver")
        callees = self.constants(receiver) if method == "new" and receiver is not None \
            and receiver.type in ("constant", "scope_resolution") else [method]
        if not method or (chain and chain[0] == "Stripe"):
            return
        for idx, a in enumerate(self.positional(node.child_by_field_name("arguments"))[:16]):
            client = self.client_of(a) if a.type in ("identifier", "instance_variable") else None
            if client is None and a.type == "call" and (_chain(a) or [])[-2:] == [
                    "StripeClient", "new"]:
                client = self.client_account(a)
            if client is None and a.type in ("identifier", "call", "instance_variable",
                                             "element_reference", "scope_resolution") and (
                    len(text(a)) <= 100) and self.param_flow(a) is None:
                acc, why = self.key(a)
                client = None if acc == "unknown" else (acc, f"an API key argument: {why}")
            if client is None:
                continue
            for callee in callees:
                key = ("rb:" + callee, idx)
                fact = (client[0], f"passed at {self.ctx.file}:{node.start_point[0] + 1}: "
                                   f"{client[1]}")
                bind_value(self.param_facts, key, fact,
                     f"{callee} is passed clients of different accounts")

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
        if args is not None and first is not None and first.type in ("pair", "hash"):
            first = (_hash_keys(args) | _hash_keys(first)).get("api_key")  # `new(api_key: k)`
        if first is None:
            return "unknown", f"{where} without a key the scan can see"
        acc, why = self.key(first)
        return acc, f"{where} from {why}"

    def run(self) -> FileFindings:
        for cls in self.subclasses:  # `class MyStripe < OmniAuth::Strategies::StripeConnect`
            sup = cls.child_by_field_name("superclass")
            base = sup.named_children[0] if sup is not None and sup.named_child_count else None
            if base is not None:
                self.oauth_library(cls, ["class"], base)
        for node in self.calls:
            try:
                self.call(node)
            except RecursionError:
                self.out.partial = "some calls are too deeply nested to analyse"
        self.wraps.uncalled()
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

    def where(self, node: ts.Node) -> tuple[str, int, int]:
        row, col = node.start_point
        return self.ctx.file, row + 1, col + 1

    def call(self, node: ts.Node) -> None:
        if self.wraps.call(node):
            return
        parent = node.parent
        # `client.v1.customers` inside `client.v1.customers.list`: only a link of the chain.
        is_link = parent is not None and parent.type == "call" and parent.child_by_field_name(
            "receiver"
        ) == node
        chain = _chain(node)
        if chain and self.oauth_library(node, chain):
            return
        if not chain or len(chain) < 2:
            self.note_arguments(node, chain)
            return
        sdk = table()
        route: tuple[str, str] | None = None
        client: Client | None = None
        cls: str | None = None
        root = _root(node)
        if chain[0] == "Stripe" and len(chain) >= 3 and chain[-2][:1].isupper():
            ns = [_snake(c) for c in chain[1:-2]]
            cls = ".".join([*ns, chain[-2]])
            method = _METHOD_ALIASES.get(chain[-1], chain[-1])
            if method.startswith("update_"):  # `Account.update_capability`: modify_capability
                method = "modify_" + method.removeprefix("update_")
            if cls not in sdk.resource_classes or method in _LOCAL:
                return
            route = sdk.get("resource", f"{cls}.{method}") or sdk.get(
                "resource", f"{cls}.{chain[-1]}"
            )
            client = self.scoped_module.get(self.scope(node), self.module_account)
        elif len(chain) >= 3 and root is not None and (
                client := self.client_of(root, sdk_chain=chain[1] == "v1")):
            rest = chain[1:]
            route = sdk.get("service", ".".join(rest)) or sdk.get(
                "service", "v1." + ".".join(rest)
            )
            if route is None and rest[0] not in sdk.roots["service"]:
                return
            cls = route_classes().get(route) if route is not None else None
        else:
            if not self.instance_call(node, chain) and not self.oauth_call(node, chain):
                self.note_arguments(node, chain)
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
        self.record(node, label, route, client, cls, stripe=chain[0] == "Stripe")

    def instance_call(self, node: ts.Node, chain: list[str]) -> bool:
        """`charge.save`, `Stripe::Charge.retrieve(id).capture`: a method of an object an API
        call returned, on that call's account (stripe-ruby keeps the options on it)."""
        receiver = node.child_by_field_name("receiver")
        if receiver is None:
            return False
        found = self.objects.get((self.scope(receiver), text(receiver))) if receiver.type in (
            "identifier", "instance_variable") else self.returned.get(
            (receiver.start_byte, receiver.end_byte))
        if found is None and receiver.type == "identifier":
            found = self.iterated(receiver)
        if found is None:
            return False
        cls, client = found
        name = _INSTANCE.get(chain[-1], chain[-1])
        if name in ("create", "list", "search", "all"):
            return False
        route = table().get("resource", f"{cls}.{name}")
        if route is None:
            return False
        label = f"{text(receiver) if receiver.type != 'call' else cls}.{chain[-1]}"
        self.record(node, label, route, client, cls, stripe=False)
        return True

    def iterated(self, var: ts.Node) -> tuple[str, Client] | None:
        """`Stripe::Charge.list(p, opts).each do |charge| charge.save end` (also `.data.each`,
        `.auto_paging_each`, or a variable holding the list): the block's parameter is an
        object of the list's class, on the list call's account."""
        for block in itertools.islice(self.blocks.around(var.start_byte), 8):
            params = block.child_by_field_name("parameters")
            names = [text(p) for p in params.named_children] if params is not None else []
            if text(var) not in names[:1]:
                continue
            each = block.parent
            source = each.child_by_field_name("receiver") if each is not None and (
                each.type == "call") and text(each.child_by_field_name("method")) in _ITERATE \
                else None
            if source is not None and source.type == "call" and text(
                    source.child_by_field_name("method")) == "data":
                source = source.child_by_field_name("receiver")
            if source is None:
                return None
            if source.type in ("identifier", "instance_variable"):
                return self.objects.get((self.scope(source), text(source)))
            return self.returned.get((source.start_byte, source.end_byte))
        return None

    def record(self, node: ts.Node, label: str, route: tuple[str, str], client: Client,
               cls: str | None, *, stripe: bool) -> None:
        args = node.child_by_field_name("arguments")
        hashes = [] if args is None else [_hash_keys(args)] + [
            self.hash_of(a) for a in args.named_children
        ]
        expand: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        account: Account = client[0]
        why = client[1]
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension"
        # stripe-ruby takes the request options last, and a String there is the API key:
        # `Stripe::Charge.create(attrs, user.secret_key)`. Only a value whose origin the key
        # rules can tell counts (`params`, `opts` say nothing).
        positional = self.positional(args)
        if stripe and len(positional) >= 2 and not self.ctx.ui_extension and \
                positional[-1].type in ("identifier", "call", "instance_variable",
                                        "element_reference", "constant", "scope_resolution") \
                and self.value(positional[-1]).type != "hash":
            acc, w = self.key(positional[-1])
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
                fixed = self.fixed(h["stripe_account"])
                account, why = ("own", fixed) if fixed else (
                    "connected", "a stripe_account option on the call")
            elif "api_key" in h and not self.ctx.ui_extension:
                account, w = self.key(h["api_key"])
                why = f"api_key on the call: {w}"
        if cls is not None:
            held = (cls, (account, why))
            self.returned[(node.start_byte, node.end_byte)] = held
            parent = node.parent
            left = parent.child_by_field_name("left") if parent is not None and (
                parent.type == "assignment") else None
            if left is not None and left.type in ("identifier", "instance_variable"):
                self.objects[(self.scope(left), text(left))] = held
        row, col = node.start_point
        self.out.calls.append(Call(
            self.ctx.file, row + 1, col + 1, label, route[0], route[1], expand, account, notes,
            why,
        ))


def _pieces(node: ts.Node) -> list[Piece]:
    """A string's text, an interpolation as None (`"#{base}/v1/x"` -> [None, '/v1/x'])."""
    if node.type != "string":
        return [None]
    out: list[Piece] = []
    for c in node.named_children:
        out.append(text(c) if c.type == "string_content" else None)
    return out or [""]


def _literal(node: ts.Node) -> str | None:
    ps = _pieces(node)
    return None if None in ps else "".join(p or "" for p in ps)


def _root(node: ts.Node) -> ts.Node | None:
    """The receiver a call chain starts from (`client` of `client.v1.customers.list`)."""
    for _ in range(32):
        receiver = node.child_by_field_name("receiver") if node.type == "call" else None
        if receiver is None:
            return node if node.type in ("identifier", "instance_variable") else None
        node = receiver
    return None


def extract(ctx: Context, source: bytes) -> FileFindings:
    return extract_and_index(ctx, source)[0]


def extract_and_index(ctx: Context, source: bytes) -> tuple[FileFindings, Project | None]:
    """The file's calls, and the project-wide key if it sets `Stripe.api_key`."""
    f = _File(ctx, source)
    found = f.run()
    facts = Project(module_key=f.module_account if f.key_set else None,
                    params=dict(f.param_facts), wanted=set(f.wanted),
                    factories={"rb:" + k: v for k, v in f.factories.items()})
    if not f.key_set:
        found.imports.add("<module key>")
    return found, facts if f.key_set or f.param_facts or f.wanted or f.factories else None
