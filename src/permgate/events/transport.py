"""Where a delivery leaves permgate: the ONE place a webhook target is connected to.

A small HTTP/1.1 client made for one job: POST a signed event and learn the status. How an
answer is read (framing, interim `1xx` answers skipped, close-delimited answers, bytes after
an answer, one deadline per exchange) is the client core's, permgate/http1.py, shared with
the gateway's upstream pool; this module adds where it may connect, its pools, and that an
answer's body is counted (at most 1 MiB) and dropped, never kept.

Connections are kept alive per endpoint in a pool of at most
`per_destination` connections (the worker's bound on attempts in flight to one endpoint, so
an attempt never waits for a connection), so a slow or dead endpoint holds at most its own
pool and every other endpoint keeps its connections; the worker bounds the attempts in
flight in all (`concurrency`), which bounds the connections too. Measured
against aiohttp in the same run (bench/bench_events.py, docs/events.md): about three times
fewer CPU microseconds per delivery, which is what one worker's throughput is made of.

Where it may connect is the policy of events/targets.py (issue 11), applied here and only
here: `_check_target` checks the URL (https, no userinfo, no private host form; a local
`permgate listen` target: loopback only) before every request, and `_Destination._connect`
(the only `create_connection`) resolves the host once, checks every address it resolves to,
and connects to exactly one of those checked addresses, never to the name (so DNS rebinding
cannot swap it); TLS is still verified against the host name. No proxy, no redirect: the
status is the answer. Kept-alive connections stay on the address checked when they opened.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httptools

from permgate.events.targets import TargetPolicy, TargetRefused
from permgate.http1 import Connection, Deadlines, ExchangeError

USER_AGENT = "permgate-webhooks/0.2"
_IDLE_SECONDS = 30.0  # an idle kept-alive connection is closed after this
_MAX_ANSWER = 1 << 20  # a receiver's answer body is read (to reuse the connection), never kept


__all__ = ["DeliveryError", "Response", "Target", "TargetRefused", "Transport"]


@dataclass(frozen=True, slots=True)
class Target:
    endpoint_id: str
    url: str
    local: bool  # a `permgate listen` endpoint: loopback allowed, and only loopback
    mode: str  # the endpoint's mode: the policy's development setting is per mode


class DeliveryError(ExchangeError):
    """The connection failed or the answer was not HTTP (the attempt failed)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int


@dataclass(frozen=True, slots=True)
class _Url:
    tls: bool
    host: str
    port: int
    host_header: bytes
    target: bytes  # path and query, as sent on the request line
    literal: bool  # the host is an address: checking it needs no DNS
    head: bytes  # the request line, Host and User-Agent: the same for every request


def _check_target(policy: TargetPolicy, target: Target) -> _Url:
    """The URL as sent, if the policy lets it be used (TargetRefused says why not). Applied
    to every request: the answer depends only on the URL, mode and kind under the
    transport's (fixed) policy, so what passed is cached under exactly that key and a
    refusal is raised again each time. The addresses are checked at every connection."""
    checked = policy.check_url(target.url, target.mode, local=target.local)
    parts = urlsplit(target.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tls = checked.scheme == "https"
    name = f"[{checked.host}]" if ":" in checked.host else checked.host
    default = checked.port == (443 if tls else 80)
    host_header = (name if default else f"{name}:{checked.port}").encode("ascii")
    target_bytes = path.encode("ascii")
    head = b"POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n" % (
        target_bytes, host_header, USER_AGENT.encode())
    return _Url(tls, checked.host, checked.port, host_header, target_bytes,
                checked.address is not None, head)


class _Conn(Connection):
    """One connection to a receiver; its answer's body is counted, then dropped."""

    Error = DeliveryError
    peer = "the receiver"

    def __init__(self, deadlines: Deadlines) -> None:
        super().__init__(deadlines)
        self.last_used = time.monotonic()

    def _reset_response(self) -> None:
        super()._reset_response()
        self.body_bytes = 0

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > _MAX_ANSWER:
            self._fail(DeliveryError("the answer is larger than 1 MiB"))
            raise httptools.HttpParserError("too large")  # stops the parser; closed


class _Destination:
    """At most `limit` connections for one endpoint; idle ones reused, the warmest first;
    callers beyond the limit wait for one to be released."""

    def __init__(self, url: _Url, limit: int, tls: ssl.SSLContext | None,
                 policy: TargetPolicy, target: Target, deadlines: Deadlines) -> None:
        self.url = url
        self.deadlines = deadlines
        self.limit = limit
        self.tls = tls
        self.policy = policy
        self.mode = target.mode
        self.local = target.local
        self.opened = 0
        self.idle: list[_Conn] = []
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()

    async def _connect(self) -> _Conn:
        # The one place a socket to a webhook target is opened: the name resolved once, every
        # address checked (TargetRefused if any may not be used), then a connection to one of
        # exactly those addresses. TLS still verifies the certificate against the name.
        loop = asyncio.get_running_loop()
        u = self.url
        check = functools.partial(self.policy.addresses, u.host, u.port, self.mode,
                                  local=self.local)
        # DNS blocks: off the event loop (an address literal is checked in place).
        addresses = check() if u.literal else await loop.run_in_executor(None, check)
        last: OSError | None = None
        deadlines = self.deadlines
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Conn(deadlines), address, u.port, ssl=self.tls,
                    server_hostname=u.host if self.tls else None)
            except OSError as e:
                last = e
                continue
            return conn
        assert last is not None
        raise DeliveryError(f"connect to {u.host}:{u.port} ({', '.join(addresses)}) failed: "
                            f"{last.strerror or last}") from None

    def take_idle(self) -> _Conn | None:
        """The warmest idle connection, if one is open (no waiting, no connecting)."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.opened -= 1
        return None

    async def acquire(self) -> _Conn:
        while True:
            conn = self.take_idle()
            if conn is not None:
                return conn
            if self.opened < self.limit:
                self.opened += 1
                try:
                    return await self._connect()
                except BaseException:
                    self.opened -= 1
                    self._wake()
                    raise
            waiter: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result(), True)  # handed over as we were cancelled
                raise
            if handed is not None:
                return handed

    def release(self, conn: _Conn | None, reusable: bool) -> None:
        if conn is not None and reusable and not conn.closed:
            conn.recycle()
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self.idle.append(conn)
            return
        if conn is not None:
            conn.close()
        self.opened -= 1
        self._wake()

    def _wake(self) -> None:
        """A slot is free: let one waiter open a connection of its own."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def sweep(self, now: float) -> None:
        keep = []
        for conn in self.idle:
            if conn.closed or now - conn.last_used > _IDLE_SECONDS:
                conn.close()
                self.opened -= 1
            else:
                keep.append(conn)
        self.idle = keep


class Transport:
    """Use from one event loop; `close()` on that loop."""

    def __init__(self, *, concurrency: int = 256, per_destination: int = 16,
                 timeout: float = 10.0, policy: TargetPolicy | None = None) -> None:
        self.concurrency = concurrency
        self.per_destination = per_destination
        self.timeout = timeout
        self.policy = policy or TargetPolicy.from_env()
        self._destinations: dict[tuple[str, bool, str, int, bool, str], _Destination] = {}
        self._tls: ssl.SSLContext | None = None
        self._parsed: dict[tuple[str, str, bool], _Url] = {}
        self._next_sweep = time.monotonic() + _IDLE_SECONDS
        self._deadlines: Deadlines | None = None  # made on the loop, at the first post

    def _destination(self, target: Target, url: _Url, deadlines: Deadlines) -> _Destination:
        # The mode is in the key: the policy differs by mode, and pools never share.
        key = (target.endpoint_id, url.tls, url.host, url.port, target.local, target.mode)
        dest = self._destinations.get(key)
        if dest is None:
            if url.tls and self._tls is None:
                self._tls = ssl.create_default_context(cafile=certifi.where())
            dest = self._destinations[key] = _Destination(
                url, self.per_destination, self._tls if url.tls else None, self.policy,
                target, deadlines)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + _IDLE_SECONDS
            for k, d in list(self._destinations.items()):
                d.sweep(now)
                if not d.opened and not d.waiters and k != key:
                    del self._destinations[k]
        return dest

    def _url(self, target: Target) -> _Url:
        key = (target.url, target.mode, target.local)
        url = self._parsed.get(key)
        if url is None:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            url = self._parsed[key] = _check_target(self.policy, target)
        return url

    async def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Response:
        """POST once (within `timeout`); raises TargetRefused, DeliveryError, TimeoutError."""
        url = self._url(target)  # the URL checked (a refusal is never cached)
        head = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        data = b"%s%sContent-Length: %d\r\n\r\n%s" % (
            url.head, head.encode("latin-1"), len(body), body)
        deadlines = self._deadlines
        if deadlines is None:
            deadlines = self._deadlines = Deadlines(asyncio.get_running_loop(), self.timeout)
        dest = self._destination(target, url, deadlines)
        # One deadline for the attempt: a connection (waited for or opened, DNS included),
        # then the exchange, whose deadline the core's sweep keeps without a timer of its own.
        deadline = deadlines.loop.time() + self.timeout
        while True:
            conn = dest.take_idle()
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await dest.acquire()
            ok = False
            try:
                conn.send(data, deadline)
                while not conn.done:
                    await conn.wait()
                ok = conn.reusable
                return Response(conn.status)
            except DeliveryError as e:
                if e.timeout:
                    raise TimeoutError(e.detail) from None
                # A kept-alive connection the receiver closed just before our request:
                # nothing was answered; send once more on a fresh connection (the loop
                # goes on past the `finally`: mypyc compiles no `continue` inside one).
                if not conn.stale(e):
                    raise
            finally:
                conn.last_used = time.monotonic()
                dest.release(conn, ok)

    async def close(self) -> None:
        for dest in self._destinations.values():
            for conn in dest.idle:
                conn.close()
            dest.idle.clear()
        self._destinations.clear()
        if self._deadlines is not None:
            self._deadlines.close()
        await asyncio.sleep(0)  # let the transports finish closing
