"""A body that breaks off (a chunked framing error mid-body) is answered 400 and never
served, not even in part: not forwarded upstream, not handed to a mounted app (the
server used to hand the request's handler the partial body)."""
from __future__ import annotations

import asyncio

from tests.gateway.procs import new_app
from tests.gateway.recorder import recording_upstream
from tests.gateway.test_native import native, run

from permgate.store import Store


def test_broken_chunked_body_is_not_forwarded(db_url: str, store: Store) -> None:
    app = new_app(store, ["customer_write"])
    with recording_upstream() as rec:
        async def scenario() -> None:
            async with native(db_url, rec.url) as url:
                host, port = url.removeprefix("http://").split(":")
                for attempt in range(2):  # full path with a cold then a warm caller cache
                    before = len(rec.requests)
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write((f"POST /v1/customers HTTP/1.1\r\nHost: x\r\n"
                                  f"Authorization: Bearer {app.key}\r\n"
                                  f"Stripe-Account: {app.account}\r\n"
                                  "Content-Type: application/x-www-form-urlencoded\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n").encode())
                    await writer.drain()
                    await asyncio.sleep(0.3)
                    writer.write(b"8\r\nname=abc\r\n")  # first chunk of "name=abcdef..."
                    await writer.drain()
                    await asyncio.sleep(0.2)
                    writer.write(b"zz\r\n")  # not a chunk size: a protocol error
                    await writer.drain()
                    out = b""
                    try:
                        while chunk := await asyncio.wait_for(reader.read(65536), 5):
                            out += chunk
                    except (TimeoutError, ConnectionError):
                        pass
                    writer.close()
                    await asyncio.sleep(0.5)
                    print(f"attempt {attempt}: client got:", out[:120])
                    got = [(r["method"], r["target"], r["body"]) for r in rec.requests[before:]]
                    print(f"attempt {attempt}: upstream got:", got)
                    assert got == [], "a request answered 400 to its client ran upstream"

        run(scenario)


def test_broken_chunked_body_does_not_reach_a_mounted_app(db_url: str, store: Store) -> None:
    from tests.gateway.test_native import _SERVERS
    calls: list[bytes] = []

    async def recording(scope, receive, send):  # type: ignore[no-untyped-def]
        message = await receive()
        calls.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    with recording_upstream() as rec:
        async def scenario() -> None:
            async with native(db_url, rec.url) as url:
                _SERVERS[url].gateway.mount("/admin/review", recording)  # type: ignore[arg-type]
                host, port = url.removeprefix("http://").split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"POST /admin/review HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n8\r\nname=abc\r\n")
                await writer.drain()
                await asyncio.sleep(0.3)
                writer.write(b"zz\r\n")
                await writer.drain()
                out = b""
                try:
                    while chunk := await asyncio.wait_for(reader.read(65536), 5):
                        out += chunk
                except (TimeoutError, ConnectionError):
                    pass
                writer.close()
                await asyncio.sleep(0.3)
                print("client got:", out[:60])
                print("mounted app was called with:", calls)
                assert calls == [], "the mounted app ran on a body that broke off"

        run(scenario)
