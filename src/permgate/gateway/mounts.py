"""The mount table: ASGI apps served beside the proxy, and the ways a request reaches them.

Paths in the table (the gateway's own health and metrics, and what its composer
`permgate.serve` hands it: admin API, consent pages, OAuth endpoints, webhook ingest) are
served by their apps before the proxy path sees them. Each mount declares the largest body
it takes: no server reads more than that for it, unauthenticated, before its app can act
(`serve_asgi` for the ASGI servers, `bridge` for the native server).

A mount marked `invalidates` may change the store (admin API, consent, OAuth): after any
answer to a method other than GET/HEAD, and before that answer leaves, the store's change
counter is read, and this worker's caches are dropped only if it moved (or could not be
read). A refused request changes nothing, so it costs one row read and no cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import unquote

from permgate.gateway import errors
from permgate.gateway.proxy import (
    ASGIApp,
    BodyBroken,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
)
from permgate.gateway.resolver import GrantStore, Resolver


@dataclass(frozen=True)
class Mount:
    """One ASGI app the composer (permgate.serve) hands the gateway to serve beside the
    proxy. `invalidates`: a change made through it (any method but GET/HEAD) binds this
    worker before the answer leaves. `body_limit`: the largest request body it takes, in
    bytes (None: the gateway's `body_limit` setting)."""

    path: str
    app: ASGIApp
    prefix: bool = False
    invalidates: bool = False
    body_limit: int | None = None


# The proxied paths kept (`MountTable.mounted`): at most this many, each at most this long.
_PROXIED_MAX: Final = 4096
_PROXIED_PATH: Final = 256

# What to mount, given the opened store: the gateway knows no service above it, its
# composer (permgate/serve.py) decides (docs/architecture.md).
Compose = Callable[[GrantStore], Iterable[Mount]]


class Mounted:
    """A mounted path's app and the largest body read for it."""

    __slots__ = ("app", "body_limit")

    def __init__(self, app: ASGIApp, body_limit: int) -> None:
        self.app = app
        self.body_limit = body_limit


class MountTable:
    def __init__(self, body_limit: int) -> None:
        self.body_limit = body_limit  # a mount's default
        self.exact: dict[bytes, Mounted] = {}
        self.prefixed: dict[bytes, Mounted] = {}
        self._prefixes: tuple[bytes, ...] = ()
        # Paths asked for that no mount serves (the proxy's): a repeat is found in one set
        # lookup, where the prefixes' `startswith` is a generic call (about 1,000
        # instructions a call, compiled; callgrind). Bounded in count and length.
        self._proxied: set[bytes] = set()

    def mount(self, path: str, app: ASGIApp, *, prefix: bool = False,
              body_limit: int | None = None) -> None:
        """Serve `path` (exactly, or with `prefix=True` also every `path/...`) with an ASGI
        app, on every server, before the proxy path sees it. The app gets the scope as the
        server made it (full path, empty root_path). Paths under /v1 and /v2 may be mounted
        too (e.g. `/v1/oauth/token`): a mount always wins over the proxy."""
        raw = path.rstrip("/").encode("ascii") if prefix else path.encode("ascii")
        if not raw.startswith(b"/"):
            raise ValueError(f"mount path must start with '/': {path!r}")
        entry = Mounted(app, self.body_limit if body_limit is None else body_limit)
        self._proxied.clear()
        if prefix:
            self.prefixed[raw] = entry
            self._prefixes = tuple(p + b"/" for p in self.prefixed)
        else:
            self.exact[raw] = entry

    def mounted(self, raw_path: bytes) -> Mounted | None:
        """What serves `raw_path`, or None for the proxy path (dict and tuple lookups only:
        every API request asks)."""
        found = self.exact.get(raw_path)
        if found is not None:
            return found
        proxied = self._proxied
        if raw_path in proxied:  # its hash is the one `exact.get` made (bytes keep theirs)
            return None
        if raw_path.startswith(self._prefixes):
            for p, entry in self.prefixed.items():
                if raw_path.startswith(p + b"/"):
                    return entry
        found = self.prefixed.get(raw_path)
        if found is None and len(raw_path) <= _PROXIED_PATH:
            if len(proxied) >= _PROXIED_MAX:
                proxied.clear()  # a scan of many paths only costs the prefix test again
            proxied.add(raw_path)
        return found


def invalidating(app: ASGIApp, resolver: Resolver) -> ASGIApp:
    """`app`, with a change made through it bound before its answer leaves."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD"):
            await app(scope, receive, send)
            return

        async def send_after_catching_up(message: Message) -> None:
            # Other workers and replicas follow on their next refresh.
            if message["type"] == "http.response.start":
                await resolver.catch_up()
            await send(message)

        await app(scope, receive, send_after_catching_up)

    return call


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length a request announced (-1 when it is not a number)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


def too_large(limit: int) -> tuple[int, Headers, bytes]:
    return 413, list(errors.JSON_HEADERS), errors.payload_too_large(limit)


async def serve_asgi(mounted: Mounted, scope: Scope, receive: Receive, send: Send) -> None:
    """A mounted app under an ASGI server: its body is read up to the mount's limit (a
    413 past it, the rest unread), then handed over whole."""
    limit = mounted.body_limit
    declared = declared_length(scope["headers"])
    body = None if declared is not None and not 0 <= declared <= limit \
        else await read_body(receive, limit)
    if body is None:
        status, headers, text = too_large(limit)
        headers += [(b"content-length", str(len(text)).encode("ascii")),
                    (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})
        return
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # nothing more but the disconnect

    await mounted.app(scope, replay, send)


class BridgedRequest(Protocol):
    """What the native server's request offers the bridge (native._Request)."""

    method: str
    path: bytes
    query: bytes
    headers: Headers
    head_sent: bool
    keep_alive: bool

    async def read_body(self) -> bytes | None: ...
    async def disconnected(self) -> None: ...
    async def send(self, status: int, headers: Headers, body: bytes) -> None: ...
    async def start(self, status: int, headers: Headers) -> None: ...
    async def write(self, chunk: bytes) -> None: ...
    async def end(self) -> None: ...


async def bridge(req: BridgedRequest, mounted: Mounted, client: tuple[str, int] | None,
                 server: tuple[str, int] | None) -> None:
    """A native-server request served by a mounted ASGI app: the body up to the mount's
    limit (the server stops buffering past it), a scope, and its messages as writes."""
    limit = mounted.body_limit
    declared = declared_length(req.headers)
    try:
        body = None if declared is not None and not 0 <= declared <= limit \
            else await req.read_body()
    except BodyBroken:
        return  # answered by the server itself; the app never sees a part of a body
    if body is None:
        req.keep_alive = False
        await req.send(*too_large(limit))
        return
    raw_path = req.path
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "scheme": "http", "method": req.method,
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
        "query_string": req.query, "root_path": "", "headers": req.headers,
        "client": client, "server": server, "state": {},
    }
    delivered = False
    started: list[Any] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await req.disconnected()  # nothing more will come
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            started[:] = [int(message["status"]), list(message.get("headers", ()))]
            return
        if kind != "http.response.body" or not started:
            return
        data: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not req.head_sent:
            status, headers = started
            headers = [(bytes(n).lower(), bytes(v)) for n, v in headers]
            if not more and not any(n == b"content-length" for n, _ in headers):
                await req.send(status, headers, data)
                return
            await req.start(status, headers)
        await req.write(data)
        if not more:
            await req.end()

    await mounted.app(scope, receive, send)
    if not req.head_sent:  # the app sent nothing: no answer is no answer
        await req.send(500, list(errors.JSON_HEADERS), errors.error_body(
            "api_error", "The handler for this path sent no answer."))

