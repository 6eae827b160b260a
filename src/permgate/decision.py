"""Decisions: request -> requirements -> Decision with its explanation. Pure; no I/O.

Everything that can be known before a request arrives (routes, each operation's requirement,
expansion outcomes, grant closures, the allowed Decision of every operation) is computed once;
a request costs a path split, a few dict lookups and a set membership test per requirement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypeVar

from permgate.api.expand import Expansion, ExpansionGraph
from permgate.api.operations import Operation
from permgate.api.params import (
    MAX_EXPANSIONS,
    NO_EXPAND,
    STRIPE_EXPAND,
    BadParam,
    ExpandReader,
    bounded_expansions,
    undeclared,
)
from permgate.api.router import BadPath, Router
from permgate.catalog import Catalog

Kind = Literal["allowed", "missing", "unavailable", "unknown", "bad_request"]
Group = tuple[str, ...]  # any one of these requirement tokens meets the group
Body = bytes | str | Mapping[str, object] | None

CODE_MISSING = "more_permissions_required_for_application"
CODE_UNAVAILABLE = "endpoint_not_available_to_applications"
CODE_BAD_PATH = "invalid_request_path"
_STATUS = {"allowed": 200, "missing": 403, "unavailable": 403, "unknown": 404, "bad_request": 400}
# Caches keyed on request data are bounded by entries and by the bytes of their keys, and
# cleared whole when full: a hostile stream of unique requests costs recomputation, not memory.
_PLAN_ENTRIES, _PLAN_BYTES = 16_384, 8 << 20
_QUERY_ENTRIES, _QUERY_BYTES, _QUERY_MAX = 16_384, 4 << 20, 4096


class Grant:
    """A validated grant set with its closure computed once (cache one per install)."""

    __slots__ = ("closure", "names")

    def __init__(self, names: frozenset[str], closure: frozenset[str]) -> None:
        self.names = names
        self.closure = closure

    def __repr__(self) -> str:
        return f"Grant({sorted(self.names)!r})"


class Decision:
    """The answer for one request or event. `required`, `missing` and `message` are computed
    on first access: the gateway reads them only when it denies."""

    __slots__ = (
        "_account", "_catalog", "_message", "_missing", "_needs", "_subject", "allowed", "code",
        "kind", "operation", "param", "status",
    )

    def __init__(
        self,
        kind: Kind,
        catalog: Catalog,
        *,
        operation: Operation | None = None,
        needs: tuple[Group, ...] = (),
        missing: tuple[Group, ...] = (),
        message: str | None = None,
        code: str | None = None,
        param: str | None = None,
        account: str | None = None,
        subject: str | None = None,
    ) -> None:
        self.kind: Kind = kind
        self.allowed = kind == "allowed"
        self.status = _STATUS[kind]
        self.code = code
        self.operation = operation
        self.param = param
        self._catalog = catalog
        self._needs = needs
        self._missing = missing
        self._message = message
        self._account = account
        self._subject = subject  # an event type, for event decisions

    def _display(self, group: Group) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for token in group:
            for p in self._catalog.satisfiers(token):
                out[p] = None
        return tuple(out)

    @property
    def required(self) -> tuple[tuple[str, ...], ...]:
        """Any-of groups, each listing what satisfies it, most specific first."""
        return tuple(self._display(g) for g in self._needs)

    @property
    def missing(self) -> tuple[tuple[str, ...], ...]:
        return tuple(self._display(g) for g in self._missing)

    @property
    def message(self) -> str:
        if self._message is None:
            self._message = self._compose(self._account)
        return self._message

    def message_for(self, account: str | None) -> str:
        """The message naming `account`: a Decision itself is shared by every account (the
        engine caches them), so callers that know the account ask for its wording here."""
        if account == self._account or self.kind != "missing" or self._subject is not None:
            return self.message
        return self._compose(account)

    def _compose(self, account: str | None) -> str:
        if self.allowed:
            return "Allowed."
        # Stripe names one permission ("Having the 'x' permission"); we may need several,
        # and some needs are met by any one of a few: "the 'x' and 'y' permissions and the
        # 'a' or 'b' permission" (an any-of group is one permission, whichever is granted).
        groups = self._smallest()
        alone = [f"'{g[0]}'" for g in groups if len(g) == 1]
        parts = [f"the {_join(alone, 'and')} permission{'s' if len(alone) > 1 else ''}"
                 ] if alone else []
        parts += ["the " + _join([f"'{t}'" for t in g], "or") + " permission"
                  for g in groups if len(g) > 1]
        having = f"Having {' and '.join(parts)}"
        if self._subject is not None:
            return f"This application may not receive '{self._subject}' events. {having} " \
                "would allow it."
        where = f" on account '{account}'" if account else ""
        return (
            f"This application does not have the required permissions for this endpoint{where}."
            f" {having} would allow this request to continue."
        )

    def _smallest(self) -> list[Group]:
        """The unmet groups to name: a permission that meets several groups (because it
        implies the others) is named alone, so the message names the smallest set of the
        request's own permissions that allows it."""
        groups = self._missing
        if len(groups) < 2:
            return list(groups)
        meets = [frozenset(self._display(g)) for g in groups]
        unmet = list(range(len(groups)))
        named: list[int] = []
        while unmet:
            best: tuple[int, list[int]] | None = None
            for i in unmet:
                if len(groups[i]) != 1:
                    continue
                covered = [k for k in unmet if groups[i][0] in meets[k]]
                if best is None or len(covered) > len(best[1]):
                    best = (i, covered)
            if best is None:  # only any-of groups are left: each is named as it is
                named += unmet
                break
            named.append(best[0])
            unmet = [k for k in unmet if k not in best[1]]
        return [groups[i] for i in sorted(named)]

    def as_dict(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "kind": self.kind,
            "operation": self.operation.as_dict() if self.operation else None,
            "required": [list(g) for g in self.required],
            "missing": [list(g) for g in self.missing],
            "message": self.message,
        }

    def __repr__(self) -> str:
        return f"<Decision {self.kind} {self.operation or self._subject or ''}>"


# An expansion plan: the tokens needed and the allowed Decision, or the refusal itself.
_Plan = tuple[frozenset[str], Decision] | Decision
_UNSEEN: _Plan = Decision.__new__(Decision)  # a marker no plan can be
_K = TypeVar("_K")
_V = TypeVar("_V")


def _join(items: list[str], word: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


class Engine:
    """Catalog + operations + expansion graph of one API, and the decisions over them."""

    def __init__(self, catalog: Catalog, operations: Iterable[Operation], graph: ExpansionGraph,
                 *, expand: ExpandReader = STRIPE_EXPAND):
        self.catalog = catalog
        # How this API names expansions (api.toml `expand_style`): bound once, not branched
        # on per request.
        self.expand_reader = expand
        self._from_query = expand.query
        self._from_body = expand.body
        self._expand_param = expand.param
        self.router = Router(operations)
        self.graph = graph
        self.operations = self.router.operations
        every = [*self.operations, *(v for o in self.operations for _, v in o.variants)]
        unknown = {o.permission for o in every if o.permission} - set(catalog.permissions)
        if unknown:
            raise ValueError(f"operations name unknown permissions: {sorted(unknown)}")
        # Per operation, the two answers that need no request data, built once.
        self._allowed: dict[Operation, Decision] = {}
        self._denied: dict[Operation, Decision] = {}
        self._needs: dict[Operation, tuple[Group, ...]] = {}
        for op in every:
            if op.permission is not None:
                needs = ((op.permission,),)
                self._needs[op] = needs
                self._allowed[op] = Decision("allowed", catalog, operation=op, needs=needs)
                self._denied[op] = Decision("missing", catalog, operation=op, needs=needs,
                                            missing=needs, code=CODE_MISSING)
        self._empty = Grant(frozenset(), frozenset())
        self._qplans: dict[tuple[Operation, str], _Plan | None] = {}
        self._queries_bytes = 0
        self._plans: dict[tuple[Operation, tuple[str, ...]], _Plan] = {}
        self._denials: dict[tuple[Decision, frozenset[str]], Decision] = {}
        self._plans_bytes = 0
        # Includable fields and owned types need what their equivalent request needs: look
        # each one up in this table now, so the expansion model and the table cannot disagree.
        by_template = {(o.method, o.path): o for o in self.operations}

        def equivalent(method: str, path: str) -> tuple[str | None, str | None]:
            op = by_template.get((method, path)) or self.router.route(method, path)
            if op is None:
                raise ValueError(f"the expansion model names {method} {path}, which is not an "
                                 "operation of the table")
            return op.permission, op.unavailable

        graph.bind(equivalent)
        self._event_needs: dict[str, tuple[Group, ...]] = {}
        ev = catalog.event_permission
        for rule in catalog.events.values():
            if rule.event_read_only:
                self._event_needs[rule.type] = ((ev,),)
            elif rule.permissions:
                self._event_needs[rule.type] = ((ev,), rule.permissions)

    # -- grants ------------------------------------------------------------------------
    def grant(self, names: Iterable[str]) -> Grant:
        """A validated Grant; raises UnknownPermission (with a suggestion) on a bad name."""
        known = self.catalog.require_known(names)
        return Grant(known, self.catalog.closure(known))

    def _closure(self, grants: Grant | Iterable[str]) -> frozenset[str]:
        if isinstance(grants, Grant):
            return grants.closure
        return self.catalog.closure(grants)

    # -- requests ----------------------------------------------------------------------
    def route(self, method: str, path: str) -> Operation | None:
        path = path.partition("?")[0]
        op = self.router.route(method.upper(), path)
        return op.variant(path) if op is not None and op.variants else op

    def decide(
        self,
        method: str,
        target: str,
        body: Body = None,
        grants: Grant | Iterable[str] = (),
        *,
        expand: Iterable[str] = (),
        account: str | None = None,
    ) -> Decision:
        """Decide one API request: `target` is the raw path with its query string."""
        path, _, query = target.partition("?")
        try:
            op = self.router.route(method, path)
            if op is None and not method.isupper():
                method = method.upper()
                op = self.router.route(method, path)
        except BadPath as e:
            return Decision("bad_request", self.catalog, message=f"Invalid request path: {e}.",
                            code=CODE_BAD_PATH)
        if op is None:
            return self._unknown(method, path)
        if op.variants:  # decided by the id's prefix (a customer's src_ is a Source)
            op = op.variant(path)
        if op.unavailable is not None:
            return Decision(
                "unavailable", self.catalog, operation=op, code=CODE_UNAVAILABLE,
                message=f"This endpoint ({op.method} {op.path}) is not available to Stripe "
                f"Apps: {op.unavailable.rstrip('.')}.",
            )
        closure = grants.closure if type(grants) is Grant else self._closure(grants)
        plan: _Plan | None = None
        if query and body is None and not expand:
            # The common case: expansions only in the query. One cached lookup per
            # (operation, query string) gives the plan (or None: the query expands nothing).
            qkey = (op, query)
            plan = self._qplans.get(qkey, _UNSEEN)
            if plan is _UNSEEN:
                plan = self._query_plan(op, query)
        elif query or body is not None or expand:
            try:
                if query and op.query_params is not None:
                    self._declared(op, query)
                exps = self._from_query(query) if query else NO_EXPAND
                if body is not None:
                    more = self._from_body(body)
                    if more:
                        exps = self._merge(exps, more)
                if expand:
                    exps = self._merge(exps, bounded_expansions(expand))
            except BadParam as e:
                return Decision("bad_request", self.catalog, operation=op, message=str(e),
                                param=e.param)
            if exps:
                plan = self._plans.get((op, exps)) or self._plan(op, exps)
        if plan is None:
            if op.permission in closure:
                return self._allowed[op]
            if account is None:
                return self._denied[op]
            needs = self._needs[op]
            return Decision("missing", self.catalog, operation=op, needs=needs, missing=needs,
                            code=CODE_MISSING, account=account)
        if type(plan) is Decision:  # the expansion itself is refused, whatever the grant
            return plan
        tokens, allowed = plan  # type: ignore[misc]
        if tokens <= closure:
            return allowed
        if account is None:
            # Keyed on the plan's allowed Decision (one per plan, hashed by identity), so
            # every spelling of the same request shares one denial per grant.
            denied = self._denials.get((allowed, closure))
            if denied is not None:
                return denied
        needs = allowed._needs
        missing = tuple(g for g in needs if g[0] not in closure)
        denied = Decision("missing", self.catalog, operation=op, needs=needs, missing=missing,
                          code=CODE_MISSING, account=account)
        if account is None:
            self._remember(self._denials, (allowed, closure), denied, 96)
        return denied

    def _query_plan(self, op: Operation, query: str) -> _Plan | None:
        """Parse a query string's expansions and find their plan; cache short queries."""
        try:
            if op.query_params is not None:
                self._declared(op, query)
            exps = self._from_query(query)
        except BadParam as e:
            plan: _Plan | None = Decision("bad_request", self.catalog, operation=op,
                                          message=str(e), param=e.param)
        else:
            plan = (self._plans.get((op, exps)) or self._plan(op, exps)) if exps else None
        if len(query) <= _QUERY_MAX:  # long queries are parsed each time, never kept
            size = len(query) + 96
            if (len(self._qplans) >= _QUERY_ENTRIES
                    or self._queries_bytes + size > _QUERY_BYTES):
                self._qplans.clear()
                self._queries_bytes = 0
            self._qplans[(op, query)] = plan
            self._queries_bytes += size
        return plan

    def _declared(self, op: Operation, query: str) -> None:
        """Deny by default: BadParam for a query parameter the API's document does not
        declare for `op` (an upstream may read it as anything, an expansion included)."""
        assert op.query_params is not None
        key = undeclared(query, op.query_params, self._expand_param)
        if key is not None:
            shown = "".join(c if c.isprintable() and c.isascii() else "?" for c in key[:60])
            raise BadParam(f"Invalid parameter '{shown}': {op.method} {op.path} declares no "
                           "such query parameter, and the gateway forwards only those the "
                           "API's document declares.", param=shown)

    @staticmethod
    def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        if not a:
            return b
        merged = tuple(dict.fromkeys(a + b))
        if len(merged) > MAX_EXPANSIONS:
            raise BadParam(f"Invalid expand[]: at most {MAX_EXPANSIONS} expansions per request.")
        return merged

    def _remember(self, cache: dict[_K, _V], key: _K, value: _V, size: int) -> None:
        """Store in a plan or denial cache; both share one budget of entries and key bytes.
        Clearing the plans clears the query plans too: they hold plans."""
        size += 64
        if (len(self._plans) + len(self._denials) >= _PLAN_ENTRIES
                or self._plans_bytes + size > _PLAN_BYTES):
            self._plans.clear()
            self._denials.clear()
            self._qplans.clear()
            self._plans_bytes = self._queries_bytes = 0
        cache[key] = value
        self._plans_bytes += size

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        """(entries, approximate bytes) of every cache keyed on request data."""
        return {
            "queries": (len(self._qplans), self._queries_bytes),
            "plans+denials": (len(self._plans) + len(self._denials), self._plans_bytes),
            "expansions": self.graph.cache_size(),
        }

    def _plan(self, op: Operation, exps: tuple[str, ...]) -> _Plan:
        """What an operation with these expansions needs: computed once per distinct pair."""
        tokens: dict[str, None] = {op.permission: None}  # type: ignore[dict-item]
        plan: _Plan | None = None
        for e in exps:
            res: Expansion = self.graph.resolve(op.objects, op.is_list, e)
            if res.error is not None:
                if res.error == "unavailable":
                    plan = Decision("unavailable", self.catalog, operation=op,
                                    code=CODE_UNAVAILABLE, message=res.message,
                                    param=self._expand_param)
                else:
                    plan = Decision("bad_request", self.catalog, operation=op,
                                    message=res.message, param=self._expand_param)
                break
            for n in res.needs:
                tokens[n] = None
        if plan is None:
            needs = tuple((t,) for t in tokens)
            plan = (frozenset(tokens), Decision("allowed", self.catalog, operation=op,
                                                needs=needs))
        self._remember(self._plans, (op, exps), plan, sum(len(e) + 56 for e in exps))
        return plan

    def _unknown(self, method: str, path: str) -> Decision:
        methods = self.router.methods_at(path)
        extra = (f" This path accepts {', '.join(methods)}." if methods else "")
        return Decision(
            "unknown", self.catalog,
            message=f"Unrecognized request URL ({method}: {path}).{extra} permgate refuses "
            "requests it cannot map to a known operation.",
        )

    def requirements(
        self, method: str, target: str, body: Body = None, *, expand: Iterable[str] = ()
    ) -> Decision:
        """What a request needs, as a Decision against an empty grant (`.required`)."""
        return self.decide(method, target, body, self._empty, expand=expand)

    def expansion(self, op: Operation, path: str) -> Expansion:
        return self.graph.resolve(op.objects, op.is_list, path)

    # -- events ------------------------------------------------------------------------
    def decide_event(self, event_type: str, grants: Grant | Iterable[str] = ()) -> Decision:
        needs = self._event_needs.get(event_type)
        if needs is None:
            rule = self.catalog.events.get(event_type)
            why = (rule.note if rule is not None and rule.note else
                   "it is not in the event catalog")
            return Decision("unavailable" if rule else "unknown", self.catalog,
                            subject=event_type, code=CODE_UNAVAILABLE,
                            message=f"No app may receive '{event_type}' events: {why}.")
        closure = self._closure(grants)
        missing = tuple(g for g in needs if closure.isdisjoint(g))
        if not missing:
            return Decision("allowed", self.catalog, needs=needs, subject=event_type)
        return Decision("missing", self.catalog, needs=needs, missing=missing,
                        subject=event_type, code=CODE_MISSING)

    def receivable_events(self, grants: Grant | Iterable[str]) -> list[str]:
        closure = self._closure(grants)
        return [t for t, needs in self._event_needs.items()
                if all(not closure.isdisjoint(g) for g in needs)]
