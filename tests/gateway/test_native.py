"""The native server and the upstream pool in process: mounts, HTTP/1.1 details, bounds."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import pytest
import uvloop
from tests.gateway.listening import listening
from tests.gateway.procs import UPSTREAM_KEY, App, new_app
from tests.gateway.recorder import Recorder

from permgate.gateway.app import Gateway
from permgate.gateway.config import Settings
from permgate.gateway.native import MAX_REQUEST_HEAD, NativeServer, listen_socket
from permgate.gateway.upstream import Origin, Pool, UpstreamError
from permgate.serve import build
from permgate.store import Store


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
    try:
        async with listening(gw) as (server, url):
            _SERVERS[url] = server
            try:
                yield url
            finally:
                _SERVERS.pop(url, None)
    finally:
        await gw.shutdown()


def run(scenario: Callable[[], Awaitable[None]], limit: float = 60.0) -> None:
    """Run a scenario on uvloop; one that hangs (a regression) fails within `limit` s."""
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), limit))
    finally:
        # Not asyncio.run's close: after a failed scenario its wait for the default
        # executor could hang the session instead of failing the test.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


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


def test_a_connection_repeating_a_target_gets_each_request_s_own_parts(
    db_url: str, recorder: Recorder, app: App
) -> None:
    # The connection keeps its last target's parts (native.py, `last_url`): a repeat reuses
    # them, any other target is parsed afresh (a denied path after an allowed one included).
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            targets = ["/v1/customers?n=1", "/v1/customers?n=1", "/v1/charges?n=1",
                       "/v1/customers?n=2", "/v1/customers", "/v1/customers?n=1"]
            data = "".join(f"GET {t} HTTP/1.1\r\nHost: x\r\n{auth(app)}\r\n"
                           for t in targets)
            data += "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            before = len(recorder.requests)  # the recorder is shared with other tests
            out = await raw(url, data.encode())
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
            assert statuses == [b"200", b"200", b"403", b"200", b"200", b"200", b"200"], \
                out[:600]
            sent = recorder.paths()[before:]
            assert sent == [t for t in targets if "charges" not in t]

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
    from permgate.gateway.native import HttpConn, _Request

    written: list[bytes] = []

    class Transport(asyncio.Transport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            written.append(bytes(data))

    async def scenario() -> None:
        # A real connection of a real (never started) server: the compiled build checks
        # declared types, so no stand-in will do.
        gateway = Gateway(Settings(upstream="http://127.0.0.1:9", upstream_key=UPSTREAM_KEY),
                          lambda: None)  # type: ignore[arg-type,return-value]
        conn = HttpConn(NativeServer(gateway))
        conn.connection_made(Transport())
        req = _Request(conn)
        req.complete = True  # read whole (one answered before its body says close)
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


# -- issue 20: connections that never end, answers lost, Host and HTTP/1.0 details ----------

def _fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    from permgate.gateway import native as native_mod

    monkeypatch.setattr(native_mod, "TICK", 0.05)


async def _closed_by_gateway(reader: asyncio.StreamReader, bound: float = 20.0) -> bytes:
    """What the gateway sends until it closes the connection; the bound is a hang guard."""
    out = b""
    async with asyncio.timeout(bound):
        while chunk := await reader.read(65536):
            out += chunk
    return out


def test_stray_empty_lines_keep_no_connection_alive(
    db_url: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 20, item 1: a CRLF every few seconds restarted the idle clock and never started
    # the head clock, so the connection was held forever. Now any byte starts the head
    # clock; the empty lines are no activity.
    _fast_ticks(monkeypatch)

    async def scenario() -> None:
        async with native(db_url, recorder.url, head_timeout=0.3, keep_alive=60.0) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            quiet_reader, quiet_writer = await asyncio.open_connection(host, int(port))

            async def drip() -> None:
                with suppress(ConnectionError):
                    while not writer.is_closing():
                        writer.write(b"\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.05)

            dripping = asyncio.create_task(drip())
            assert await _closed_by_gateway(reader) == b""  # closed, nothing to answer
            dripping.cancel()
            closed = _server_of(url).metrics.connections_closed
            assert closed == {"head_timeout": 1}, closed
            writer.close()
            # A connection that sent nothing is only idle: kept (keep_alive is 60 s here),
            # and it still serves.
            quiet_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = await _closed_by_gateway(quiet_reader)
            assert out.startswith(b"HTTP/1.1 200"), out
            quiet_writer.close()

    run(scenario)


def test_an_idle_connection_is_closed_after_keep_alive(
    db_url: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fast_ticks(monkeypatch)

    async def scenario() -> None:
        async with native(db_url, recorder.url, keep_alive=0.3) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            out = await _closed_by_gateway(reader)
            assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"status":"ok"}\n')
            writer.close()

    run(scenario)


@pytest.mark.parametrize("path", ["fast", "full"])
def test_a_client_that_stops_reading_is_closed_after_the_drain_timeout(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Issue 20, item 1 (and 4): a client that never read a large answer held its connection,
    # the kernel's buffers and the upstream connection forever (the full path awaits the
    # drain, the fast path parks in `draining`). Closed after drain_timeout; the upstream
    # answer is then read to its end and its connection released.
    _fast_ticks(monkeypatch)

    async def scenario() -> None:
        async with native(db_url, recorder.url, drain_timeout=0.5) as url:
            server = _server_of(url)
            gw = server.gateway
            assert gw.pool is not None
            if path == "full":
                monkeypatch.setattr(gw, "admit", lambda *a: None)
            host, port = url.removeprefix("http://").split(":")
            warm = f"GET /v1/customers HTTP/1.1\r\nHost: x\r\n{auth(app)}\r\n".encode()
            reader, writer = await asyncio.open_connection(host, int(port))
            for _ in range(2):  # a cached caller and an idle upstream connection
                writer.write(warm)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(re.search(rb"content-length: (\d+)", head)[1])  # type: ignore[index]
                await asyncio.wait_for(reader.readexactly(length), 10)
            loop = asyncio.get_running_loop()
            known = set(server.connections)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, int(port)))
            for _ in range(200):
                if server.connections - known:
                    break
                await asyncio.sleep(0.01)
            (conn,) = server.connections - known
            assert conn.transport is not None
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await loop.sock_sendall(sock, f"GET /v1/customers/cus_big HTTP/1.1\r\nHost: x\r\n"
                                          f"{auth(app)}\r\n".encode())
            for _ in range(400):  # the hang guard: 20 s
                if conn.closed:
                    break
                await asyncio.sleep(0.05)
            assert conn.closed and gw.metrics.connections_closed.get("drain_timeout") == 1
            for _ in range(200):  # the upstream answer read to its end and released
                if not gw.pool.waiting and conn not in server.connections:
                    break
                await asyncio.sleep(0.05)
            assert not gw.pool.waiting and gw.pool.open <= gw.settings.pool_size
            sock.close()
            # The gateway goes on serving on the other connection.
            writer.write(warm)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            writer.close()

    run(scenario)


_SERVERS: dict[str, NativeServer] = {}


def _server_of(url: str) -> NativeServer:
    return _SERVERS[url]


def test_past_the_connection_cap_a_connection_gets_a_clean_503(
    db_url: str, recorder: Recorder
) -> None:
    # Issue 20, item 1: no cap, so 20,000 idle connections took every descriptor and other
    # clients got resets. Past the cap: a 503 with a reason, counted, and the close.
    async def scenario() -> None:
        async with native(db_url, recorder.url, max_connections=2) as url:
            server = _server_of(url)
            host, port = url.removeprefix("http://").split(":")
            held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
            for _ in range(200):
                if len(server.connections) == 2:
                    break
                await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            out = await _closed_by_gateway(reader)
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503") and b"connection: close" in head, out
            assert json.loads(body)["error"]["code"] == "connections_exhausted"
            assert server.metrics.connections_refused == 1
            assert server.metrics.connections_open == 2
            text = server.metrics.render().decode()
            assert "permgate_connections_refused_total 1" in text
            assert "permgate_connections_open 2" in text
            writer.close()
            # A held connection serves as usual; once one leaves, a new one is taken.
            r0, w0 = held[0]
            w0.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await _closed_by_gateway(r0)).startswith(b"HTTP/1.1 200")
            w0.close()
            for _ in range(200):
                if len(server.connections) == 1:
                    break
                await asyncio.sleep(0.01)
            out = await raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 200"), out
            held[1][1].close()

    run(scenario)


def test_refusals_past_the_cap_linger_only_so_many_at_once(
    db_url: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refused connection reads and drops for a while before its close (so the close does
    # not reset it under its 503); under a flood that must not eat the descriptor reserve.
    from permgate.gateway import native as native_mod

    monkeypatch.setattr(native_mod, "REFUSE_LINGERING", 2)
    monkeypatch.setattr(native_mod, "REFUSE_LINGER", 60.0)  # still lingering when counted

    async def scenario() -> None:
        async with native(db_url, recorder.url, max_connections=1) as url:
            server = _server_of(url)
            host, port = url.removeprefix("http://").split(":")
            held = await asyncio.open_connection(host, int(port))
            refused = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
            for reader, _ in refused:
                out = await _closed_by_gateway(reader)
                assert out.startswith(b"HTTP/1.1 503"), out
            assert server.metrics.connections_refused == 5
            assert server.lingering == 2
            for _, writer in (held, *refused):
                writer.close()

    run(scenario)


def test_connection_counts_add_up_across_workers() -> None:
    from permgate.gateway.metrics import Metrics

    one, two = Metrics(), Metrics()
    one.connections_open, one.connections_refused = 3, 2
    one.connection_closed("idle")
    two.connections_open = 4
    two.connection_closed("idle")
    two.connection_closed("drain_timeout")
    total = Metrics()
    total.add(one.snapshot())
    total.add(two.snapshot())
    text = total.render().decode()
    assert "permgate_connections_open 7" in text
    assert "permgate_connections_refused_total 2" in text
    assert 'permgate_connections_closed_total{reason="idle"} 2' in text
    assert 'permgate_connections_closed_total{reason="drain_timeout"} 1' in text


def test_the_derived_cap_leaves_descriptors_for_the_pool_and_the_store() -> None:
    import resource

    from permgate.gateway.native import FD_RESERVE, connection_cap

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(0, 64) == max(16, soft - 64 - FD_RESERVE)
    assert connection_cap(500, 64) == 500


def test_upgrades_and_connect_are_refused_before_anything_goes_upstream(
    db_url: str, recorder: Recorder, app: App
) -> None:
    # Issue 20, items 6 and 10: a request with an Upgrade header was sent upstream, then the
    # parser's upgrade error closed the connection with no answer; CONNECT got two answers.
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            before = len(recorder.requests)
            for upgrade in ("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                            "HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
                            "Upgrade: websocket\r\n"):
                for method, extra in (("GET", ""), ("POST", "Content-Length: 6\r\n")):
                    out = await raw(url, (
                        f"{method} /v1/customers/cus_up?n=1 HTTP/1.1\r\nHost: x\r\n"
                        f"{auth(app)}{upgrade}{extra}\r\nname=x").encode())
                    assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 400"), out
                    assert b"connection: close" in out and b"not supported" in out
            out = await raw(url, b"CONNECT api.stripe.com:443 HTTP/1.1\r\n"
                            b"Host: api.stripe.com:443\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 400"), out
            assert len(recorder.requests) == before, recorder.paths()[before:]

    run(scenario)


@pytest.mark.parametrize(("name", "tail"), [
    ("junk line after a GET", b"junk\r\n"),
    ("bytes after Connection: close", b"GET /v1/charges HTTP/1.1\r\n\r\n"),
    ("bytes after HTTP/1.0", b"\x00\x01garbage"),
])
def test_an_answer_in_flight_is_delivered_before_the_connection_ends(
    db_url: str, recorder: Recorder, app: App, name: str, tail: bytes
) -> None:
    # Issue 20, item 6: a protocol error after a complete request closed the connection with
    # no answer while the upstream ran the request (a refund executed, the client never
    # learned). Its answer goes out first, then the error's (if any), then the close.
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            target = f"/v1/customers/cus_{name.split()[0]}?flight=1"
            version = "HTTP/1.0" if "1.0" in name else "HTTP/1.1"
            close = "Connection: close\r\n" if "close" in name else ""
            for _ in range(2):  # the full path, then (caller cached) the fast path
                before = len(recorder.requests)
                out = await raw(url, (f"GET {target} {version}\r\nHost: x\r\n{auth(app)}"
                                      f"{close}\r\n").encode() + tail)
                assert recorder.paths()[before:] == [target]  # it ran upstream, once
                statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
                want = [b"200", b"400"] if name.startswith("junk") else [b"200"]
                assert statuses == want, out[:400]
                assert target.encode() in out

    run(scenario)


def test_a_client_that_half_closes_after_its_request_gets_its_answer(
    db_url: str, recorder: Recorder, app: App
) -> None:
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            host, port = url.removeprefix("http://").split(":")
            for _ in range(2):  # the full path, then the fast path
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write((f"GET /v1/customers?half=1 HTTP/1.1\r\nHost: x\r\n{auth(app)}"
                              "\r\n").encode() * 2)
                writer.write_eof()
                out = await _closed_by_gateway(reader)
                assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200"], out[:300]
                writer.close()
            # Half-closed mid-body: that request can never be whole; the connection closes.
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                         b"\r\nabc")
            writer.write_eof()
            assert await _closed_by_gateway(reader) == b""
            writer.close()

    run(scenario)


def test_http11_needs_exactly_one_host_and_http10_keep_alive_says_so(
    db_url: str, recorder: Recorder, app: App
) -> None:
    # Issue 20, item 10: RFC 9112 3.2 (400 for HTTP/1.1 without Host, or with two);
    # an HTTP/1.0 client keeps its connection only when the answer says keep-alive.
    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            before = len(recorder.requests)
            for head in (b"GET /v1/customers HTTP/1.1\r\n",
                         b"GET /v1/customers HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
                         b"GET /v1/customers HTTP/1.0\r\nHost: a\r\nHost: b\r\n"):
                out = await raw(url, head + auth(app).encode() + b"\r\n")
                assert out.startswith(b"HTTP/1.1 400") and b"Host" in out, out
                assert len(re.findall(rb"HTTP/1\.1 \d{3} ", out)) == 1
            assert len(recorder.requests) == before
            out = await raw(url, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 200") and b"connection: close" in out
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            # The ASGI bridge, the full path, then the fast path, on one connection.
            for target in ("/healthz", "/v1/customers?k=1", "/v1/customers?k=1"):
                writer.write(f"GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n"
                             f"{auth(app)}\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200"), head
                assert b"\r\nconnection: keep-alive\r\n" in head, head
                length = int(re.search(rb"content-length: (\d+)", head)[1])  # type: ignore[index]
                await asyncio.wait_for(reader.readexactly(length), 10)
            writer.close()

    run(scenario)
