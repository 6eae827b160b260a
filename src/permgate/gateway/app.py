"""The gateway: auth -> install -> decide -> forward, and the ASGI apps beside it.

The proxy path (`Gateway.proxy`) is server-neutral: it takes the request's parts and a
`Reply` to answer with, so the protocol server (`native.py`) calls it without building an
ASGI scope, and any ASGI server reaches it through `Gateway.__call__`. It does no framework
routing and builds no request objects: one pass over the headers, dict lookups in the
resolver's caches, one engine call, one upstream write.

Everything else (health and metrics, which are the gateway's own, and the admin API,
consent pages, OAuth endpoints and upstream webhooks, which its composer `permgate.serve`
hands it as `Mount`s) is an ASGI application reached through the mount table
(`Gateway.mount`): the gateway imports none of those services (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

from permgate.gateway import errors
from permgate.gateway.auth import account_header, presented_key
from permgate.gateway.body import BodyRefused, check_v2_query, decide_body
from permgate.gateway.config import Settings, key_mode, upstream_keys
from permgate.gateway.logs import JsonLog, RequestIds, quoted
from permgate.gateway.metrics import Metrics, SharedMetrics
from permgate.gateway.notify import conninfo, listen
from permgate.gateway.resolver import MISS, GrantStore, Install, Resolver
from permgate.gateway.upstream import Origin, Pool, Response, UpstreamError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("permgate.gateway")

# Request headers worth sending upstream; everything else (cookies, proxies' headers,
# Stripe-Context, which could name another account) stays here.
# Content-Type is not among them: the gateway writes its own for the body it decided on.
_FORWARD = frozenset({
    b"stripe-version", b"idempotency-key", b"user-agent",
    b"x-stripe-client-user-agent", b"accept", b"accept-encoding", b"accept-language",
})
# Hop-by-hop response headers (RFC 9110 7.6.1) and the ones we set ourselves (the length:
# the server writing the answer sets it for the body it sends).
_DROP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"te",
    b"trailer", b"upgrade", b"request-id", b"content-length",
})
CONTROL_PATHS = (b"/healthz", b"/readyz", b"/metrics")
_PARSED_MAX = 10_000
# Request headers, all together and in number: the SDKs send about 1.5 KB in 10 headers.
# The server buffers the head first (granian: up to 64 KiB, server.MAX_REQUEST_HEAD).
MAX_HEADER_BYTES = 16_384
MAX_HEADERS = 64


Headers = list[tuple[bytes, bytes]]


class Reply(Protocol):
    """How the proxy path answers, whichever server carries it."""

    async def send(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole answer; `headers` has no Content-Length (the server adds it)."""

    async def start(self, status: int, headers: Headers) -> None:
        """A streamed answer's head (with the upstream's Content-Length, if it sent one)."""

    async def write(self, chunk: bytes) -> None: ...

    async def end(self) -> None: ...


class AsgiReply:
    """`Reply` over an ASGI `send`."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(self, status: int, headers: Headers, body: bytes) -> None:
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers: Headers) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class Mount:
    """One ASGI app the composer (permgate.serve) hands the gateway to serve beside the
    proxy. `invalidates`: a change made through it (any method but GET/HEAD) drops this
    worker's caches before the answer leaves, so it binds at once (admin API, consent)."""

    path: str
    app: ASGIApp
    prefix: bool = False
    invalidates: bool = False


class Caller:
    """What one (Authorization, Stripe-Account) pair resolved to, for `Gateway.admit`:
    clients send the same two values on call after call. Valid while the resolver's
    generation holds (any store change, or a failed refresh, moves it) and the key has not
    expired: then every lookup `proxy` makes would give the same answers."""

    __slots__ = ("account", "app", "block", "compiled", "expires", "generation", "logged",
                 "metric", "mode")

    def __init__(self, app: str, mode: str, account: str, compiled: Any, block: bytes,
                 expires: float, generation: int) -> None:
        self.app = app
        self.mode = mode
        self.account = account
        self.compiled = compiled
        self.block = block  # the upstream Authorization and Stripe-Account header lines
        self.expires = expires
        self.generation = generation
        self.metric = (app, "allowed")
        self.logged = (f',"app":{quoted(app)},"mode":{quoted(mode)},'
                       f'"account":{quoted(account)},"outcome":"allowed"')


class Admitted:
    """A call `Gateway.admit` let through: what to send upstream and what to count and log
    once its answer is in."""

    __slots__ = ("caller", "data", "decided", "path", "rid", "started")

    def __init__(self, rid: str, data: bytes, caller: Caller, path: bytes, started: float,
                 decided: float) -> None:
        self.rid = rid
        self.data = data
        self.caller = caller
        self.path = path
        self.started = started  # also when it left for upstream: admit takes microseconds
        self.decided = decided  # seconds the engine took (0 for a repeat: a set lookup)


def relay_headers(rid: str, upstream: Headers) -> tuple[Headers, bytes | None]:
    """The answer's headers as the client gets them (ours first, hop-by-hop ones dropped,
    the upstream's request id renamed) and the upstream's Content-Length, if any."""
    out: Headers = [(b"request-id", rid.encode("ascii"))]
    length = None
    for name, value in upstream:
        if name in _DROP:
            if name == b"request-id":
                out.append((b"upstream-request-id", value))
            elif name == b"content-length":
                length = value
        else:
            out.append((name, value))
    return out, length


def relay_lines(rid: str, upstream: Headers, out: list[bytes]) -> bytes | None:
    """`relay_headers` written as header lines onto `out` (the fast path's answer head, in
    one pass); returns the upstream's Content-Length, if any."""
    out += (b"request-id: ", rid.encode("ascii"), b"\r\n")
    length = None
    for name, value in upstream:
        if name in _DROP:
            if name == b"request-id":
                out += (b"upstream-request-id: ", value, b"\r\n")
            elif name == b"content-length":
                length = value
        else:
            out += (name, b": ", value, b"\r\n")
    return length


# Request headers about a body: the fast path leaves them to `proxy` (but one Content-Type).
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding",
                           b"transfer-encoding"})


# Calls the engine allowed, as (caller, target): a GET without a body is decided on its
# target and grant alone, and a caller is one grant, so a repeat is a set lookup. A caller
# is replaced (never changed) when anything it stands for may have: its entries then match
# nothing. Bounded in entries and in bytes (long targets are decided each time).
_ALLOWED_MAX = 50_000
_ALLOWED_TARGET = 512


# What to mount, given the opened store: the gateway knows no service above it, its
# composer (permgate/serve.py) decides (docs/architecture.md).
Compose = Callable[[GrantStore], Iterable[Mount]]


class Gateway:
    def __init__(
        self,
        settings: Settings,
        open_store: Callable[[], GrantStore],
        compose: Compose | None = None,
        *,
        enforce: bool = True,
    ) -> None:
        self.settings = settings
        self.open_store = open_store
        self.compose = compose
        self.metrics = Metrics()
        self.shared_metrics = SharedMetrics.from_env(self.metrics)
        self.ids = RequestIds()
        self.log = JsonLog()
        # Off only in benchmarks that build their own Gateway (bench/gateway/variants.py):
        # no setting or flag of the product turns enforcement off.
        self.enforce = enforce
        self.report_only = settings.report_only
        self.body_limit = settings.body_limit
        self.access_log = settings.access_log
        self.auth_by_mode: dict[str, bytes] = {
            mode: b"Bearer " + key.encode("ascii")
            for mode, key in upstream_keys(settings).items()
        }
        # Sandboxes are test-mode accounts upstream: a sandbox install's restricted key
        # is forwarded with the test key.
        if "test" in self.auth_by_mode:
            self.auth_by_mode["sandbox"] = self.auth_by_mode["test"]
        self.metrics_tokens = tuple(
            t.encode("utf-8") for t in (settings.metrics_token, settings.admin_token) if t)
        self.store: GrantStore | None = None
        self.resolver: Resolver | None = None
        self.pool: Pool | None = None
        self.decide: Callable[..., Any] | None = None
        self._keys_seen: dict[bytes, str | None] = {}
        self._callers: dict[tuple[bytes, bytes | None], Caller] = {}
        self._allowed: set[tuple[Caller, bytes]] = set()
        self._allowed_generation = 0
        self._accounts_seen: dict[bytes, str | None] = {}
        # The mount table: raw paths served by ASGI apps instead of the proxy path.
        self.exact_mounts: dict[bytes, ASGIApp] = {}
        self.prefix_mounts: dict[bytes, ASGIApp] = {}
        self._prefixes: tuple[bytes, ...] = ()

    # -- the mount table ---------------------------------------------------------------------
    def mount(self, path: str, app: ASGIApp, *, prefix: bool = False) -> None:
        """Serve `path` (exactly, or with `prefix=True` also every `path/...`) with an ASGI
        app, on every server, before the proxy path sees it. The app gets the scope as the
        server made it (full path, empty root_path). Paths under /v1 and /v2 may be mounted
        too (e.g. `/v1/oauth/token`): a mount always wins over the proxy."""
        raw = path.rstrip("/").encode("ascii") if prefix else path.encode("ascii")
        if not raw.startswith(b"/"):
            raise ValueError(f"mount path must start with '/': {path!r}")
        if prefix:
            self.prefix_mounts[raw] = app
            self._prefixes = tuple(p + b"/" for p in self.prefix_mounts)
        else:
            self.exact_mounts[raw] = app

    def mounted(self, raw_path: bytes) -> ASGIApp | None:
        """The ASGI app serving `raw_path`, or None for the proxy path (dict and tuple
        lookups only: every API request asks)."""
        app = self.exact_mounts.get(raw_path)
        if app is not None:
            return app
        if raw_path.startswith(self._prefixes):
            for p, papp in self.prefix_mounts.items():
                if raw_path.startswith(p + b"/"):
                    return papp
        return self.prefix_mounts.get(raw_path)

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        import permgate  # the engine loads its tables here, once per worker

        engine = permgate.engine
        known = engine.catalog.permissions

        def compile_grant(names: Any) -> Any:
            # Names the catalog no longer knows grant nothing (fail closed).
            return engine.grant(n for n in names if n in known)

        self.decide = engine.decide
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(None, self.open_store)
        # SQLAlchemy's engine: its URL keeps the password, which the store's `url` hides.
        db_engine = getattr(self.store, "engine", None)
        sqlite_path = None
        if db_engine is not None and db_engine.url.get_backend_name() == "sqlite":
            name = db_engine.url.database
            if name and name != ":memory:" and not name.startswith("file:"):
                sqlite_path = os.path.abspath(name)
        self.resolver = resolver = Resolver(
            self.store, compile_grant, self.settings.refresh_interval,
            sqlite_path=sqlite_path)
        dsn = None if db_engine is None else conninfo(db_engine.url)
        await resolver.start(
            None if dsn is None else (lambda: listen(dsn, resolver.invalidate)))
        assert self.settings.upstream is not None
        self.pool = Pool(
            Origin(self.settings.upstream), self.settings.pool_size,
            self.settings.connect_timeout, self.settings.upstream_timeout,
            self.settings.pool_per_app,
        )
        if self.shared_metrics is not None:
            self.shared_metrics.start()

        # The gateway's own paths, then what its composer (permgate/serve.py) mounts:
        # docs/gateway.md lists them all.
        for path in CONTROL_PATHS:
            self.mount(path.decode("ascii"), self.control)
        for m in self.compose(self.store) if self.compose is not None else ():
            self.mount(m.path, self._invalidating(m.app) if m.invalidates else m.app,
                       prefix=m.prefix)
        # The engine's tables and everything loaded so far live as long as the process: out
        # of the collector's sight, a full collection no longer walks them (measured: p99
        # went from ~100 ms to a few ms under load, bench/bench_gateway.py).
        gc.collect()
        gc.freeze()
        self.log.write("gateway.started", upstream=self.settings.upstream,
                       enforce=self.enforce, report_only=self.report_only)

    async def shutdown(self) -> None:
        self.log.flush()
        if self.shared_metrics is not None:
            self.shared_metrics.stop()
        if self.resolver is not None:
            await self.resolver.stop()
        if self.pool is not None:
            self.pool.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI entry (granian, uvicorn; the protocol server calls proxy() directly) ----------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
            app = self.mounted(raw_path)
            if app is not None:
                await app(scope, receive, send)
                return

            async def read() -> bytes | None:
                return await self.read_body(receive)

            await self.proxy(scope["method"], raw_path, scope["query_string"],
                             scope["headers"], read, AsgiReply(send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def proxy(
        self, method: str, raw_path: bytes, query: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        read_body: Callable[[], Awaitable[bytes | None]], reply: Reply,
    ) -> None:
        """One API call. `headers`: lower-case names; `read_body` is awaited only once the
        call got that far (the whole body, or None past the body limit)."""
        started = perf_counter()
        rid = self.ids.new()
        if not method.isupper():
            method = method.upper()  # the engine decides on the upper-case form: send that
        target = raw_path + b"?" + query if query else raw_path
        authorization = account_raw = length = None
        forward: list[tuple[bytes, bytes]] = []
        ctypes: list[bytes] = []
        encodings: list[bytes] = []
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            if name in _FORWARD:
                forward.append((name, value))
            elif name == b"authorization":
                authorization = value
            elif name == b"stripe-account":
                account_raw = value
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                ctypes.append(value)
            elif name == b"content-encoding":
                encodings.append(value)
        rec: dict[str, Any] = {"request_id": rid, "method": method,
                               "path": raw_path[:256].decode("latin-1")}
        if b"{" in raw_path or b"}" in raw_path:
            # Not valid in a request URI (RFC 3986); the router reads "{id}" as a template.
            return await self.refuse(reply, rec, started, 400, errors.error_body(
                "invalid_request_error", "Invalid request path: the path has '{' or '}'.",
                code="invalid_request_path"), "bad_request")
        if size > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
            return await self.refuse(reply, rec, started, 431, errors.error_body(
                "invalid_request_error",
                f"The request headers are larger than this gateway accepts ({MAX_HEADERS} "
                f"headers, {MAX_HEADER_BYTES} bytes).", code="request_headers_too_large"),
                "too_large")
        if length is not None and (not length.isdigit() or int(length) > self.body_limit):
            return await self.refuse(reply, rec, started, 413,
                                     errors.payload_too_large(self.body_limit), "too_large")

        secret = self.parse_key(authorization)
        if not self.enforce:
            mode = key_mode(secret or "") or "test"
            body = await read_body()
            if body is None:
                return await self.refuse(reply, rec, started, 413,
                                         errors.payload_too_large(self.body_limit), "too_large")
            forward += [(b"content-type", v) for v in ctypes]
            return await self.forward(reply, rec, started, method, target, body, forward,
                                      mode, account_raw)

        assert self.resolver is not None and self.decide is not None
        if secret is None:
            return await self.refuse(reply, rec, started, 401, errors.no_key(), "unauthenticated")
        if not secret:  # not key-shaped: refused unread, uncached, unechoed
            return await self.refuse(reply, rec, started, 401, errors.bad_key(""),
                                     "unauthenticated")
        resolver = self.resolver
        try:
            info = resolver.cached_key(secret)
            if info is MISS:
                info = await resolver.authenticate(secret)
        except Exception as e:
            return await self.store_down(reply, rec, started, e)
        if info is None:
            return await self.refuse(reply, rec, started, 401, errors.bad_key(secret),
                                     "unauthenticated")
        app_id = info.app_id
        rec["app"] = app_id
        rec["mode"] = mode = info.mode
        asked = self.parse_account(account_raw) if account_raw is not None else None
        if account_raw is not None and asked is None:
            return await self.refuse(reply, rec, started, 400, errors.error_body(
                "invalid_request_error",
                "The Stripe-Account header must be an account id (acct_...).",
                code="account_invalid"), "bad_request")
        if info.kind == "restricted":
            account = info.account
            if asked is not None and asked != account:
                return await self.refuse(reply, rec, started, 403, errors.error_body(
                    "invalid_request_error",
                    f"This restricted key belongs to the install of '{app_id}' on account "
                    f"'{account}'; it cannot act on account '{asked}'.",
                    code="account_invalid"), "wrong_account")
        else:
            account = asked
            if account is None:
                return await self.refuse(reply, rec, started, 400, errors.error_body(
                    "invalid_request_error",
                    "Requests made with the app's secret key must name the account they act "
                    "on with the Stripe-Account header (Stripe-Account: acct_...).",
                    code="account_invalid"), "no_account")
        assert account is not None
        rec["account"] = account
        try:
            install: Install | None = resolver.cached_install(app_id, account, mode)
            if install is MISS:
                install = await resolver.install(app_id, account, mode)
        except Exception as e:
            return await self.store_down(reply, rec, started, e)
        if install is None:
            self.metrics.decision(app_id, "not_installed")
            return await self.refuse(reply, rec, started, 403, errors.error_body(
                "invalid_request_error",
                f"The app '{app_id}' is not installed on account '{account}' in {mode} mode, "
                "or it was uninstalled. An administrator of that account must install it "
                "(and accept its permissions) before the app can make requests for it.",
                code="account_invalid"), "not_installed")

        body = await read_body()
        if body is None:
            return await self.refuse(reply, rec, started, 413,
                                     errors.payload_too_large(self.body_limit), "too_large")
        try:
            decided = decide_body(method, raw_path, ctypes, encodings, body)
            if query and raw_path[:4] == b"/v2/":
                check_v2_query(query)
        except BodyRefused as e:
            # Never forwarded, in report-only mode too: nothing decided it.
            rec["audit"] = True
            self.metrics.decision(app_id, "bad_request")
            return await self.refuse(reply, rec, started, 400, errors.error_body(
                "invalid_request_error", str(e), e.code), "bad_request", level="warning")
        body = decided.forward
        if decided.content_type is not None:
            forward.append((b"content-type", decided.content_type))
        t0 = perf_counter()
        # No account here: the engine then answers from its caches, and the message naming
        # the account is composed only for a refusal.
        decision = self.decide(method, target.decode("latin-1"), decided.form, install.compiled)
        self.metrics.decision_seconds.observe(perf_counter() - t0)
        outcome = decision.kind
        self.metrics.decision(app_id, outcome)
        rec["outcome"] = outcome
        if not decision.allowed:
            rec["required"] = [list(g) for g in decision.required]
            rec["missing"] = [list(g) for g in decision.missing]
            rec["reason"] = message = decision.message_for(account)
            # Report-only never forwards what the engine could not parse (hostile paths).
            if not self.report_only or outcome == "bad_request":
                rec["audit"] = True
                return await self.refuse(reply, rec, started, decision.status, errors.error_body(
                    "invalid_request_error", message, decision.code, decision.param),
                    outcome, level="warning")
            rec["would_deny"] = True
            rec["audit"] = True
        return await self.forward(reply, rec, started, method, target, body, forward, mode,
                                  account.encode("ascii"))

    # Clients send the same few header values over and over: parse each once. Bounded in
    # count, and in bytes: presented_key refuses long values unread, and only values that
    # held a well-formed key are kept (a flood of junk headers is parsed, never stored).
    def parse_key(self, header: bytes | None) -> str | None:
        if header is None:
            return None
        found = self._keys_seen.get(header)
        if found is None:
            found = presented_key(header)
            if found:
                if len(self._keys_seen) >= _PARSED_MAX:
                    self._keys_seen.clear()
                self._keys_seen[header] = found
        return found

    def parse_account(self, header: bytes) -> str | None:
        found = self._accounts_seen.get(header, MISS)
        if found is MISS:
            found = account_header(header)
            if found is None:
                return None  # not an account id: never stored
            if len(self._accounts_seen) >= _PARSED_MAX:
                self._accounts_seen.clear()
            self._accounts_seen[header] = found
        return found  # type: ignore[no-any-return]

    # -- the fast path: what `proxy` does for the common call, without awaiting anything ---
    def admit(self, method: str, raw_path: bytes, query: bytes,
              headers: Sequence[tuple[bytes, bytes]]) -> Admitted | None:
        """`proxy`'s way through for a GET without a body whose key, account and install
        are in the resolver's caches and which the engine allows: the upstream request,
        from dictionary and set operations only. None for anything else (a miss, a refusal,
        a body's headers, report-only's would-deny): `proxy` then handles the same call
        from its start, so this only ever takes a path `proxy` would take too
        (tests/gateway/test_fast_path.py holds the two side by side). No side effects but
        filling its own cache of callers."""
        if method != "GET" or len(headers) > MAX_HEADERS or b"{" in raw_path \
                or b"}" in raw_path:
            return None
        started = perf_counter()
        authorization = account_raw = None
        forward: list[bytes] = []
        size = 0
        typed = False
        for name, value in headers:
            size += len(name) + len(value)
            if name in _FORWARD:
                forward += (name, b": ", value, b"\r\n")
            elif name == b"authorization":
                authorization = value
            elif name == b"stripe-account":
                account_raw = value
            elif name in _BODY_HEADERS:
                # One Content-Type without a body is dropped by `decide_body` (stripe-node
                # sends one on every GET); anything more about a body is its business.
                if name != b"content-type" or typed:
                    return None
                typed = True
        if size > MAX_HEADER_BYTES or authorization is None or (typed and not self.enforce):
            return None
        caller = self._callers.get((authorization, account_raw))
        resolver = self.resolver
        assert resolver is not None and self.pool is not None
        if caller is None or caller.generation != resolver.generation or (
                caller.expires != math.inf and caller.expires <= resolver.clock()):
            caller = self._caller(authorization, account_raw)
            if caller is None:
                return None
        target = raw_path + b"?" + query if query else raw_path
        decided = 0.0
        if self.enforce:
            if query and raw_path[:4] == b"/v2/":
                try:
                    check_v2_query(query)
                except BodyRefused:
                    return None
            seen = (caller, target)
            allowed = self._allowed
            if seen not in allowed:
                assert self.decide is not None
                t0 = perf_counter()
                if not self.decide(method, target.decode("latin-1"), None,
                                   caller.compiled).allowed:
                    return None
                decided = perf_counter() - t0
                if len(target) <= _ALLOWED_TARGET:
                    if len(allowed) >= _ALLOWED_MAX:
                        allowed.clear()
                    allowed.add(seen)
        pool = self.pool
        return Admitted(self.ids.new(), b"".join((
            b"GET ", pool.origin.prefix, target, pool.host_line, *forward, caller.block,
            b"\r\n")), caller, raw_path, started, decided)

    def _caller(self, authorization: bytes, account_raw: bytes | None) -> Caller | None:
        """The pair's Caller from the resolver's caches (`proxy`'s checks, in its order),
        or None when any of them misses or would refuse."""
        resolver = self.resolver
        assert resolver is not None
        secret = self.parse_key(authorization)
        if not secret:
            return None
        generation = resolver.generation
        if generation != self._allowed_generation:
            # Every caller made before is stale: their decisions go (memory, not safety).
            self._allowed.clear()
            self._allowed_generation = generation
        if self.enforce:
            info = resolver.cached_key(secret)
            if info is MISS or info is None:
                return None
            app_id = info.app_id
            mode = info.mode
            asked = self.parse_account(account_raw) if account_raw is not None else None
            account: str | None
            if info.kind == "restricted":
                account = info.account
                if account is None or (account_raw is not None and asked != account):
                    return None
            elif asked is None:
                return None
            else:
                account = asked
            install = resolver.cached_install(app_id, account, mode)
            if install is MISS or install is None:
                return None
            compiled = install.compiled
            account_b: bytes | None = account.encode("ascii")
            expires = resolver.key_expiry(secret)
        else:  # bench/gateway/variants.py's no-enforce: forwarded as is
            mode = key_mode(secret) or "test"
            app_id = account = ""
            compiled = None
            account_b = account_raw
            expires = math.inf
        auth = self.auth_by_mode.get(mode)
        if auth is None:
            return None
        block = b"authorization: " + auth + b"\r\n"
        if account_b is not None:
            block += b"stripe-account: " + account_b + b"\r\n"
        caller = Caller(app_id, mode, account, compiled, block, expires, generation)
        if len(self._callers) >= _PARSED_MAX:
            self._callers.clear()
        self._callers[(authorization, account_raw)] = caller
        return caller

    def _decided(self, admitted: Admitted, head_at: float) -> None:
        """What `proxy` counts once it decided and the upstream's head came (`head_at`,
        0 when none did): every admitted call counts this, however it ends."""
        m = self.metrics
        if head_at:
            m.upstream_seconds.observe(head_at - admitted.started)
        if self.enforce:
            m.decision_seconds.observe(admitted.decided)
            decisions = m.decisions
            metric = admitted.caller.metric
            decisions[metric] = decisions.get(metric, 0) + 1

    def finish(self, admitted: Admitted, status: int, head_at: float) -> None:
        """Count and log an admitted call once its answer went out."""
        self._decided(admitted, head_at)
        self.metrics.response(status)
        if self.access_log:
            self.log.allowed(admitted.rid, admitted.path, admitted.caller.logged, status,
                             perf_counter() - admitted.started)

    def fast_cut(self, admitted: Admitted, e: UpstreamError, head_at: float) -> None:
        """An admitted call whose answer broke off after its head went out (`relay`'s case:
        the client sees a cut-off body)."""
        self._decided(admitted, head_at)
        self.metrics.upstream_error("timeout" if e.timeout else "reset")
        self.log.write("request.cut_off", "error", request_id=admitted.rid,
                       path=admitted.path[:256].decode("latin-1"), upstream_error=e.detail)

    async def fast_failed(self, reply: Reply, admitted: Admitted, e: UpstreamError,
                          head_at: float) -> None:
        """An admitted call that got no (whole) answer, none of it sent: the record `proxy`
        would have written. Its 502 or 504 is sent even when the upstream's head had come:
        the fast path holds an answer back until 256 KiB of it are in, where `proxy` would
        have sent the head and cut the body off."""
        rec: dict[str, Any] = {"request_id": admitted.rid, "method": "GET",
                               "path": admitted.path[:256].decode("latin-1")}
        caller = admitted.caller
        if self.enforce:
            rec.update(app=caller.app, mode=caller.mode, account=caller.account,
                       outcome="allowed")
        self._decided(admitted, head_at)
        await self.upstream_failed(reply, rec, admitted.started, e,
                                   kind="reset" if head_at else None)

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is not read)."""
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self.body_limit else None
        parts = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def forward(
        self, reply: Reply, rec: dict[str, Any], started: float, method: str, target: bytes,
        body: bytes, headers: list[tuple[bytes, bytes]], mode: str, account: bytes | None,
    ) -> None:
        assert self.pool is not None
        auth = self.auth_by_mode.get(mode)
        if auth is None:
            return await self.refuse(reply, rec, started, 503, errors.error_body(
                "api_error", f"This gateway has no upstream key for {mode} mode."),
                "no_upstream_key", level="error")
        headers.append((b"authorization", auth))
        if account is not None:
            headers.append((b"stripe-account", account))
        t0 = perf_counter()
        try:
            response = await self.pool.request(method.encode("ascii"), target, headers, body,
                                               owner=rec.get("app"))
        except UpstreamError as e:
            return await self.upstream_failed(reply, rec, started, e)
        self.metrics.upstream_seconds.observe(perf_counter() - t0)
        await self.relay(reply, rec, response)
        status = response.status
        self.metrics.response(status)
        if self.access_log or "would_deny" in rec:
            rec["status"] = status
            rec["ms"] = round((perf_counter() - started) * 1000, 3)
            self.log.request("warning" if "would_deny" in rec else "info", rec)

    async def relay(self, reply: Reply, rec: dict[str, Any], response: Response) -> None:
        out, length = relay_headers(rec["request_id"], response.headers)
        if response.complete:
            await reply.send(response.status, out, response.take_all())
            return
        if length is not None:
            out.append((b"content-length", length))
        await reply.start(response.status, out)
        finished = False
        try:
            async for chunk in response.body():
                await reply.write(chunk)
            finished = True
        except UpstreamError as e:
            # Headers are gone already: the client sees a cut-off body, as with any proxy.
            rec["upstream_error"] = e.detail
            self.metrics.upstream_error("timeout" if e.timeout else "reset")
            raise
        finally:
            if not finished:
                response.abort()  # a half-read upstream connection cannot be reused
        await reply.end()

    async def upstream_failed(
        self, reply: Reply, rec: dict[str, Any], started: float, e: UpstreamError,
        kind: str | None = None,
    ) -> None:
        """No answer from upstream (nothing of it sent yet): 504 or 502."""
        self.metrics.upstream_error("timeout" if e.timeout else kind or "connect")
        rec["upstream_error"] = e.detail
        if e.timeout:
            return await self.refuse(reply, rec, started, 504, errors.gateway_timeout(
                self.settings.upstream_timeout), "upstream_timeout", level="error")
        return await self.refuse(reply, rec, started, 502, errors.bad_gateway(e.detail),
                                 "upstream_error", level="error")

    async def refuse(
        self, reply: Reply, rec: dict[str, Any], started: float, status: int, body: bytes,
        outcome: str, level: str = "info",
    ) -> None:
        headers = [*errors.JSON_HEADERS, (b"request-id", rec["request_id"].encode("ascii"))]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="permgate"'))
        await reply.send(status, headers, body)
        self.metrics.response(status)
        if outcome in ("unauthenticated",):
            self.metrics.decision("", outcome)
        rec["status"] = status
        rec.setdefault("outcome", outcome)
        rec["ms"] = round((perf_counter() - started) * 1000, 3)
        self.log.request(level, rec)

    async def store_down(
        self, reply: Reply, rec: dict[str, Any], started: float, error: Exception
    ) -> None:
        rec["store_error"] = str(error)
        return await self.refuse(reply, rec, started, 503, errors.error_body(
            "api_error", "The permission store is unavailable; the request was not forwarded."),
            "store_unavailable", level="error")

    # -- control endpoints -------------------------------------------------------------------
    async def control(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/metrics":
            # Metrics name every app that called: operators only (the metrics or admin token).
            if not self.metrics_tokens:
                await _plain(send, 404, errors.error_body(
                    "invalid_request_error",
                    "Metrics are disabled on this gateway: set PERMGATE_METRICS_TOKEN (or "
                    "PERMGATE_ADMIN_TOKEN) and scrape with that bearer token."),
                    b"application/json")
                return
            if not self.metrics_authorized(scope):
                body = errors.error_body(
                    "invalid_request_error",
                    "Metrics need 'Authorization: Bearer <metrics or admin token>'.")
                await send({"type": "http.response.start", "status": 401, "headers": [
                    *errors.JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii")),
                    (b"www-authenticate", b'Bearer realm="permgate-metrics"')]})
                await send({"type": "http.response.body", "body": body})
                return
            shared = self.shared_metrics
            body = (self.metrics if shared is None else shared).render()
            await _plain(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            await _plain(send, 200, b'{"status":"ok"}\n', b"application/json")
        else:
            checks = await self.readiness()
            ok = all(v == "ok" for v in checks.values())
            text = json.dumps({"status": "ready" if ok else "not_ready", "checks": checks})
            await _plain(send, 200 if ok else 503, text.encode() + b"\n", b"application/json")

    def metrics_authorized(self, scope: Scope) -> bool:
        given = [v for n, v in scope["headers"] if n == b"authorization"]
        if len(given) != 1 or given[0][:7].lower() != b"bearer ":
            return False
        token = given[0][7:].strip()
        ok = False
        for want in self.metrics_tokens:  # no early exit: the time says nothing of which
            ok |= hmac.compare_digest(token, want)
        return ok

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.resolver is not None
            await asyncio.wait_for(self.resolver.check_database(), 2.0)
            checks["database"] = "ok"
        except Exception as e:
            checks["database"] = f"error: {e or type(e).__name__}"
        try:
            assert self.pool is not None
            o = self.pool.origin
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(o.host, o.port), self.settings.connect_timeout)
            writer.close()
            checks["upstream"] = "ok"
        except Exception as e:
            checks["upstream"] = f"error: {e or type(e).__name__}"
        return checks

    def _invalidating(self, app: ASGIApp) -> ASGIApp:
        """An app beside the proxy (admin API, consent pages) whose changes bind at once."""

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["method"] in ("GET", "HEAD"):
                await app(scope, receive, send)
                return
            await app(scope, receive, self._invalidate_on_answer(send))

        return call

    def _invalidate_on_answer(self, send: Send) -> Send:
        resolver = self.resolver

        async def send_after_invalidating(message: Message) -> None:
            # A change made through this gateway binds it before the caller hears back;
            # other workers and replicas follow on their next refresh.
            if message["type"] == "http.response.start" and resolver is not None:
                resolver.invalidate()
            await send(message)

        return send_after_invalidating


async def _plain(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": body})
