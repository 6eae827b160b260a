"""The Python ceiling: a plain reverse proxy on uvloop + httptools, no framework, no checks.

One upstream keep-alive connection per client connection; each request's head and body are
passed on as parsed (Host and Authorization replaced), each answer passed back whole. What
a Python process can do per proxied call on this machine, beside nginx.

    python bench/gateway/ceiling.py PORT UPSTREAM_PORT [WORKERS]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.head: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"connection", b"keep-alive", b"transfer-encoding",
                                b"content-length"):
            self.head += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        data = b"".join([b"HTTP/1.1 %d OK\r\n" % status, *self.head,
                         b"content-length: %d\r\n\r\n" % len(body), body])
        self.head.clear()
        self.body.clear()
        self.client.answer(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.up: Upstream | None = None
        self.url = b""
        self.head: list[bytes] = []
        self.body: list[bytes] = []
        self.queue: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        task = loop.create_connection(lambda: Upstream(self), "127.0.0.1", self.upstream_port)
        loop.create_task(task).add_done_callback(self._connected)

    def _connected(self, fut: asyncio.Future[tuple[asyncio.BaseTransport, Upstream]]) -> None:
        self.up = fut.result()[1]
        for data in self.queue:
            self.up.transport.write(data)  # type: ignore[union-attr]
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"host", b"authorization", b"connection", b"content-length"):
            self.head += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        data = b"".join([self.parser.get_method(), b" ", self.url,
                         b" HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                         b"authorization: Bearer sk_test_bench_upstream\r\n", *self.head,
                         b"content-length: %d\r\n\r\n" % len(body) if body else b"\r\n", body])
        self.url = b""
        self.head.clear()
        self.body.clear()
        if self.up is None or self.up.transport is None:
            self.queue.append(data)
        else:
            self.up.transport.write(data)

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()


async def main(sock: socket.socket, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream_port), sock=sock, backlog=4096)
    async with server:
        await server.serve_forever()


def run(port: int, upstream_port: int, workers: int) -> None:
    def listen() -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)

    def stop(signum: int, _: object) -> None:
        for pid in children:  # the workers end with the parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    uvloop.run(main(listen(), upstream_port))


if __name__ == "__main__":
    run(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
