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

import itertools
import re
from functools import cache
from typing import TypeVar

import tree_sitter as ts
import tree_sitter_php as ts_php

from permgate.scan import oauthlibs
from permgate.scan.common import (
    HTTP_VERBS,
    Context,
    OriginRead,
    Piece,
    Project,
    bind_value,
    fixed_origin,
    key_account_why,
    param_mark,
    raw_target,
)
from permgate.scan.model import EXPAND_AT_RUN_TIME, Account, Call, FileFindings, Scope, Unresolved
from permgate.scan.phpwrap import Wrappers
from permgate.scan.sdk import Route, route_classes, table
from permgate.scan.tsutil import Enclosing, event_uses, query_captures, text

Client = tuple[Account, str]
_V = TypeVar("_V")
_NO_CALLER = "no call site the scan can see passes a known client or key"
_QUERY = """
(member_call_expression) @call
(scoped_call_expression) @call
(function_call_expression) @call
(assignment_expression) @assign
(function_definition) @fn
(method_declaration) @fn
(namespace_use_declaration) @use
(namespace_definition) @ns
(object_creation_expression) @new
(return_statement) @ret
(anonymous_function) @inner
(arrow_function) @inner
(foreach_statement) @each
(const_element) @const
(property_element) @prop
(class_declaration) @class
"""
_WP = {"wp_remote_get": "GET", "wp_remote_post": "POST", "wp_remote_request": None,
       "wp_safe_remote_get": "GET", "wp_safe_remote_post": "POST",
       "wp_safe_remote_request": None}
_STATIC = {"all": "list", "update": "modify"}
# static methods of stripe-php's resources that build an object locally, without a request
_LOCAL = frozenset({"constructFrom", "baseUrl", "classUrl", "resourceUrl"})
# values judged by their text when an account id is followed to its origin
_ONE_VALUE = frozenset({"string", "encapsed_string", "function_call_expression",
                        "scoped_call_expression", "member_call_expression", "name",
                        "qualified_name", "class_constant_access_expression",
                        "member_access_expression", "subscript_expression"})
_TRIM = frozenset({"ltrim", "rtrim", "trim"})
_MERGE = frozenset({"array_merge", "array_replace", "array_merge_recursive"})


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
    """`$this->stripe->customers->retrieve` -> ['this', 'stripe', 'customers', 'retrieve'];
    a call on the way is marked: `Stripe::client()->customers->retrieve` -> ['client()',
    'customers', 'retrieve'], `$this->svc->client()->...` -> ['this', 'svc', 'client()', ...]."""
    out: list[str] = []
    for i in range(32):
        if node.type in ("member_call_expression", "member_access_expression",
                         "nullsafe_member_call_expression", "nullsafe_member_access_expression"):
            call = i and node.type.endswith("call_expression")
            out.append(_name(node.child_by_field_name("name")) + ("()" if call else ""))
            obj = node.child_by_field_name("object")
            if obj is None:
                return None
            node = obj
        elif node.type == "variable_name":
            out.append(_name(node))
            return out[::-1]
        elif i and node.type in ("scoped_call_expression", "function_call_expression"):
            callee = node.child_by_field_name("name") or node.child_by_field_name("function")
            out.append(text(callee).rsplit("\\", 1)[-1] + "()")
            return out[::-1]
        else:
            return None
    return None


_Key = tuple[int, int]  # a scope: the byte span of its function, (0, 0) for the file
_TOP: _Key = (0, 0)
_FN_SCOPES = frozenset({"function_definition", "method_declaration"})
# closures and arrow functions see their parent's variables (`use ($x)`, `fn() => $x`)
_INNER_SCOPES = frozenset({"anonymous_function", "anonymous_function_creation_expression",
                           "arrow_function"})
_MAX_UP = 400  # bounded walk up the tree (hostile nesting is reported, not followed)
# stripe-php instance methods that have another name in the resource table
_INSTANCE = {"save": "modify", "refresh": "retrieve"}


def _span(node: ts.Node) -> _Key:
    return node.start_byte, node.end_byte


def _params(fn: ts.Node) -> list[ts.Node]:
    ps = fn.child_by_field_name("parameters")
    return [] if ps is None else [p for p in ps.named_children if p.type.endswith("parameter")]


def _param_name(p: ts.Node) -> str:
    return _name(p.child_by_field_name("name"))


def _class_of(fn: ts.Node) -> str:
    n = fn.parent
    for _ in range(_MAX_UP):
        if n is None:
            return ""
        if n.type in ("class_declaration", "trait_declaration", "enum_declaration"):
            return _name(n.child_by_field_name("name"))
        n = n.parent
    return ""


def _callee(fn: ts.Node, namespace: str) -> str:
    """The name callers use: for a constructor its class's full name (`new Billing($c)` in
    `namespace App\\Pay` -> `App\\Pay\\Billing`), as the autoloader resolves it; a method or
    function by its name (the class of `$obj->m()` is not known at the call)."""
    name = _name(fn.child_by_field_name("name"))
    if name != "__construct":
        return name
    cls = _class_of(fn)
    return namespace + cls if cls else name


def _is_stripe_client(node: ts.Node) -> bool:
    return text(node).replace("\\", "").split("(")[0].strip().endswith("StripeClient")


class _File:
    def __init__(self, ctx: Context, source: bytes) -> None:
        self.ctx = ctx
        self.source = source
        self.project = ctx.project or Project()
        self.out = FileFindings()
        self._keys: dict[str, Client] = {}  # key_account_why by text (repeated arguments)
        self._subclasses: dict[int, Client] = {}  # a subclass of StripeClient: its key
        self.tree = ts.Parser(_language()).parse(source)
        caps, deep = query_captures(_query(), self.tree, source)
        # functions, methods and closures, to tell the scope of a variable without walking up
        self.enclosing = Enclosing([*caps.get("fn", []), *caps.get("inner", [])])
        self.loops = Enclosing(caps.get("each", []))  # `foreach (X::all() as $x)`
        # post-order (inner calls first): `X::retrieve(...)->capture()` knows its object
        self.calls = sorted(caps.get("call", []), key=lambda n: (n.end_byte, -n.start_byte))
        self.news = caps.get("new", [])
        self.rets = caps.get("ret", [])
        self.consts = caps.get("const", [])
        self.props = caps.get("prop", [])
        self.classes = caps.get("class", [])
        self.field_values: list[tuple[str, ts.Node]] = []  # `$this->f = value`, anywhere
        self.functions = caps.get("fn", [])
        # Variables are local to their function in PHP: every value assigned to one, and every
        # `$v['k'] = x` (`$v['k'][] = x`), by (scope, name)
        self.assigned: dict[tuple[_Key, str], list[ts.Node]] = {}
        self.subs: dict[tuple[_Key, str], list[tuple[str, ts.Node, bool]]] = {}
        # clients held in variables (by scope) and in `$this->field`s (by field name)
        self.var_clients: dict[tuple[_Key, str], Client] = {}
        self.clients: dict[str, Client] = {}
        # objects a call returned (`$charge = \Stripe\Charge::retrieve(...)`): their class and
        # the account they act for (stripe-php keeps the request options on the object)
        self.objects: dict[tuple[_Key, str], tuple[str, Client]] = {}
        self.returned: dict[_Key, tuple[str, Client]] = {}
        # `$this->field = $param` in a constructor: field -> (class, parameter index)
        self.field_params: dict[str, tuple[str, int]] = {}
        self.param_facts: dict[tuple[str, int], Client] = {}
        self.wanted: set[str] = set()
        # `use Stripe\Checkout\Session;` -> {"Session": "Stripe\Checkout\Session"}: a class
        # is resolved by the path it was imported from, not by its short name
        self.aliases: dict[str, str] = {}
        for u in caps.get("use", []):
            self._use(u)
        # the file's namespace (`namespace App\\Services;`, the first), "App\\Services\\"
        ns = next((n.child_by_field_name("name") for n in caps.get("ns", [])), None)
        self.namespace = text(ns).strip("\\") + "\\" if ns is not None else ""
        # the SDK's global key: this file's own setting wins, else the project's (set in a
        # bootstrap file), as `stripe.api_key` in Python and `Stripe.api_key` in Ruby
        project_key = ctx.project.module_key if ctx.project is not None else None
        self.module: Client = project_key or (
            "unknown", "\\Stripe\\Stripe::setApiKey is not called in the project")
        self.key_set: Client | None = None  # what this file sets it to (all settings agree)
        self.scoped_module: dict[_Key, Client] = {}
        builds: list[tuple[ts.Node, ts.Node]] = []
        providers: list[tuple[ts.Node, ts.Node]] = []
        # OAuth client libraries whose resource owner is read from the API host
        # (`new GenericProvider(['urlResourceOwnerDetails' => 'https://api.stripe.com/v1/account'])`):
        # variable (scope, name) or `$this->field` -> (path, where it is configured)
        self.owners: dict[tuple[_Key, str], tuple[str, str]] = {}
        for a in caps.get("assign", []):
            left, right = a.child_by_field_name("left"), a.child_by_field_name("right")
            if left is None or right is None:
                continue
            if right.type == "object_creation_expression" and _is_stripe_client(right):
                builds.append((left, right))
            elif right.type == "object_creation_expression":
                providers.append((left, right))
            elif left.type == "variable_name":
                self.assigned.setdefault((self.scope(a), _name(left)), []).append(right)
            elif left.type == "subscript_expression":
                self._sub(a, left, right)
            elif left.type == "member_access_expression" and text(
                    left.child_by_field_name("object")) == "$this":
                self.field_values.append((_name(left.child_by_field_name("name")), right))
                if right.type == "variable_name":
                    self._field_param(a, _name(left.child_by_field_name("name")), right)
        for fn in self.functions:  # constructor promotion: `__construct(private StripeClient $s)`
            if _name(fn.child_by_field_name("name")) == "__construct":
                for i, p in enumerate(_params(fn)):
                    if p.type == "property_promotion_parameter":
                        self.field_params.setdefault(_param_name(p),
                                                     (_callee(fn, self.namespace), i))
        for left, right in providers:
            self._provider(left, right)
        for left, right in builds:
            client = self._client_account(right)
            if left.type == "variable_name":
                bind_value(self.var_clients, (self.scope(left), _name(left)), client,
                     f"{text(left)} is bound to clients of different accounts")
            elif left.type.startswith("member_access"):
                name = _name(left.child_by_field_name("name"))
                bind_value(self.clients, name, client,
                     f"{name} is bound to clients of different accounts")
        # factories: functions and methods that return a client (`return $this->client;`,
        # `return new StripeClient(...)`), by name
        self.factories: dict[str, Client] = {}
        for ret in caps.get("ret", []):
            func = self.function(ret)
            got = self.client_of(ret.named_children[0]) if func is not None and (
                ret.named_child_count) else None
            if func is None or got is None:
                continue
            client = got
            name = _name(func.child_by_field_name("name"))
            fact = (client[0], f"returned by {name}() at {ctx.file}:{ret.start_point[0] + 1}: "
                               f"{client[1]}")
            bind_value(self.factories, name, fact,
                       f"{name}() returns clients of different accounts")
        for call in self.calls:
            if call.type == "scoped_call_expression" and _name(
                call.child_by_field_name("name")
            ) == "setApiKey" and text(call.child_by_field_name("scope")).endswith("Stripe"):
                args = self._args(call)
                acc, why = self.key(args[0] if args else None)
                row = call.start_point[0] + 1
                self.module = (acc, f"setApiKey at {ctx.file}:{row} with {why}")
                self.key_set = self.module if self.key_set is None or (
                    self.key_set[0] == acc) else ("unknown", "setApiKey is called with keys of "
                                                  f"different accounts in {ctx.file}")
                # a function that sets the key itself uses its own (the last it sets)
                self.scoped_module[self.fn_scope(call)] = self.module
        # a function that does not set the key: the file's top-level setting, else the one
        # account all the file's settings agree on (unknown when they disagree)
        if self.key_set is not None:
            self.module = self.scoped_module.get(_TOP, self.key_set)
        self.out.partial = deep
        self.wraps = Wrappers(self)  # the file's thin HTTP wrappers (after its values)

    def _provider(self, left: ts.Node, construct: ts.Node) -> None:
        where = f"{self.ctx.file}:{construct.start_point[0] + 1}"
        cls = construct.named_children[0] if construct.named_child_count else None
        # a provider class of the table (`new \AdamPaterson\OAuth2\Client\Provider\Stripe`)
        # knows its resource owner's URL itself
        lib = oauthlibs.find("php", "class", self.class_name(text(cls))) if cls is not None \
            and cls.type in ("name", "qualified_name") else None
        if lib is not None:
            path, where = lib.calls[0][1], f"{where}, {lib.name}"
        else:
            args = self._args(construct)
            opts = self.array(args[0]) if args else None
            url = (opts or {}).get("urlResourceOwnerDetails")
            pieces = self.pieces(url) if url is not None else []
            target = raw_target(pieces, require_host=True) if pieces else None
            if target is None:
                return
            path = target.path
        if left.type == "variable_name":
            self.owners[(self.scope(left), _name(left))] = (path, where)
        elif left.type == "member_access_expression":
            self.owners[(_TOP, "->" + _name(left.child_by_field_name("name")))] = (path, where)

    def resource_owner(self, node: ts.Node) -> bool:
        """`$provider->getResourceOwner($accessToken)`: the OAuth client library requests its
        resource-owner URL with the access token it was given, the installing account's; so
        does `$provider->getAuthenticatedRequest('GET', $apiUrl, $accessToken)` (league's
        Bearer providers put the token in its header)."""
        name = _name(node.child_by_field_name("name"))
        if name not in ("getResourceOwner", "getAuthenticatedRequest"):
            return False
        obj = node.child_by_field_name("object")
        if obj is None:
            return False
        if obj.type == "variable_name":
            found = self._lookup(self.owners, _name(obj), obj)
        elif obj.type == "member_access_expression":
            found = self.owners.get((_TOP, "->" + _name(obj.child_by_field_name("name"))))
        else:
            found = None
        if found is None:
            return False
        (path, where), method = found, "GET"
        expand: tuple[str, ...] = ()
        why = (f"an OAuth client (configured at {where}) reads its resource owner with the "
               "OAuth access token: the installing account")
        if name == "getAuthenticatedRequest":
            args = self._args(node)
            verb = self.string(args[0]) if args else None
            target = raw_target(self.pieces(args[1]), require_host=True) if len(args) > 2 \
                else None
            if verb is None or target is None:
                return False
            method, path, expand = verb.upper(), target.path, tuple(target.expand)
            why = (f"an OAuth client (configured at {where}) sends the OAuth access token it "
                   "is given as a Bearer header: the installing account")
        if self.ctx.ui_extension:
            why = "a UI extension"
        self.out.calls.append(Call(*self.where(node), f"{text(obj)}->{name}", method, path,
                                   expand, "installing", (), why))
        return True

    def socialite(self, node: ts.Node) -> bool:
        """`Socialite::driver('stripe')->user()` (also `with`, `->stateless()`,
        `userFromToken`): a Socialite provider of the table reads the account with the token
        it obtains (`data/oauth_libraries.json`); `redirect()` requests nothing."""
        if _name(node.child_by_field_name("name")) not in ("user", "userFromToken"):
            return False
        obj = node.child_by_field_name("object")
        for _ in range(4):  # `->stateless()`, `->scopes([...])` between the driver and user()
            if obj is None or obj.type != "member_call_expression":
                break
            obj = obj.child_by_field_name("object")
        if obj is None or obj.type != "scoped_call_expression" or not text(
                obj.child_by_field_name("scope")).endswith("Socialite") or _name(
                obj.child_by_field_name("name")) not in ("driver", "with"):
            return False
        args = self._args(obj)
        lib = oauthlibs.find("php", "socialite", (self.string(args[0]) or "").lower()) if (
            args) else None
        if lib is None:
            return False
        self.out.calls.extend(oauthlibs.calls(self.ctx, lib, *self.where(node)[1:],
                                              text(node)[:60]))
        return True

    def scopes_of(self, node: ts.Node) -> list[_Key]:
        """The scopes whose variables `node` sees, innermost first: its closures' (which see
        their parent's variables), its function's, else the file's."""
        out: list[_Key] = []
        for n in self.enclosing.around(node.start_byte):
            out.append(_span(n))
            if n.type in _FN_SCOPES:
                return out
        out.append(_TOP)
        return out

    def scope(self, node: ts.Node) -> _Key:
        return self.scopes_of(node)[0]

    def function(self, node: ts.Node) -> ts.Node | None:
        """The named function or method around `node`."""
        return next((n for n in self.enclosing.around(node.start_byte)
                     if n.type in _FN_SCOPES), None)

    def fn_scope(self, node: ts.Node) -> _Key:
        fn = self.function(node)
        return _TOP if fn is None else _span(fn)

    def _sub(self, assign: ts.Node, left: ts.Node, right: ts.Node) -> None:
        """`$opts['stripe_account'] = $id;`, `$p['expand'][] = 'x';`: an options array built
        by assignment."""
        append = False
        target = left
        if target.named_child_count == 1:  # `$p['expand'][]`
            append, target = True, target.named_children[0]
        if target.type != "subscript_expression" or target.named_child_count != 2:
            return
        var, index = target.named_children
        k = self.string(index)
        if var.type == "variable_name" and k is not None:
            self.subs.setdefault((self.scope(assign), _name(var)), []).append((k, right, append))

    def _field_param(self, assign: ts.Node, field: str, value: ts.Node) -> None:
        fn = self.function(assign)
        if fn is None or _name(fn.child_by_field_name("name")) != "__construct":
            return
        names = [_param_name(p) for p in _params(fn)]
        if _name(value) in names:
            self.field_params.setdefault(field, (_callee(fn, self.namespace),
                                                 names.index(_name(value))))

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

    def _lookup(self, table: dict[tuple[_Key, str], _V], name: str, at: ts.Node) -> _V | None:
        """A variable's entry in the scope `at` sees it in (its function's, then outward
        from a closure)."""
        for sc in self.scopes_of(at):
            v = table.get((sc, name))
            if v is not None:
                return v
        return None

    def key(self, node: ts.Node | None) -> Client:
        """Whose account a key expression acts for; a variable is followed to the values its
        function assigns it (`$k = get_user_meta($id, 'stripe_access_token')`), when they
        agree, and a parameter to what the callers pass."""
        if node is None:
            return key_account_why(None)
        if node.type == "variable_name":
            values = self._lookup(self.assigned, _name(node), node) or []
            if values and len(values) <= 8:
                found = {key_account_why(text(v)) for v in values}
                accounts = {a for a, _ in found}
                if len(accounts) == 1 and "unknown" not in accounts:
                    acc, why = min(found)
                    return acc, f"{text(node)}, assigned {why}"
            elif not values:
                flow = self.param_flow(node)
                if flow is not None and _NO_CALLER not in flow[1]:
                    return flow
        return key_account_why(text(node))

    def param_flow(self, var: ts.Node, name: str | None = None) -> Client | None:
        """What the project's call sites pass to the parameter `var` names (None: it is not
        a parameter of its function)."""
        fn = self.function(var)
        if fn is None:
            return None
        name = name or _name(var)
        names = [_param_name(p) for p in _params(fn)]
        if name not in names:
            return None
        return self._passed(_callee(fn, self.namespace), names.index(name),
                            f"${name} (argument")

    def _passed(self, callee: str, idx: int, what: str) -> Client:
        # read again once the project-wide pass knows callers; have the callers read
        self.out.imports.add("php:" + callee)
        self.wanted.add(callee.rsplit("\\", 1)[-1])  # files read for it: by its bare name
        fact = self.project.param(self.ctx.file, callee, idx, "php:")
        if fact is None:
            return "unknown", f"{what} {idx + 1} of {callee}(); {_NO_CALLER})"
        return fact[0], f"{what} {idx + 1} of {callee}(): {fact[1]})"

    def client_of(self, node: ts.Node, depth: int = 0) -> Client | None:
        """The client a value holds: a variable bound to one (or to `$this->field`), a
        field, a `new StripeClient(...)`."""
        if node.type == "variable_name" and depth < 4:
            c = self._lookup(self.var_clients, _name(node), node)
            if c is not None:
                return c
            values = self._lookup(self.assigned, _name(node), node) or []
            if len(values) == 1:
                return self.client_of(values[0], depth + 1)
        elif node.type == "member_access_expression" and text(
                node.child_by_field_name("object")) == "$this":
            return self.clients.get(_name(node.child_by_field_name("name")))
        elif node.type == "object_creation_expression" and _is_stripe_client(node):
            return self._client_account(node)
        return None

    def key_argument(self, node: ts.Node) -> Client | None:
        """An argument that is an API key whose account its text tells; not a parameter of
        the caller (its own callers decide that), not any other literal."""
        if node.type in ("string", "encapsed_string"):
            s = self.string(node) or ""
            if not s.startswith(("sk_", "rk_")):
                return None
        elif node.type == "variable_name":
            fn = self.function(node)
            if fn is not None and _name(node) in {_param_name(p) for p in _params(fn)} and \
                    not self._lookup(self.assigned, _name(node), node):
                return None
        elif node.type not in ("member_access_expression", "subscript_expression",
                               "function_call_expression", "scoped_call_expression",
                               "member_call_expression", "nullsafe_member_access_expression"):
            return None
        t = text(node)
        if len(t) > 100:
            return None
        if node.type != "variable_name":  # its text alone decides: read once per text
            if t not in self._keys:
                self._keys[t] = self.key(node)
            acc, why = self._keys[t]
        else:
            acc, why = self.key(node)
        return None if acc == "unknown" else (acc, f"an API key argument: {why}")

    def note_arguments(self, node: ts.Node, callee: str) -> None:
        """`sync($client, $id)`, `new Billing($client)`, `$svc->charge($user->token)`: tell
        the project which client or key reaches which parameter of which function (by name)."""
        if not callee or callee.lower() in ("setapikey", "__construct"):
            return
        for idx, a in enumerate(self._args(node)):
            client = self.client_of(a) or self.key_argument(a)
            if client is None:
                continue
            key = ("php:" + callee, idx)
            fact = (client[0], f"passed at {self.ctx.file}:{node.start_point[0] + 1}: "
                               f"{client[1]}")
            bind_value(self.param_facts, key, fact,
                 f"{callee}() is passed clients of different accounts")

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
        """A variable's value, when its function assigns it one value only."""
        seen: set[str] = set()
        while node.type == "variable_name" and len(seen) < 8:
            name = _name(node)
            values = self._lookup(self.assigned, name, node)
            if not values or name in seen or len({text(v) for v in values}) != 1:
                break
            seen.add(name)
            node = values[0]
        return node

    def pieces(self, node: ts.Node, depth: int = 0,
               marks: dict[str, int] | None = None) -> list[Piece]:
        """The literal pieces of a string expression (None: built at run time), through the
        function's variables assigned once, the file's constants (`self::BASE`, `define`)
        and `$this->field`s given one value. `marks`: a wrapper's parameters, each read as
        its `param_mark` when used whole (`$path`, `ltrim($path, '/')`)."""
        if marks and node.type == "function_call_expression" and text(
                node.child_by_field_name("function")).lstrip("\\") in _TRIM:
            args = self._args(node)
            node = args[0] if args else node
        if marks and node.type == "variable_name" and _name(node) in marks and not (
                self._lookup(self.assigned, _name(node), node)):
            return [param_mark(marks[_name(node)])]
        node = self.resolve(node)
        if depth > 16:
            return [None]
        if node.type in ("string", "encapsed_string"):
            out: list[Piece] = []
            for c in node.named_children:
                if c.type == "string_content" or c.type == "string_value":
                    out.append(text(c))
                elif c.type == "escape_sequence":
                    out.append(text(c)[1:])
                elif c.type in ("variable_name", "member_access_expression"):
                    out += self.pieces(c, depth + 1, marks)  # `"{$this->base}/v1/{$path}"`
                else:
                    out.append(None)
            return out or [""]
        if node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if op is not None and text(op) == "." and left is not None and right is not None:
                return self.pieces(left, depth + 1, marks) + self.pieces(right, depth + 1, marks)
        const = self.constant(node)
        if const is not None:
            return self.pieces(const, depth + 1, marks)
        return [None]

    _constants: dict[str, ts.Node | None] | None = None

    def constant(self, node: ts.Node) -> ts.Node | None:
        """The value of a constant the file defines once (`const BASE = '...'` in a class,
        `define('BASE', '...')`), read as `self::BASE` / `static::BASE` / `BASE`, or of a
        `$this->field` the file gives one value (a property's default, `$this->f = '...'`);
        fields and constants are kept by name for the whole file, as the scan cannot tell
        one class's `$this` from another's."""
        if node.type == "class_constant_access_expression" and node.named_child_count == 2 and (
                text(node.named_children[0]) in ("self", "static")):
            key = "::" + text(node.named_children[1])
        elif node.type == "name":
            key = "::" + text(node)
        elif node.type == "member_access_expression" and text(
                node.child_by_field_name("object")) == "$this":
            key = "->" + _name(node.child_by_field_name("name"))
        else:
            return None
        if self._constants is None:
            self._constants = {}  # a constant read while they are gathered: none yet
            found: dict[str, list[ts.Node]] = {}
            for c in self.consts:
                if c.named_child_count == 2:
                    found.setdefault("::" + text(c.named_children[0]), []).append(
                        c.named_children[1])
            for p in self.props:
                value = p.child_by_field_name("default_value")
                if value is not None:
                    found.setdefault("->" + _name(p.child_by_field_name("name")), []).append(value)
            for call in self.calls:
                args = self._args(call) if call.type == "function_call_expression" and text(
                    call.child_by_field_name("function")) == "define" else []
                if len(args) == 2 and args[0].type == "string":
                    found.setdefault("::" + text(args[0])[1:-1], []).append(args[1])
            for field, value in self.field_values:
                found.setdefault("->" + field, []).append(value)
            self._constants = {k: v[0] if len({text(x) for x in v}) == 1 else None
                               for k, v in found.items()}
        return self._constants.get(key)

    def string(self, node: ts.Node | None) -> str | None:
        if node is None:
            return None
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def array(self, node: ts.Node, depth: int = 0) -> dict[str, ts.Node] | None:
        """The keys of an options array: a literal, `array_merge(...)` of them, and the
        `$v['k'] = x` assignments its function makes to the variable."""
        subs = self._lookup(self.subs, _name(node), node) if node.type == "variable_name" \
            else None
        node = self.resolve(node)
        out: dict[str, ts.Node] | None = None
        if depth > 8:
            return None
        if node.type == "array_creation_expression":
            out = {}
            for el in node.named_children:
                if el.type == "array_element_initializer" and el.named_child_count == 2:
                    k = self.string(el.named_children[0])
                    if k is not None:
                        out[k] = el.named_children[1]
        elif node.type == "function_call_expression" and text(
                node.child_by_field_name("function")).lstrip("\\") in _MERGE:
            for a in self._args(node)[:8]:
                part = self.array(a, depth + 1)
                if part is not None:
                    out = {**(out or {}), **part}
        elif (name := self.own_call(node)) is not None:
            # `create($p, $this->opts())` with `function opts() { return [...]; }` in the
            # file: the options a helper without parameters returns, read in the helper
            # (issue 25); a name the file defines twice with different bodies is neither
            rets = self._returned(name)
            if rets and len({text(r) for r in rets}) == 1:
                return self.array(rets[0], depth + 1)
        for k, v, append in subs or ():
            if not append:
                out = {**(out or {}), k: v}
        return out

    def fixed(self, value: ts.Node) -> str | None:
        """Why a `stripe_account` value names one fixed account of the operator: as written,
        or (issue 25) through its function's variables, the file's functions' and methods'
        returns, fallbacks (`??`, `?:`) and conditionals (`common.fixed_origin`)."""
        return fixed_origin(value, self._origin, text)

    _returns: dict[str, list[ts.Node]] | None = None

    def _origin(self, node: ts.Node) -> OriginRead[ts.Node]:
        t = node.type
        if t == "null":
            return "null", ()
        if t == "parenthesized_expression":
            return "values", node.named_children[:1]
        if t == "binary_expression" and text(node.child_by_field_name("operator")) == "??":
            return "values", [c for c in (node.child_by_field_name("left"),
                                          node.child_by_field_name("right")) if c is not None]
        if t == "conditional_expression":
            body = node.child_by_field_name("body") or node.child_by_field_name("condition")
            alt = node.child_by_field_name("alternative")
            return "values", [c for c in (body, alt) if c is not None]
        if t == "variable_name":
            fn = self.function(node)
            name = _name(node)
            if name == "this" or (fn is not None and (
                    name in {_param_name(p) for p in _params(fn)} or self._looped(fn, name))):
                return "values", ()  # data, or bound another way: not followed
            return "values", self._lookup(self.assigned, name, node) or ()
        if (called := self.own_call(node)) is not None:
            return "call", self._returned(called)
        # a value of one piece is judged by its text; a compound one (`match`, an array)
        # could mention the environment beside data: not followed
        return ("leaf", ()) if t in _ONE_VALUE else ("values", ())

    def own_call(self, node: ts.Node) -> str | None:
        """The name of the file's function or method a call without arguments calls
        (`f()`, `$this->f()`, `self::f()`, `static::f()`), else None."""
        t = node.type
        if t not in ("function_call_expression", "member_call_expression",
                     "scoped_call_expression") or self._args(node):
            return None
        if t.startswith("function"):
            return text(node.child_by_field_name("function"))
        obj = node.child_by_field_name("object") or node.child_by_field_name("scope")
        return _name(node.child_by_field_name("name")) if text(obj) in (
            "$this", "self", "static") else None

    def _looped(self, fn: ts.Node, name: str) -> bool:
        """Whether `foreach (... as $name)` binds the variable in `fn` (not one value)."""
        return any(fn.start_byte <= loop.start_byte < fn.end_byte and any(
            c.type == "variable_name" and _name(c) == name
            for k in loop.named_children[1:2] for c in (k, *k.named_children))
            for loop in self.loops.nodes)

    def _returned(self, name: str) -> list[ts.Node]:
        """The values the file's functions and methods of that name return (read once)."""
        if self._returns is None:
            self._returns = {}
            for ret in self.rets:
                inner = next(iter(self.enclosing.around(ret.start_byte)), None)
                if inner is not None and inner.type in _FN_SCOPES and ret.named_child_count:
                    self._returns.setdefault(_name(inner.child_by_field_name("name")), []).append(
                        ret.named_children[0])
        return self._returns.get(name, [])

    def appended(self, node: ts.Node, key: str) -> list[ts.Node]:
        """`$params['expand'][] = 'x'`: the values appended to `$v[key]`."""
        if node.type != "variable_name":
            return []
        subs = self._lookup(self.subs, _name(node), node) or []
        return [v for k, v, append in subs if append and k == key]

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
        self.note_news()
        for call in self.calls:
            try:
                self.call(call)
            except RecursionError:
                self.out.partial = "some calls are too deeply nested to analyse"
        self.wraps.uncalled()
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
        if self.wraps.found and node.type != "function_call_expression" and (
                self.wraps.call(node, "->".join(_chain(node) or [_name(
                    node.child_by_field_name("name"))]))):
            return
        if node.type == "function_call_expression" and self.wraps.call(
                node, text(node.child_by_field_name("function"))):
            return
        if node.type == "member_call_expression":
            chain = _chain(node)
            if self.instance_call(node) or self.resource_owner(node) or self.socialite(node):
                return
            if chain and self.service_call(node, chain):
                return
            if chain:
                verb = chain[-1].lower()
                args = self._args(node)
                if verb == "request" and len(args) >= 2:
                    self.http(node, self.string(args[0]), args[1], args[2:])
                elif verb in HTTP_VERBS and args:
                    self.http(node, verb.upper(), args[0], args[1:])
                else:
                    self.note_arguments(node, chain[-1])
        elif node.type == "scoped_call_expression":
            if not self.static_call(node):
                self.note_arguments(node, _name(node.child_by_field_name("name")))
        elif node.type == "function_call_expression":
            fn = text(node.child_by_field_name("function")).lstrip("\\")
            if fn in _WP:
                args = self._args(node)
                if args:
                    self.http(node, _WP[fn], args[0], args[1:])
            else:
                self.note_arguments(node, fn.rsplit("\\", 1)[-1])

    def note_news(self) -> None:
        for node in self.news:
            cls = node.named_children[0] if node.named_child_count else None
            if cls is not None and cls.type in ("name", "qualified_name"):
                self.note_arguments(node, self.class_name(text(cls)))

    def class_name(self, raw: str) -> str:
        """A class's full name as PHP resolves it: `\\A\\B` as written, else by the file's
        `use` imports, else in the file's namespace."""
        if raw.startswith("\\"):
            return raw.lstrip("\\")
        head, _, tail = raw.partition("\\")
        if head in self.aliases:
            return self.aliases[head] + ("\\" + tail if tail else "")
        return self.namespace + raw

    def instance_call(self, node: ts.Node) -> bool:
        """`$charge->save()`, `$sub->cancel()`, `X::retrieve($id)->capture()`: a method of
        an object an API call returned, on that call's account (stripe-php keeps the
        request options on the object)."""
        obj = node.child_by_field_name("object")
        if obj is None:
            return False
        found = self._lookup(self.objects, _name(obj), obj) if obj.type == "variable_name" \
            else self.returned.get(_span(obj))
        if found is None and obj.type == "variable_name":
            found = self.iterated(obj)
        if found is None:
            return False
        cls, client = found
        method = _name(node.child_by_field_name("name"))
        name = _INSTANCE.get(method, _snake(method))
        if name in ("create", "list", "search", "all"):
            return False
        route = table().get("resource", f"{cls}.{name}")
        if route is None:
            return False
        self.record(node, f"{text(obj) if obj.type == 'variable_name' else cls}->{method}",
                    route, client, cls)
        return True

    def factory(self, name: str) -> Client | None:
        """The client a project function or method returns (`getClient()`), by name."""
        if name in self.factories:
            return self.factories[name]
        self.out.imports.add("php:" + name)  # read again if the project learns it later
        got = self.project.factories.get("php:" + name)
        return None if got is None else (got[0], f"client from {name}(): {got[1]}")

    def iterated(self, var: ts.Node) -> tuple[str, Client] | None:
        """`foreach (\\Stripe\\Subscription::all([], $opts)->data as $sub)` (also
        `->autoPagingIterator()`, or a variable holding the list): `$sub` is an object of the
        list's class, on the list call's account."""
        for loop in itertools.islice(self.loops.around(var.start_byte), 8):
            kids = loop.named_children
            if len(kids) < 2 or kids[0].start_byte >= var.start_byte:
                continue
            value = kids[1].named_children[-1] if kids[1].type == "pair" and (
                kids[1].named_child_count) else kids[1]
            if value.type != "variable_name" or _name(value) != _name(var):
                continue
            source = kids[0]
            if source.type in ("member_access_expression", "member_call_expression") and _name(
                    source.child_by_field_name("name")) in ("data", "autoPagingIterator"):
                source = source.child_by_field_name("object") or source
            if source.type == "variable_name":
                return self._lookup(self.objects, _name(source), source)
            return self.returned.get(_span(source))
        return None

    def service_call(self, node: ts.Node, chain: list[str]) -> bool:
        for i, seg in enumerate(chain[:-1]):
            client = self.clients.get(seg) if i else None
            if seg.endswith("()"):
                client = self.factory(seg[:-2])
            elif i == 0 and seg != "this":
                client = self._lookup(self.var_clients, seg, node)
                if client is None:
                    values = self._lookup(self.assigned, seg, node) or []
                    client = self.client_of(values[0]) if len(values) == 1 else None
            if client is None and i == 0 and seg != "this" and len(chain) >= 3:
                flow = self.param_flow(node, seg)  # a client passed in
                if flow is not None and (_NO_CALLER not in flow[1] or "stripe" in seg.lower()):
                    client = flow
            if client is None and i == 0 and seg == "this" and len(chain) >= 3 and (
                    chain[1] in table().roots["node"]):
                client = self.subclass_client(node)
            if client is None and i == 1 and chain[0] == "this" and seg in self.field_params:
                cls, idx = self.field_params[seg]  # `$this->s = $s` in the constructor
                client = self._passed(cls, idx, f"$this->{seg} (set from {cls}() argument")
                if _NO_CALLER in client[1] and "stripe" not in seg.lower():
                    client = None
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
                if client is None:  # `$this->stripeService->client()->...`: read on
                    continue
                return False
            acc, why = client or ("unknown", "a client the scan cannot trace")
            self.record(node, label, route, (acc, why), route_classes().get(route))
            return True
        return False

    def subclass_client(self, node: ts.Node) -> Client | None:
        """`class Platform extends StripeClient` whose methods call `$this->payouts->create()`:
        `$this` is a client of the key its constructor gives `parent::__construct($key)`
        (issue 25); None outside such a class."""
        cls = node.parent
        for _ in range(_MAX_UP):
            if cls is None or cls.type == "class_declaration":
                break
            cls = cls.parent
        base = next((c for c in cls.named_children if c.type == "base_clause"), None) if (
            cls is not None and cls.type == "class_declaration") else None
        if cls is None or base is None or not _is_stripe_client(base):
            return None
        known = self._subclasses.get(cls.start_byte)  # the class is read once, not at each call
        if known is not None:
            return known
        got: Client = "unknown", ("$this, a subclass of StripeClient built outside the class: "
                                  "whose key, the scan cannot tell")
        for call in self.calls:
            if cls.start_byte <= call.start_byte < cls.end_byte and (
                    call.type == "scoped_call_expression") and text(
                    call.child_by_field_name("scope")) == "parent" and text(
                    call.child_by_field_name("name")) == "__construct":
                acc, why = self._client_account(call)
                got = acc, f"$this, a subclass of StripeClient: {why}"
                break
        self._subclasses[cls.start_byte] = got
        return got

    def static_call(self, node: ts.Node) -> bool:
        raw = text(node.child_by_field_name("scope"))
        scope = raw.lstrip("\\")
        if not raw.startswith("\\"):
            head, _, tail = scope.partition("\\")
            if head in self.aliases:
                scope = self.aliases[head] + ("\\" + tail if tail else "")
        method = _name(node.child_by_field_name("name"))
        if method in _LOCAL:
            return True
        parts = scope.split("\\")
        if not parts or parts[0] != "Stripe" or len(parts) < 2:
            return False
        cls = ".".join([*(_snake(p) for p in parts[1:-1]), parts[-1]])
        if cls not in table().resource_classes:
            return parts[-1] == "Stripe"
        route = None
        for name in (_STATIC.get(method, method), method, _snake(_node_method(method))):
            route = table().get("resource", f"{cls}.{name}")
            if route is not None:
                break
        label = f"\\{scope}::{method}"
        if route is None:
            self.out.unresolved.append(Unresolved(
                *self.where(node), label, "not a method the SDK table knows"))
            return True
        own = self.scoped_module.get(self.fn_scope(node))
        if own is None and self.key_set is None:
            self.out.imports.add("<module key>")  # read again when the project's key is learnt
        self.record(node, label, route, own or self.module, cls)
        return True

    def record(self, node: ts.Node, label: str, route: Route, client: Client,
               cls: str | None = None) -> None:
        expand: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        acc, why = client
        if self.ctx.ui_extension:
            acc, why = "installing", "a UI extension"
        args = self._args(node)
        for a in args:
            arr = self.array(a)
            if arr is None:
                continue
            extra = self.appended(a, "expand")
            if "expand" in arr or extra:
                values = self.strings(arr["expand"]) if "expand" in arr else []
                more = [self.string(e) for e in extra]
                if values is None or None in more:
                    notes = (EXPAND_AT_RUN_TIME,)
                else:
                    expand = (*values, *(m for m in more if m is not None))
            if "stripe_account" in arr:
                fixed = self.fixed(arr["stripe_account"])
                acc, why = ("own", fixed) if fixed else (
                    "connected", "a stripe_account option on the call")
            if "api_key" in arr:
                acc, w = self.key(arr["api_key"])
                why = f"api_key on the call: {w}"
        # stripe-php takes the request options last, and a string there is the API key
        # (`\Stripe\Charge::create($params, $user->access_token)`): only a value whose origin
        # the key rules can tell counts
        if len(args) >= 2 and not self.ctx.ui_extension and self.array(args[-1]) is None and \
                args[-1].type in ("variable_name", "member_access_expression",
                                  "subscript_expression", "function_call_expression"):
            k_acc, w = self.key(args[-1])
            if k_acc != "unknown":
                acc, why = k_acc, f"the API key passed on the call: {w}"
        if cls is not None:
            held = (cls, (acc, why))
            self.returned[_span(node)] = held
            parent = node.parent
            left = parent.child_by_field_name("left") if parent is not None and (
                parent.type == "assignment_expression") else None
            if left is not None and left.type == "variable_name":
                self.objects[(self.scope(parent), _name(left))] = held  # type: ignore[arg-type]
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
    return extract_and_index(ctx, source)[0]


def extract_and_index(ctx: Context, source: bytes) -> tuple[FileFindings, Project | None]:
    """The file's calls, and what it passes to the project's functions (value flow)."""
    f = _File(ctx, source)
    found = f.run()
    wrappers = f.wraps.exported()
    # files calling them are read even if they never say "stripe" (by the bare name)
    f.wanted |= {re.split(r"[/.:]", k)[-1] for k in wrappers}
    if not f.param_facts and not f.wanted and not f.factories and f.key_set is None and (
            not wrappers):
        return found, None
    return found, Project(params=dict(f.param_facts), wanted=set(f.wanted),
                          factories={"php:" + k: v for k, v in f.factories.items()},
                          module_key=f.key_set, wrappers=wrappers)
