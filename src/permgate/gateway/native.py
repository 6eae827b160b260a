"""permgate's own HTTP/1.1 server: an asyncio Protocol on uvloop with httptools.

API calls go straight from the parser's callbacks to `Gateway.proxy` with the request's
parts (no ASGI scope, no message dicts); answers are written as one precomputed head plus
the body. Paths in the gateway's mount table (admin API, webhooks, health, metrics, and
whatever else is mounted) are handed to their ASGI apps through the bridge in
`mounts.py`, on the same listener; a mounted path's body is buffered no further than its
mount's `body_limit`. Measured against granian and uvicorn in bench/bench_gateway.py.

Limits (docs/security.md, "Client connections"): a worker holds at most `max_connections`
client connections (past it: 503 and closed); a request head (request line and headers)
over `MAX_REQUEST_HEAD` bytes gets 431; a head not whole `head_timeout` seconds after the
first byte that followed the previous answer, a request not whole `REQUEST_STALL` seconds
after it began, a connection idle `keep_alive` seconds (stray empty lines do not count as
activity) and one whose answers stay unread `drain_timeout` seconds are closed. Requests
pipelined on one connection are answered in order; reading pauses while `_PENDING_MAX`
wait, and more than `_PIPELINE_MAX` parsed ahead (from one read) end the connection.

A protocol error, a request that must be the last (`Connection: close`, HTTP/1.0, a refused
`Upgrade` or `CONNECT`) or the client's half-close ends the connection *after* the answers
already owed: the requests before it were (or are being) sent upstream, so their answers
are delivered first, then the error's, then the connection is closed. What the client sends
after that is read and dropped, never parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, Final, cast

import httptools

from permgate.gateway import errors
from permgate.gateway.app import Admit, Gateway
from permgate.gateway.fast import Admitted, FastPath
from permgate.gateway.mounts import Mounted, bridge
from permgate.gateway.proxy import BodyBroken, Headers, relay_headers, relay_lines
from permgate.gateway.upstream import Pool, UpstreamError, _Conn

log = logging.getLogger("permgate.gateway")

# `Final` where a call reads it: compiled, a C static instead of a lookup in the module's
# dict per read (docs/gateway.md); the timers' values below stay patchable for the tests.
MAX_REQUEST_HEAD: Final = 65_536
REQUEST_STALL = 60.0  # a whole request (head and body) from its first byte
TICK = 5.0  # the timers' resolution: each limit fires within one tick after it passed
FD_RESERVE: Final = 256  # descriptors kept from the connection cap: store, logs, refusals
REFUSE_LINGER = 2.0  # a refused connection reads and drops for this long, then closes
REFUSE_LINGERING = 64  # at most this many linger at once (their descriptors are the reserve's)
DISCARD_SECONDS: Final = 10.0  # how long the unread rest of a refused body is read and dropped
_PENDING_MAX: Final = 16  # pipelined requests parsed ahead before reading pauses
_PIPELINE_MAX: Final = 64  # beyond this many in one read: closed (memory, not a client's need)

_STATUS: Final[dict[int, bytes]] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}
_METHODS: Final = {m.encode("ascii"): m for m in (
    "GET", "POST", "DELETE", "HEAD", "PUT", "PATCH", "OPTIONS")}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE: Final = b"connection: close\r\n"
_KEEP: Final = b"connection: keep-alive\r\n"  # HTTP/1.0 keeps alive only when told so
_NO_BODY: Final = frozenset({204, 304})
# The request headers the server itself reads (`on_header`), by name.
_HOST: Final = 0
_LENGTH: Final = 1
_CHUNKED: Final = 2
_EXPECT: Final = 3
_CONNECTION: Final = 4
_UPGRADE: Final = 5
_NOTED: Final = {b"host": _HOST, b"content-length": _LENGTH, b"transfer-encoding": _CHUNKED,
                  b"expect": _EXPECT, b"connection": _CONNECTION, b"upgrade": _UPGRADE}


def _status_line(status: int) -> bytes:
    line = _STATUS.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} Unknown\r\n".encode("ascii")
    return line


class _Request:
    """One request: what the parser gave, and its body as it arrives.

    Most fields start at their class-level defaults and are set only when they differ:
    one request per call, so its construction is on every call's path."""

    size = 0
    complete = False
    too_large = False
    waiter: asyncio.Future[None] | None = None
    expect = False
    continue_sent = False
    head_sent = False
    chunked = False
    keep_alive = True
    method = "GET"
    is_head = False
    path = b"/"
    query = b""
    asgi: Mounted | None = None
    limit: int | None = None  # a mounted path's body limit (None: the gateway's)
    # A body announced: the call starts at its head (it may be refused unread); without
    # one it starts whole, once the parser is done with it.
    has_body = False
    http10 = False
    connection = False  # a Connection header came (only then can HTTP/1.0 keep alive)
    hosts = 0  # Host headers seen: HTTP/1.1 needs exactly one (RFC 9112 3.2)
    upgrade = False  # an Upgrade header came: refused, never forwarded
    # Set: this request is answered with this status and body in its turn, never served.
    refusal: tuple[int, bytes] | None = None
    broken = False  # its body broke off: `read_body` raises, so no part of it is served

    # The body's parts as they come; None until the first (most calls have no body: one
    # list fewer per request).
    body: list[bytes] | None = None

    def __init__(self, conn: HttpConn) -> None:
        self.conn = conn
        self.headers: Headers = []

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def read_body(self) -> bytes | None:
        """The whole body, or None once it passed the body limit (the rest is dropped)."""
        while not self.complete and not self.too_large:
            conn = self.conn
            if conn.closed:
                break  # the client left: the body can never be whole
            if self.expect and not self.continue_sent:
                self.continue_sent = True
                conn.write(_CONTINUE)
            conn.resume()  # a paused connection must deliver the body awaited here
            self.waiter = conn.server.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.broken or not (self.complete or self.too_large):
            raise BodyBroken("the request broke off before its body was whole")
        if self.too_large:
            return None
        body = self.body
        if body is None:
            return b""
        return body[0] if len(body) == 1 else b"".join(body)

    async def disconnected(self) -> None:
        """Wait until the client is gone (an ASGI app's receive after the body)."""
        conn = self.conn
        while not conn.closed:
            waiter = conn.server.loop.create_future()
            self.waiter = waiter
            await waiter

    # -- Reply -----------------------------------------------------------------------------
    def _head(self, status: int, headers: Headers) -> list[bytes]:
        out = [_status_line(status)]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        if not self.keep_alive or not self.complete:
            # Answered before its body was read whole (a refusal at its head): the rest is
            # read and dropped, then the connection closes (`_done`), so the client is told.
            out.append(_CLOSE)
        elif self.http10:
            out.append(_KEEP)
        return out

    def send_now(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole answer in one write (callers that wait on nothing: the fast path)."""
        out = self._head(status, headers)
        if status in _NO_BODY or status < 200:
            out.append(b"\r\n")  # no length and no body (RFC 9110 8.6)
        else:
            out += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n\r\n")
            if not self.is_head:
                out.append(body)
        self.head_sent = True
        self.conn.write(b"".join(out))

    async def send(self, status: int, headers: Headers, body: bytes) -> None:
        self.send_now(status, headers, body)
        conn = self.conn
        if conn.write_paused:
            await conn.drain()

    def start_now(self, status: int, headers: Headers) -> None:
        if not any(name == b"content-length" for name, _ in headers):
            if self.http10:  # no chunked encoding in HTTP/1.0: the close ends the body
                self.keep_alive = False
            else:
                headers = [*headers, (b"transfer-encoding", b"chunked")]
                self.chunked = True
        out = self._head(status, headers)
        out.append(b"\r\n")
        self.head_sent = True
        self.conn.write(b"".join(out))

    async def start(self, status: int, headers: Headers) -> None:
        self.start_now(status, headers)

    def write_now(self, chunk: bytes) -> None:
        if not chunk or self.is_head:
            return
        if self.chunked:
            self.conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.conn.write(chunk)

    async def write(self, chunk: bytes) -> None:
        self.write_now(chunk)
        conn = self.conn
        if conn.write_paused:
            await conn.drain()

    def end_now(self) -> None:
        if self.chunked and not self.is_head:
            self.conn.write(b"0\r\n\r\n")

    async def end(self) -> None:
        self.end_now()


class HttpConn(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: NativeServer) -> None:
        self.server = server
        self.gateway = server.gateway
        self.body_limit = server.gateway.body_limit
        # The started gateway's pool and fast path (set once, at its startup), read here
        # once: every fast call uses both, and the Gateway is an interpreted object (a
        # lookup in its __dict__ per read, about 190 instructions; callgrind).
        gateway = server.gateway
        self.pool: Pool | None = gateway.pool
        self.fast: FastPath | None = gateway.fast
        # Its admission and mount lookup, the same way: read once here, not per request
        # from the interpreted Gateway (each read about 190 instructions; callgrind).
        self.admit: Admit = gateway.admit
        self.mounted: Callable[[bytes], Mounted | None] = gateway.mounted
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.current: _Request | None = None  # being parsed
        self.active: _Request | None = None  # being served
        self.pending: deque[_Request] = deque()
        self.url = b""
        # The last request's target and its parts: a client repeating a target (polling,
        # retries, load tests) skips its three scans and the new objects (immutable: shared).
        self.last_url = b""
        self.last_path = b""  # an empty target's parts are b"" on either branch below
        self.last_query = b""
        self.head_size = 0
        # Clocks, in the server's ticks (0: not running).
        self.idle_since = server.ticks  # since the last answer (or the connection's start)
        self.head_at = 0  # the first byte after the last head: the head clock
        self.begun = 0  # the server's tick when the request being parsed began
        self.paused_at = 0  # our writes backed up: the drain clock
        self.discarding = False
        # No request follows (a final one, a protocol error, the client's half-close): what
        # the client sends is dropped unparsed; the answers owed go out, then it closes.
        self.ending = False
        self.failure = ""  # why the parser was stopped, when a callback stopped it
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None
        # The fast path's call in flight: its upstream connection and what admitted it.
        self.exchange: _Conn | None = None
        self.admitted: Admitted | None = None
        self.upstream_paused = False  # its upstream reading paused for our slow reader
        self.draining: _Request | None = None  # answered, waiting for the client to read

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        if len(server.connections) >= server.max_connections:
            self._refuse_connection()
            return
        server.connections.add(self)
        server.metrics.connections_open += 1
        peer = transport.get_extra_info("peername")
        here = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.sockname = (str(here[0]), int(here[1])) if isinstance(here, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        server = self.server
        if self in server.connections:
            server.connections.discard(self)
            server.metrics.connections_open -= 1
        # As on the full path, an answer in flight is read to its end (and dropped), then
        # counted and logged; paused, it would wait out its deadline instead.
        self._writable()
        for req in (self.current, self.active, *self.pending):
            if req is not None:
                req._wake()
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.ending:
            return  # a final request was read: what follows is dropped, never parsed
        if not self.head_at and self.current is None:
            # Any byte after an answer starts the head clock, a stray CRLF too (the parser
            # skips those without a callback): it is not activity that keeps a connection.
            self.head_at = self.server.ticks
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Its request (Upgrade or CONNECT) is refused in its turn; nothing follows it.
            self._end()
        except httptools.HttpParserError:
            if self.discarding:
                self.close()
            else:
                self._fail(400, self.failure or "The request is not valid HTTP/1.1.")

    def eof_received(self) -> bool | None:
        """The client half-closed: nothing more comes, but the requests it sent whole are
        still answered (True keeps the transport open for writing)."""
        if self.closed:
            return None
        self._end()
        req = self.current
        if req is not None and not req.complete:
            self.current = None  # cut off: it can never be whole
            req.broken = True
            if req.refusal is None and (req is self.active or req in self.pending):
                if req is self.active or self.active is None:
                    return None  # its handler waits for a body that will not come: close
                req.refusal = (400, errors.error_body(
                    "invalid_request_error", "The request body was cut off."))
                req.complete = True
                req.keep_alive = False
        if self.active is None:
            return None  # nothing owed: close
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_at = self.server.ticks

    def resume_writing(self) -> None:
        self.write_paused = False
        self._writable()
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def _writable(self) -> None:
        """The client took what we wrote (or is gone): the fast call's upstream reads on,
        and an answered call waiting for the drain is done."""
        up = self.exchange
        if self.upstream_paused and up is not None and up.transport is not None:
            self.upstream_paused = up.paused = False
            up.transport.resume_reading()
        drained = self.draining
        if drained is not None:
            self.draining = None
            self._done(drained)

    # -- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.closed or self.ending:
            raise httptools.HttpParserError("no request may follow")
        if len(self.pending) >= _PIPELINE_MAX:
            self.failure = (f"More than {_PIPELINE_MAX} requests were pipelined at once; the "
                            "connection is closed after the answers owed.")
            raise httptools.HttpParserError("pipeline too long")
        ticks = self.server.ticks
        self.begun = ticks
        if not self.head_at:
            self.head_at = ticks
        self.current = _Request(self)
        self.url = b""
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_REQUEST_HEAD:
            self._too_large_head()
            raise httptools.HttpParserError("head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.current
        assert req is not None
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_REQUEST_HEAD:
            self._too_large_head()
            raise httptools.HttpParserError("head too large")
        name = name.lower()
        req.headers.append((name, value))
        noted = _NOTED.get(name)  # one lookup: most headers are none of these
        if noted is None:
            return
        if noted == _HOST:
            req.hosts += 1
        elif noted == _LENGTH:
            req.has_body = value != b"0"
        elif noted == _CHUNKED:
            req.has_body = True
        elif noted == _EXPECT:
            if value.lower() == b"100-continue":
                req.expect = True
        elif noted == _CONNECTION:
            req.connection = True
        else:
            req.upgrade = True

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        self.head_at = 0
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
        if method != "GET":
            req.method = method
            req.is_head = method == "HEAD"
        if not parser.should_keep_alive():
            req.keep_alive = False
            req.http10 = parser.get_http_version() == "1.0"
        elif req.connection and parser.get_http_version() == "1.0":
            req.http10 = True  # kept alive by its Connection header: an HTTP/1.0 client
        if req.upgrade or method == "CONNECT":
            # Nothing but HTTP/1.1 requests is relayed; refused before any upstream sees it.
            self._refuse(req, "Protocol upgrades (Upgrade, CONNECT) are not supported by "
                         "this gateway.")
        elif req.hosts > 1 or (req.hosts == 0 and parser.get_http_version() != "1.0"):
            self._refuse(req, "An HTTP/1.1 request needs exactly one Host header.")
        url = self.url
        if url == self.last_url:
            path, query = self.last_path, self.last_query
        elif url.startswith(b"/") and url.find(b"#") < 0:  # not `in`: see fast.admit
            path, _, query = url.partition(b"?")
            self.last_url, self.last_path, self.last_query = url, path, query
        else:  # absolute form ("http://host/v1/..."), "*", or a fragment
            try:
                # Any: httptools' stub says bytes where the parser gives None for a part
                # not there, and the compiled build checks declared types (mypyc).
                parsed: Any = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                path, query = b"", b""
            else:
                path, query = parsed.path or b"", parsed.query or b""
        req.path = path
        req.query = query
        req.asgi = mounted = self.mounted(path)
        if mounted is not None:
            req.limit = mounted.body_limit  # buffered no further than its app takes
        if not req.has_body:
            return  # started whole from on_message_complete, which comes next
        self._dispatch(req)

    def _dispatch(self, req: _Request) -> None:
        if self.closed:
            return
        if self.active is None:
            self._start(req)
        else:
            self.pending.append(req)
            if len(self.pending) >= _PENDING_MAX:
                self.pause()

    def on_body(self, body: bytes) -> None:
        req = self.current
        if req is None or self.discarding:
            return
        req.size += len(body)
        limit = req.limit
        if req.size > (self.body_limit if limit is None else limit):
            req.too_large = True
            req.body = None
            req._wake()
        elif not req.too_large:
            parts = req.body
            if parts is None:
                req.body = [body]
            else:
                parts.append(body)

    def on_message_complete(self) -> None:
        req = self.current
        self.current = None
        if self.discarding:
            self.close()  # the refused body is read to its end: now the answer is whole
            return
        if req is not None:
            req.complete = True
            if not req.keep_alive:
                self._end()  # the last request: what follows it is not parsed
            if req.has_body:
                req._wake()
            else:
                self._dispatch(req)

    # -- plumbing ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self._drain = self.server.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def pause(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.transport is not None
            self.transport.close()

    def abort(self) -> None:
        """Close without flushing: what is unread stays unread (a close would wait for the
        client to read it first)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _too_large_head(self) -> None:
        self._fail(431, f"The request line and headers are larger than {MAX_REQUEST_HEAD} "
                   "bytes.", code="request_headers_too_large")

    def _end(self) -> None:
        """No request follows: the client's further bytes are read and dropped (reading on,
        so that closing does not reset the connection under the answers owed)."""
        if not self.ending:
            self.ending = True
            self.resume()

    def _refuse(self, req: _Request, message: str) -> None:
        """Answer `req` with a 400 in its turn, never serving it; the connection ends."""
        req.refusal = (400, errors.error_body("invalid_request_error", message))
        req.keep_alive = False

    def _fail(self, status: int, message: str, code: str | None = None) -> None:
        """The client broke the protocol: parse nothing more; answer what is owed (requests
        before this point may be upstream already), then this error, then close."""
        if self.closed or self.ending:
            return
        self._end()
        body = errors.error_body("invalid_request_error", message, code=code)
        req = self.current
        self.current = None
        if req is not None and not req.complete and req.refusal is None and (
                req is self.active or req in self.pending):
            # Started at its head, its body broke off: it was never forwarded (bodies are
            # read whole first). Answered with this error instead.
            req.refusal = (status, body)
            req.complete = req.broken = True
            req.keep_alive = False
            if req is self.active:
                if not req.head_sent:
                    self._answer_and_close(status, body)
                self.close()  # its handler, waiting for the body, then ends
            return
        if self.active is None:
            self._answer_and_close(status, body)
            return
        last = _Request(self)
        last.refusal = (status, body)
        last.complete = True
        last.keep_alive = False
        self.pending.append(last)

    def _answer_and_close(self, status: int, body: bytes) -> None:
        """An error answer written now (nothing else is being written), then close."""
        if self.closed:
            return
        head = [_status_line(status)]
        for name, value in errors.JSON_HEADERS:
            head += (name, b": ", value, b"\r\n")
        head += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n", _CLOSE,
                 b"\r\n", body)
        self.write(b"".join(head))
        self.gateway.metrics.response(status)
        self.close()

    def _refuse_connection(self) -> None:
        """Past the connection cap: a 503 and the close; read and dropped meanwhile, so that
        the close does not reset the connection under the answer."""
        self.closed = self.ending = True
        transport = self.transport
        assert transport is not None
        server = self.server
        server.metrics.connections_refused += 1
        transport.write(server.refusal)
        if server.lingering >= REFUSE_LINGERING:
            transport.close()  # a flood of them: the descriptors matter more
            return
        server.lingering += 1
        with contextlib.suppress(Exception):
            if transport.can_write_eof():
                transport.write_eof()
        server.loop.call_later(REFUSE_LINGER, self._linger_done)

    def _linger_done(self) -> None:
        self.server.lingering -= 1
        assert self.transport is not None
        self.transport.close()

    # -- serving -------------------------------------------------------------------------
    def _start(self, req: _Request) -> None:
        self.active = req
        refusal = req.refusal
        if refusal is not None:
            status, body = refusal
            req.send_now(status, list(errors.JSON_HEADERS), body)
            self.gateway.metrics.response(status)
            self._done(req)
            return
        if req.asgi is None:
            if not req.has_body and self._fast(req):
                return
            # The proxy path runs at once, inside this callback, and is resumed from the
            # callbacks of the futures it waits on: no task per request, and the upstream
            # write leaves before the event loop turns (measured, bench/bench_gateway.py).
            _drive(self._serve(req))
        else:
            # ASGI apps may need a task of their own (anyio's cancel scopes do).
            self.server.loop.create_task(self._serve(req))

    # -- the fast path: a cached, allowed GET, sent and answered from callbacks -------------
    def _fast(self, req: _Request) -> bool:
        """Send `req` upstream now if `Gateway.admit` lets it through and a kept-alive
        upstream connection is idle; its answer then comes to `upstream_done`. False: the
        full path (`_serve`) handles it from the start."""
        pool = self.pool
        if pool is None:
            return False
        admitted = self.admit(req.method, req.path, req.query, req.headers)
        if admitted is None:
            return False
        up = pool.take_idle(admitted.caller.app or None)  # "": not enforcing, no app
        if up is None:
            return False
        self.exchange = up
        self.admitted = admitted
        up.exchange(admitted.data, pool.loop.time() + pool.timeout, self)
        return True

    def upstream_body(self, conn: _Conn) -> None:
        """A large answer: its head goes out now and its body as it comes; the upstream
        waits while our client reads slower than it sends."""
        req = self.active
        assert req is not None and self.admitted is not None
        self._stream(req, self.admitted, conn)
        if self.write_paused and not self.upstream_paused and not self.closed \
                and conn.transport is not None:
            self.upstream_paused = conn.paused = True  # the pool resumes it if released
            conn.transport.pause_reading()

    @staticmethod
    def _stream(req: _Request, admitted: Admitted, conn: _Conn) -> None:
        if not req.head_sent:
            headers, length = relay_headers(admitted.rid, conn.headers)
            if length is not None:
                headers.append((b"content-length", length))
            req.start_now(conn.status, headers)
        chunks = conn.chunks
        while chunks:
            req.write_now(chunks.popleft())
        conn.buffered = 0

    def _exchanged(self) -> tuple[_Request, Admitted]:
        """The fast call whose upstream exchange just ended, no longer in flight."""
        req = self.active
        admitted = self.admitted
        assert req is not None and admitted is not None
        self.exchange = None
        self.admitted = None
        self.upstream_paused = False
        return req, admitted

    def upstream_done(self, conn: _Conn) -> None:
        req, admitted = self._exchanged()
        status = conn.status
        if req.head_sent:
            self._stream(req, admitted, conn)
            req.end_now()
        elif status in _NO_BODY or status < 200:
            headers, _ = relay_headers(admitted.rid, conn.headers)
            req.send_now(status, headers, b"")
        else:  # the common answer: its head and body in one buffer, in one pass
            chunks = conn.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            out = [_status_line(status)]
            relay_lines(admitted.rid, conn.headers, out)
            if not req.keep_alive:
                out.append(_CLOSE)
            elif req.http10:
                out.append(_KEEP)
            out += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n\r\n", body)
            req.head_sent = True
            self.write(b"".join(out))
        head_at = conn.head_at  # before the release resets the connection
        self.pool.release(conn)  # type: ignore[union-attr]
        self.fast.finish(admitted, status, head_at)  # type: ignore[union-attr]
        if self.write_paused and not self.closed:
            # As the full path awaits the drain: the next pipelined call waits until the
            # client has read this answer, or a client that never reads grows our buffer.
            self.draining = req
        else:
            self._done(req)

    def upstream_failed(self, conn: _Conn, error: UpstreamError) -> None:
        req, admitted = self._exchanged()
        if req.head_sent:  # part of the answer is out: as on the full path, cut it off
            self.fast.cut(admitted, error, conn.head_at)  # type: ignore[union-attr]
            self.close()
            self._done(req)
        elif conn.stale(error):
            # A kept-alive connection closed before it answered: the GET most likely never
            # ran upstream. The full path sends it again, as `Pool.request` would.
            _drive(self._serve(req))
        else:
            _drive(self._failed(req, admitted, error, conn.head_at))

    async def _failed(self, req: _Request, admitted: Admitted, error: UpstreamError,
                      head_at: float) -> None:
        try:
            await self.fast.failed(  # type: ignore[union-attr]
                req, admitted, error, head_at)
        finally:
            self._done(req)

    async def _serve(self, req: _Request) -> None:
        try:
            if req.asgi is None:
                await self.gateway.proxy(req.method, req.path, req.query, req.headers,
                                         req.read_body, req)
            else:
                await bridge(req, req.asgi, self.client, self.sockname)
        except Exception:
            log.exception("request failed: %s %s", req.method, req.path[:200])
            if not req.head_sent:
                req.keep_alive = False
                await req.send(500, list(errors.JSON_HEADERS), errors.error_body(
                    "api_error", "The gateway failed to handle this request."))
            self.close()
        self._done(req)

    def _done(self, req: _Request) -> None:
        self.active = None
        if self.closed:
            return
        if not req.complete:
            # Answered before its body was read (413, 401, ...): read the rest and drop
            # it, so the client gets to read the answer, then close.
            self.discarding = True
            self.resume()
            self.server.loop.call_later(DISCARD_SECONDS, self.close)
            return
        if not req.keep_alive:
            self.close()
            return
        if self.pending:
            # Marked busy now, started on the next loop pass: a long pipeline of answers
            # that need no waiting must not recurse.
            nxt = self.pending.popleft()
            self.active = nxt
            self.server.loop.call_soon(self._start, nxt)
            return
        if self.ending:
            self.close()  # every answer owed is out
            return
        self.idle_since = self.server.ticks
        self.resume()


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` until it waits on a future; resume it from that future's done-callback.

    A task without the Task: what `Task.__step` does for a coroutine that awaits asyncio
    futures only (the proxy path's do: upstream I/O, the store's executor, timers), minus
    the task object and its first scheduling hop. `asyncio.current_task()` is None inside.
    """
    try:
        fut = coro.send(None)
    except StopIteration:
        return
    except BaseException:
        log.exception("request handler failed")
        return
    if fut is None:  # a bare yield (asyncio.sleep(0)): go on at the next loop pass
        asyncio.get_running_loop().call_soon(_drive, coro)
        return
    fut._asyncio_future_blocking = False
    fut.add_done_callback(lambda _: _drive(coro))


class NativeServer:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.metrics = gateway.metrics
        settings = gateway.settings
        self.connections: set[HttpConn] = set()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.ticks = 1  # 0 marks a clock that is not running
        self.lingering = 0  # refused connections reading and dropping before their close
        self.max_connections = connection_cap(settings.max_connections, settings.pool_size)
        self.keep_alive = settings.keep_alive
        self.head_timeout = settings.head_timeout
        self.drain_timeout = settings.drain_timeout
        body = errors.error_body(
            "api_error", "This gateway holds as many connections as it can; retry shortly.",
            code="connections_exhausted")
        self.refusal = b"".join((
            _status_line(503), *(n + b": " + v + b"\r\n" for n, v in errors.JSON_HEADERS),
            b"retry-after: 1\r\ncontent-length: ", str(len(body)).encode("ascii"), b"\r\n",
            _CLOSE, b"\r\n", body))

    async def start(self, sock: socket.socket) -> None:
        self._server = await self.loop.create_server(
            lambda: HttpConn(self), sock=sock, backlog=4096)
        self._tick()

    def _tick(self) -> None:
        self.ticks += 1
        now = self.ticks
        keep_alive = self.keep_alive / TICK
        head = self.head_timeout / TICK
        stall = REQUEST_STALL / TICK
        drain = self.drain_timeout / TICK
        closed = self.metrics.connection_closed
        for conn in list(self.connections):
            if conn.closed:
                continue
            active, current = conn.active, conn.current
            # A request still arriving is timed out only once no other answer is owed
            # before it (those go out first).
            arriving = active is None or active is current
            if conn.write_paused and now - conn.paused_at > drain:
                reason = "drain_timeout"  # the client stopped reading our answers
            elif arriving and conn.head_at and now - conn.head_at > head:
                reason = "head_timeout"
            elif arriving and current is not None and now - conn.begun > stall:
                reason = "request_timeout"
            elif active is None and current is None and not conn.head_at \
                    and now - conn.idle_since > keep_alive:
                reason = "idle"
            else:
                continue
            closed(reason)
            if reason == "drain_timeout":
                conn.abort()
            else:
                conn.close()
        self._ticker = self.loop.call_later(TICK, self._tick)

    async def stop(self, grace: float = 10.0) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.active is None:
                conn.close()
        deadline = self.loop.time() + grace
        while any(c.active is not None for c in self.connections) \
                and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()


def connection_cap(setting: int, pool_size: int) -> int:
    """`max_connections`, or (0) what the open-file limit leaves once the upstream pool and
    a reserve have theirs: past the limit accept() fails and every client gets a reset."""
    if setting > 0:
        return setting
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - pool_size - FD_RESERVE)


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def serve(gateway: Gateway, sock: socket.socket,
                ready: Callable[[], None] | None = None) -> None:
    """Serve on `sock` (bound) until SIGTERM or SIGINT; then finish what is in flight."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.startup()
    server = NativeServer(gateway)
    sock.listen(4096)
    sock.setblocking(False)
    await server.start(sock)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await server.stop()
        await gateway.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
