"""The upstream's webhooks in: verify `Stripe-Signature`, write the event and its deliveries
durably, and only then answer 2xx (so the upstream retries anything not stored).

Mount on the gateway, e.g. `Mount("/v1/webhook_ingest", app=ingest_app(store, secrets))`;
it answers POST at its own root.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from permgate import boundedjson
from permgate.events.outbox import BadEvent, accept
from permgate.events.routing import Grants
from permgate.events.signing import DEFAULT_TOLERANCE, SignatureError, verify
from permgate.store import Store, StoreError

MAX_BODY = 1 << 20  # Stripe events are far smaller; refuse anything that is not one


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", "code": code,
                                   "message": message}}, status_code=status)


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None as soon as it passes MAX_BODY (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def ingest_app(
    store: Store, secrets: Sequence[str], *, account: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> ASGIApp:
    """`secrets`: the upstream endpoint's `whsec_...` (two while rotating). `account`: the
    account of events that carry none (a platform's own events, or localstripe's)."""
    if not secrets:
        raise ValueError("the ingest needs the upstream's webhook signing secret")
    grants = Grants()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method != "POST":
            response = _error(405, "POST the upstream's events here", "method_not_allowed")
            await response(scope, receive, send)
            return
        body = await _read_capped(request)
        if body is None:
            response = _error(413, "the body is too large to be an event", "body_too_large")
        else:
            response = await _handle(body, request.headers.get("stripe-signature"))
        await response(scope, receive, send)

    async def _handle(body: bytes, header: str | None) -> JSONResponse:
        try:
            verify(body, header, secrets, tolerance=tolerance)
        except SignatureError as e:
            return _error(400, f"signature rejected: {e}", "signature_invalid")
        try:
            event = boundedjson.loads(body)  # depth-bounded: no RecursionError on 100k levels
        except boundedjson.JsonRefused as e:
            return _error(400, f"the body is not an event: {e}", "event_invalid")
        if not isinstance(event, dict):
            return _error(400, "the body is not an event object", "event_invalid")
        try:
            accepted = await run_in_threadpool(
                accept, store, event, account=account, source="webhook", raw=body,
                grants=grants)
        except BadEvent as e:
            return _error(400, e.message, e.code)
        except StoreError as e:
            return _error(503, e.message, e.code)
        return JSONResponse({"received": True, "id": accepted.event_id,
                             "duplicate": accepted.duplicate,
                             "deliveries": accepted.deliveries})

    return app
