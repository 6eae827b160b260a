"""Python backends: Stripe calls found with the standard `ast` module."""

from __future__ import annotations

import ast
import copy
import re
from typing import TypeVar

from permgate.scan import oauthlibs
from permgate.scan.common import (
    API_HOSTS,
    FORWARDED,
    HTTP_VERBS,
    KEY_NAMED,
    OPTIONS_ACCOUNT,
    UNCALLED_WRAPPER,
    Context,
    OriginRead,
    Piece,
    Project,
    Wrapper,
    bound_key,
    config_read,
    config_source,
    credential_escape,
    fallback_key,
    fixed_account,
    fixed_origin,
    key_account_why,
    own_by_name,
    param_mark,
    raw_target,
    row_key,
    unmarked,
    unread_call_key,
    wrapper_path,
    wrapper_request,
)
from permgate.scan.model import (
    EXPAND_AT_RUN_TIME,
    Account,
    Call,
    Escape,
    EventUse,
    FileFindings,
    Scope,
    Unresolved,
)
from permgate.scan.sdk import table

Client = tuple[Account, str]
# a wrapper's account, and where its call sites decide the key (Wrapper.key_from)
KeyedClient = tuple[Account, str, tuple[str, int] | None]

# a format string split at its fields, each field's name kept (`"{}{path}"` -> ["", "", "",
# "path", ""]); a field with a conversion or a format spec is built at run time
_FORMAT_SPLIT = re.compile(r"\{([^{}]*)\}")
_E = TypeVar("_E", bound=ast.AST)
# `self.x = <value>` kept as a field the file can read back (a base URL, an expand list)
_FIELD_VALUES = (ast.Constant, ast.JoinedStr, ast.BinOp, ast.List, ast.Tuple, ast.Dict)
_REQUEST_VERBS = HTTP_VERBS | {"request"}
_WRAPPER_ROUNDS = 3  # wrappers of wrappers (`get(path)` -> `_request("GET", path)`): bounded


def _chain(node: ast.expr) -> list[str] | None:
    """`self.client.v1.customers.list` -> ['self', 'client', 'v1', 'customers', 'list']."""
    out: list[str] = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        out.append(node.id)
        return out[::-1]
    if isinstance(node, ast.Subscript) and out:
        return None  # `services[name].list`: dynamic
    return None


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> list[str]:
    """Positional parameter names as call sites fill them (`self`/`cls` dropped)."""
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    static = any(_chain(d) == ["staticmethod"] for d in fn.decorator_list)
    return names[1:] if method and names and not static else names


def module_lists(source: bytes) -> dict[str, tuple[str, ...]]:
    """The module's top-level constants that are lists of strings."""
    tree = ast.parse(source)
    f = _File(Context("", False, frozenset()), tree)
    out: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
            node.targets[0], ast.Name
        ) and node.targets[0].id in f.consts:
            found = f.strings(node.value)
            if found is not None and isinstance(f.resolve(node.value), ast.List | ast.Tuple):
                out[node.targets[0].id] = tuple(found)
    return out


def _session_auth(target: ast.expr, value: ast.expr) -> tuple[str, ast.expr] | None:
    """`s.auth = (key, "")`, `s.headers["Authorization"] = v`, `s.headers = {...}`: the
    session's name and what it authenticates with (a dict of headers or an auth tuple)."""
    if isinstance(target, ast.Attribute) and (
            (target.attr == "auth" and isinstance(value, ast.Tuple))
            or (target.attr == "headers" and isinstance(value, ast.Dict))):
        owner = _chain(target.value)
        # `self.headers = {...}` is the object's own field (read where it is passed)
        return (owner[-1], value) if owner and owner != ["self"] else None
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and (
            isinstance(target.slice.value, str)
            and target.slice.value.lower() in ("authorization", "stripe-account")):
        owner = _chain(target.value)
        if owner and len(owner) >= 2 and owner[-1] == "headers":
            return owner[-2], ast.Dict(keys=[target.slice], values=[value])
    if isinstance(target, ast.Name | ast.Attribute) and isinstance(value, ast.Call) and (
            (_chain(value.func) or [""])[-1] in ("Session", "Client", "AsyncClient")):
        kw = {k.arg: k.value for k in value.keywords if k.arg}
        name = target.id if isinstance(target, ast.Name) else target.attr
        if "headers" in kw and "base_url" not in kw:
            return name, kw["headers"]
        if isinstance(kw.get("auth"), ast.Tuple):
            return name, kw["auth"]
    return None


def _account_option_owner(target: ast.expr) -> str | None:
    """`opts["stripe_account"]` on the left of an assignment: `opts`."""
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and isinstance(
            target.slice, ast.Constant) and target.slice.value == "stripe_account":
        return target.value.id
    return None


def _joined(pieces: list[Piece]) -> list[Piece]:
    """Adjacent literal pieces joined (`BASE + "/" + path` -> [BASE + "/", None])."""
    out: list[Piece] = []
    for p in pieces:
        if p is not None and out and out[-1] is not None:
            out[-1] = str(out[-1]) + p
        else:
            out.append(p)
    return out


# what a method argument is once its case is normalised (`method.upper()` -> `method`)
_CASE_CALLS = frozenset({"upper", "lower", "casefold"})
_LOCAL_DEPTH = 4  # local names followed into their values, at most this deep


def _bare(node: ast.expr | None) -> ast.expr | None:
    """`method.upper()` / `method.lower()` -> `method`: the value under a change of case."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
            node.func.attr in _CASE_CALLS and not node.args):
        node = node.func.value
    return node


def _verbs(node: ast.expr) -> bool:
    """A literal HTTP verb, or a tuple/list/set of them (`("GET", "DELETE")`)."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return bool(node.elts) and all(_verbs(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and (
        node.value.lower() in HTTP_VERBS)


def _dispatch_param(fn: ast.FunctionDef | ast.AsyncFunctionDef, params: list[str]) -> int | None:
    """The parameter a wrapper chooses its request by (`if method == "GET": ... .get(url)
    else: ... .post(url)`, `match method: case "GET": ...`): compared with HTTP verbs."""
    found: list[ast.Name] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare):
            operands = [_bare(o) for o in (node.left, *node.comparators)]
            if any(o is not None and _verbs(o) for o in operands):
                found += [o for o in operands if isinstance(o, ast.Name) and o.id in params]
        elif isinstance(node, ast.Match) and isinstance(
                subject := _bare(node.subject), ast.Name) and subject.id in params and any(
                isinstance(c.pattern, ast.MatchValue) and _verbs(c.pattern.value)
                for c in node.cases):
            found.append(subject)
    if not found:
        return None
    first = min(found, key=lambda n: (n.lineno, n.col_offset))
    return params.index(first.id)


def _fn_locals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    """The names a function binds once, to one value (`url = f"{BASE}{path}"`, `headers =
    {...}`): its parameters, and names bound twice or by a loop, `with`, `+=` or `:=`, are not
    values the scan can read back."""
    values: dict[str, ast.expr] = {}
    other = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    if t.id in values:
                        other.add(t.id)
                    values[t.id] = node.value
                elif isinstance(t, ast.Tuple | ast.List):  # `a, b = ...`: not one value each
                    other |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension | ast.AugAssign
                        | ast.NamedExpr):
            other |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            other |= {n.id for n in ast.walk(node.optional_vars) if isinstance(n, ast.Name)}
    return {k: v for k, v in values.items() if k not in other}


_STRIP_CALLS = frozenset({"strip", "lstrip", "rstrip"}) | _CASE_CALLS


def _awaited(node: ast.expr) -> ast.expr:
    """The value an `await` waits for (the account is that value's)."""
    return node.value if isinstance(node, ast.Await) else node


class _MarkParams(ast.NodeTransformer):
    """Each whole use of a parameter in an expression replaced by a marked string literal
    (`_Wrapper._sym` reads them back as the parameter's index)."""

    def __init__(self, params: list[str]) -> None:
        self.params = params

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.params and isinstance(node.ctx, ast.Load):
            return ast.Constant(param_mark(self.params.index(node.id)))
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        return node  # `user.cid`: a field of the parameter, not the parameter

    def visit_Call(self, node: ast.Call) -> ast.expr:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in _STRIP_CALLS and isinstance(
                f.value, ast.Name) and f.value.id in self.params:
            return self.visit_Name(f.value)  # `path.lstrip("/")`: the path, its slash dropped
        node.args = [self.visit(a) for a in node.args]
        node.keywords = [self.visit(k) for k in node.keywords]
        return node


_INLINE_NODES = 2000  # nodes one expression may grow by through its locals


class _Inline(ast.NodeTransformer):
    """A copy of an expression with a function's local values written in (`url` ->
    `f"{API_BASE}{path}"`), at most _LOCAL_DEPTH deep and _INLINE_NODES nodes in all: a
    name used many times in values that use it many times (`a = b + b + ...`) would grow
    the copy as a power of the depth; past the budget a name stays a run-time value."""

    def __init__(self, values: dict[str, ast.expr], depth: int = 0,
                 budget: list[int] | None = None) -> None:
        self.values, self.depth = values, depth
        self.budget = budget if budget is not None else [_INLINE_NODES]

    def visit_Name(self, node: ast.Name) -> ast.expr:
        value = self.values.get(node.id)
        if value is None or self.depth >= _LOCAL_DEPTH or not isinstance(
                node.ctx, ast.Load) or self.budget[0] <= 0:
            return node
        self.budget[0] -= sum(1 for _ in ast.walk(value))
        if self.budget[0] < 0:
            return node
        inlined: ast.expr = _Inline(self.values, self.depth + 1, self.budget).visit(
            copy.deepcopy(value))
        return inlined


def _call_base(node: ast.expr) -> str | None:
    """`Syncer(db).run` -> 'Syncer': the name whose call built the object, if any."""
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.value if isinstance(node, ast.Attribute) else node.func
    return node.id if isinstance(node, ast.Name) else None


class _File:
    def __init__(self, ctx: Context, tree: ast.Module, source: bytes = b"") -> None:
        self.ctx = ctx
        self.tree = tree
        self.out = FileFindings()
        # OAuth libraries the file uses: each recorded once, where it is first named
        self.oauth_seen: dict[str, tuple[oauthlibs.Library, ast.Constant | ast.ImportFrom,
                                         str]] = {}
        self.modules: set[str] = set()  # names bound to the `stripe` module
        self.classes: dict[str, str] = {}  # local name -> resource class ("checkout.Session")
        self.clients: dict[str, Client] = {}  # names bound to StripeClient instances
        self.consts: dict[str, ast.expr] = {}
        self.project = ctx.project or Project()
        self.module_account: Client = self.project.module_key or (
            "unknown", "the stripe module's key is not set in the project")
        self.imported: set[str] = set()
        self.packages: set[str] = set()  # names from packages (not the project, not stripe)
        # local name -> (module, level, name): imported constants are read by module path
        self.import_from: dict[str, tuple[str, int, str]] = {}
        # class attributes (`EXPAND = [...]` in a class body) by name: `self.EXPAND`,
        # `cls.EXPAND`, `Service.EXPAND`; a bare name never means one
        self.fields: dict[str, ast.expr] = {}
        in_class = {id(stmt) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                    for stmt in c.body}
        self.module_key_set = False
        # `import stripe_client as sc` naming a file of the tree: `sc.get(...)` is its function
        self.project_modules: set[str] = set()
        # Value flow across calls (issue 25): the function and class around each call (and
        # assignment), which
        # parameter `self.x` was set from in `__init__`, and what this file passes to whom.
        self.enclosing: dict[int, tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        self.field_params: dict[tuple[str, str], int] = {}
        self.param_facts: dict[tuple[str, int], Client] = {}
        self.wanted: set[str] = set()
        self._helper_props = {}  # the options a helper of the file returns, by the helper
        # names bound to `Cls(...)`, by the function that binds them (None at the top level):
        # -> that call (a wrapper class's object and its key)
        self.instances: dict[tuple[int | None, str], ast.Call] = {}
        # HTTP sessions whose headers or auth the file sets (`s.headers.update({...})`,
        # `s.auth = (key, "")`, `requests.Session()` then ...): name -> headers dict or auth
        self.session_auth: dict[str, ast.expr] = {}
        # OAuth client sessions (`OAuth2Session`), by name -> which library, where
        self.oauth_sessions: dict[str, str] = {}
        # names whose "stripe_account" key the file assigns, by the function that assigns it
        # (None at the top level): a name reused in another function is other options
        self.account_options: dict[tuple[int | None, str], ast.expr] = {}
        self.defined = {n.name for n in tree.body if isinstance(
            n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        self._scopes(tree, None, None, 0)
        ambiguous: set[str] = set()
        # every value each class attribute or `self.x` is given (fields are kept by name, for
        # all classes of the file): one set two ways is read as neither
        field_values: dict[str, str] = {}
        resource_classes = table().resource_classes
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if ctx.modules is not None and (a.asname or "." not in a.name) and (
                            ctx.modules.py_paths(ctx.file, a.name, 0)):
                        self.project_modules.add(a.asname or a.name)
                    if a.name == "stripe":
                        self.modules.add(a.asname or "stripe")
                    else:
                        self.packages.add(a.asname or a.name.partition(".")[0])
            elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(
                "stripe"
            ):
                paths = ctx.modules.py_paths(ctx.file, node.module or "", node.level) if (
                    ctx.modules is not None) else []
                for a in node.names:
                    self.imported.add(a.asname or a.name)
                    self.import_from[a.asname or a.name] = (node.module or "", node.level, a.name)
                    if not node.level and not paths:
                        # `from pkg import x`, not `from .mod import x` nor `from app.mod
                        # import x` that names a file of the tree (issue 25: the project's
                        # own code is followed, not outside it)
                        self.packages.add(a.asname or a.name)
                    # by the path the import names first, then by name
                    found = (self.project.clients.get(f"mod:{paths[0]}:{a.name}") if paths
                             else None) or self.project.clients.get(a.name)
                    if found is not None:
                        acc, why = found
                        self.clients[a.asname or a.name] = (
                            acc, f"imported from the project: {why}")
            elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "stripe" or node.module.startswith("stripe.")
            ):
                ns = node.module.removeprefix("stripe").lstrip(".")
                for a in node.names:
                    dotted = f"{ns}.{a.name}" if ns else a.name
                    if dotted in resource_classes:
                        self.classes[a.asname or a.name] = dotted
                    elif a.name == "StripeClient":
                        self.classes[a.asname or a.name] = "StripeClient"
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                  and isinstance(node.value, ast.Call) and isinstance(
                      node.targets[0], ast.Name | ast.Attribute)
                  and (cls := (_chain(node.value.func) or [""])[-1])
                  in oauthlibs.session_classes("python")):
                # `oauth = OAuth2Session(client_id, token=token)`: it sends its access token
                target = node.targets[0]
                sess = target.id if isinstance(target, ast.Name) else target.attr
                self.oauth_sessions[sess] = (f"{oauthlibs.session_classes('python')[cls]} at "
                                             f"{self.ctx.file}:{node.lineno}")
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                  and _session_auth(node.targets[0], node.value) is not None):
                sess_name, auth = _session_auth(node.targets[0], node.value) or (
                    "", node.value)
                self.session_auth[sess_name] = auth
            elif isinstance(node, ast.withitem) and node.optional_vars is not None and (
                    _session_auth(node.optional_vars, node.context_expr) is not None):
                # `async with httpx.AsyncClient(headers=...) as client:`
                sess_name, auth = _session_auth(node.optional_vars, node.context_expr) or (
                    "", node.context_expr)
                self.session_auth[sess_name] = auth
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr == "update" and node.args and (
                        _chain(node.func.value) or [""])[-1] == "headers"):
                owner_chain = _chain(node.func.value) or []
                if len(owner_chain) >= 2:  # `session.headers.update({"Authorization": ...})`
                    self.session_auth[owner_chain[-2]] = node.args[0]
            elif isinstance(node, ast.Assign) and any(
                    _account_option_owner(t) for t in node.targets):
                # `opts["stripe_account"] = acct`: request options built by assignment
                for t in node.targets:
                    owner = _account_option_owner(t)
                    if owner is not None:
                        self.account_options[(self._scope_of(node), owner)] = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr == "update" and isinstance(node.func.value, ast.Name)):
                for k in node.keywords:  # `opts.update(stripe_account=acct)`
                    if k.arg == "stripe_account":
                        self.account_options[(self._scope_of(node), node.func.value.id)] = (
                            k.value)
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    name = t.id if isinstance(t, ast.Name) else (
                        t.attr if isinstance(t, ast.Attribute) else None
                    )
                    if name is None:
                        continue
                    # `self.base = base` in one class, `self.base = "https://api.stripe.com"`
                    # in another: neither is a constant the file can read
                    if (isinstance(t, ast.Name) and id(node) in in_class) or (
                            isinstance(t, ast.Attribute) and _chain(t.value) == ["self"]):
                        dump = ast.dump(node.value)
                        if field_values.setdefault(name, dump) != dump:
                            ambiguous.add("." + name)
                    client = self._client_of(node.value)
                    if isinstance(node.value, ast.Call) and isinstance(
                            node.value.func, ast.Name) and node.value.func.id[:1].isupper():
                        self.instances[(self._scope_of(node), name)] = node.value
                    if client is not None:
                        old = self.clients.get(name)
                        same = old is None or old[0] == client[0]
                        self.clients[name] = client if same else (
                            "unknown", f"{name} is bound to clients of different accounts")
                    elif isinstance(t, ast.Attribute) and t.attr == "api_key" and (
                        _chain(t.value) or [""]
                    )[0] in (self.modules | {"stripe"}):
                        acc, why = self.key_why(node.value)
                        self.module_key_set = True
                        self.module_account = (
                            acc, f"the stripe module's key is set at {ctx.file}:{node.lineno} "
                            f"to {why}")
                    elif (isinstance(t, ast.Name) and id(node) in in_class) or (
                            isinstance(t, ast.Attribute) and _chain(t.value) == ["self"]
                            and isinstance(node.value, _FIELD_VALUES)):
                        # a class attribute, or `self.base_url = "https://..."` (issue 25:
                        # a wrapper's base URL, an expand list kept on the instance)
                        self.fields[name] = node.value
                    elif isinstance(t, ast.Name):
                        if isinstance(node.value, ast.Call) and (
                            _chain(node.value.func) or [""])[0] in self.packages:
                            self.packages.add(name)  # an object of a package's class
                        if name in self.consts:
                            ambiguous.add(name)
                        self.consts[name] = node.value
        for name in ambiguous:
            self.consts.pop(name, None)
            if name.startswith("."):
                self.fields.pop(name[1:], None)
        # Thin HTTP wrappers (issue 25): HTTP clients made for the API host, functions and
        # methods that send a path parameter to it, and the calls that are their own request.
        self.http_clients: dict[str, Wrapper] = {}
        self.wrappers: dict[str, Wrapper] = {}  # module-level functions by name
        self.method_wrappers: dict[tuple[str, str], Wrapper] = {}  # (class, method)
        self.wrapper_inner: set[int] = set()
        self.wrapper_requests: dict[str, ast.Call] = {}  # wrapper (file:line) -> its request
        self.wrapper_used: set[str] = set()  # wrappers this file calls
        # functions that request the URL given as their first argument: name -> HTTP method
        self.url_wrappers: dict[str, str] = {}
        self.locals_cache: dict[int, dict[str, ast.expr]] = {}
        # a request's URL is read through locals only where the file names the API host
        self.names_host = b"api.stripe.com" in source
        if self.names_host:
            self.find_wrappers()

    def local_values(self, fn: ast.FunctionDef | ast.AsyncFunctionDef | None
                     ) -> dict[str, ast.expr]:
        """`_fn_locals(fn)`, computed once per function."""
        if fn is None:
            return {}
        found = self.locals_cache.get(id(fn))
        if found is None:
            found = self.locals_cache[id(fn)] = _fn_locals(fn)
        return found

    def inline(self, node: _E, values: dict[str, ast.expr]) -> _E:
        """`node` with the function's local values written in (a copy), or `node` itself when
        it names none of them."""
        if not values or not any(isinstance(n, ast.Name) and n.id in values
                                 for n in ast.walk(node)):
            return node
        out: _E = _Inline(values).visit(copy.deepcopy(node))
        return out

    def returned(self, call: ast.Call) -> ast.expr | None:
        """What a call of a module-level function of this file returns, when it returns one
        expression: read through its locals, its parameters replaced by the call's arguments
        (`_headers(api_key)` -> `{"Authorization": f"Bearer {api_key}"}`)."""
        if not isinstance(call.func, ast.Name) or call.func.id not in self.defined:
            return None
        fn = next((n for n in self.tree.body if isinstance(
            n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == call.func.id), None)
        if fn is None:
            return None
        found = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value]
        if len(found) != 1:
            return None
        given = dict(zip(_params(fn, method=False), call.args, strict=False))
        given.update({k.arg: k.value for k in call.keywords if k.arg})
        value = self.inline(found[0], self.local_values(fn))
        out: ast.expr = _Inline(given, _LOCAL_DEPTH - 1).visit(copy.deepcopy(value))
        return out

    def inline_call(self, call: ast.Call, values: dict[str, ast.expr]) -> ast.Call:
        """A request's arguments with the function's local values written in (its callee
        kept, so that scope look-ups by the call's identity still work on the original)."""
        args = [self.inline(a, values) for a in call.args]
        # headers and auth only when named whole (`headers=headers` -> its dict): the key
        # inside is judged by the expression the code names it with, as everywhere else
        kws = [ast.keyword(arg=k.arg, value=(
            values.get(k.value.id, k.value) if isinstance(k.value, ast.Name) else k.value)
            if k.arg in ("headers", "auth") else self.inline(k.value, values))
            for k in call.keywords]
        if all(a is b for a, b in zip(args, call.args, strict=True)) and all(
                a.value is b.value for a, b in zip(kws, call.keywords, strict=True)):
            return call
        return ast.copy_location(ast.Call(func=call.func, args=args, keywords=kws), call)


    def _scopes(
        self, node: ast.AST, cls: str | None,
        fn: ast.FunctionDef | ast.AsyncFunctionDef | None, depth: int,
    ) -> None:
        if depth > 200:  # bounded: deeper code is still read, only not followed
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                self._scopes(child, child.name, None, depth + 1)
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if cls is not None and fn is None and child.name == "__init__":
                    params = _params(child, method=True)
                    for sub in ast.walk(child):
                        if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Name) and (
                            sub.value.id in params
                        ):
                            for t in sub.targets:
                                if isinstance(t, ast.Attribute) and _chain(t.value) == ["self"]:
                                    self.field_params[(cls, t.attr)] = params.index(sub.value.id)
                self._scopes(child, cls if fn is None else None, child, depth + 1)
                continue
            if isinstance(child, ast.Call | ast.Assign | ast.AnnAssign) and fn is not None:
                self.enclosing[id(child)] = (cls, fn)
            self._scopes(child, cls, fn, depth + 1)

    def _scope_of(self, node: ast.Call | ast.Assign | ast.AnnAssign) -> int | None:
        """The function around a call or an assignment (its id; None at the top level)."""
        fn = self.enclosing.get(id(node), (None, None))[1]
        return None if fn is None else id(fn)

    def instance(self, node: ast.Call, name: str) -> ast.Call | None:
        """The `Cls(...)` call `name` is bound to in the function around `node`, else at the
        top level."""
        return self.instances.get((self._scope_of(node), name)) or self.instances.get(
            (None, name))

    def flow_client(self, node: ast.Call, chain: list[str], *,
                    known_only: bool = False) -> tuple[int, Client] | None:
        """The client a parameter or a `self.` field holds, from the project's call sites:
        (index of the chain segment that holds it, client); with `known_only`, None when no
        call site the scan sees passes one (instead of an unknown client)."""
        cls, fn = self.enclosing.get(id(node), (None, None))
        if fn is None:
            return None
        method = cls is not None
        if chain[0] in ("self", "cls") and cls is not None and len(chain) > 2:
            idx = self.field_params.get((cls, chain[1]))
            if idx is None:
                return None
            key, seg, what = (cls, idx), 1, f"self.{chain[1]} (set from {cls}() argument"
        else:
            params = _params(fn, method=method)
            if chain[0] not in params:
                return None
            name = cls if method and fn.name == "__init__" and cls else fn.name
            key, seg, what = (name, params.index(chain[0])), 0, f"{chain[0]} (argument"
        fact = self.param_fact(*key)
        if fact is None:
            return None if known_only else (seg, (
                "unknown", f"{what} {key[1] + 1}; no call site the scan can see passes a "
                "known client)"))
        return seg, (fact[0], f"{what} {key[1] + 1} of {key[0]}(): {fact[1]})")

    def param_fact(self, name: str, idx: int) -> Client | None:
        """What the project's call sites pass to parameter `idx` of this file's `name`; the
        file is read again once the project-wide pass knows its callers."""
        self.out.imports |= {"py:" + name, f"{self.ctx.file}:{name}"}
        self.wanted.add(name)
        return self.project.param(self.ctx.file, name, idx, "py:")

    def callee_key(self, chain: list[str]) -> str:
        """`path:name` when the import of the callee resolves to a file of the tree, `file:name`
        for a function or class of this file, else `py:name` (matched by name only)."""
        name = chain[-1]
        if len(chain) == 1 and name in self.import_from and self.ctx.modules is not None:
            module, level, orig = self.import_from[name]
            paths = self.ctx.modules.py_paths(self.ctx.file, module, level)
            if paths:
                return f"{paths[0]}:{orig}"
        if len(chain) == 1 and name in self.defined:
            return f"{self.ctx.file}:{name}"
        return "py:" + name

    def key_argument(self, call: ast.Call, a: ast.expr) -> Client | None:
        """An argument that is an API key whose account its text tells (`token.access_token`,
        `os.environ["STRIPE_SECRET_KEY"]`, a pasted `sk_` key); not a parameter of the caller
        (its own callers decide that), not any other literal."""
        if isinstance(a, ast.Constant):
            if not (isinstance(a.value, str) and a.value.startswith(("sk_", "rk_"))):
                return None
        elif not isinstance(a, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
            return None
        if isinstance(a, ast.Name):
            cls, fn = self.enclosing.get(id(call), (None, None))
            if fn is not None and a.id in _params(fn, method=cls is not None):
                return None
        text = ast.unparse(a)
        if len(text) > 100:
            return None
        acc, why = self.key_why(a)
        if acc == "unknown" and not KEY_NAMED.search(text.rsplit(".", 1)[-1]):
            return None  # not named like a key: whatever it is, it is not a key's fact
        return acc, f"an API key argument: {why}"

    def note_arguments(self, node: ast.Call, chain: list[str]) -> None:
        """`sync(client, id)`, `Billing(client)`: tell the project which client reaches which
        parameter of which function or class (by name)."""
        for idx, a in enumerate(node.args):
            client = None
            if isinstance(a, ast.Name) and a.id in self.clients:
                client = self.clients[a.id]
            elif isinstance(a, ast.Attribute) and _chain(a.value) == ["self"] and (
                a.attr in self.clients
            ):
                client = self.clients[a.attr]
            elif isinstance(a, ast.Call | ast.Await):
                client = self._client_of(a)
            elif isinstance(a, ast.Name) and FORWARDED.search(a.id):
                # a client parameter handed on (`outer(client)` -> `inner(client)`): what
                # reaches this function's parameter reaches the callee's (issue 25)
                flow = self.flow_client(node, [a.id, "<client>", "<client>"],
                                        known_only=True)
                if flow is not None:
                    client = flow[1]
            if client is None:
                client = self.key_argument(node, a)
            if client is None:
                continue
            key = (self.callee_key(chain), idx)
            fact = (client[0], f"passed at {self.ctx.file}:{node.lineno}: {client[1]}")
            old = self.param_facts.get(key)
            if old is not None and old[0] != client[0]:
                fact = ("unknown", f"{chain[-1]}() is passed clients of different accounts")
            self.param_facts[key] = fact

    def _client_of(self, value: ast.expr) -> Client | None:
        if isinstance(value, ast.Await):
            value = value.value
        if self._is_client(value):
            return self._client_account(value)
        if isinstance(value, ast.Call):
            chain = _chain(value.func)
            name = chain[-1] if chain else ""
            key = self.callee_key(chain) if chain else "py:"
            # by the path its import names (or this file) first, then by name
            found = None if key.startswith("py:") else self.project.factories.get("mod:" + key)
            if found is None and name in self.project.factories and (
                    name in self.imported or len(chain or []) == 1):
                found = self.project.factories[name]
            if found is not None:
                acc, why = found
                return acc, f"client from {name}(): {why}"
        return None

    _subclasses: dict[str, Client] | None = None
    _helper_props: dict[int, dict[str, ast.expr]]  # set in __init__

    def subclass_client(self, node: ast.Call) -> Client | None:
        """`class Pay(StripeClient)` whose methods call `self.v1.payouts.create(...)`: `self`
        is a client of the key `__init__` hands to `super().__init__(key)` (issue 25)."""
        if self._subclasses is None:
            self._subclasses = {}
            for c in ast.walk(self.tree):
                if not isinstance(c, ast.ClassDef) or not any(
                        self._is_client(ast.Call(func=b, args=[], keywords=[])) for b in c.bases):
                    continue
                sup = next((s for s in ast.walk(c) if isinstance(s, ast.Call) and isinstance(
                    s.func, ast.Attribute) and s.func.attr == "__init__" and isinstance(
                    s.func.value, ast.Call) and _chain(s.func.value.func) == ["super"]), None)
                acc, why = self._client_account(sup) if sup is not None else (
                    "unknown", "built outside the class: whose key, the scan cannot tell")
                self._subclasses[c.name] = (acc, f"self, a subclass of StripeClient: {why}")
        cls = self.enclosing.get(id(node), (None, None))[0]
        return self._subclasses.get(cls) if cls is not None else None

    def _is_client(self, value: ast.expr) -> bool:
        if not isinstance(value, ast.Call):
            return False
        chain = _chain(value.func)
        if chain is None:
            return False
        return chain[-1] == "StripeClient" and (
            (len(chain) == 1 and self.classes.get(chain[0]) == "StripeClient")
            or (len(chain) == 2 and chain[0] in self.modules)
        )

    def _client_account(self, value: ast.expr) -> Client:
        assert isinstance(value, ast.Call)
        where = f"client built at {self.ctx.file}:{value.lineno}"
        if self.ctx.ui_extension:
            return "installing", f"{where}: the installing account"
        if any(k.arg == "stripe_account" for k in value.keywords):
            return "connected", f"{where} with stripe_account"
        key = value.args[0] if value.args else next(
            (k.value for k in value.keywords if k.arg == "api_key"), None
        )
        if isinstance(key, ast.Name):
            # the key is a parameter: what the project's call sites pass decides, before its
            # name does (`api_key` that callers fill with an OAuth access token)
            flow = self.flow_client(value, [key.id, "<key>", "<key>"], known_only=True)
            if flow is not None:
                return flow[1][0], f"{where} from {flow[1][1]}"
        acc, why = self.key_why(key)
        return acc, f"{where} from {why}"

    # --- thin HTTP wrappers (issue 25) ------------------------------------------

    def _functions(self) -> list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]]:
        """Module-level functions and the methods of module-level classes."""
        out: list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]] = []
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((None, node))
            elif isinstance(node, ast.ClassDef):
                out += [(node.name, m) for m in node.body
                        if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)]
        return out

    @staticmethod
    def _request_parts(call: ast.Call) -> tuple[str, ast.expr | None, ast.expr | None] | None:
        """(verb, URL argument, method argument) of an HTTP client's call, else None."""
        func = call.func
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        args = list(call.args)
        if isinstance(func, ast.Call) and _chain(func.func) == ["getattr"] and len(
                func.args) == 2:
            # `getattr(session, method.lower())(url, ...)`: the method is getattr's name
            return "request", (args[0] if args else kw.get("url")), func.args[1]
        verb = (func.attr if isinstance(func, ast.Attribute) else
                func.id if isinstance(func, ast.Name) else "").lower()
        if verb not in _REQUEST_VERBS:
            return None
        method = None
        if verb == "request":
            method = args.pop(0) if args else kw.get("method")
        return verb, (args[0] if args else kw.get("url")), method

    def _base_of(self, call: ast.Call) -> Wrapper | None:
        """The HTTP client made for the API host that `call` is made on (`self.http.get`)."""
        if not isinstance(call.func, ast.Attribute):
            return None
        owner = _chain(call.func.value)
        if owner is None or not (len(owner) == 1 or (len(owner) == 2 and owner[0] == "self")):
            return None
        return self.http_clients.get(owner[-1])

    def find_wrappers(self) -> None:
        """HTTP clients built for the API host (`httpx.Client(base_url=...)`) and functions or
        methods that send a path given as a parameter to it, directly or through another such
        function (`get(path)` -> `self._request("GET", path)`), at most _WRAPPER_ROUNDS deep."""
        for node in ast.walk(self.tree):
            bound = (node.targets, node.value) if isinstance(node, ast.Assign) else (
                [node.optional_vars], node.context_expr) if isinstance(
                node, ast.withitem) and node.optional_vars is not None else None
            if bound is not None and isinstance(bound[1], ast.Call):
                http = self.http_client(bound[1])
                if http is None:
                    continue
                for t in bound[0]:
                    name = t.id if isinstance(t, ast.Name) else (
                        t.attr if isinstance(t, ast.Attribute) else None)
                    if name is not None:
                        self.http_clients[name] = http
        fns = self._functions()
        for _ in range(_WRAPPER_ROUNDS):
            before = len(self.wrappers) + len(self.method_wrappers)
            for cls, fn in fns:
                known = (self.method_wrappers.get((cls, fn.name)) if cls is not None
                         else self.wrappers.get(fn.name))
                if known is None:
                    self._wrapper_of(cls, fn)
            if len(self.wrappers) + len(self.method_wrappers) == before:
                break

    def _wrapper_of(self, cls: str | None, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        params = _params(fn, method=cls is not None)
        if not params:
            return
        method: str | None
        values = self.local_values(fn)  # the URL, headers, method through local names
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            inner = self._local_wrapper(call, cls)
            if inner is not None:  # a wrapper calling a wrapper with its own parameter
                w, args = inner
                args = [self.inline(a, values) for a in args]
                if len(args) <= w.path_index:
                    continue
                path = wrapper_path(w.prefix, w.path_pieces(
                    [self._sym(a, params) for a in args]))
                if path is None:
                    continue
                method, method_index = w.method, None
                if w.method_index is not None and len(args) > w.method_index:
                    m = args[w.method_index]
                    method = self.string(m)
                    if method is None and isinstance(b := _bare(m), ast.Name) and (
                            b.id in params):
                        method_index = params.index(b.id)
                    elif method is None:
                        continue
                account, reason = w.account, w.reason
                key_from = w.key_from
                if key_from is not None and key_from[0] == "arg":
                    a = args[key_from[1]] if len(args) > key_from[1] else None
                    key_from = ("arg", params.index(a.id)) if isinstance(
                        a, ast.Name) and a.id in params else None
            else:
                request = self.inline_call(call, values)
                parts = self._request_parts(request)
                if parts is None or parts[1] is None:
                    continue
                verb, url, marg = parts[0], parts[1], _bare(parts[2])
                base = self._base_of(call)
                if cls is None and isinstance(url, ast.Name) and params[:1] == [url.id] and (
                        base is None):
                    # `def post(url, data)` around a request with a fixed method (issue 25):
                    # its call sites that name the API host send that method
                    fixed = verb.upper() if verb != "request" else self.string(marg)
                    if fixed is not None:
                        self.url_wrappers[fn.name] = fixed.upper()
                    continue
                sym = self._sym(url, params)
                host = next((h for h in API_HOSTS if sym and isinstance(sym[0], str)
                             and sym[0].startswith(h)), None)
                if base is not None and not (sym and isinstance(sym[0], str)
                                             and sym[0].startswith("http")):
                    path = wrapper_path(base.prefix, sym)  # `self.http.get(path)`
                elif host is not None:
                    path = wrapper_path("", [str(sym[0])[len(host):], *sym[1:]])
                else:
                    path = None
                if path is None:
                    continue
                method = verb.upper() if verb != "request" else (
                    self.string(marg) or "").upper() or None
                method_index = None
                if method is None and isinstance(marg, ast.Name) and marg.id in params:
                    # `client.request(method.upper(), url)`, `getattr(s, method.lower())(url)`
                    method_index = params.index(marg.id)
                elif method is None:
                    continue
                if base is not None:
                    account, reason, key_from = base.account, base.reason, base.key_from
                else:
                    account, reason, key_from = self._wrapper_account(request, cls, fn)
            prefix, idx, rest = path
            if method_index is None and (d := _dispatch_param(fn, params)) is not None and (
                    d != idx):
                # one request per verb, chosen by a method parameter: its call sites say which
                method, method_index = None, d
                sent = self._sends(call, cls, values)
                for other in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
                    # the other verbs' requests of the same URL are the wrapper's own too
                    if self._sends(other, cls, values) == sent:
                        self.wrapper_inner.add(id(other))
            self.wrapper_inner.add(id(call))  # the wrapper's own request is not a call site
            self.wrapper_requests[f"{self.ctx.file}:{fn.lineno}"] = call
            if inner is not None:
                self.wrapper_used.add(inner[0].defined)
            w = Wrapper(prefix, idx, method and method.upper(), method_index, account, reason,
                        f"{self.ctx.file}:{fn.lineno}", key_from, rest)
            if cls is None:
                self.wrappers[fn.name] = w
            else:
                self.method_wrappers[(cls, fn.name)] = w
            return

    def _sym(self, node: ast.expr, params: list[str]) -> list[str | int | None]:
        """The pieces of a URL or path with each parameter used whole (`path`,
        `path.lstrip("/")`, not `user.cid`) as its index: literals, parameters, None for
        anything else built at run time."""
        marked = _MarkParams(params).visit(copy.deepcopy(node))
        return unmarked(self.pieces(marked))

    def _sends(self, call: ast.Call, cls: str | None, values: dict[str, ast.expr]) -> str | None:
        """What URL or path a call of a wrapper's body requests (its dump), if it requests."""
        inner = self._local_wrapper(call, cls)
        if inner is not None:
            w, args = inner
            return ast.dump(self.inline(args[w.path_index], values)) if len(
                args) > w.path_index else None
        parts = self._request_parts(self.inline_call(call, values))
        return ast.dump(parts[1]) if parts is not None and parts[1] is not None else None

    def _local_wrapper(
        self, call: ast.Call, cls: str | None
    ) -> tuple[Wrapper, list[ast.expr]] | None:
        """The wrapper `call` reaches and its positional arguments (keywords by parameter
        name are not followed): `self.get(...)` in a class with that wrapper method, a
        wrapper function of this file or imported, an instance of a wrapper class, an HTTP
        client made for the API host."""
        chain = _chain(call.func)
        if chain is None:
            return None
        w: Wrapper | None = None
        if len(chain) == 2 and chain[0] == "self" and cls is not None:
            w = self.method_wrappers.get((cls, chain[1]))
        elif len(chain) == 1:
            w = self.wrappers.get(chain[0])
            if w is None and chain[0] in self.imported:
                self.out.imports.add("pyw:" + chain[0])
                w = self.project.wrappers.get("pyw:" + chain[0])
        elif len(chain) == 2 and chain[0] in self.project_modules:
            self.out.imports.add("pyw:" + chain[1])  # `sc.get_object(...)`: by its name
            w = self.project.wrappers.get("pyw:" + chain[1])
        elif len(chain) == 2 and (obj := self.instance(call, chain[0])) is not None:
            ctor = obj.func
            owner = ctor.id if isinstance(ctor, ast.Name) else ""
            w = self.method_wrappers.get((owner, chain[1]))
            if w is None and owner in self.imported:
                self.out.imports.add(f"pyw:{owner}.{chain[1]}")
                w = self.project.wrappers.get(f"pyw:{owner}.{chain[1]}")
        if w is None:
            base = self._base_of(call)
            parts = self._request_parts(call)
            if base is not None and parts is not None and parts[1] is not None:
                ps = self.pieces(parts[1])
                if not ps or ps[0] is None or ps[0].startswith("http"):
                    return None  # a full URL: read as an HTTP call
                args = [parts[1]]
                if parts[0] == "request":
                    method = parts[2]
                    if method is None:
                        return None
                    w = Wrapper(base.prefix, 0, None, 1, base.account, base.reason,
                                base.defined)
                    return w, [parts[1], method]
                w = Wrapper(base.prefix, 0, parts[0].upper(), None, base.account,
                            base.reason, base.defined)
                return w, args
            return None
        return w, list(call.args)

    def http_client(self, value: ast.Call) -> Wrapper | None:
        """`httpx.Client(base_url="https://api.stripe.com/v1", headers={...})`, any client
        made with a `base_url` on the API host."""
        kw = {k.arg: k.value for k in value.keywords if k.arg}
        base = _joined(self.pieces(kw["base_url"])) if "base_url" in kw else None
        if not base or len(base) != 1 or base[0] is None:
            return None
        host = next((h for h in API_HOSTS if base[0].startswith(h)), None)
        if host is None:
            return None
        cls, fn = self.enclosing.get(id(value), (None, None))
        acc, why, key_from = self._auth_account(kw.get("headers"), kw.get("auth"), cls, fn)
        return Wrapper(base[0][len(host):].rstrip("/"), 0, None, None, acc,
                       f"the HTTP client built at {self.ctx.file}:{value.lineno} for the API "
                       f"host: {why}", f"{self.ctx.file}:{value.lineno}", key_from)

    def _wrapper_account(self, call: ast.Call, cls: str | None,
                         fn: ast.FunctionDef | ast.AsyncFunctionDef) -> KeyedClient:
        """Whose account the wrapper's request acts for: its own headers or auth, else the
        headers or auth its class sets (`self.session.headers.update(...)`, `self.headers`)."""
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        acc, why, key_from = self._auth_account(kw.get("headers"), kw.get("auth"), cls, fn)
        if acc != "unknown" or key_from is not None or cls is None:
            return acc, f"the wrapper sends {why}", key_from
        klass = next((c for c in self.tree.body if isinstance(c, ast.ClassDef)
                      and c.name == cls), None)
        for node in ast.walk(klass) if klass is not None else ():
            if isinstance(node, ast.Dict):
                acc, why, key_from = self._auth_account(node, None, cls, None)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "auth" for t in node.targets):
                acc, why, key_from = self._auth_account(None, node.value, cls, None)
            if acc != "unknown" or key_from is not None:
                return acc, f"the wrapper's class sends {why}", key_from
        return "unknown", "the wrapper's key is of unknown origin", None

    def _auth_account(self, headers: ast.expr | None, auth: ast.expr | None, cls: str | None,
                      fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> KeyedClient:
        """The account of an `Authorization` / `Stripe-Account` header or `auth=(key, "")`,
        and where call sites decide the key when it is a parameter or a constructor's."""
        hdrs = self.props(headers) or {}
        if any(h.lower() == "stripe-account" for h in hdrs):
            return "connected", "a Stripe-Account header", None
        key = next((v for h, v in hdrs.items() if h.lower() == "authorization"), None)
        if key is None and isinstance(auth, ast.Tuple) and auth.elts:
            key = auth.elts[0]
        if key is None:
            return "unknown", "no key the scan can see", None
        if isinstance(key, ast.JoinedStr):  # f"Bearer {token}": the value inside
            values = [v.value for v in key.values if isinstance(v, ast.FormattedValue)]
            key = values[0] if len(values) == 1 else key
        if fn is not None and fn.name != "__init__" and isinstance(key, ast.Name):
            params = _params(fn, method=cls is not None)
            if key.id in params:  # `def stripe_get(path, token)`: each call site's key
                return ("unknown", f"a key given as argument {params.index(key.id) + 1}",
                        ("arg", params.index(key.id)))
        if cls is not None:
            field = self._field_fact(key, cls)
            if field is not None:
                return field
        acc, why = self.key_why(key)
        return acc, f"an Authorization header with {why}", None

    def _field_fact(self, key: ast.expr, cls: str) -> KeyedClient | None:
        """A key kept on the instance from a constructor argument (`self.api_key`, set from
        `__init__(self, api_key)`) or that argument itself: what `Cls(...)` call sites pass."""
        chain = _chain(key)
        idx = None
        if chain is not None and len(chain) == 2 and chain[0] == "self":
            idx = self.field_params.get((cls, chain[1]))
        elif chain is not None and len(chain) == 1:
            init = next((m for c in self.tree.body if isinstance(c, ast.ClassDef)
                         and c.name == cls for m in c.body
                         if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
            params = _params(init, method=True) if init is not None else []
            idx = params.index(chain[0]) if chain[0] in params else None
        if idx is None:
            return None
        self.out.imports |= {"py:" + cls, f"{self.ctx.file}:{cls}"}
        self.wanted.add(cls)
        fact = self.project.param(self.ctx.file, cls, idx, "py:")
        if fact is None:
            return ("unknown", f"a key given to {cls}() as argument {idx + 1}; no call site "
                    "the scan can see passes a known key", ("init", idx))
        return (fact[0], f"a key given to {cls}() as argument {idx + 1}: {fact[1]}",
                ("init", idx))

    def _call_site_key(self, node: ast.Call, chain: list[str], w: Wrapper) -> Client | None:
        """The account of the key this call site gives the wrapper (its argument, or the
        constructor argument of the object it is called on), when the site shows it."""
        if w.key_from is None:
            return None
        kind, i = w.key_from
        site: ast.Call | None = node
        if kind == "init":
            site = self.instance(node, chain[0]) if len(chain) == 2 else None
        if site is None or len(site.args) <= i:
            return None
        a = site.args[i]
        cls, fn = self.enclosing.get(id(site), (None, None))
        if isinstance(a, ast.Name) and fn is not None and a.id in _params(
                fn, method=cls is not None):
            flow = self.flow_client(site, [a.id, "<key>", "<key>"])
            return flow[1] if flow is not None else None
        text = ast.unparse(a)
        if len(text) > 100:
            return None
        acc, why = self.key_why(a)
        local = self.local_values(fn).get(a.id) if isinstance(a, ast.Name) else None
        if acc == "unknown" and local is not None and len(ast.unparse(local)) <= 100:
            # `token = user.stripe_access_token`, then `api.get(ctx, token, ...)`: its value
            acc, why = key_account_why(ast.unparse(local))
        return acc, f"a key given at {self.ctx.file}:{site.lineno}: {why}"

    def wrapper_call(self, node: ast.Call, label: str) -> bool:
        """A call of the app's wrapper with a path: the request it sends."""
        if id(node) in self.wrapper_inner:
            return True  # the wrapper's own request: its call sites are the calls
        cls, _fn = self.enclosing.get(id(node), (None, None))
        found = self._local_wrapper(node, cls)
        if found is None:
            return False
        w, args = found
        if len(args) <= w.path_index:
            return False
        # the path's and the method's arguments through the caller's locals (`path = f"/x/{i}"`)
        values = self.local_values(_fn)
        read = {w.path_index, w.method_index, *(p for p in w.path_parts if isinstance(p, int))}
        args = [self.inline(a, values) if i in read else a for i, a in enumerate(args)]
        self.wrapper_used.add(w.defined)
        method_text = (self.string(args[w.method_index])
                       if w.method_index is not None and len(args) > w.method_index else None)
        request = wrapper_request(w, _joined(w.path_pieces([self.pieces(a) for a in args])),
                                  method_text)
        if isinstance(request, str):
            self.out.unresolved.append(Unresolved(
                *self.where(node), label, f"{request} (wrapper at {w.defined})"))
            return True
        target, method = request
        site_acc, site_why = self._call_site_key(node, _chain(node.func) or [], w) or (
            w.account, w.reason)
        acc, why = self.account(node, (site_acc, f"via the app's wrapper ({w.defined}): "
                                                 f"{site_why}"))
        self.out.calls.append(Call(*self.where(node), label, method.upper(), target.path,
                                   target.expand, acc, (), why))
        return True

    # --- values -------------------------------------------------------------

    def resolve(self, node: ast.expr, depth: int = 0) -> ast.expr:
        if depth >= 8:
            return node
        if isinstance(node, ast.Name) and node.id in self.consts:
            return self.resolve(self.consts[node.id], depth + 1)
        if isinstance(node, ast.Name) and node.id in self.import_from and (
            self.ctx.modules is not None
        ):
            module, level, name = self.import_from[node.id]
            found = self.ctx.modules.py_list(self.ctx.file, module, level, name)
            if found is not None:
                return ast.List(elts=[ast.Constant(v) for v in found], ctx=ast.Load())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
            node.attr in self.fields
        ):
            return self.resolve(self.fields[node.attr], depth + 1)
        return node

    def pieces(self, node: ast.expr, depth: int = 0) -> list[Piece]:
        node = self.resolve(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            out: list[Piece] = []
            for v in node.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    out.append(v.value)
                elif isinstance(v, ast.FormattedValue) and v.conversion == -1 and (
                        v.format_spec is None) and depth < 16:
                    # `f"{BASE}/charges"`, `f"{self.base_url}{path}"`: a constant is read
                    out.extend(self.pieces(v.value, depth + 1))
                else:
                    out.append(None)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and depth < 16:
            return self.pieces(node.left, depth + 1) + self.pieces(node.right, depth + 1)
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
        ):
            # `"{}{}".format(BASE, path)`: each field is its argument when the scan reads it
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            fmt: list[Piece] = []
            auto = 0
            for i, p in enumerate(_FORMAT_SPLIT.split(node.func.value.value)):
                if i % 2 == 0:
                    fmt.append(p)
                    continue
                arg: ast.expr | None = None
                if "!" in p or ":" in p:
                    arg = None
                elif p == "" and auto < len(node.args):
                    arg, auto = node.args[auto], auto + 1
                elif p.isdigit() and int(p) < len(node.args):
                    arg = node.args[int(p)]
                elif p in kw:
                    arg = kw[p]
                starred = isinstance(arg, ast.Starred)
                fmt.extend(self.pieces(arg, depth + 1) if arg is not None and not starred and (
                    depth < 16) else [None])
            return fmt
        if isinstance(node, ast.Call) and len(node.args) == 2 and depth < 16 and (
                _chain(node.func) or [""])[-1] == "urljoin":
            # `urljoin(BASE + "/", path)`: the base, then the path (read as joined on)
            return self.pieces(node.args[0], depth + 1) + self.pieces(node.args[1], depth + 1)
        return [None]

    def userinfo(self, url: ast.expr) -> str | None:
        """The run-time value written as the URL's user name (`f"https://{key}:@..."`)."""
        parts: list[str | ast.expr] = []

        def flat(n: ast.expr, d: int) -> None:
            n = self.resolve(n)
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                parts.append(n.value)
            elif isinstance(n, ast.JoinedStr):
                for v in n.values:
                    parts.append(self.resolve(v.value) if isinstance(v, ast.FormattedValue) else (
                        str(v.value) if isinstance(v, ast.Constant) else v))
            elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and d < 16:
                flat(n.left, d + 1)
                flat(n.right, d + 1)
            else:
                parts.append(n)

        flat(url, 0)
        for before, value, after in zip(parts, parts[1:], parts[2:], strict=False):
            if isinstance(before, str) and before.endswith("://") and not isinstance(
                    value, str) and isinstance(after, str) and after.startswith((":", "@")):
                return ast.unparse(value)
        return None

    def string(self, node: ast.expr | None) -> str | None:
        if node is None:
            return None
        ps = self.pieces(node)
        return None if any(p is None for p in ps) else "".join(p or "" for p in ps)

    def strings(self, node: ast.expr) -> list[str] | None:
        node = self.resolve(node)
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            s = self.string(node)
            return [s] if s is not None else None
        out: list[str] = []
        for el in node.elts:
            if isinstance(el, ast.Starred):
                inner = self.strings(el.value)
                if inner is None:
                    return None
                out.extend(inner)
                continue
            s = self.string(el)
            if s is None:
                return None
            out.append(s)
        return out

    def props(self, node: ast.expr | None, depth: int = 0) -> dict[str, ast.expr] | None:
        if node is None or depth > 8:
            return None
        node = self.resolve(node)
        if isinstance(node, ast.Call) and depth < _LOCAL_DEPTH and (
                returned := self.returned(node)) is not None:
            return self.props(returned, depth + 1)  # `headers=_headers(api_key)`
        if isinstance(node, ast.Call) and _chain(node.func) == ["dict"]:
            return {k.arg: k.value for k in node.keywords if k.arg}
        if isinstance(node, ast.Call) and not node.args and not node.keywords:
            # `retrieve(**self.header())`, `create(p, request_options())`: the options a
            # function of the file without parameters returns (issue 25)
            fn = self._local_function(_chain(node.func) or [])
            if fn is None or _params(fn, method=(_chain(node.func) or [""])[0] in (
                    "self", "cls")):
                return None
            # read once per helper (a helper returning helpers many times over cannot make
            # the work grow with the product of their returns); {} while being read
            if id(fn) not in self._helper_props:
                self._helper_props[id(fn)] = {}
                found: dict[str, ast.expr] = {}
                for r in ast.walk(fn):
                    if isinstance(r, ast.Return) and r.value is not None:
                        found.update(self.props(r.value, depth + 1) or {})
                self._helper_props[id(fn)] = found
            return self._helper_props[id(fn)] or None
        if not isinstance(node, ast.Dict):
            return None
        out: dict[str, ast.expr] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                out.update(self.props(v, depth + 1) or {})
            elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                out[k.value] = v
        return out

    # --- calls --------------------------------------------------------------

    def run(self, source: bytes) -> FileFindings:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                end = node.end_lineno or node.lineno
                self.out.scopes.append(Scope(node.name, node.lineno, end))
            if isinstance(node, ast.Call):
                chain = _chain(node.func)
                if chain and (len(chain) == 1 or chain[0] in ("self", "cls")):
                    self.out.local_calls.append((node.lineno, chain[-1]))
                try:
                    self.call(node)
                except RecursionError:
                    self.out.partial = "some calls are too deeply nested to analyse"
            elif (
                isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value in self.ctx.event_types
            ):
                self.out.events.append(
                    EventUse(self.ctx.file, node.lineno, node.col_offset + 1, node.value)
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.oauth_library(node, node.value)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.oauth_library(node, f"{node.module}.{alias.name}")
        for _, (lib, at, dotted) in sorted(self.oauth_seen.items()):
            self.out.calls.extend(oauthlibs.calls(
                self.ctx, lib, at.lineno, at.col_offset + 1, repr(dotted)))
        if self.out.events:
            self.out.source = source  # `event.account` lines: read only if a handler asks
        for defined, req in self.wrapper_requests.items():
            if defined not in self.wrapper_used:
                # called from other files only (or not at all): callers the scan does not see
                # may pass any path, so its request stays unreadable traffic (nothing unused)
                self.out.unresolved.append(Unresolved(
                    *self.where(req), ast.unparse(req.func), UNCALLED_WRAPPER))
        return self.out

    def oauth_library(self, node: ast.Constant | ast.ImportFrom, dotted: str) -> None:
        """`AUTHENTICATION_BACKENDS = ["social_core.backends.stripe.StripeOAuth2"]`,
        `INSTALLED_APPS = [..., "allauth.socialaccount.providers.stripe"]`, or an import
        from them: a backend that reads the account with the token it obtains
        (`data/oauth_libraries.json`); once per library and file."""
        if "stripe" not in dotted:
            return
        # at most 8 names deep: a literal of thousands of dots, each prefix joined, would be
        # quadratic work (the table's paths are 4 or 5 names)
        parts = dotted.split(".", 8)[:8]
        for n in range(len(parts), 2, -1):  # the name itself, or a name inside it
            lib = oauthlibs.find("python", "dotted", ".".join(parts[:n]))
            seen = self.oauth_seen.get(lib.name) if lib is not None else None
            if lib is not None and (seen is None or (node.lineno, node.col_offset) < (
                    seen[1].lineno, seen[1].col_offset)):
                self.oauth_seen[lib.name] = (lib, node, dotted)  # the first in the source
                return

    def escape(self, node: ast.Call, chain: list[str]) -> None:
        """A package's function handed the installing account's credential (a value)."""
        for a in (*node.args, *(k.value for k in node.keywords)):
            value = isinstance(a, ast.Name | ast.Attribute)
            text = ast.unparse(a) if value else ""
            if credential_escape(chain, text, value) is not None:
                self.out.escapes.append(Escape(self.ctx.file, node.lineno, ".".join(chain), text))
                return

    def where(self, node: ast.expr) -> tuple[str, int, int]:
        return self.ctx.file, node.lineno, node.col_offset + 1

    def call(self, node: ast.Call) -> None:
        chain = _chain(node.func)
        label = ast.unparse(node.func)
        if chain is None and isinstance(node.func, ast.Attribute) and not self.ctx.ui_extension:
            base = _call_base(node.func)  # `Syncer(db).run(token)`: a package's object
            if base is not None and base in self.packages:
                self.escape(node, [base, node.func.attr])
        if chain is None and self.built_client_call(node, label):
            return
        if chain is None:
            if isinstance(node.func, ast.Attribute) and _mentions_client(node.func, self):
                self.out.unresolved.append(
                    Unresolved(*self.where(node), label, "SDK member chosen at run time")
                )
            return
        chain = [*chain[:-1], chain[-1].removesuffix("_async")]
        if node.args:
            self.note_arguments(node, chain)
        if chain[0] in self.packages and chain[0] not in self.modules and not self.ctx.ui_extension:
            self.escape(node, chain)
        sdk = table()
        flow = self.flow_client(node, chain) if chain[0] not in self.clients else None
        # StripeClient services: client.v1.customers.retrieve(...)
        for i, seg in enumerate(chain[:-1]):
            client = flow[1] if flow is not None and flow[0] == i else self.clients.get(seg)
            if client is None and i == 0 and seg == "self" and self.service(chain[1:]):
                client = self.subclass_client(node)
            if flow is not None and flow[0] == 1 and i == 0:
                continue  # `self.<field>`: the field holds the client
            if client is not None and flow is not None and flow[0] == i and not self.service(
                chain[i + 1:]
            ):
                break  # a parameter that is not used as a client here
            if client is not None:
                rest = chain[i + 1:]
                if rest == ["raw_request"]:
                    self.raw_request(node, label, client)
                    return
                if rest and rest[-1][:1].isupper():
                    return  # a params TypedDict (`...CreateParams(...)`), not a request
                route = sdk.get("service", ".".join(rest))
                if route is None and rest and rest[0] != "v1":
                    route = sdk.get("service", "v1." + ".".join(rest))
                if route is not None:
                    self.record(node, label, route, client)
                elif len(rest) >= 2 and (rest[0] in sdk.roots["service"]):
                    self.out.unresolved.append(Unresolved(
                        *self.where(node), label,
                        f"not a method of {sdk.meta.get('python_sdk', 'the Python SDK')}",
                    ))
                return
        # Resource classes: stripe.Customer.retrieve(...), Session.create(...)
        dotted: str | None = None
        if chain[0] in self.modules and len(chain) >= 3:
            dotted = ".".join(chain[1:])
            if chain[1:] == ["raw_request"]:
                self.raw_request(node, label, self.module_account)
                return
        elif chain[0] in self.classes and len(chain) == 2:
            dotted = f"{self.classes[chain[0]]}.{chain[1]}"
        if dotted is not None and dotted.rsplit(".", 1)[-1][:1].isupper():
            return  # `stripe.checkout.Session.CreateParams(...)`: a TypedDict, not a request
        elif chain[0] in self.modules and chain[1:] == ["raw_request"]:
            self.raw_request(node, label, self.module_account)
            return
        if dotted is not None:
            route = sdk.get("resource", dotted)
            if route is not None:
                self.record(node, label, route, self.module_account)
            elif dotted.rsplit(".", 1)[0] in sdk.resource_classes:
                self.out.unresolved.append(Unresolved(
                    *self.where(node), label,
                    f"not a method of {sdk.meta.get('python_sdk', 'the Python SDK')}",
                ))
            return
        if self.wrapper_call(node, label):
            return
        self.http_call(node, chain, label)

    def built_client_call(self, node: ast.Call, label: str) -> bool:
        """`StripeClient(key).v1.customers.list()`, `client_for(user).v1.disputes.list()`: a
        service call on the client a call builds or a project factory returns (issue 25)."""
        rest: list[str] = []
        base = node.func
        while isinstance(base, ast.Attribute) and len(rest) < 8:
            rest.append(base.attr)
            base = base.value
        if isinstance(base, ast.Await):
            base = base.value
        if not rest or not isinstance(base, ast.Call):
            return False
        client = self._client_of(base)
        if client is None:
            return False
        rest = [*rest[:0:-1], rest[0].removesuffix("_async")]
        sdk = table()
        route = sdk.get("service", ".".join(rest))
        if route is None and rest[0] != "v1":
            route = sdk.get("service", "v1." + ".".join(rest))
        if route is None:
            return False
        self.record(node, label, route, client)
        return True

    @staticmethod
    def service(rest: list[str]) -> bool:
        """Whether `rest` (after a client) names a StripeClient service method."""
        sdk = table()
        joined = ".".join(rest)
        return rest == ["raw_request"] or sdk.get("service", joined) is not None or (
            bool(rest) and rest[0] != "v1" and sdk.get("service", "v1." + joined) is not None)

    def record(
        self, node: ast.Call, label: str, route: tuple[str, str], client: Client
    ) -> None:
        expand, notes = self.expand_of(node)
        acc, why = self.account(node, client, route[1])
        self.out.calls.append(Call(
            *self.where(node), label, route[0], route[1], expand, acc, notes, why,
        ))

    def expand_of(self, node: ast.Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
        candidates: list[ast.expr] = []
        for k in node.keywords:
            if k.arg == "expand":
                candidates.append(ast.Dict(keys=[ast.Constant("expand")], values=[k.value]))
            elif k.arg == "params" or k.arg is None:
                candidates.append(k.value)
        candidates.extend(node.args)
        for c in candidates:
            p = self.props(c)
            if p and "expand" in p:
                values = self.strings(p["expand"])
                if values is None:
                    return (), (EXPAND_AT_RUN_TIME,)
                return tuple(values), ()
        return (), ()

    def account(self, node: ast.Call, client: Client, path: str | None = None) -> Client:
        if self.ctx.ui_extension:
            return "installing", "a UI extension: the installing account"
        # request options passed as a value named after the option (issue 25): `options=
        # stripe_account`, or a positional argument past the path's ids and the params
        opts = next((k.value for k in node.keywords if k.arg == "options"), None)
        if opts is None and path is not None and len(node.args) > path.count("{") + 1:
            opts = node.args[-1]
        name = (_chain(opts) or [""])[-1] if isinstance(opts, ast.Name | ast.Attribute) else ""
        if opts is not None and OPTIONS_ACCOUNT.fullmatch(name):
            fixed = self.fixed_of(opts)
            if fixed is not None:
                return "own", fixed
            return "connected", f"request options named {name} on the call"
        for a in (*node.args, *(k.value for k in node.keywords if k.arg in (
                None, "options", "params"))):
            # set in the function around the call, else at the top level
            value = next((self.account_options[(scope, a.id)] for scope in (
                self._scope_of(node), None) if (scope, a.id) in self.account_options),
                None) if isinstance(a, ast.Name) else None
            if isinstance(a, ast.Name) and value is not None:
                fixed = self.fixed_of(value)
                if fixed is not None:
                    return "own", fixed
                return "connected", f"a stripe_account option set on {a.id}"
        for k in node.keywords:
            if k.arg == "stripe_account":
                fixed = self.fixed_of(k.value)
                if fixed is not None:
                    return "own", fixed
                return "connected", "a stripe_account argument on the call"
            if k.arg == "api_key":  # a per-request key wins over the module's
                acc, why = self.key_why(k.value)
                return acc, f"api_key= on the call: {why}"
            if k.arg in ("options", "headers", None) or k.arg == "params":
                p = self.props(k.value) or {}
                if "stripe_account" in p:
                    fixed = self.fixed_of(p["stripe_account"])
                    return ("own", fixed) if fixed is not None else (
                        "connected", "a stripe_account option")
                if any(h.lower() == "stripe-account" for h in p):
                    return "connected", "a Stripe-Account header"
                hdrs = self.props(p.get("headers"))
                if hdrs and any(h.lower() == "stripe-account" for h in hdrs):
                    return "connected", "a Stripe-Account header"
        for a in node.args:
            p = self.props(a) or {}
            if "stripe_account" in p:
                fixed = self.fixed_of(p["stripe_account"])
                return ("own", fixed) if fixed is not None else (
                    "connected", "a stripe_account option")
        return client

    def fixed_of(self, value: ast.expr) -> str | None:
        """Why an account value names one fixed account of the operator: written in the
        code, from the environment or configuration, directly or (issue 25) through the
        local variables of the function around `value` and the values the file's functions
        return, fallbacks (`a or b`) and conditionals; None when any value it can hold is
        data (a parameter, a record's field) or cannot be followed. A name that a function
        around it binds or takes as a parameter is that function's: not another function's
        assignment of the same name (the file-wide constants of `resolve`)."""
        fn = self._function_of(value) if isinstance(value, ast.Name) else None
        for _ in range(16):
            if fn is None or (isinstance(value, ast.Name) and value.id in self._bindings(fn)):
                break
            fn = self._function_of(fn)
        fixed = fixed_account(ast.unparse(self.resolve(value))) if fn is None else None
        if fixed is not None and self._filled_with_configuration(value):
            return fixed
        return fixed_origin(value, self._origin, lambda n: ast.unparse(_awaited(n)),
                            lambda n: self._filled_with_configuration(_awaited(n)))

    def _filled_with_configuration(self, value: ast.expr) -> bool:
        """Whether the object a configuration read starts from is configuration
        (`config['account_id']`): a parameter or a module's name is (the name says so, as the
        key rules read it); a local of the function around it only when every value it is
        given is read from configuration or loaded at start-up (`config_source`), not a
        record (`config = shop.settings`). True when the value reads no configuration."""
        text = ast.unparse(value)
        if not config_read(text):
            return True
        root = value
        while isinstance(root, ast.Attribute | ast.Subscript | ast.Call):
            root = root.func if isinstance(root, ast.Call) else root.value
        if not isinstance(root, ast.Name):
            return True
        fn = self._function_of(root)
        for _ in range(16):
            if fn is None or root.id in self._bindings(fn):
                break
            fn = self._function_of(fn)
        if fn is None or root.id in _params(fn, method=False):
            return True
        values = self._bindings(fn)[root.id]
        return all(v is not None and config_source(ast.unparse(v)) for v in values)

    def key_why(self, key: ast.expr | None) -> tuple[Account, str]:
        """Whose account a key expression acts on (`key_account_why`). A name that is "own"
        only by its name (`api_key`) is followed where the function around it binds it
        (`x = v`, `a, b = v`, the file's own functions' returns): its values decide, a
        tenant's record is connected, a call the scan cannot read is unknown (issue 25)."""
        if key is None:
            return key_account_why(None)
        text = ast.unparse(key)
        acc, why = self._record_key(key, key_account_why(text))
        if acc != "own" or not isinstance(key, ast.Name) or not own_by_name(text):
            return acc, why
        fn = self._function_of(key)
        if fn is not None and key.id in _params(fn, method=False):
            # a parameter: what the project's call sites pass (a record's key is unknown)
            cls = next((c for c, f in self._functions() if f is fn), None)
            params = _params(fn, method=cls is not None)
            fact = self.param_fact(cls if cls and fn.name == "__init__" else fn.name,
                                   params.index(key.id)) if key.id in params else None
            return (fact[0], f"{text} (argument {params.index(key.id) + 1} of {fn.name}(): "
                    f"{fact[1]})") if fact is not None else (acc, why)
        if fn is None or key.id not in self._bindings(fn):
            return acc, why  # a module's name: not bound here, its name decides
        return bound_key(text, self._key_values(key, [0], 0))

    def _key_values(self, node: ast.expr, steps: list[int], depth: int,
                    index: int | None = None) -> list[tuple[Account, str]]:
        """The accounts of the keys `node` can hold (element `index` of it, when it is
        unpacked `a, b = node`). At most 64 values in one question, 8 deep."""
        if isinstance(node, ast.Await):
            node = node.value
        steps[0] += 1
        if depth > 8 or steps[0] > 64:
            return [("unknown", "a key bound through more values than the scan follows")]
        if isinstance(node, ast.BoolOp):  # `a or b`: whichever is set (`fallback_key`)
            found = [f for v in node.values for f in self._key_values(v, steps, depth + 1, index)]
            return [fallback_key(found, ast.unparse(node)[:60])] if found else []
        if isinstance(node, ast.IfExp):
            return [f for v in (node.body, node.orelse)
                    for f in self._key_values(v, steps, depth + 1, index)]
        if isinstance(node, ast.Constant) and node.value is None:
            return []
        if index is not None and isinstance(node, ast.Tuple | ast.List):
            if index >= len(node.elts) or any(isinstance(e, ast.Starred) for e in node.elts):
                return [("unknown", f"a key unpacked from {ast.unparse(node)[:40]}")]
            return self._key_values(node.elts[index], steps, depth + 1)
        if isinstance(node, ast.Call):
            target = self._local_function(_chain(node.func) or [])
            rets = [r.value for r in ast.walk(target) if isinstance(r, ast.Return)
                    and r.value is not None] if target is not None else []
            if target is None or not rets:
                text = ast.unparse(node)
                return [self._record_key(node, unread_call_key(text)) if index is None else (
                    "unknown", f"a key unpacked from {text[:40]}: a call the scan cannot read")]
            return [f for r in rets for f in self._key_values(r, steps, depth + 1, index)]
        fn = self._function_of(node) if isinstance(node, ast.Name) else None
        if isinstance(node, ast.Name) and fn is not None and node.id in self._bindings(fn):
            return self._name_values(fn, node.id, steps, depth, index)
        text = ast.unparse(node)
        if index is not None:
            return [("unknown", f"a key unpacked from {text[:40]}")]
        return [self._record_key(node, key_account_why(text))]

    def _record_key(self, node: ast.expr, found: tuple[Account, str]) -> tuple[Account, str]:
        """`found` (the key text's own reading) when it is known; else the record the key is
        read from, followed to the one way its function binds it (issue 25): an item of a
        loop over a list (`for c in connections: c.get("api_key")`, read as
        `connections[i].get(...)`) or a row loaded by id (`shop = Shop.objects.get(pk=sid)`,
        `row_key`). A record bound any other way, or more than once, says nothing."""
        if found[0] != "unknown" or not KEY_NAMED.search(ast.unparse(node)):
            return found  # a field that names no credential (`c.id`): not read as a key
        root = node
        while isinstance(root, ast.Call | ast.Attribute | ast.Subscript):
            root = root.func if isinstance(root, ast.Call) else root.value
        fn = self._function_of(node)
        if not isinstance(root, ast.Name) or root is node or fn is None:
            return found
        values = self._bindings(fn).get(root.id, [])
        if len(values) != 1:
            return found
        if values[0] is not None:
            return row_key(root.id, ast.unparse(values[0])) or found
        loops = [a.iter for a in ast.walk(fn) if isinstance(a, ast.For | ast.AsyncFor)
                 and isinstance(a.target, ast.Name) and a.target.id == root.id]
        if len(loops) != 1 or not isinstance(loops[0], ast.Name | ast.Attribute):
            return found
        item = f"{ast.unparse(loops[0])}[i]{ast.unparse(node)[len(root.id):]}"
        got = key_account_why(item)
        return got if got[0] in ("installing", "connected") else found

    def _name_values(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                     steps: list[int], depth: int, index: int | None
                     ) -> list[tuple[Account, str]]:
        """The accounts of the keys a name a function binds can hold: its `x = v` values and
        its `a, b = v` elements; bound any other way (a parameter, a loop), unknown."""
        values = self._bindings(fn)[name]
        if self._unpacks is None:
            self._unpacks = {}
        by_name = self._unpacks.get(id(fn))
        if by_name is None:  # one walk per function, not one per question
            by_name = self._unpacks[id(fn)] = {}
            for a in ast.walk(fn):
                if not isinstance(a, ast.Assign):
                    continue
                for t in a.targets:
                    if isinstance(t, ast.Tuple | ast.List) and not any(
                            isinstance(x, ast.Starred) for x in t.elts):
                        for i, e in enumerate(t.elts):
                            if isinstance(e, ast.Name):
                                by_name.setdefault(e.id, []).append((a.value, i))
        unpacked = by_name.get(name, [])
        if sum(v is None for v in values) != len(unpacked):
            return [("unknown", f"a key ({name}) bound in a way the scan does not follow")]
        found = [f for v in values if v is not None
                 for f in self._key_values(v, steps, depth + 1, index)]
        for value, i in unpacked:
            if index is not None:
                found.append(("unknown", f"a key unpacked twice ({name})"))
            else:
                found += self._key_values(value, steps, depth + 1, i)
        return found

    def _origin(self, node: ast.expr) -> OriginRead[ast.expr]:
        """How `common.fixed_origin` reads one value: `None` names no account; `a or b` and
        `a if c else b` each side; a call of the file's function the values it returns; a
        name the values the function around it binds (one bound another way: data)."""
        node = _awaited(node)
        if isinstance(node, ast.Constant) and node.value is None:
            return "null", ()
        if isinstance(node, ast.BoolOp):
            return "values", node.values
        if isinstance(node, ast.IfExp):
            return "values", (node.body, node.orelse)
        if isinstance(node, ast.Call):
            target = self._local_function(_chain(node.func) or [])
            return "call", [r.value for r in ast.walk(target) if isinstance(r, ast.Return)
                            and r.value is not None] if target is not None else []
        if isinstance(node, ast.Name):
            fn = self._function_of(node)
            values = self._bindings(fn).get(node.id, []) if fn is not None else []
            return "values", [] if None in values else [v for v in values if v is not None]
        return "leaf", ()

    _owner: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] | None = None
    # per function: the names `a, b = v` binds -> (v, the name's index)
    _unpacks: dict[int, dict[str, list[tuple[ast.expr, int]]]] | None = None

    def _function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The innermost function (def) around an expression: a value a helper returns is
        read in the helper, not at the call that uses it. One walk of the file, on demand."""
        if self._owner is None:
            self._owner = {}
            stack: list[tuple[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef | None]] = [
                (self.tree, None)]
            while stack:
                n, fn = stack.pop()
                if fn is not None:
                    self._owner[id(n)] = fn
                inner = n if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) else fn
                stack.extend((c, inner) for c in ast.iter_child_nodes(n))
        return self._owner.get(id(node))

    _binds: dict[int, dict[str, list[ast.expr | None]]] | None = None

    def _bindings(
        self, fn: ast.FunctionDef | ast.AsyncFunctionDef
    ) -> dict[str, list[ast.expr | None]]:
        """The values a function assigns to each plain name (`x = v`, `x: T = v`), walked
        once per function. A name bound in any other way (a parameter, here or of a function
        or lambda inside, `for x in`, `x, y = v`, `x += v`, `with ... as x`, `(x := v)`, a
        comprehension, `global x`) gets None: what it holds is not followed."""
        if self._binds is None:
            self._binds = {}
        got = self._binds.get(id(fn))
        if got is None:
            got = {}
            plain: set[int] = set()
            for a in ast.walk(fn):
                if isinstance(a, ast.Assign):
                    for t in a.targets:
                        if isinstance(t, ast.Name):
                            got.setdefault(t.id, []).append(a.value)
                            plain.add(id(t))
                elif isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and (
                        a.value is not None):
                    got.setdefault(a.target.id, []).append(a.value)
                    plain.add(id(a.target))
            for a in ast.walk(fn):
                names = ([a.id] if isinstance(a, ast.Name) and not isinstance(a.ctx, ast.Load)
                         and id(a) not in plain else [a.arg] if isinstance(a, ast.arg)
                         else a.names if isinstance(a, ast.Global | ast.Nonlocal) else [])
                for name in names:
                    got.setdefault(name, []).append(None)
            self._binds[id(fn)] = got
        return got

    def _local_function(self, chain: list[str]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The file's top-level function `name(...)` names, or its class's method
        `self.name(...)` (one definition of that name in the file). A bare name is never a
        method: `account_for()` beside a method `account_for(self)` is imported or global."""
        if len(chain) == 1 or (len(chain) == 2 and chain[0] in ("self", "cls")):
            found = [f for c, f in self._functions() if f.name == chain[-1] and (
                c is None) == (len(chain) == 1)]
            return found[0] if len(found) == 1 else None
        return None

    def raw_request(self, node: ast.Call, label: str, client: Client) -> None:
        method = self.string(node.args[0]) if node.args else None
        target = raw_target(self.pieces(node.args[1]), require_host=False) if len(
            node.args
        ) > 1 else None
        if method is None or target is None:
            self.out.unresolved.append(
                Unresolved(*self.where(node), label, "method or path built at run time")
            )
            return
        expand = list(target.expand)
        for k in node.keywords:
            if k.arg == "expand":
                expand.extend(self.strings(k.value) or ())
        acc, why = self.account(node, client)
        self.out.calls.append(Call(
            *self.where(node), label, method.upper(), target.path, tuple(expand), acc, (), why,
        ))

    def http_call(self, node: ast.Call, chain: list[str], label: str) -> None:
        if id(node) in self.wrapper_inner:
            return
        verb = chain[-1].lower()
        if verb not in _REQUEST_VERBS and chain[0] not in self.url_wrappers:
            return
        if self.names_host:  # a URL, headers or params in the function's locals
            node = self.inline_call(node, self.local_values(
                self.enclosing.get(id(node), (None, None))[1]))
        args = list(node.args)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        method: str | None
        if len(chain) == 1 and chain[0] in self.url_wrappers:
            method = self.url_wrappers[chain[0]]
        elif verb == "request" and args:
            method = self.string(args.pop(0))
        elif verb in HTTP_VERBS:
            method = verb.upper()
        else:
            return
        url = args[0] if args else kw.get("url")
        if url is None:
            return
        pieces = self.pieces(url)
        if not pieces or pieces[0] is None or not pieces[0].startswith("http"):
            return
        target = raw_target(pieces, require_host=True)
        if target is None:
            if pieces[0].rstrip("/") in ("https://api.stripe.com", "https://api.stripe.com/v1"):
                self.out.unresolved.append(
                    Unresolved(*self.where(node), label, "API path built at run time")
                )
            return
        if method is None:
            self.out.unresolved.append(
                Unresolved(*self.where(node), label, "HTTP method chosen at run time")
            )
            return
        expand = list(target.expand)
        for key in ("params", "data"):
            p = self.props(kw.get(key)) or {}
            for k, v in p.items():
                if re.fullmatch(r"expand(\[\d*\])?", k):
                    expand.extend(self.strings(v) or ())
        account: Account = "unknown"
        why = "an HTTP call whose key the scan cannot trace"
        hdrs = self.props(kw.get("headers")) or {}
        auth = kw.get("auth")
        if self.ctx.ui_extension:
            account, why = "installing", "a UI extension: the installing account"
        elif any(h.lower() == "stripe-account" for h in hdrs):
            account, why = "connected", "a Stripe-Account header"
        elif isinstance(auth, ast.Tuple) and auth.elts:  # auth=(key, "")
            account, w = self.key_why(auth.elts[0])
            why = f"auth=(key, '') with {w}"
        else:
            for h, v in hdrs.items():
                if h.lower() == "authorization":
                    account, w = self.key_why(v)
                    why = f"an Authorization header with {w}"
        owner = chain[-2] if len(chain) >= 2 else ""
        if account == "unknown" and owner in self.session_auth:
            # a session whose headers or auth the file set (issue 25: a `requests.Session`)
            cls, _fn = self.enclosing.get(id(node), (None, None))
            sess = self.session_auth[owner]
            acc, w, _key = self._auth_account(
                None if isinstance(sess, ast.Tuple) else sess,
                sess if isinstance(sess, ast.Tuple) else None, cls, None)
            if acc != "unknown":
                account, why = acc, f"the session {owner} sends {w}"
        if account == "unknown" and owner in self.oauth_sessions:
            account, why = "installing", (
                f"the OAuth2Session {owner} ({self.oauth_sessions[owner]}) sends the OAuth "
                "access token it holds: the installing account")
        userinfo = self.userinfo(url)
        if account == "unknown" and userinfo is not None:
            # `f"https://{token}:@api.stripe.com/..."`: the key is the URL's user name
            account, w = key_account_why(userinfo)
            why = f"the key written into the URL: {w}"
        notes = ("query string built at run time",) if target.dynamic_query else ()
        self.out.calls.append(Call(
            *self.where(node), label, method.upper(), target.path, tuple(expand), account, notes,
            why,
        ))


def _mentions_client(node: ast.expr, f: _File) -> bool:
    """`client.v1[name].list()` or `getattr(stripe, name).list()`: a member chosen at run time."""
    roots = f.clients.keys() | f.modules
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Subscript):
            chain = _chain(node.value)
            return chain is not None and bool(roots & set(chain))
        node = node.value
    if isinstance(node, ast.Call) and _chain(node.func) == ["getattr"] and node.args:
        chain = _chain(node.args[0])
        return chain is not None and bool(roots & set(chain))
    return False


def extract(ctx: Context, source: bytes) -> FileFindings:
    return extract_and_index(ctx, source, index=False)[0]


def extract_and_index(
    ctx: Context, source: bytes, *, index: bool = True
) -> tuple[FileFindings, Project | None]:
    partial = None
    try:
        tree = ast.parse(source)
    except (RecursionError, MemoryError, SyntaxError) as e:
        tree, bad = _parse_in_parts(source)
        if not tree.body:
            raise  # nothing at all could be read: the file is reported as dropped
        what = f"syntax error at line {e.lineno}" if isinstance(e, SyntaxError) else (
            type(e).__name__)
        partial = f"{what}: {bad} top-level block(s) could not be read; the rest was"
    f = _File(ctx, tree, source)
    found = f.run(source)
    found.partial = found.partial or partial
    found.imports |= set(f.imported)
    if not f.module_key_set:
        found.imports.add(MODULE_KEY)
    if index:
        facts = _index(f, tree)
        facts.params.update(f.param_facts)
        facts.wanted |= f.wanted
        return found, facts
    return found, (Project(params=dict(f.param_facts), wanted=set(f.wanted))
                   if f.param_facts or f.wanted else None)


MODULE_KEY = "<module key>"
_TOP = re.compile(rb"^(?:async\s+def|def|class|@|import|from|if|for|while|with|try|[A-Za-z_])")


def _parse_in_parts(source: bytes) -> tuple[ast.Module, int]:
    """Parse each top-level block on its own; blocks that fail are left out (counted)."""
    lines = source.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if _TOP.match(ln)
              and not ln.startswith((b"else", b"elif", b"except", b"finally"))]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    body: list[ast.stmt] = []
    bad = 0
    for a, b in zip(starts, [*starts[1:], len(lines)], strict=True):
        chunk = b"".join(lines[a:b])
        if not chunk.strip():
            continue
        try:
            part = ast.parse(chunk)
        except (RecursionError, MemoryError, SyntaxError, ValueError):
            bad += 1
            continue
        ast.increment_lineno(part, a)
        body.extend(part.body)
    return ast.Module(body=body, type_ignores=[]), bad


def _index(f: _File, tree: ast.Module) -> Project:
    """Functions that return a configured StripeClient, and module-level clients."""
    p = Project()
    if f.module_key_set:
        p.module_key = f.module_account
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in f.clients:
                    p.clients[t.id] = p.clients[f"mod:{f.ctx.file}:{t.id}"] = f.clients[t.id]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and sub.value is not None:
                    value = sub.value
                    if isinstance(value, ast.Name) and value.id in f.clients:
                        p.factories[node.name] = f.clients[value.id]
                    elif f._is_client(value):
                        p.factories[node.name] = f._client_account(value)
                    if node.name in p.factories:  # also by path: imports resolved by path
                        p.factories[f"mod:{f.ctx.file}:{node.name}"] = p.factories[node.name]
    # wrappers by name (a function imported by name; a class's wrapper methods reached on
    # an object of the class imported by name): "pyw:" keeps them apart from JS's
    p.wrappers.update({"pyw:" + k: w for k, w in f.wrappers.items()})
    p.wrappers.update({f"pyw:{c}.{m}": w for (c, m), w in f.method_wrappers.items()})
    return p
