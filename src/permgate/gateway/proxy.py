"""The full path: one API call, any method, any body, any server.

`FullPath.proxy` takes the request's parts and a `Reply` to answer with, so the protocol
server (`native.py`) calls it without building an ASGI scope, and the ASGI servers reach it
through `Gateway.__call__`. Its checks are `calls.Calls`' (who is calling, may they); what
is here is the request's own bounds (path, headers, body size), forwarding, relaying the
answer, and the log line and metrics of each outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from time import perf_counter
from typing import Any, Final, Protocol

from permgate.api.profile import FORWARDED_HEADERS
from permgate.errors import PermgateError
from permgate.gateway import errors
from permgate.gateway.body import BodyRefused
from permgate.gateway.calls import Caller, Calls, Refusal
from permgate.gateway.logs import JsonLog, RequestIds
from permgate.gateway.metrics import Metrics
from permgate.gateway.upstream import Pool, Response, UpstreamError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# Request headers worth sending upstream (api/profile.py says which, and why).
# Content-Type is not among them: the gateway writes its own for the body it decided on.
FORWARD: Final = frozenset(h.encode("ascii") for h in FORWARDED_HEADERS)
# Hop-by-hop response headers (RFC 9110 7.6.1) and the ones we set ourselves (the length:
# the server writing the answer sets it for the body it sends).
_DROP: Final = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"te",
    b"trailer", b"upgrade", b"request-id", b"content-length",
})
# Request headers, all together and in number: the SDKs send about 1.5 KB in 10 headers.
# The server buffers the head first (granian: up to 64 KiB, server.MAX_REQUEST_HEAD).
MAX_HEADER_BYTES: Final = 16_384
MAX_HEADERS: Final = 64


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


class BodyBroken(PermgateError):
    """The request's body broke off (the client left, or broke the protocol mid-body): it
    is never served, not even in part. Raised by a server's `read_body`; the server has
    answered (or closed) the connection itself."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """An ASGI request's whole body, or None as soon as it passes `limit` (the rest is not
    read). A disconnect before the body is whole raises BodyBroken."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise BodyBroken("the client left before its body was whole")
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyBroken("the client left before its body was whole")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


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
    # Appended one by one: `+=` a tuple builds the tuple and extends through a generic call
    # (about 300 instructions more a header, compiled; callgrind).
    out.append(b"request-id: ")
    out.append(rid.encode("ascii"))
    out.append(b"\r\n")
    length = None
    for name, value in upstream:
        if name in _DROP:
            if name == b"request-id":
                out.append(b"upstream-request-id: ")
                out.append(value)
                out.append(b"\r\n")
            elif name == b"content-length":
                length = value
        else:
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
    return length


class FullPath:
    """The proxy path for every call the fast path did not take."""

    def __init__(self, calls: Calls, pool: Pool, metrics: Metrics, log: JsonLog,
                 ids: RequestIds, *, body_limit: int, report_only: bool, access_log: bool,
                 upstream_timeout: float, problem: bool = False) -> None:
        self.calls = calls
        # The API's error style is RFC 9457 (api.toml error_style = "problem"): every answer
        # the gateway writes itself goes out converted, in `refuse`.
        self.problem = problem
        self.pool = pool
        self.metrics = metrics
        self.log = log
        self.ids = ids
        self.body_limit = body_limit
        self.report_only = report_only
        self.access_log = access_log
        self.upstream_timeout = upstream_timeout

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
        account_name = self.calls.account_name  # the API's account header (Stripe-Account)
        forward: list[tuple[bytes, bytes]] = []
        ctypes: list[bytes] = []
        encodings: list[bytes] = []
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            # The account header first: its client copy is read, never forwarded.
            # Repeated: read joined, as a proxy joins them (`body.header_values`), so a
            # check through Envoy decides alike; a joined key or account is no valid one.
            if name == account_name:
                account_raw = value if account_raw is None else account_raw + b"," + value
            elif name in FORWARD:
                forward.append((name, value))
            elif name == b"authorization":
                authorization = value if authorization is None else \
                    authorization + b"," + value
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                ctypes.append(value)
            elif name == b"content-encoding":
                encodings.append(value)
        rec: dict[str, Any] = {"request_id": rid, "method": method,
                               "path": raw_path[:256].decode("latin-1")}
        if raw_path.find(b"{") >= 0 or raw_path.find(b"}") >= 0:  # not `in`: see fast.admit
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

        calls = self.calls
        caller = await calls.caller(authorization, account_raw)
        if isinstance(caller, Refusal):
            caller.fill(rec)
            if caller.counted:
                self.metrics.decision(caller.app or "", caller.outcome)
            return await self.refuse(reply, rec, started, caller.status, caller.body,
                                     caller.outcome, level=caller.level)
        app_id = caller.app
        rec["app"] = app_id
        rec["mode"] = caller.mode
        rec["account"] = caller.account

        try:
            body = await read_body()
        except BodyBroken as e:
            # Answered (or closed) by the server already: logged, never forwarded.
            rec.update(status=400, outcome="body_broken", detail=str(e),
                       ms=round((perf_counter() - started) * 1000, 3))
            self.log.request("info", rec)
            return None
        if body is None:
            return await self.refuse(reply, rec, started, 413,
                                     errors.payload_too_large(self.body_limit), "too_large")
        try:
            ruling = calls.rule(caller, method, raw_path, query, target, ctypes, encodings,
                                body)
        except BodyRefused as refused:  # not `e`: the compiled build types it BodyBroken
            # Never forwarded, in report-only mode too: nothing decided it.
            rec["audit"] = True
            self.metrics.decision(app_id, "bad_request")
            return await self.refuse(reply, rec, started, 400, errors.error_body(
                "invalid_request_error", str(refused), refused.code), "bad_request",
                level="warning")
        decided = ruling.body
        if decided.content_type is not None:
            forward.append((b"content-type", decided.content_type))
        decision = ruling.decision
        self.metrics.decision_seconds.observe(ruling.seconds)
        outcome = decision.kind
        self.metrics.decision(app_id, outcome)
        rec["outcome"] = outcome
        if not decision.allowed:
            rec["required"] = [list(g) for g in decision.required]
            rec["missing"] = [list(g) for g in decision.missing]
            rec["reason"] = message = decision.message_for(caller.account)
            if caller.pending is not None and outcome == "missing":
                hint = caller.pending.pending_hint(decision.missing)
                if hint:
                    message = f"{message} {hint}"
            # Report-only never forwards what the engine could not parse (hostile paths),
            # nor a HEAD: no Stripe operation is one, and an answer without the body its
            # head announces cannot be framed by the upstream client (it would hold a
            # connection until its deadline).
            if not self.report_only or outcome == "bad_request" or method == "HEAD":
                rec["audit"] = True
                return await self.refuse(reply, rec, started, decision.status, errors.error_body(
                    "invalid_request_error", message, decision.code, decision.param),
                    outcome, level="warning")
            rec["would_deny"] = True
            rec["audit"] = True
        return await self.forward(reply, rec, started, method, target, decided.forward,
                                  forward, caller)

    async def forward(
        self, reply: Reply, rec: dict[str, Any], started: float, method: str, target: bytes,
        body: bytes, headers: list[tuple[bytes, bytes]], caller: Caller,
    ) -> None:
        auth = caller.auth
        if auth is None:
            return await self.refuse(reply, rec, started, 503, errors.error_body(
                "api_error", f"This gateway has no upstream key for {caller.mode} mode."),
                "no_upstream_key", level="error")
        headers.append((b"authorization", auth))
        if caller.account_b:
            headers.append((caller.account_name, caller.account_b))
        t0 = perf_counter()
        try:
            # Each app's share of the pool (docs/gateway.md); "": not enforcing, no app.
            response = await self.pool.request(method.encode("ascii"), target, headers, body,
                                               owner=caller.app or None)
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
                self.upstream_timeout), "upstream_timeout", level="error")
        return await self.refuse(reply, rec, started, 502, errors.bad_gateway(e.detail),
                                 "upstream_error", level="error")

    async def refuse(
        self, reply: Reply, rec: dict[str, Any], started: float, status: int, body: bytes,
        outcome: str, level: str = "info",
    ) -> None:
        if self.problem:
            body = errors.as_problem(status, body)
        headers = [*(errors.PROBLEM_HEADERS if self.problem else errors.JSON_HEADERS),
                   (b"request-id", rec["request_id"].encode("ascii"))]
        if status == 401:
            headers.extend(self.calls.challenges)
        await reply.send(status, headers, body)
        self.metrics.response(status)
        if outcome == "unauthenticated":
            self.metrics.decision("", outcome)
        rec["status"] = status
        rec.setdefault("outcome", outcome)
        rec["ms"] = round((perf_counter() - started) * 1000, 3)
        self.log.request(level, rec)
