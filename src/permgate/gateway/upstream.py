"""A keep-alive HTTP/1.1 client pool for one upstream origin, on asyncio protocols + httptools.

The gateway only ever talks to one origin with small requests, so a pool with no
per-request task, timer-task or header-object allocation is the cheaper path (measured
against httpx, which it replaced). Bodies are streamed: the caller sees the status and headers
as soon as they arrive and pulls body chunks after. How an answer is read (framing, interim
answers, stray bytes, the exchange's deadline) is the client core's, permgate/http1.py,
shared with webhook delivery; this module is the pool: slots, idle connections, waiters,
retries and each app's share.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Final, TypeVar
from urllib.parse import urlsplit

from permgate.http1 import HIGH_WATER, Connection, Deadlines, ExchangeError, Headers, Sink

__all__ = ["Headers", "Origin", "Pool", "Response", "Sink", "UpstreamError"]
_T = TypeVar("_T")
# Replays are safe only where the upstream treats a repeat as the same request.
_IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"PUT"})


class UpstreamError(ExchangeError):
    """The upstream could not be used. `timeout` picks 504 over 502."""


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


class _Conn(Connection):
    """One upstream connection (the reading of answers is the core's, permgate/http1.py);
    what it adds is the pool's bookkeeping: the slot it holds until closed, and the owner
    (app) whose share of the pool it counts against while taken."""

    Error = UpstreamError
    peer = "upstream"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.counted = True  # holds one of the pool's `size` slots until closed
        self.share: _Share | None = None  # the owner's, while taken for one
        super().__init__(pool.deadlines)

    def freed(self) -> None:
        if self.counted:
            self.counted = False
            self.pool._slot_freed()
        share = self.share
        if share is not None:
            self.share = None
            self.pool._unhold(share)


class _Share:
    """One owner's part of the pool: connections taken (or promised to a waiting call of
    its own) and its calls waiting for one of them to come back."""

    __slots__ = ("held", "queued")

    def __init__(self) -> None:
        self.held = 0
        self.queued: deque[asyncio.Future[None]] = deque()


class Response:
    """Status and headers of an upstream answer; the body is read with `body()`."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
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

    def body(self) -> _Body:
        """The body's chunks, within the exchange's one deadline: time the caller spends
        between chunks (writing them to a slow client) counts, and once it passed the
        connection is closed (by the pool's sweep, even while nobody iterates) and the
        next step raises the timeout."""
        return _Body(self._conn)

    def abort(self) -> None:
        self._conn.close()


class _Body:
    """`Response.body()`'s async iterator (a class: mypyc compiles no async generator).
    Whoever stops before the end calls `Response.abort()` (the full path does)."""

    __slots__ = ("_conn", "_ended")

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._ended = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if self._ended:
            raise StopAsyncIteration
        try:
            while True:
                if conn.chunks:
                    if conn.error is not None:
                        raise conn.error
                    chunk = conn.chunks.popleft()
                    conn.buffered -= len(chunk)
                    if conn.paused and conn.buffered < HIGH_WATER // 2 and conn.transport:
                        conn.paused = False
                        conn.transport.resume_reading()
                    return chunk
                if conn.error is not None:
                    raise conn.error
                if conn.done:
                    break
                await conn.wait()
        except BaseException:
            conn.close()  # a half-read response leaves the connection unusable
            raise
        self._ended = True
        conn.pool.release(conn)
        raise StopAsyncIteration


class Pool:
    """Connections to one origin: at most `size` open at once (busy and idle together);
    idle ones are reused last-in first-out (the warmest first). A request finding every
    connection busy waits, first come first served, within its own deadline.

    An owner (the calling app) holds at most `per_owner` connections at once, so one app
    whose calls hang (an upstream slow for it, clients that never read its answers) cannot
    take the pool from the others: its call beyond that waits, first come first served
    among its own, within its deadline (then 504). Calls without an owner are not counted.
    """

    def __init__(
        self, origin: Origin, size: int, connect_timeout: float, timeout: float,
        per_owner: int | None = None,
    ) -> None:
        self.origin = origin
        self.size = size
        # None: half of the pool (at least one connection), the default of `pool_per_app`
        self.per_owner = max(1, size // 2 if per_owner is None else min(per_owner, size))
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.open = 0  # connections counted against `size`, connecting ones included
        self._idle: list[_Conn] = []
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
        # Kept when back to 0 (cheaper than removing and adding one on every call): one
        # per app that called, which only an app's valid key can be.
        self.shares: dict[str, _Share] = {}
        self._ssl = ssl.create_default_context() if origin.tls else None
        self.loop = asyncio.get_running_loop()
        # Exchanges in flight, checked against their deadlines by one timer for the pool.
        self.deadlines = Deadlines(self.loop, timeout)
        self.host_line = b" HTTP/1.1\r\nhost: " + origin.host_header + b"\r\n"

    @property
    def held(self) -> dict[str, int]:
        """Owner -> connections it holds (or that are promised to its waiting call)."""
        return {owner: share.held for owner, share in self.shares.items() if share.held}

    @property
    def waiting(self) -> set[Connection]:
        """The exchanges whose deadline is watched (taken connections in use)."""
        return self.deadlines.waiting

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

    def release(self, conn: _Conn) -> None:
        if conn.closed or not conn.keep_alive:  # `conn.reusable`, inlined (every call)
            conn.close()
            return
        share = conn.share
        if share is not None:
            conn.share = None
            if share.queued:
                self._unhold(share)
            else:  # `_unhold`'s common case, inlined (every call)
                share.held -= 1
        conn.recycle()
        while self._waiters:  # `_hand_over`, inlined (every call)
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self._idle.append(conn)

    def _hand_over(self, conn: _Conn) -> None:
        """A connection ready for its next request: to the first waiting call, or idle."""
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

    def _unhold(self, share: _Share) -> None:
        """One of an owner's connections is back: its first queued call takes the place."""
        queued = share.queued
        while queued:
            w = queued.popleft()
            if not w.done():
                w.set_result(None)  # the place passes on: `held` stays as it is
                return
        share.held -= 1

    def _share(self, owner: str) -> _Share:
        share = self.shares.get(owner)
        if share is None:
            share = self.shares[owner] = _Share()
        return share

    async def _hold(self, owner: str, deadline: float) -> _Share:
        """A place in `owner`'s share, waiting (first come first served) for one of its
        connections to come back if it holds `per_owner` already; TimeoutError at
        `deadline`."""
        share = self._share(owner)
        if share.held < self.per_owner:
            share.held += 1
            return share
        waiter: asyncio.Future[None] = self.loop.create_future()
        share.queued.append(waiter)
        timer = self.loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._unhold(share)  # the place came as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()
        return share

    def take_idle(self, owner: str | None = None) -> _Conn | None:
        """An idle kept-alive connection, or None (no waiting, no connecting; None too when
        `owner` holds its share already: its call then takes the waiting path)."""
        idle = self._idle
        if not idle:
            return None
        share = None
        if owner is not None:
            share = self.shares.get(owner) or self._share(owner)
            if share.held >= self.per_owner:
                return None
        while idle:
            conn = idle.pop()
            if not conn.closed:
                if share is not None:
                    share.held += 1
                    conn.share = share
                return conn
        return None

    def put_back(self, conn: _Conn) -> None:
        """Return a connection from `take_idle` that was not used."""
        share = conn.share
        if share is not None:
            conn.share = None
            self._unhold(share)
        self._idle.append(conn)

    async def _take(self, deadline: float) -> _Conn:
        while True:
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
            except BaseException:
                # Cancelled (an ASGI server ending the request's task) after a connection
                # or a slot was handed over: pass it on, or it is never given back.
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()
                    if handed is None:
                        self._slot_freed()
                    elif handed.closed:
                        pass  # its close gave its slot back already
                    else:
                        self._hand_over(handed)  # recycled when it was handed over
                raise
            finally:
                timer.cancel()
            if loop.time() >= deadline:
                # Handed over at the deadline, before its timer ran (a loaded loop runs the
                # release first): the wait timed out all the same; pass what came on.
                if got is None:
                    self._slot_freed()
                elif not got.closed:
                    self._hand_over(got)
                raise TimeoutError
            if got is None:  # a slot, not a connection: open one
                return await self._connect(deadline)
            if not got.closed:
                return got
            # Released inside its parser's callback, then closed before we ran (bytes came
            # after the answer it carried): its close freed its slot, so look again.

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
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]],
        body: bytes, *, owner: str | None = None,
    ) -> Response:
        """Send one request and return once the answer's head is in. One deadline
        (`timeout`, from now) covers the whole exchange: a connection free for `owner` and
        in the pool, the answer's head, and its body until read to its end."""
        data = self.encode(method, target, headers, body)
        deadline = self.loop.time() + self.timeout
        while True:
            share = None
            if owner is not None:
                try:
                    share = await self._hold(owner, deadline)
                except TimeoutError:
                    raise UpstreamError(
                        f"no upstream connection free within {self.timeout:g} s (app "
                        f"{owner!r} holds its share: {self.per_owner} of {self.size})",
                        timeout=True) from None
            try:
                conn = await self._take(deadline)
            except BaseException as e:
                if share is not None:
                    self._unhold(share)
                if isinstance(e, TimeoutError):
                    raise UpstreamError(
                        f"no upstream connection free within {self.timeout:g} s "
                        f"({self.size} in use)", timeout=True) from None
                raise
            conn.share = share
            conn.send(data, deadline)
            try:
                while not conn.head_done:
                    await conn.wait()
            except UpstreamError as e:
                conn.close()
                # A kept-alive connection the upstream closed before answering: the request
                # most likely never ran, but only idempotent ones may be sent again.
                if conn.stale(e) and method in _IDEMPOTENT:
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled mid-exchange: the connection is unusable
                raise
            return Response(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self.deadlines.close()


def _expire(waiter: asyncio.Future[_T]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
