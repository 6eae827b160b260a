"""A body that breaks off (a chunked framing error mid-body) is answered 400 and never
served, not even in part: not forwarded upstream, not handed to a mounted app (the
server used to hand the request's handler the partial body)."""
from __future__ import annotations

import asyncio

from tests.gateway.procs import new_app
from tests.gateway.recorder import Recorder
from tests.gateway.test_native import _SERVERS, native, run

from permgate.store import Store


async def send_broken(url: str, head: bytes) -> bytes:
    """`head` (chunked), the first chunk of a body, then a line that is no chunk size: what
    the client got back."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.3)  # the head alone: its handler starts and awaits the body
    writer.write(b"8\r\nname=abc\r\n")  # the first chunk of "name=abcdef..."
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
    await asyncio.sleep(0.3)  # what the handler would do with the part, it has done now
    return out


def test_broken_chunked_body_is_not_forwarded(
    db_url: str, store: Store, recorder: Recorder
) -> None:
    app = new_app(store, ["customer_write"])

    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            for _ in range(2):  # the full path with a cold, then a warm caller cache
                before = len(recorder.requests)
                out = await send_broken(url, (
                    f"POST /v1/customers HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {app.key}\r\nStripe-Account: {app.account}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n").encode())
                assert out.startswith(b"HTTP/1.1 400"), out[:120]
                got = [(r["method"], r["target"], r["body"])
                       for r in recorder.requests[before:]]
                assert got == [], "a request answered 400 to its client ran upstream"

    run(scenario)


def test_broken_chunked_body_does_not_reach_a_mounted_app(
    db_url: str, recorder: Recorder
) -> None:
    calls: list[bytes] = []

    async def recording(scope, receive, send):  # type: ignore[no-untyped-def]
        message = await receive()
        calls.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def scenario() -> None:
        async with native(db_url, recorder.url) as url:
            _SERVERS[url].gateway.mount("/admin/review", recording)  # type: ignore[arg-type]
            out = await send_broken(url, b"POST /admin/review HTTP/1.1\r\nHost: x\r\n")
            assert out.startswith(b"HTTP/1.1 400"), out[:120]
            assert calls == [], "the mounted app ran on a body that broke off"

    run(scenario)
