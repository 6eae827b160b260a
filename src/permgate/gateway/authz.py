"""`permgate authz`: Envoy's HTTP external authorizer, deciding exactly as `permgate serve`.

Envoy's `ext_authz` filter (plain HTTP service, no path prefix) sends us a check request
carrying the client's method, raw request target, headers and whole body. That request
runs the full path (`proxy.FullPath.proxy`): the same bounds, caller resolution
(`calls.Calls.resolve`), body and query checks and engine decision (`Calls.rule`), the
same caches, metrics and log lines. Only its last step differs (`CheckPath.forward`):
instead of sending the call upstream, it answers Envoy 200 with the headers Envoy must
set on the upstream request (`allowed_upstream_headers`): the upstream key in place of
the app's, the account, our Content-Type, and `x-envoy-auth-headers-to-remove` naming
every client header `serve` would not forward. Every refusal is the status and Stripe
body `serve` answers with, which Envoy hands to the client unchanged. Anything else
(permgate down, slow, failing) is Envoy's `status_on_error` (503): fail closed.

A check answer of 2xx means "forward". So nothing but a decided call may answer 2xx on the
check listener: no mounted app is served there (the admin API, consent pages and webhook
ingest belong to a `permgate serve`), and health, readiness and metrics have a listener of
their own (`control_port`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hmac
import signal
import socket
from collections.abc import Callable
from time import perf_counter
from typing import Any

from permgate.gateway import errors
from permgate.gateway.app import Gateway
from permgate.gateway.calls import Caller
from permgate.gateway.config import Settings
from permgate.gateway.fast import Admitted, FastPath
from permgate.gateway.proxy import FORWARD, FullPath, Reply
from permgate.gateway.resolver import GrantStore

# The upstream headers a check answer sets (Envoy's `allowed_upstream_headers` must match
# exactly these) and the one that lists what Envoy must remove.
UPSTREAM_HEADERS = (b"authorization", b"stripe-account", b"content-type")
REMOVE = b"x-envoy-auth-headers-to-remove"
# Optional: the secret Envoy adds to every check (`authorization_request.headers_to_add`),
# so that nothing else that reaches the check port gets an answer (which would carry the
# upstream key). A client's own copy of it is named for removal like any other header.
TOKEN_HEADER = b"x-permgate-check"
MIN_TOKEN = 32
# With `with_request_body`, Envoy marks every check that carries a body: `false` when the
# whole body came, `true` when it was cut (`allow_partial_message: true`). It never copies
# a client's header of that name into the check.
PARTIAL_BODY = b"x-envoy-auth-partial-body"
# The check request's framing, never named for removal: Envoy frames the upstream request
# itself. Every other header (X-Forwarded-*, X-Request-Id, x-envoy-*: a client sets them
# freely) is named when serve would not forward it. Removal happens in the ext_authz
# filter, before the router adds headers of its own, so naming Envoy's check headers too
# (x-envoy-internal, x-envoy-expected-rq-timeout-ms) removes nothing Envoy needs.
_CHECK_OWN = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
# Kept upstream as the client sent them (serve forwards them too) or set by the answer.
_KEPT = FORWARD | set(UPSTREAM_HEADERS)
# Not an upstream: the pool is made (Gateway.startup makes one) but never used.
NO_UPSTREAM = "http://127.0.0.1:9"


class CheckPath(FullPath):
    """The full path, answering Envoy where `serve` forwards. A bodiless GET that serve's
    fast path would admit (`FastPath.admit`: the same checks, their results cached) is
    answered from it, counted and logged as serve's fast path does."""

    fast: FastPath | None = None
    token: bytes | None = None  # the check token Envoy adds (`--check-token-file`)

    async def proxy(self, method: str, raw_path: bytes, query: bytes,
                    headers: Any, read_body: Any, reply: Reply) -> None:
        token = self.token
        if token is not None and not _token_ok(headers, token):
            # Not Envoy: nothing is decided, and no answer carries the upstream key.
            self.metrics.response(403)
            self.log.write("authz.check_refused", "warning",
                           path=raw_path[:256].decode("latin-1"))
            return await reply.send(403, list(errors.JSON_HEADERS), errors.error_body(
                "invalid_request_error", "This check did not come from the configured Envoy "
                f"(no valid {TOKEN_HEADER.decode()} header)."))
        whole = _whole_body(headers)
        if whole is not True:
            # A check that may carry part of the body, or a body with no sign that it is
            # whole: deciding on it could allow what serve denies (a form `expand[]` past
            # the cut). Envoy answers the client this 503: fail closed.
            self.metrics.response(503)
            self.log.write("authz.partial_body", "error", path=raw_path[:256].decode(
                "latin-1"), given=whole)
            return await reply.send(503, list(errors.JSON_HEADERS), errors.error_body(
                "api_error", "Envoy must send the whole body (with_request_body, "
                "allow_partial_message: false)."))
        fast = self.fast
        if fast is not None and method == "GET":
            admitted = fast.admit(method, raw_path, query, _bodiless(headers))
            if admitted is not None:
                caller = admitted.caller
                await reply.send(200, allow(admitted.rid, caller, None, headers), b"")
                fast.finish(admitted, 200, 0.0)
                return
        # The client's headers ride along, for `forward` to name those serve would drop.
        await super().proxy(method, raw_path, query, headers, read_body,
                            _Check(reply, headers))

    async def forward(
        self, reply: Reply, rec: dict[str, Any], started: float, method: str, target: bytes,
        body: bytes, headers: list[tuple[bytes, bytes]], caller: Caller,
    ) -> None:
        if caller.auth is None:
            # The full path's own refusal (503, no upstream key): it sends nothing upstream.
            return await super().forward(reply, rec, started, method, target, body, headers,
                                         caller)
        assert isinstance(reply, _Check)
        ctype = next((v for n, v in headers if n == b"content-type"), None)  # decide_body's
        await reply.send(200, allow(rec["request_id"], caller, ctype, reply.headers), b"")
        self.metrics.response(200)
        if self.access_log or "would_deny" in rec:
            rec["status"] = 200
            rec["ms"] = round((perf_counter() - started) * 1000, 3)
            self.log.request("warning" if "would_deny" in rec else "info", rec)


def _whole_body(headers: Any) -> bool | str:
    """True when the check carries no body, or the whole one: exactly one
    `x-envoy-auth-partial-body: false` wherever there is a body. Otherwise what was given
    (for the log line)."""
    given = [v for n, v in headers if n == PARTIAL_BODY]
    if given:
        return True if given == [b"false"] else repr(given[:2])[:80]
    # No mark: Envoy sends none for a request without a body (its check then carries
    # `content-length: 0`). A check with a body and no mark is not one Envoy's body
    # buffering sent.
    for n, v in headers:
        if n == b"transfer-encoding" or (n == b"content-length" and v.strip() != b"0"):
            return "absent, with a body"
    return True


def _token_ok(headers: Any, token: bytes) -> bool:
    given = [v for n, v in headers if n == TOKEN_HEADER]
    return len(given) == 1 and hmac.compare_digest(given[0], token)


def allow(rid: str, caller: Caller, content_type: bytes | None,
          client: Any) -> list[tuple[bytes, bytes]]:
    """The allowed check's answer headers: what Envoy sets on the upstream request, and
    what it removes there."""
    assert caller.auth is not None
    out: list[tuple[bytes, bytes]] = [(b"request-id", rid.encode("ascii")),
                                      (b"authorization", caller.auth)]
    if caller.account_b:
        out.append((caller.account_name, caller.account_b))  # the API's header (--api)
    if content_type is not None:
        out.append((b"content-type", content_type))
    remove = removals(client, account=bool(caller.account_b),
                      content_type=content_type is not None,
                      account_name=caller.account_name)
    if remove:
        out.append((REMOVE, remove))
    return out


def _bodiless(headers: Any) -> Any:
    """The check of a bodiless request carries `content-length: 0` (Envoy's own): without
    it, for `FastPath.admit`, which leaves any request with a body header to the full
    path."""
    if not any(n == b"content-length" for n, _ in headers):
        return headers
    return [(n, v) for n, v in headers if n != b"content-length" or v.strip() != b"0"]


def removals(client: Any, *, account: bool, content_type: bool,
             account_name: bytes = b"stripe-account") -> bytes:
    """The client headers Envoy must drop so that the upstream sees what serve sends: every
    one serve does not forward, and the account and type when the answer sets none.
    `account_name`: the API's account header (Stripe-Account unless --api); with another
    API, a client's Stripe-Account is dropped like any header serve does not forward."""
    names: list[bytes] = []
    named: set[bytes] = set()
    for name, _ in client:
        if name in _CHECK_OWN or name in named:
            continue
        if name == account_name:
            if not account:
                names.append(name)
        elif name not in _KEPT or name == b"stripe-account" or (
                name == b"content-type" and not content_type):
            names.append(name)
            named.add(name)
    return b",".join(names)


class _Check:
    """A `Reply` that also holds the check request's headers."""

    __slots__ = ("end", "headers", "reply", "send", "start", "write")

    def __init__(self, reply: Reply, headers: Any) -> None:
        self.reply = reply
        self.headers = headers
        self.send = reply.send
        self.start = reply.start
        self.write = reply.write
        self.end = reply.end


def _never(*args: Any) -> Admitted | None:
    return None


class AuthzGateway(Gateway):
    """A Gateway whose decided calls answer Envoy: `proxy` is `CheckPath.proxy` (which
    takes serve's fast path first), the native server's upstream fast path is off, and
    nothing is mounted but the control paths (served on their own listener)."""

    check_token: bytes | None = None

    async def startup(self) -> None:
        await super().startup()
        assert self.calls is not None and self.pool is not None
        self.full = check = CheckPath(
            self.calls, self.pool, self.metrics, self.log, self.ids,
            body_limit=self.body_limit, report_only=self.report_only,
            access_log=self.access_log, upstream_timeout=self.settings.upstream_timeout,
            problem=self.profile.error_style == "problem")
        check.fast = self.fast
        check.token = self.check_token
        self.proxy = check.proxy
        # The native server's own fast path sends upstream: never here (checks answer).
        self.admit = _never
        self.control.pool = None
        self.control.upstream = False  # no upstream: readiness is the store's alone

    def listeners(self) -> tuple[Gateway, Gateway]:
        """(check, control): the check listener decides every request as a call; the
        control listener serves the control paths and answers 404 to anything else."""
        check = self._view()
        check.mounted = lambda raw_path: None
        control = self._view()
        control.proxy = _control_only
        return check, control

    def _view(self) -> AuthzGateway:
        """A shallow copy whose attributes are its own: the compiled class's `copy.copy`
        (mypyc's `__setstate__`) would share the original's `__dict__`."""
        view = copy.copy(self)
        view.__dict__ = dict(self.__dict__)
        return view


async def _control_only(method: str, raw_path: bytes, query: bytes, headers: Any,
                        read_body: Any, reply: Reply) -> None:
    await reply.send(404, list(errors.JSON_HEADERS), errors.error_body(
        "invalid_request_error",
        "This is permgate authz's control listener: /healthz, /readyz and /metrics only."))


def build(settings: Settings, open_store: Callable[[], GrantStore] | None = None,
          check_token: bytes | None = None) -> AuthzGateway:
    def default_store() -> GrantStore:
        from permgate.store import Store

        return Store.open(settings.db)

    # The upstream is Envoy's: the pool the gateway makes points nowhere and is never used.
    settings = dataclasses.replace(settings, upstream=NO_UPSTREAM)
    gateway = AuthzGateway(settings, open_store or default_store)
    gateway.check_token = check_token
    return gateway


async def serve(gateway: AuthzGateway, sock: socket.socket, control: socket.socket,
                ready: Callable[[], None] | None = None) -> None:
    """Serve checks on `sock` and the control paths on `control` until SIGTERM/SIGINT."""
    from permgate.gateway.native import NativeServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.startup()
    check_view, control_view = gateway.listeners()
    servers = []
    for view, s in ((check_view, sock), (control_view, control)):
        s.listen(4096)
        s.setblocking(False)
        server = NativeServer(view)
        await server.start(s)
        servers.append(server)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        for server in servers:
            await server.stop()
        await gateway.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def run(settings: Settings, control_port: int,
        open_store: Callable[[], GrantStore] | None = None,
        check_token: bytes | None = None) -> None:
    """Serve as `permgate serve` does (one process, or `workers` forked ones sharing the
    ports with SO_REUSEPORT), with the control paths on `control_port`."""
    from permgate.gateway.native import listen_socket
    from permgate.gateway.server import run as run_server

    settings = dataclasses.replace(settings, upstream=NO_UPSTREAM, server="native")
    shared = settings.workers > 1

    async def worker(gateway: AuthzGateway, sock: socket.socket) -> None:
        control = listen_socket(settings.host, control_port, reuse_port=shared)
        try:
            await serve(gateway, sock, control)
        finally:
            control.close()

    run_server(settings, lambda: build(settings, open_store, check_token), FACTORY, worker)


# The ASGI servers' factory by name: never used (authz runs on the native server only).
FACTORY = "permgate.serve:app_from_env"
