"""A keep-alive HTTP/1.1 client pool for one upstream origin, on asyncio protocols + httptools.

The gateway only ever talks to one origin with small requests, so a pool with no
per-request task, timer-task or header-object allocation is the cheaper path (measured
against httpx, which it replaced). Bodies are streamed: the caller sees the status and headers
as soon as they arrive and pulls body chunks after.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from time import perf_counter
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from permgate.errors import PermgateError

Headers = list[tuple[bytes, bytes]]
# Replays are safe only where the upstream treats a repeat as the same request.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"PUT"})
_HIGH_WATER = 256 * 1024


class UpstreamError(PermgateError):
    """The upstream could not be used. `timeout` picks 504 over 502."""

    def __init__(self, detail: str, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timeout = timeout


class Sink(Protocol):
    """Who gets an upstream answer by callback instead of awaiting it (`_Conn.exchange`)."""

    def upstream_body(self, conn: _Conn) -> None:
        """More than `_HIGH_WATER` bytes are buffered in `conn.chunks`: take them."""

    def upstream_done(self, conn: _Conn) -> None:
        """The whole answer is in (`conn.status`, `conn.headers`, `conn.chunks`)."""

    def upstream_failed(self, conn: _Conn, error: UpstreamError) -> None:
        """No (whole) answer will come; `conn` is closed."""


class Origin:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, not {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        name = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        self.host_header = (name if default else f"{name}:{self.port}").encode("ascii")
        self.prefix = parts.path.rstrip("/").encode("ascii")  # e.g. an upstream mounted at /api


class _Conn(asyncio.Protocol):
    """One upstream connection; parser callbacks fill in the response being read."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = True  # holds one of the pool's `size` slots until closed
        self.deadline = 0.0
        self.reused = False
        self.sink: Sink | None = None  # set for an exchange driven by callbacks
        self.expecting = False  # a request was sent whose answer has not ended
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.head_done = False
        self.head_at = 0.0  # perf_counter() when the answer's head was in
        self.interim = False
        self.done = False
        self.keep_alive = False
        self.received = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if not self.done:  # else the answer is whole: only what came after it is bad
                self._fail(UpstreamError(f"malformed upstream response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._uncount()
        if not self.done:
            self._fail(UpstreamError("upstream closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if not self.expecting:
            # Bytes after the answer (in its read or later): an upstream out of step. They
            # must not become the next call's answer: the connection is closed, unused.
            raise httptools.HttpParserError("an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints, ...): the real one follows
            self.interim = True
            return
        self.status = status
        self.head_done = True
        self.head_at = perf_counter()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER:
            if self.sink is not None:
                self.sink.upstream_body(self)
            elif self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            self.headers.clear()
            return
        # Only valid inside the callback: llhttp resets its state after the message.
        self.keep_alive = self.parser.should_keep_alive()
        self.done = True
        self.expecting = False
        sink = self.sink
        if sink is not None:
            self.sink = None
            self.pool.waiting.discard(self)
            sink.upstream_done(self)
            return
        self._wake()

    # plumbing
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        sink = self.sink
        if sink is not None:
            self.sink = None
            self.pool.waiting.discard(self)
            self.close()
            sink.upstream_failed(self, error)
            return
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.pool._slot_freed()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._uncount()

    async def wait(self, deadline: float) -> None:
        """Until the parser made progress, the connection failed, or `deadline` (loop time)
        passed: one deadline for the whole exchange, not a timer reset by each read."""
        pool = self.pool
        self.waiter = waiter = pool.loop.create_future()
        self.deadline = deadline
        pool.watch(self)
        try:
            await waiter
        finally:
            pool.waiting.discard(self)
            self.waiter = None
        if self.error is not None:
            raise self.error

    def exchange(self, data: bytes, deadline: float, sink: Sink) -> None:
        """Send one request whose answer goes to `sink`'s callbacks (no future, no task):
        the same deadline and pool bookkeeping as `Pool.request`, driven by the parser."""
        self.sink = sink
        self.deadline = deadline
        self.expecting = True
        self.pool.watch(self)
        assert self.transport is not None
        self.transport.write(data)

    def on_timeout(self) -> None:
        if self.sink is not None:
            self._fail(UpstreamError(
                f"no complete answer within {self.pool.timeout:g} s", timeout=True))
            return
        w = self.waiter
        if w is not None and not w.done():
            self._fail(UpstreamError(
                f"no complete answer within {self.pool.timeout:g} s", timeout=True))
            self.close()


class Response:
    """Status and headers of an upstream answer; the body is read with `body()`."""

    __slots__ = ("_conn", "_deadline", "headers", "status")

    def __init__(self, conn: _Conn, deadline: float) -> None:
        self._conn = conn
        self._deadline = deadline
        self.status = conn.status
        self.headers = conn.headers

    @property
    def complete(self) -> bool:
        return self._conn.done

    def take_all(self) -> bytes:
        """The whole body when `complete`; releases the connection."""
        conn = self._conn
        chunks = conn.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        conn.pool.release(conn)
        return body

    async def body(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                while conn.chunks:
                    chunk = conn.chunks.popleft()
                    conn.buffered -= len(chunk)
                    if conn.paused and conn.buffered < _HIGH_WATER // 2 and conn.transport:
                        conn.paused = False
                        conn.transport.resume_reading()
                    yield chunk
                if conn.done:
                    break
                await conn.wait(self._deadline)
        except BaseException:
            conn.close()  # a half-read response leaves the connection unusable
            raise
        conn.pool.release(conn)

    def abort(self) -> None:
        self._conn.close()


class Pool:
    """Connections to one origin: at most `size` open at once (busy and idle together);
    idle ones are reused last-in first-out (the warmest first). A request finding every
    connection busy waits, first come first served, within its own deadline."""

    def __init__(
        self, origin: Origin, size: int, connect_timeout: float, timeout: float
    ) -> None:
        self.origin = origin
        self.size = size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.open = 0  # connections counted against `size`, connecting ones included
        self._idle: list[_Conn] = []
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
        self._ssl = ssl.create_default_context() if origin.tls else None
        self.loop = asyncio.get_running_loop()
        # Connections waiting for the upstream, checked against their deadlines every
        # SWEEP seconds: one timer for the pool instead of one per request.
        self.waiting: set[_Conn] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.host_line = b" HTTP/1.1\r\nhost: " + origin.host_header + b"\r\n"

    async def _connect(self, deadline: float) -> _Conn:
        loop = self.loop
        o = self.origin
        limit = min(self.connect_timeout, max(deadline - loop.time(), 0.0))
        # A task and a timer rather than asyncio.wait_for: the caller may be driven without
        # a task of its own (native.py), which wait_for needs from Python 3.12 on.
        connecting = loop.create_task(loop.create_connection(
            lambda: _Conn(self), o.host, o.port, ssl=self._ssl,
            server_hostname=o.host if self._ssl else None))
        timer = loop.call_later(limit, connecting.cancel)
        try:
            try:
                _, conn = await connecting
            finally:
                timer.cancel()
        except asyncio.CancelledError:
            if not connecting.cancelled():
                raise
            self._slot_freed()
            raise UpstreamError(
                f"connect to {o.host}:{o.port} timed out after {limit:g} s", timeout=True,
            ) from None
        except TimeoutError:
            self._slot_freed()
            raise UpstreamError(
                f"connect to {o.host}:{o.port} timed out after {limit:g} s", timeout=True,
            ) from None
        except OSError as e:
            self._slot_freed()
            raise UpstreamError(f"connect to {o.host}:{o.port} failed: {e.strerror}") from None
        except BaseException:
            self._slot_freed()
            raise
        return conn

    SWEEP = 0.05

    def watch(self, conn: _Conn) -> None:
        self.waiting.add(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.SWEEP, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self.waiting if c.deadline <= now]:
            self.waiting.discard(conn)
            conn.on_timeout()
        self._sweeper = (self.loop.call_later(self.SWEEP, self._sweep)
                         if self.waiting else None)

    def release(self, conn: _Conn) -> None:
        if conn.closed or not conn.keep_alive:
            conn.close()
            return
        if conn.paused and conn.transport is not None:
            conn.transport.resume_reading()  # paused for a slow reader: the next one reads
        conn.reused = True
        conn._reset_response()
        while self._waiters:  # a waiting request takes it at once
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self._idle.append(conn)

    def _slot_freed(self) -> None:
        self.open -= 1
        while self._waiters:  # a closed connection's slot goes to the first waiter
            w = self._waiters.popleft()
            if not w.done():
                self.open += 1
                w.set_result(None)
                return

    def take_idle(self) -> _Conn | None:
        """An idle kept-alive connection, or None (no waiting, no connecting)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def put_back(self, conn: _Conn) -> None:
        """Return a connection from `take_idle` that was not used."""
        self._idle.append(conn)

    async def _take(self, deadline: float) -> _Conn:
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.closed:
                return candidate
        if self.open < self.size:
            self.open += 1
            return await self._connect(deadline)
        loop = self.loop
        waiter: asyncio.Future[_Conn | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            got = await waiter
        finally:
            timer.cancel()
        if got is None:  # a slot, not a connection: open one
            return await self._connect(deadline)
        return got

    def encode(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        """The request as sent upstream: our Host, the given headers, a length, the body."""
        head = [method, b" ", self.origin.prefix, target, self.host_line]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if body or method == b"POST":
            head += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        head.append(b"\r\n")
        if body:
            head.append(body)
        return b"".join(head)

    async def request(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> Response:
        data = self.encode(method, target, headers, body)
        deadline = self.loop.time() + self.timeout
        while True:
            try:
                conn = await self._take(deadline)
            except TimeoutError:
                raise UpstreamError(
                    f"no upstream connection free within {self.timeout:g} s "
                    f"({self.size} in use)", timeout=True) from None
            assert conn.transport is not None
            conn.expecting = True
            conn.transport.write(data)
            try:
                while not conn.head_done:
                    await conn.wait(deadline)
            except UpstreamError as e:
                conn.close()
                # A kept-alive connection the upstream closed before answering: the request
                # most likely never ran, but only idempotent ones may be sent again.
                if (
                    conn.reused and not conn.received and not e.timeout
                    and method in _IDEMPOTENT
                ):
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled mid-exchange: the connection is unusable
                raise
            return Response(conn, deadline)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def _expire(waiter: asyncio.Future[_Conn | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
