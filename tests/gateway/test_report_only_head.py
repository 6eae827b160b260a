"""A HEAD is never forwarded, in report-only mode too: the upstream client cannot frame a
HEAD answer (it waits for the body its head announces), so it would hold a connection
and a place in the app's share until the deadline (504), while the upstream ran it."""
from __future__ import annotations

import asyncio

from tests.gateway.procs import new_app
from tests.gateway.test_native import native, raw, run

from permgate.store import Store


def test_report_only_refuses_a_head_instead_of_forwarding_it(db_url: str, store: Store) -> None:
    app = new_app(store, ["customer_read"])
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A keep-alive upstream answering HEAD as HTTP says: the GET's headers, no body.
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.append(head.split(b"\r\n", 1)[0])
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 120\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        up = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with native(db_url, up, report_only=True, upstream_timeout=3.0) as url:
            out = await raw(url, (f"HEAD /v1/customers/cus_1 HTTP/1.1\r\nHost: x\r\n"
                                  f"Authorization: Bearer {app.key}\r\n"
                                  f"Stripe-Account: {app.account}\r\n"
                                  "Connection: close\r\n\r\n").encode())
        server.close()
        assert out.startswith(b"HTTP/1.1 404"), out[:200]  # the engine's "unknown", refused
        assert seen == []  # never sent upstream

    run(scenario)
