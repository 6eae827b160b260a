"""The native server and the upstream pool in process: mounts, HTTP/1.1 details, bounds."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvloop
from tests.gateway.procs import UPSTREAM_KEY, App, new_app
from tests.gateway.recorder import Recorder, recording_upstream

from permgate.gateway.app import Gateway
from permgate.gateway.config import Settings
from permgate.gateway.native import MAX_REQUEST_HEAD, NativeServer, listen_socket
from permgate.gateway.upstream import Origin, Pool, UpstreamError
from permgate.serve import build
from permgate.store import Store


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with recording_upstream() as rec:
        yield rec


@pytest.fixture(scope="module")
def app(store: Store) -> App:
    return new_app(store, ["customer_read"])


async def oauth_token(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Stands in for an ASGI handler another part mounts under /v1."""
    message = await receive()
    body = json.dumps({"handler": "oauth", "path": scope["path"],
                       "got": message["body"].decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for part in (b"one,", b"two,", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def native(db_url: str, upstream: str, **settings: Any) -> AsyncIterator[str]:
    s = Settings(db=db_url, upstream=upstream, upstream_key=UPSTREAM_KEY, access_log=False,
                 **settings)
    gw: Gateway = build(s)
    await gw.startup()
    # After startup, which mounts the real consent pages at these paths: the test's own apps
    # replace them.
    gw.mount("/v1/oauth/token", oauth_token)  # type: ignore[arg-type]
    gw.mount("/console", streamed, prefix=True)  # type: ignore[arg-type]
    server = NativeServer(gw)
    sock = listen_socket("127.0.0.1", 0)
    sock.listen(64)
    sock.setblocking(False)
    await server.start(sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.stop(grace=1.0)
        await gw.shutdown()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(scenario())  # type: ignore[arg-type]


async def raw(url: str, data: bytes, until: bytes | None = None) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    out = b""
    try:
        while until is None or until not in out:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            out += chunk
    finally:
        writer.close()
    return out


def auth(app: App) -> str:
    return f"Authorization: Bearer {app.key}\r\nStripe-Account: {app.account}\r\n"


def test_mounted_paths_reach_their_asgi_apps_even_under_v1(
    db_url: str, recorder: Recorder, app: App
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url, httpx.AsyncClient() as client:
            before = len(recorder.requests)
            r = await client.post(url + "/v1/oauth/token", content=b"grant_type=x")
            assert r.json() == {"handler": "oauth", "path": "/v1/oauth/token",
                                "got": "grant_type=x"}
            assert int(r.headers["content-length"]) == len(r.content)
            r = await client.get(url + "/console/apps/x")
            assert r.text == "one,two,three" and r.headers["transfer-encoding"] == "chunked"
            # Not mounted: the proxy path (the key is checked; nothing reaches upstream).
            r = await client.get(url + "/v1/oauth/tokens")
            assert r.status_code == 401
            r = await client.get(url + "/consoles")
            assert r.status_code == 401
            assert len(recorder.requests) == before
            r = await client.get(url + "/healthz")
            assert r.json() == {"status": "ok"}

    run(scenario)


def test_the_asgi_entry_uses_the_same_mount_table(db_url: str, recorder: Recorder) -> None:
    async def scenario() -> None:
        s = Settings(db=db_url, upstream=recorder.url, upstream_key=UPSTREAM_KEY)
        gw = build(s)
        await gw.startup()
        gw.mount("/v1/oauth/token", oauth_token)  # type: ignore[arg-type]
        try:
            transport = httpx.ASGITransport(app=gw)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                r = await c.post("/v1/oauth/token", content=b"a=1")
                assert r.json()["handler"] == "oauth"
                assert (await c.get("/v1/customers")).status_code == 401
        finally:
            await gw.shutdown()

    run(scenario)


def test_pipelined_requests_are_answered_in_order(
    db_url: str, recorder: Recorder, app: App
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            one = f"GET /v1/customers?n=1 HTTP/1.1\r\nHost: x\r\n{auth(app)}\r\n"
            two = f"GET /v1/charges?n=2 HTTP/1.1\r\nHost: x\r\n{auth(app)}\r\n"
            three = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            out = await raw(url, (one + two + three).encode())
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
            assert statuses == [b"200", b"403", b"200"], out[:600]
            assert b"/v1/customers?n=1" in out

    run(scenario)


def test_expect_continue_head_limit_and_bad_requests(
    db_url: str, recorder: Recorder, app: App
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write((f"POST /v1/customers HTTP/1.1\r\nHost: x\r\n{auth(app)}"
                          "Content-Type: application/x-www-form-urlencoded\r\n"
                          "Content-Length: 6\r\nExpect: 100-continue\r\n\r\n").encode())
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"name=x")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 403")  # customer_read only: no write
            writer.close()

            big = "X-Pad: " + "p" * (MAX_REQUEST_HEAD + 10) + "\r\n"
            out = await raw(url, f"GET /v1/customers HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode())
            assert out.startswith(b"HTTP/1.1 431") and b"connection: close" in out
            out = await raw(url, b"GET /v1/customers HTTP/1.1\r\nHost x\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 400")
            out = await raw(url, b"GET http://evil.example/v1/payouts HTTP/1.1\r\nHost: x\r\n"
                            + auth(app).encode() + b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 403"), out[:300]
            out = await raw(url, b"HEAD /v1/customers HTTP/1.1\r\nHost: x\r\n"
                            + auth(app).encode() + b"Connection: close\r\n\r\n")
            # The engine knows no HEAD operation: refused, and a HEAD answer has no body.
            assert out.startswith(b"HTTP/1.1 404") and out.endswith(b"\r\n\r\n"), out

    run(scenario)


# -- the upstream pool -------------------------------------------------------------------

@asynccontextmanager
async def upstream(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                     Awaitable[None]]) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await asyncio.sleep(0.1)  # the handlers see their connections closed and end


def test_pool_is_bounded_and_waiters_get_connections_in_turn() -> None:
    open_now = [0]
    most = [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_now[0] -= 1
            writer.close()

    async def scenario() -> None:
        async with upstream(slow) as url:
            pool = Pool(Origin(url), 2, 1.0, 5.0)

            async def one() -> bytes:
                r = await pool.request(b"GET", b"/v1/x", [], b"")
                assert r.complete
                return r.take_all()

            assert await asyncio.gather(*(one() for _ in range(8))) == [b"ok"] * 8
            assert most[0] == 2 and pool.open == 2
            pool.close()

    run(scenario)


def test_a_waiter_for_a_busy_pool_gets_a_504_at_its_deadline() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers; ends when the gateway gives up and closes
        writer.close()

    async def scenario() -> None:
        async with upstream(never) as url:
            pool = Pool(Origin(url), 1, 1.0, 0.3)
            results = await asyncio.gather(
                pool.request(b"GET", b"/a", [], b""), pool.request(b"GET", b"/b", [], b""),
                return_exceptions=True)
            assert all(isinstance(r, UpstreamError) and r.timeout for r in results), results
            assert "free" in str(results[1])
            assert pool.open == 0  # the timed-out connection gave its slot back
            pool.close()

    run(scenario)


def test_the_deadline_covers_the_whole_answer_not_each_read() -> None:
    # Before: each read reset the timer, so an upstream trickling a byte a second held a
    # request (and a connection) forever.
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                writer.write(b"x")
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def scenario() -> None:
        async with upstream(trickle) as url:
            pool = Pool(Origin(url), 4, 1.0, 0.6)
            response = await pool.request(b"GET", b"/", [], b"")
            got = b""
            with pytest.raises(UpstreamError) as caught:
                async for chunk in response.body():
                    got += chunk
            assert caught.value.timeout and 0 < len(got) < 100
            pool.close()

    run(scenario)


def test_listen_socket_reuse_port_allows_several_listeners() -> None:
    first = listen_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = listen_socket("127.0.0.1", port, reuse_port=True)
    with first, second:
        second.listen(1)
        with socket.create_connection(("127.0.0.1", port), 2):
            pass


def test_slow_heads_and_pipeline_floods_are_cut_off(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from permgate.gateway import native as native_mod

    monkeypatch.setattr(native_mod, "TICK", 0.05)
    monkeypatch.setattr(native_mod, "REQUEST_STALL", 0.3)

    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            host, port = url.removeprefix("http://").split(":")
            # A head sent a byte at a time, each byte in time for the idle check but the
            # whole never: closed once the request is REQUEST_STALL old.
            reader, writer = await asyncio.open_connection(host, int(port))
            closed = False
            for byte in b"GET /v1/customers HTTP/1.1\r\nX-Slow: " + b"a" * 200:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.02)
                if reader.at_eof() or writer.is_closing():
                    closed = True
                    break
                try:
                    await writer.drain()
                except ConnectionError:
                    closed = True
                    break
                if await _eof_soon(reader):
                    closed = True
                    break
            writer.close()
            assert closed
            # Hundreds of pipelined requests in one write: the connection is closed rather
            # than all of them held in memory; a modest pipeline is answered in full.
            flood = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 500
            out = await raw(url, flood)
            assert out.count(b"HTTP/1.1 200") < 500
            out = await raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 20
                            + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert out.count(b"HTTP/1.1 200") == 21

    run(scenario)


async def _eof_soon(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1), 0.001)
    except TimeoutError:
        return False
    return data == b""


def test_http10_streams_without_chunks_and_204_has_no_length(
    db_url: str, recorder: Recorder
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            out = await raw(url, b"GET /console/x HTTP/1.0\r\n\r\n")
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head
            assert b"connection: close" in head and body == b"one,two,three"
            # The admin API is off here: its 404 comes through the bridge with a length.
            out = await raw(url, b"GET /admin/apps HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 404") and b"content-length: " in out

    run(scenario)


def test_no_content_answers_carry_no_length() -> None:
    from permgate.gateway.native import _Request

    written: list[bytes] = []

    class Conn:
        write_paused = False

        def write(self, data: bytes) -> None:
            written.append(data)

    async def scenario() -> None:
        req = _Request(Conn())  # type: ignore[arg-type]
        await req.send(204, [(b"request-id", b"req_1")], b"")
        assert written[-1] == b"HTTP/1.1 204 No Content\r\nrequest-id: req_1\r\n\r\n"
        await req.send(200, [], b"ok")
        assert written[-1].endswith(b"content-length: 2\r\n\r\nok")

    run(scenario)


def test_a_body_over_the_limit_on_a_mounted_path_gets_its_413(
    db_url: str, recorder: Recorder
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url, body_limit=4096) as url, \
                httpx.AsyncClient() as client:
            r = await client.post(url + "/v1/oauth/token", content=b"x" * 100_000)
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "request_too_large"

    run(scenario)
