"""A minimal, fast HTTP/1.1 upstream for the benchmark: every request gets the same small
Stripe-like JSON list. uvloop + httptools, keep-alive, no framework.

    python bench/gateway/upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

BODY = (b'{"object":"list","url":"/v1/customers","has_more":false,"data":[{"id":"cus_bench",'
        b'"object":"customer","email":"bench@example.com","livemode":false}]}\n')
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(BODY)).encode() + b"\r\nrequest-id: req_upstream\r\n\r\n" + BODY)


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
