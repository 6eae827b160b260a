"""Stripe-shaped error answers, as bytes ready to send, and their RFC 9457 form.

Official SDKs pick their exception class from the HTTP status and read `error.type`,
`error.code`, `error.message` and `error.param`, so those are the fields that must be right.
An API whose profile says `error_style = "problem"` gets the same answers as
`application/problem+json` (`as_problem`): converted where an answer is sent, so every
message is written once.
"""

from __future__ import annotations

import json
from http import HTTPStatus

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-cache, no-store"),
)


PROBLEM_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/problem+json"),
    (b"cache-control", b"no-cache, no-store"),
)


def as_problem(status: int, body: bytes) -> bytes:
    """A Stripe-shaped error body as an RFC 9457 problem: `type` a URN naming the error's
    code (or kind), `title` the status's phrase, `status`, `detail` the message; `code` and
    `param` kept as extension members."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        error = {"type": "api_error", "message": body[:200].decode("utf-8", "replace")}
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    problem: dict[str, object] = {
        "type": f"urn:permgate:error:{error.get('code') or error.get('type', 'api_error')}",
        "title": title, "status": status, "detail": error.get("message", "")}
    for key in ("code", "param"):
        if error.get(key) is not None:
            problem[key] = error[key]
    return json.dumps(problem, indent=2).encode("utf-8") + b"\n"


def error_body(
    kind: str, message: str, code: str | None = None, param: str | None = None
) -> bytes:
    error: dict[str, str] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    return json.dumps({"error": error}, indent=2).encode("utf-8") + b"\n"


def redact(secret: str) -> str:
    """What may be echoed back or logged of a presented key: its prefix and last 4."""
    head, sep, tail = secret.rpartition("_")
    if not sep or len(tail) < 8:
        return "****"
    return f"{head}_{'*' * 12}{tail[-4:]}"


def no_key() -> bytes:
    return error_body(
        "invalid_request_error",
        "You did not provide an API key. Send your app's key in the Authorization header "
        "as a Bearer token ('Authorization: Bearer sk_test_...'), or as the user name of "
        "HTTP basic auth.",
    )


def bad_key(secret: str) -> bytes:
    if not secret:  # not key-shaped: nothing of it is echoed
        return error_body(
            "invalid_request_error",
            "Invalid API Key provided: the Authorization header does not hold a key. Keys "
            "are sk_live_, sk_test_, rk_live_ or rk_test_ followed by 64 letters and digits.",
        )
    return error_body(
        "invalid_request_error",
        f"Invalid API Key provided: {redact(secret)}. The key is unknown to this gateway "
        "or has been revoked.",
    )


def payload_too_large(limit: int) -> bytes:
    return error_body(
        "invalid_request_error",
        f"The request body is larger than this gateway accepts ({limit} bytes).",
        code="request_too_large",
    )


def bad_gateway(detail: str) -> bytes:
    return error_body(
        "api_error",
        f"The gateway could not reach the upstream API ({detail}). The request was not "
        "completed; it is safe to retry with the same Idempotency-Key.",
    )


def gateway_timeout(seconds: float) -> bytes:
    return error_body(
        "api_error",
        f"The upstream API did not answer within {seconds:g} s. The request may or may not "
        "have been applied upstream; retry with the same Idempotency-Key.",
    )
