"""An in-process gateway on the native server, on a free loopback port: the one way the
gateway tests put a started `Gateway` behind a listening socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from permgate.gateway.app import Gateway
from permgate.gateway.native import NativeServer, listen_socket


@asynccontextmanager
async def listening(gw: Gateway, backlog: int = 64) -> AsyncIterator[tuple[NativeServer, str]]:
    """Serve `gw` (already started; the caller shuts it down) until the block ends; yields
    the server and its base URL."""
    server = NativeServer(gw)
    sock = listen_socket("127.0.0.1", 0)
    sock.listen(backlog)
    sock.setblocking(False)
    await server.start(sock)
    try:
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.stop(grace=1.0)
