"""The gateway's own endpoints: `/healthz`, `/readyz` and `/metrics`, one ASGI app."""

from __future__ import annotations

import asyncio
import hmac
import json

from permgate.gateway import errors
from permgate.gateway.metrics import Metrics, SharedMetrics
from permgate.gateway.proxy import Receive, Scope, Send
from permgate.gateway.resolver import Resolver
from permgate.gateway.upstream import Pool

CONTROL_PATHS = (b"/healthz", b"/readyz", b"/metrics")
# None of them takes a body.
CONTROL_BODY_LIMIT = 1024


class Control:
    """Health, readiness and metrics; `resolver` and `pool` are set when the gateway has
    started."""

    def __init__(self, metrics: Metrics, shared: SharedMetrics | None,
                 tokens: tuple[bytes, ...], connect_timeout: float) -> None:
        self.metrics = metrics
        self.shared = shared
        self.tokens = tokens  # the metrics and admin tokens
        self.connect_timeout = connect_timeout
        self.resolver: Resolver | None = None
        self.pool: Pool | None = None
        self.upstream = True  # False where nothing is forwarded (authz): readiness is the store's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/metrics":
            # Metrics name every app that called: operators only (the metrics or admin token).
            if not self.tokens:
                await plain(send, 404, errors.error_body(
                    "invalid_request_error",
                    "Metrics are disabled on this gateway: set PERMGATE_METRICS_TOKEN (or "
                    "PERMGATE_ADMIN_TOKEN) and scrape with that bearer token."),
                    b"application/json")
                return
            if not self.authorized(scope):
                body = errors.error_body(
                    "invalid_request_error",
                    "Metrics need 'Authorization: Bearer <metrics or admin token>'.")
                await send({"type": "http.response.start", "status": 401, "headers": [
                    *errors.JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii")),
                    (b"www-authenticate", b'Bearer realm="permgate-metrics"')]})
                await send({"type": "http.response.body", "body": body})
                return
            shared = self.shared
            body = (self.metrics if shared is None else shared).render()
            await plain(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            await plain(send, 200, b'{"status":"ok"}\n', b"application/json")
        else:
            checks = await self.readiness()
            ok = all(v == "ok" for v in checks.values())
            text = json.dumps({"status": "ready" if ok else "not_ready", "checks": checks})
            await plain(send, 200 if ok else 503, text.encode() + b"\n", b"application/json")

    def authorized(self, scope: Scope) -> bool:
        given = [v for n, v in scope["headers"] if n == b"authorization"]
        if len(given) != 1 or given[0][:7].lower() != b"bearer ":
            return False
        token = given[0][7:].strip()
        ok = False
        for want in self.tokens:  # no early exit: the time says nothing of which
            ok |= hmac.compare_digest(token, want)
        return ok

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.resolver is not None
            await asyncio.wait_for(self.resolver.check_database(), 2.0)
            checks["database"] = "ok"
        except Exception as e:
            checks["database"] = f"error: {e or type(e).__name__}"
        if not self.upstream:
            return checks
        try:
            assert self.pool is not None
            o = self.pool.origin
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(o.host, o.port), self.connect_timeout)
            writer.close()
            checks["upstream"] = "ok"
        except Exception as e:
            checks["upstream"] = f"error: {e or type(e).__name__}"
        return checks


async def plain(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": body})
