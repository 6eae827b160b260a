"""The HTTP/1.1 client core (permgate/http1.py) through both of its users, case by case: the
gateway's upstream pool (`Pool.request` + `Response`) and webhook delivery
(`Transport.post`) against one scripted receiver on a real socket. Every case runs against
both, with the same expectations, so a fix made for one cannot miss the other.

The receiver answers each request it reads with the next script of the case: bytes to write,
pauses, a close, or a stall (nothing more until the client closes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from permgate.events.targets import TargetPolicy
from permgate.events.transport import DeliveryError, Target, Transport
from permgate.gateway.upstream import Origin, Pool, UpstreamError

TIMEOUT = 0.5  # each call's one deadline; only the slow receivers wait it out
CLOSE = "close"  # the receiver closes the connection
STALL = "stall"  # the receiver sends nothing more, until the client closes
Step = bytes | float | str


def answer(status: int, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (f"HTTP/{version} {status} X\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            .encode() + body)


OK = answer(200, b"ok")
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class Receiver:
    scripts: list[list[Step]]
    url: str = ""
    connections: int = 0
    requests: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                script = self.scripts.pop(0) if self.scripts else [OK]
                for step in script:
                    if step == CLOSE:
                        return
                    if step == STALL:
                        await reader.read()  # until the client gives up and closes
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        assert isinstance(step, bytes)
                        writer.write(step)
                        await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()


@asynccontextmanager
async def receiving(scripts: Sequence[Sequence[Step]]) -> AsyncIterator[Receiver]:
    rec = Receiver([list(s) for s in scripts])
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield rec
    finally:
        server.close()


@dataclass(frozen=True)
class Outcome:
    status: int | None = None  # None: no answer
    body: bytes | None = None  # None: the user does not keep bodies (webhooks)
    error: str | None = None  # "timeout" or "failed"
    headers: frozenset[bytes] = frozenset()  # the answer's header names


class PoolUser:
    """The gateway's upstream pool: a GET, its body read to its end."""

    name = "upstream pool"
    keeps_body = True

    def __init__(self, url: str) -> None:
        self.pool = Pool(Origin(url.removesuffix("/hook")), 4, 2.0, TIMEOUT)

    async def call(self) -> Outcome:
        try:
            resp = await self.pool.request(b"GET", b"/hook", [(b"accept", b"*/*")], b"")
            if resp.complete:
                body = resp.take_all()
            else:
                body = b"".join([chunk async for chunk in resp.body()])
            names = frozenset(n for n, _ in resp.headers)  # read last: trailers come last
        except UpstreamError as e:
            return Outcome(error="timeout" if e.timeout else "failed")
        return Outcome(resp.status, body, headers=names)

    async def close(self) -> None:
        self.pool.close()


class Collect:
    """A sink: the answer's chunks as they come, then the whole answer (or the failure)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parts: list[bytes] = []
        self.got: asyncio.Future[tuple[int, bytes, frozenset[bytes]]] = \
            pool.loop.create_future()

    def upstream_body(self, conn: Any) -> None:
        self.parts.extend(conn.chunks)
        conn.chunks.clear()

    def upstream_done(self, conn: Any) -> None:
        self.parts.extend(conn.chunks)
        self.got.set_result((conn.status, b"".join(self.parts),
                             frozenset(n for n, _ in conn.headers)))
        self.pool.release(conn)

    def upstream_failed(self, conn: Any, error: UpstreamError) -> None:
        self.got.set_exception(error)


class SinkUser(PoolUser):
    """The gateway's fast path: a pooled connection whose answer comes by callbacks
    (`exchange(data, deadline, sink)`, no future in the core), sent again on a fresh
    connection when a kept-alive one was closed before answering, as native.py does."""

    name = "upstream pool, by callbacks"

    async def call(self) -> Outcome:
        pool = self.pool
        data = pool.encode(b"GET", b"/hook", [(b"accept", b"*/*")], b"")
        while True:
            deadline = pool.loop.time() + TIMEOUT
            conn = pool.take_idle()
            try:
                if conn is None:
                    conn = await pool._take(deadline)
            except TimeoutError:
                return Outcome(error="timeout")
            sink = Collect(pool)
            conn.exchange(data, deadline, sink)
            try:
                status, body, names = await sink.got
            except UpstreamError as e:
                if conn.stale(e):
                    continue
                return Outcome(error="timeout" if e.timeout else "failed")
            return Outcome(status, body, headers=names)


class TransportUser:
    """Webhook delivery: a signed-event-like POST; only the status is kept."""

    name = "webhook transport"
    keeps_body = False

    def __init__(self, url: str) -> None:
        self.transport = Transport(per_destination=4, timeout=TIMEOUT, policy=TargetPolicy())
        self.target = Target("we_http1", url, local=True, mode="test")

    async def call(self) -> Outcome:
        try:
            resp = await self.transport.post(self.target, b'{"id":"evt_1"}',
                                             {"Content-Type": "application/json"})
        except TimeoutError:
            return Outcome(error="timeout")
        except DeliveryError:
            return Outcome(error="failed")
        return Outcome(resp.status)

    async def close(self) -> None:
        await self.transport.close()


USERS: dict[str, Callable[[str], PoolUser | TransportUser]] = {
    "pool": PoolUser, "callbacks": SinkUser, "transport": TransportUser}


@dataclass(frozen=True)
class Case:
    scripts: tuple[tuple[Step, ...], ...]  # one per request the receiver reads
    expect: tuple[Outcome, ...]  # one per call, in order
    connections: int | None = None  # how many the receiver accepted, where it matters
    absent: frozenset[bytes] = frozenset()  # header names the answer must not show


def ok(body: bytes = b"ok") -> Outcome:
    return Outcome(200, body)


FAILED = Outcome(error="failed")
TIMED_OUT = Outcome(error="timeout")

CASES: dict[str, Case] = {
    "content-length answers reuse one connection": Case(
        ((OK,), (answer(200, b"second"),)), (ok(), ok(b"second")), connections=1),
    "103 then 200 is a 200": Case(
        ((EARLY_HINTS + OK,), (OK,)), (ok(), ok()), connections=1),
    "103 in its own read, the 200 later": Case(
        ((EARLY_HINTS, 0.05, OK),), (ok(),)),
    "100-continue then 200 is a 200": Case(
        ((CONTINUE + answer(201, b"made"),),), (Outcome(201, b"made"),)),
    "close-delimited 2xx (http.server's HTTP/1.0 answer)": Case(
        ((b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11\r\n"
          b"Content-Type: text/plain\r\n\r\n", b"delivered", CLOSE), (OK,)),
        (ok(b"delivered"), ok()), connections=2),
    "close-delimited 2xx over HTTP/1.1, body in pieces": Case(
        ((b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\npart one, ", 0.05,
          b"part two", CLOSE),),
        (Outcome(202, b"part one, part two"),)),
    "chunked with trailers: the trailers are no headers": Case(
        ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n"
          b"5\r\nhello\r\n", 0.05, b"6\r\n world\r\n0\r\nX-Digest: abc\r\n\r\n"), (OK,)),
        (ok(b"hello world"), ok()), connections=1, absent=frozenset({b"x-digest"})),
    "204 without a length ends at its head": Case(
        ((b"HTTP/1.1 204 No Content\r\n\r\n",), (OK,)),
        (Outcome(204, b""), ok()), connections=1),
    "a receiver that closes mid-body fails the call": Case(
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf.", CLOSE), (OK,)),
        (FAILED, ok()), connections=2),
    "a receiver that closes before answering fails the call": Case(
        ((CLOSE,), (OK,)), (FAILED, ok()), connections=2),
    "a kept-alive connection closed after its answer: the next call goes on a new one": Case(
        ((OK, CLOSE), (answer(200, b"fresh"),)), (ok(), ok(b"fresh")), connections=2),
    "bytes after an answer close the connection, never answer the next call": Case(
        ((OK + answer(200, b"stray"),), (answer(200, b"second"),)),
        (ok(), ok(b"second")), connections=2),
    "an answer that is not HTTP fails": Case(
        ((b"SMTP ready\r\n\r\n",), (OK,)), (FAILED, ok())),
    "a head not whole after 64 KiB fails": Case(
        ((b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\nContent-Length: 0\r\n\r\n",),
         (OK,)), (FAILED, ok())),
    "interim answers without end are cut off": Case(
        ((EARLY_HINTS * 2_000, STALL), (OK,)), (FAILED, ok())),
    "a slow receiver that never answers times out": Case(
        ((STALL,), (OK,)), (TIMED_OUT, ok()), connections=2),
    "a slow receiver that stops mid-body times out": Case(
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome", STALL), (OK,)),
        (TIMED_OUT, ok()), connections=2),
}


@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("case", list(CASES))
def test_both_clients_read_answers_alike(case: str, user: str) -> None:
    c = CASES[case]

    async def scenario() -> None:
        async with receiving(c.scripts) as rec:
            client = USERS[user](rec.url)
            try:
                got = [await client.call() for _ in c.expect]
            finally:
                await client.close()
            want = list(c.expect)
            if not client.keeps_body:
                want = [Outcome(o.status, None, o.error) for o in want]
            assert [Outcome(o.status, o.body, o.error) for o in got] == want
            for o in got:
                assert not (o.headers & c.absent), o.headers
            assert not rec.scripts  # each script answered a request
            if c.connections is not None:
                assert rec.connections == c.connections

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",  # close-delimited: no length to refuse
])
def test_webhook_answers_are_read_to_1_mib_and_never_kept(head: bytes) -> None:
    # Webhook delivery's own bound (the pool streams upstream bodies instead): a receiver's
    # body is counted and dropped, and past 1 MiB the attempt fails.
    async def scenario() -> None:
        async with receiving([[head, b"z" * 2_000_000, STALL]]) as rec:
            client = TransportUser(rec.url)
            try:
                assert await client.call() == FAILED
            finally:
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
