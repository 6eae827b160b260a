"""Bytes after a fast-path answer, in the same read, close that upstream connection after
the pool has handed it to a waiting call: the waiting call takes another connection
instead of failing with a 502 for a request that never left."""
from __future__ import annotations

import asyncio

from tests.gateway.procs import App, new_app
from tests.gateway.test_native import native, raw, run

from permgate.store import Store


async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            length = 0
            for h in head.split(b"\r\n"):
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if b"stray" in line:
                await asyncio.sleep(0.5)
                # the answer, then bytes nobody asked for, in one write
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                             b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nbogus")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def req(method: str, path: str, app: App, body: bytes = b"") -> bytes:
    h = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app.key}\r\n"
         f"Stripe-Account: {app.account}\r\n")
    if body:
        h += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    return h.encode() + b"\r\n" + body


def test_a_connection_closed_after_its_handover_is_not_used_by_the_waiting_call(
    db_url: str, store: Store
) -> None:
    a = new_app(store, ["customer_read"])
    b = new_app(store, ["customer_write"])

    async def scenario() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        url_up = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with native(db_url, url_up, pool_size=1, pool_per_app=1) as url:
                # warm: A's caches and the one idle upstream connection
                out = await raw(url, req("GET", "/v1/customers/cus_1", a), until=b"{}")
                assert b" 200 " in out, out
                fast = asyncio.create_task(raw(url, req("GET", "/v1/customers/stray", a),
                                               until=b"ok"))
                await asyncio.sleep(0.1)  # A's GET (fast path) holds the only connection
                # B's POST waits for it, and is handed it inside the read that ends A's
                # answer, just before the stray bytes in that read close it.
                post = asyncio.create_task(raw(
                    url, req("POST", "/v1/customers", b, b"name=x"), until=b"}"))
                got_fast, got_post = await asyncio.gather(fast, post)
                assert got_fast.startswith(b"HTTP/1.1 200"), got_fast
                assert got_post.startswith(b"HTTP/1.1 200"), got_post
        finally:
            server.close()

    run(scenario)
