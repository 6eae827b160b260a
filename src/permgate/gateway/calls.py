"""Who is calling and may they: every check an API call passes, written once.

`Calls.resolve` turns a call's (Authorization, account header) pair into a `Caller` (app,
mode, account, compiled grant) or a `Refusal` (status, body, outcome): key -> account ->
install, from the resolver's caches, awaiting the store when they miss. The full path
(`proxy.FullPath`) awaits it; the fast path (`fast.FastPath`) runs the same coroutine with
`wait=False`, where a cache miss answers `NOT_NOW` instead of awaiting, and never awaits
anything else: `resolve_now` drives it to its end without an event loop.

`Calls.rule` is the one decision: the body's and the query's checks, then the engine, on
a caller's grant. A resolved Caller is cached per header pair (`cached`) for as long as the
resolver's generation holds and its key has not expired: every lookup would give the same
answers until then. Both paths read that cache.

The header caches are bounded in count and in bytes: only values short enough to be what
they claim to be (a key's Authorization, an account id) are parsed and kept.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from time import perf_counter
from typing import Any, Final

from permgate.api.profile import STRIPE_PROFILE, ApiProfile
from permgate.gateway import errors
from permgate.gateway.auth import (
    BOTH_SCHEMES,
    MAX_ACCOUNT_HEADER,
    account_header,
    presented_key,
)
from permgate.gateway.body import STRIPE_BODY, Body, body_rules, check_v2_query, decide_body
from permgate.gateway.logs import quoted
from permgate.gateway.metrics import Tally
from permgate.gateway.resolver import MISS, Install, Resolver
from permgate.store.model import EffectiveGrant

# Entries per header cache. Their keys are bounded in length (auth.MAX_AUTHORIZATION,
# auth.MAX_ACCOUNT_HEADER), so each cache is bounded in bytes too: keys seen ~10,000 x 0.4
# KB, accounts seen ~10,000 x 0.2 KB, callers ~10,000 x 1.2 KB (docs/gateway.md).
PARSED_MAX = 10_000
# Final: compiled, `math.inf` would be a module attribute read at every call.
_NEVER: Final = math.inf
# The memo's compare of a client's Authorization with the last caller's (another client's
# key, maybe): constant-time, as every secret compare here. Final: a C static, compiled.
_same: Final = hmac.compare_digest


class Caller:
    """What one (Authorization, account header) pair resolved to. Valid while the resolver's
    generation holds (any store change, or a failed refresh, moves it) and the key has not
    expired."""

    __slots__ = ("account", "account_b", "account_name", "app", "auth", "block", "compiled",
                 "expires", "generation", "logged", "mode", "pending", "tally")

    def __init__(self, app: str, mode: str, account: str, compiled: Any, auth: bytes | None,
                 expires: float, generation: int, account_b: bytes | None = None,
                 account_name: bytes = b"stripe-account",
                 pending: EffectiveGrant | None = None) -> None:
        self.app = app
        # The install's grant when a version awaits approval: a denial then says so.
        self.pending = pending
        self.mode = mode
        self.account = account
        self.compiled = compiled
        self.auth = auth  # the upstream's Authorization value (None: no key for this mode)
        self.expires = expires
        self.generation = generation
        # Its allowed calls' decisions counter, set by the fast path at its first.
        self.tally: Tally | None = None
        if account_b is None:
            account_b = account.encode("ascii")
        if not account_name:
            account_b = b""  # the API names no account (api.toml account_header = "")
        self.account_b = account_b  # the account header's value sent upstream ("": none)
        self.account_name = account_name  # that header's name (the API profile's)
        # The upstream Authorization and account header lines (the fast path's).
        self.block = b"" if auth is None else (
            b"authorization: " + auth + b"\r\n"
            + (account_name + b": " + account_b + b"\r\n" if account_b else b""))
        self.logged = (f',"app":{quoted(app)},"mode":{quoted(mode)},'
                       f'"account":{quoted(account)},"outcome":"allowed"')


class Refusal:
    """A call refused before it was decided: its answer and what the log line says."""

    __slots__ = ("account", "app", "body", "counted", "extra", "level", "mode", "outcome",
                 "status")

    def __init__(self, status: int, body: bytes, outcome: str, *, level: str = "info",
                 app: str | None = None, mode: str | None = None, account: str | None = None,
                 counted: bool = False, extra: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body
        self.outcome = outcome
        self.level = level
        self.app = app
        self.mode = mode
        self.account = account
        self.counted = counted  # counted in the decisions metric under its app
        self.extra = extra  # more fields for the log line

    def fill(self, rec: dict[str, Any]) -> None:
        """Write what was known when refused into the log record, in the usual order."""
        if self.app is not None:
            rec["app"] = self.app
            rec["mode"] = self.mode
        if self.account is not None:
            rec["account"] = self.account
        if self.extra:
            rec.update(self.extra)


class Ruling:
    """What `Calls.rule` decided: the engine's Decision, the body to forward, and the
    seconds the engine took."""

    __slots__ = ("body", "decision", "seconds")

    def __init__(self, body: Body, decision: Any, seconds: float) -> None:
        self.body = body
        self.decision = decision
        self.seconds = seconds


# `resolve(..., wait=False)` on a cache miss: the caller must take the full path. A
# Refusal so that it is of the type `resolve` returns (the compiled build checks returned
# types); only ever compared by identity, never sent.
NOT_NOW = Refusal(503, b"", "not_now")

NO_KEY = Refusal(401, errors.no_key(), "unauthenticated")
NOT_A_KEY = Refusal(401, errors.bad_key(""), "unauthenticated")  # refused unread, unechoed


def store_down(error: Exception, app: str | None = None, mode: str | None = None,
               account: str | None = None) -> Refusal:
    return Refusal(503, errors.error_body(
        "api_error", "The permission store is unavailable; the request was not forwarded."),
        "store_unavailable", level="error", app=app, mode=mode, account=account,
        extra={"store_error": str(error)})


class HeaderValues:
    """Clients send the same few header values over and over: each is parsed once. Only
    values that hold what they claim (a well-formed key, an account id) and are short enough
    to be one (presented_key refuses long values unread; a padded account is trimmed and
    used, not kept) are stored, so a flood of junk or padded headers is parsed, never
    stored: each cache is bounded in entries and so in bytes."""

    __slots__ = ("accounts", "keys", "schemes")

    def __init__(self, schemes: frozenset[bytes] = BOTH_SCHEMES) -> None:
        self.keys: dict[bytes, str] = {}
        self.accounts: dict[bytes, str] = {}
        self.schemes = schemes  # the Authorization schemes the API's profile accepts

    def key(self, header: bytes | None) -> str | None:
        if header is None:
            return None
        found = self.keys.get(header)
        if found is None:
            found = presented_key(header, self.schemes)
            if found:
                if len(self.keys) >= PARSED_MAX:
                    self.keys.clear()
                self.keys[header] = found
        return found

    def account(self, header: bytes) -> str | None:
        found = self.accounts.get(header)
        if found is None:
            found = account_header(header)
            if found is None or len(header) > MAX_ACCOUNT_HEADER:
                return found  # not an account id, or padded: never stored
            if len(self.accounts) >= PARSED_MAX:
                self.accounts.clear()
            self.accounts[header] = found
        return found


class Calls:
    """Caller resolution and the decision, for both paths."""

    def __init__(self, resolver: Resolver, decide: Callable[..., Any],
                 auth_by_mode: dict[str, bytes], headers: HeaderValues,
                 profile: ApiProfile = STRIPE_PROFILE) -> None:
        self.resolver = resolver
        self.decide = decide  # the engine's decide (tests may wrap it)
        self.auth_by_mode = auth_by_mode
        self.headers = headers
        self.callers: dict[tuple[bytes, bytes | None], Caller] = {}
        # The pair asked last and its Caller, `callers`' entry: asked before the dictionary.
        self._last: Caller | None = None
        self._last_auth = b""
        self._last_account: bytes | None = None
        # The API profile's choices, compiled once (nothing below branches on the profile).
        self.account_name = profile.account_header_lower
        # The 401's challenges: one per scheme the API takes keys in (Stripe's: Bearer).
        self.challenges: list[tuple[bytes, bytes]] = [
            (b"www-authenticate", b'Bearer realm="permgate"')] if profile.stripe else [
            (b"www-authenticate", f'{s.capitalize()} realm="permgate"'.encode("ascii"))
            for s in profile.auth_schemes]
        shown = profile.account_header or "account"
        self.stripe_v2 = profile.stripe  # Stripe's /v2 rules (JSON, no include) apply
        self.body_rules = STRIPE_BODY if profile.stripe else body_rules(profile)
        self._bad_account = errors.error_body(
            "invalid_request_error", f"The {shown} header must be an account id (acct_...).",
            code="account_invalid")
        self._no_account = errors.error_body(
            "invalid_request_error",
            f"Requests made with the app's secret key must name the account they act on with "
            f"the {shown} header ({shown}: acct_...)." if profile.account_header else
            "This API names no account in a header: requests must use the install's "
            "restricted key (rk_...), which carries its account.", code="account_invalid")

    def cached(self, authorization: bytes, account_raw: bytes | None) -> Caller | None:
        """The pair's Caller while it holds (dictionary lookups only), else None."""
        # The last pair first: a client repeats its headers call after call, and comparing
        # them costs a fraction of hashing them for the dictionary (a key's Authorization is
        # about 110 bytes: about 1,100 instructions a call, compiled; callgrind). The
        # Authorization is compared in constant time: the last pair may be another client's,
        # and `!=` (memcmp, first byte first) would time a guess against its key, which the
        # dictionary never does (a guess meets a key only on an equal keyed hash).
        caller = self._last
        if caller is None or account_raw != self._last_account \
                or not _same(authorization, self._last_auth):
            caller = self.callers.get((authorization, account_raw))
            if caller is None:
                return None
            self._remembered(authorization, account_raw, caller)
        resolver = self.resolver
        if caller.generation != resolver.generation or (
                caller.expires != _NEVER and caller.expires <= resolver.clock()):
            return None
        return caller

    async def caller(self, authorization: bytes | None,
                     account_raw: bytes | None) -> Caller | Refusal:
        """The full path's way: the cached Caller, or `resolve` awaiting the store."""
        if authorization is not None:
            caller = self.cached(authorization, account_raw)
            if caller is not None:
                return caller
        return await self.resolve(authorization, account_raw)

    def resolve_now(self, authorization: bytes,
                    account_raw: bytes | None) -> Caller | Refusal | None:
        """`resolve` from the caches alone; None when it would have to wait."""
        coro = self.resolve(authorization, account_raw, wait=False)
        try:
            coro.send(None)
        except StopIteration as done:
            result: Caller | Refusal = done.value
            return None if result is NOT_NOW else result
        # Unreachable: with wait=False `resolve` awaits nothing. Fail closed if it ever did.
        coro.close()
        return None

    async def resolve(self, authorization: bytes | None, account_raw: bytes | None,
                      wait: bool = True) -> Caller | Refusal:
        """key -> account -> install -> Caller, or the Refusal, in this order. With
        `wait=False` a cache miss returns NOT_NOW instead of awaiting the store."""
        headers = self.headers
        secret = headers.key(authorization)
        if secret is None:
            return NO_KEY
        if not secret:  # not key-shaped: refused unread, uncached, unechoed
            return NOT_A_KEY
        resolver = self.resolver
        generation = resolver.generation
        info = resolver.cached_key(secret)
        if info is MISS:
            if not wait:
                return NOT_NOW
            try:
                info = await resolver.authenticate(secret)
            except Exception as e:
                return store_down(e)
        if info is None:
            return Refusal(401, errors.bad_key(secret), "unauthenticated")
        app_id = info.app_id
        mode = info.mode
        asked = headers.account(account_raw) if account_raw is not None else None
        if account_raw is not None and asked is None:
            return Refusal(400, self._bad_account, "bad_request", app=app_id, mode=mode)
        if info.kind == "restricted":
            account = info.account
            if asked is not None and asked != account:
                return Refusal(403, errors.error_body(
                    "invalid_request_error",
                    f"This restricted key belongs to the install of '{app_id}' on account "
                    f"'{account}'; it cannot act on account '{asked}'.",
                    code="account_invalid"), "wrong_account", app=app_id, mode=mode)
        else:
            account = asked
            if account is None:
                return Refusal(400, self._no_account, "no_account", app=app_id, mode=mode)
        assert account is not None  # a restricted key always carries its account
        install: Install | None = resolver.cached_install(app_id, account, mode)
        if install is MISS:
            if not wait:
                return NOT_NOW
            try:
                install = await resolver.install(app_id, account, mode)
            except Exception as e:
                return store_down(e, app_id, mode, account)
        if install is None:
            return Refusal(403, errors.error_body(
                "invalid_request_error",
                f"The app '{app_id}' is not installed on account '{account}' in {mode} mode, "
                "or it was uninstalled. An administrator of that account must install it "
                "(and accept its permissions) before the app can make requests for it.",
                code="account_invalid"), "not_installed", app=app_id, mode=mode,
                account=account, counted=True)
        grant = install.grant
        caller = Caller(app_id, mode, account, install.compiled, self.auth_by_mode.get(mode),
                        resolver.key_expiry(secret), generation,
                        account_name=self.account_name,
                        pending=grant if grant.status == "pending_approval" else None)
        self.remember(authorization, account_raw, caller)  # type: ignore[arg-type]
        return caller

    def remember(self, authorization: bytes, account_raw: bytes | None,
                 caller: Caller) -> None:
        # Kept only for short values (the key's are: it parsed): bounded in bytes.
        if account_raw is not None and len(account_raw) > MAX_ACCOUNT_HEADER:
            return
        callers = self.callers
        if len(callers) >= PARSED_MAX:
            callers.clear()
        callers[(authorization, account_raw)] = caller
        self._remembered(authorization, account_raw, caller)

    def _remembered(self, authorization: bytes, account_raw: bytes | None,
                    caller: Caller) -> None:
        """`callers`' entry for the pair (kept in step with it: never an older Caller)."""
        self._last = caller
        self._last_auth = authorization
        self._last_account = account_raw

    def rule(self, caller: Caller, method: str, raw_path: bytes, query: bytes, target: bytes,
             ctypes: list[bytes], encodings: list[bytes], body: bytes) -> Ruling:
        """The decision: the body and the query checked (BodyRefused: a 400 that nothing
        decided), then the engine on the caller's grant."""
        decided = decide_body(method, raw_path, ctypes, encodings, body, self.body_rules)
        if query and raw_path[:4] == b"/v2/" and self.stripe_v2:
            check_v2_query(query)
        t0 = perf_counter()
        # No account here: the engine then answers from its caches, and the message naming
        # the account is composed only for a refusal.
        decision = self.decide(method, target.decode("latin-1"), decided.form, caller.compiled)
        return Ruling(decided, decision, perf_counter() - t0)

