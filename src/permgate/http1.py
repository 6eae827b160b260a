"""The one HTTP/1.1 client core: reading an answer off a kept-alive connection.

Used by the gateway's upstream pool (gateway/upstream.py) and by webhook delivery
(events/transport.py), which are sibling layers: what HTTP/1.1 says about an answer lives
here, once, and each user adds only its own policy (where it may connect, how many
connections, what it keeps of the body).

What a `Connection` does, for both:
- framing: Content-Length, chunked (trailers read and dropped, never taken for headers),
  and close-delimited (no length: the answer ends when the peer closes, as Python's
  `http.server` answers), by httptools' parser plus the end-of-file rule below;
- interim answers (`1xx`: 100 Continue, 103 Early Hints, ...) skipped: the final one counts;
- bytes after an answer (in its read or later) close the connection: they must never become
  the next request's answer;
- a bound on an answer's head: not whole after `MAX_HEAD` bytes read, interim answers
  included, the exchange fails;
- keep-alive: `reusable` once an answer ended on a connection both sides keep open;
  `stale(error)` tells a kept-alive connection the peer closed before answering (the request
  most likely never ran, so a caller may send it once more on a fresh connection);
- one deadline per exchange (`Deadlines`): set when the request is sent and never reset by
  a read. It holds until the user releases the connection, so time an answer waits for its
  reader counts too; when it passes the exchange fails and its connection is closed.

Two ways to take an answer: callbacks (`exchange(data, deadline, sink)`: no future, no
task; the gateway's fast path) or awaiting (`send(data, deadline)` then `await wait()` until
`head_done` / `done`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import Any, Final, Protocol, cast

import httptools

from permgate.errors import PermgateError

Headers = list[tuple[bytes, bytes]]
HIGH_WATER: Final = 256 * 1024  # body bytes buffered before reading pauses (or the sink is called)
MAX_HEAD: Final = 64 * 1024  # bytes read for an answer whose final head is still not whole
_NO_BODY: Final = frozenset({204, 304})
# Final: compiled, an imported name is read from the module's dictionary at every call.
_perf: Final = perf_counter


class ExchangeError(PermgateError):
    """No (whole) answer: `timeout` tells a passed deadline from a failed connection."""

    def __init__(self, detail: str, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timeout = timeout


class Sink(Protocol):
    """Who gets an answer by callback instead of awaiting it (`Connection.exchange`). Its
    arguments are the user's own subclasses of `Connection` and `ExchangeError`."""

    def upstream_body(self, conn: Any) -> None:
        """More than `HIGH_WATER` bytes are buffered in `conn.chunks`: take them."""

    def upstream_done(self, conn: Any) -> None:
        """The whole answer is in (`conn.status`, `conn.headers`, `conn.chunks`)."""

    def upstream_failed(self, conn: Any, error: Any) -> None:
        """No (whole) answer will come; `conn` is closed."""


class Deadlines:
    """The deadlines of many exchanges, checked every `SWEEP` seconds by one timer: no timer
    per request. An exchange is watched from its request until its connection is released
    or closed."""

    SWEEP = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout  # only for the error's message: each exchange has its own
        self.waiting: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def watch(self, conn: Connection) -> None:
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

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class Connection(asyncio.Protocol):
    """One client connection; the parser's callbacks fill in the answer being read.

    Subclasses set `Error` (the error their callers catch, an `ExchangeError`) and may
    override `freed()` (the connection is closed: its slot is free) and `on_body`."""

    Error: type[ExchangeError] = ExchangeError
    peer = "the peer"  # how error messages name the other end

    def __init__(self, deadlines: Deadlines) -> None:
        self.deadlines = deadlines
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.deadline = 0.0
        self.reused = False
        self.sink: Sink | None = None  # set for an exchange driven by callbacks
        self.expecting = False  # a request was sent whose answer has not ended
        self.chunks: deque[bytes] = deque()
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        # A new list: the full path's `Response` keeps the last answer's. The chunks are
        # read whole or dropped before a release, so their deque is reused (one fewer
        # object per call).
        self.headers: Headers = []
        self.chunks.clear()
        self.buffered = 0
        self.head_done = False
        self.head_at = 0.0  # perf_counter() when the answer's head was in
        self.head_bytes = 0  # bytes read that left the final head not whole
        self.interim = False
        self.done = False
        self.keep_alive = False
        self.received = False
        self.error: ExchangeError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if not self.done:  # else the answer is whole: only what came after it is bad
                self._fail(self.Error(f"malformed answer from {self.peer}: {e}"))
            self.close()
            return
        if self.expecting and not self.head_done:
            # Still no whole head: bounded (interim answers count too, so a peer sending 1xx
            # forever is cut off). Counted per read, which costs nothing when a read brings
            # the whole head; such a read can hold a larger head (reads are at most 256 KiB).
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                self._fail(self.Error(
                    f"the answer's head from {self.peer} is larger than {MAX_HEAD} bytes"))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.freed()
        if self.done or self.error is not None:
            return  # ended, or failed already (a deadline, a bad answer): nothing to add
        if self.head_done and self.expecting and self._until_close():
            # A close-delimited answer: the end of the connection is the end of the body.
            self.keep_alive = False
            self._complete()
        elif self.head_done:
            self._fail(self.Error(f"{self.peer} closed the connection mid-answer"))
        else:
            self._fail(self.Error(f"{self.peer} closed the connection before answering"))

    def _until_close(self) -> bool:
        """Whether the answer being read has no length: neither Content-Length nor chunked
        (RFC 9112 6.3); only asked when the connection ends mid-answer."""
        if self.status in _NO_BODY:
            return False
        for name, value in self.headers:
            if name == b"content-length" or (
                    name == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    # -- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self.expecting:
            # Bytes after the answer (in its read or later): a peer out of step. They must
            # not become the next call's answer: the connection is closed, unused.
            raise httptools.HttpParserError("an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # after the head: a chunked answer's trailers, dropped
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints, ...): the real one follows
            self.interim = True
            return
        self.status = status
        self.head_done = True
        self.head_at = _perf()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
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
        # `_complete`, inlined: the gateway's fast path runs this for every call.
        self.done = True
        self.expecting = False
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.upstream_done(self)
            return
        self._wake()

    # -- plumbing ------------------------------------------------------------------------
    def _complete(self) -> None:
        """The answer ended (as `on_message_complete` ends it, for the end-of-file rule)."""
        self.done = True
        self.expecting = False
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.upstream_done(self)
            return
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, error: ExchangeError) -> None:
        if self.error is None:
            self.error = error
        sink = self.sink
        if sink is not None:
            self.sink = None
            self.close()
            sink.upstream_failed(self, error)
            return
        self._wake()

    def freed(self) -> None:
        """The connection is closed (by either side): for a pool's bookkeeping."""

    def close(self) -> None:
        self.closed = True
        self.deadlines.waiting.discard(self)
        if self.transport is not None:
            self.transport.close()
        self.freed()

    def recycle(self) -> None:
        """Ready for the next request: called when the answer was read to its end on a
        connection kept open (`reusable`); its deadline is no longer watched."""
        self.deadlines.waiting.discard(self)
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # paused for a slow reader: the next one reads
        self.reused = True
        self._reset_response()

    @property
    def reusable(self) -> bool:
        """The answer ended and both sides keep the connection open (`keep_alive` is set
        only when an answer ends)."""
        return self.keep_alive and not self.closed

    def stale(self, error: ExchangeError) -> bool:
        """A kept-alive connection the peer closed before answering anything: the request
        most likely never ran (whether to send it again is the caller's choice)."""
        return self.reused and not self.received and not error.timeout

    def send(self, data: bytes, deadline: float) -> None:
        """Send one request; its answer is awaited with `wait()` until `deadline` (loop
        time), which holds until the connection is released or closed."""
        self.deadline = deadline
        self.expecting = True
        self.deadlines.watch(self)
        assert self.transport is not None
        self.transport.write(data)

    def exchange(self, data: bytes, deadline: float, sink: Sink) -> None:
        """Send one request whose answer goes to `sink`'s callbacks (no future, no task)."""
        self.sink = sink
        self.deadline = deadline  # `send`, inlined: the gateway's fast path
        self.expecting = True
        self.deadlines.watch(self)
        assert self.transport is not None
        self.transport.write(data)

    async def wait(self) -> None:
        """Until the parser made progress or the exchange failed (its deadline included)."""
        if self.error is None:
            self.waiter = waiter = self.deadlines.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise self.error

    def on_timeout(self) -> None:
        """The exchange's deadline passed: it fails, whoever holds the connection (a reader
        that stopped reading too), and the connection is closed."""
        if self.done and not self.chunks and self.error is None:
            # The whole answer is read, only the release is pending: nothing to cut off, but
            # a holder that never releases must not keep the connection (and its slot).
            self.close()
            return
        self._fail(self.Error(
            f"no complete answer within {self.deadlines.timeout:g} s", timeout=True))
        self.close()
