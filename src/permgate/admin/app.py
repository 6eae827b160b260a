"""The admin HTTP API: the store's operations as JSON over HTTP, behind a bearer token.

Platforms drive installs from their own dashboards with it. The platform is trusted to say
which of its users acts (`by`) and with which account role (`role`), as Stripe's Dashboard
is; the store still refuses every role but admin.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from permgate import boundedjson, envvars, events, manifest
from permgate.admin.openapi import document
from permgate.errors import PermgateError
from permgate.events.subscriptions import MAX_ROTATION_GRACE
from permgate.events.targets import redact
from permgate.store import InvalidManifest, Store, StoreError, describe, people
from permgate.store.store import MAX_GRACE

TOKEN_ENV = envvars.ADMIN_TOKEN.name
PUBLIC_URL_ENV = envvars.PUBLIC_URL.name  # where people open account links (default: this host)
# A body holds at most a manifest (itself capped at 1 MiB) and a few fields.
MAX_BODY = 2 << 20
MAX_LIMIT = 10_000
MIN_TOKEN_BITS = 256  # 32 bytes of entropy, as secrets.token_urlsafe(32) or token_hex(32)
Body = dict[str, Any]
Result = tuple[int, Any]


def token_from_env() -> str | None:
    return envvars.ADMIN_TOKEN.get()


class WeakToken(PermgateError, ValueError):
    """The admin token is too guessable to guard the admin API."""


def _alphabet_bits(token: str) -> float:
    """Bits per character of the usual alphabet the token looks drawn from."""
    if all(c in "0123456789abcdef" for c in token) or all(
            c in "0123456789ABCDEF" for c in token):
        return 4.0  # hex
    if token.isascii() and token.isdecimal():
        return math.log2(10)
    if all(c.isascii() and (c.isalnum() or c in "-_+/=") for c in token):
        if token.lower() == token or token.upper() == token:
            return math.log2(36)  # one case
        return 6.0  # base64 / base64url
    return math.log2(95)  # printable ASCII and beyond


def token_entropy_bits(token: str) -> float:
    """A conservative estimate of a token's entropy in bits: its length times the bits of its
    alphabet, lowered when its characters are spread too little to be random ('aaaa...')
    and capped by its compressed size (a repeated phrase)."""
    if not token:
        return 0.0
    counts: dict[str, int] = {}
    for c in token:
        counts[c] = counts.get(c, 0) + 1
    n = len(token)
    observed = -sum(k / n * math.log2(k / n) for k in counts.values())
    per_char = _alphabet_bits(token)
    # Random tokens show nearly the alphabet's spread; a low spread means structure.
    if observed < min(per_char, 4.0) * 0.75:
        per_char = observed
    # Nor can it hold more than it takes compressed (a repeated phrase compresses well).
    compressed = 8 * (len(zlib.compress(token.encode("utf-8"), 9)) - 6)
    return min(n * per_char, float(compressed))


def check_token(token: str | None) -> str:
    """The token, or WeakToken saying why it cannot guard the admin API."""
    if not token:
        raise WeakToken(f"the admin API needs a bearer token: set {TOKEN_ENV}")
    bits = token_entropy_bits(token)
    if bits < MIN_TOKEN_BITS:
        raise WeakToken(
            f"{TOKEN_ENV} is too weak (about {bits:.0f} bits; at least {MIN_TOKEN_BITS}, i.e. "
            "32 random bytes, are needed): make one with `openssl rand -hex 32` or "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return token


class BadRequest(PermgateError):
    def __init__(self, message: str, code: str = "parameter_invalid", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def error_response(
    status: int, message: str, code: str, *, extra: Mapping[str, Any] | None = None
) -> JSONResponse:
    """Stripe's error shape, so Stripe SDKs and tooling read it as they read Stripe's."""
    body: dict[str, Any] = {"type": "invalid_request_error", "message": message, "code": code}
    body.update(extra or {})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


MAX_NAME = 255  # ids, names and actors: the store's columns hold 255 characters
_LONG = {"url": 2048}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str, name: str, *, where: str = "parameter") -> str:
    """A string parameter the database can store as given: no control characters (NUL is
    refused by PostgreSQL), not longer than its column."""
    limit = _LONG.get(name, MAX_NAME)
    if len(value) > limit:
        raise BadRequest(f"{where} {name} is longer than {limit} characters", param=name)
    if _CONTROL.search(value):
        raise BadRequest(f"{where} {name} contains control characters", param=name)
    return value


def _str(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing required parameter: {name}", "parameter_missing", name)
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string", "parameter_invalid", name)
    return _clean(value, name)


def _req(body: Mapping[str, Any], name: str) -> str:
    value = _str(body, name)
    assert value is not None
    return value


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("since must be an ISO 8601 time", param="since") from None
    if when.tzinfo is None:
        raise BadRequest("since needs a UTC offset (e.g. 2025-01-31T00:00:00Z)", param="since")
    return when


def _int(value: Any, name: str, low: int, high: int) -> int | None:
    """An integer in [low, high] from JSON (an int, not a float or bool) or a query string
    (decimal digits); anything else is a 400 naming the parameter, never an overflow."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 20 and value.lstrip("-").isdecimal() \
            and value.isascii():
        number = int(value)
    if number is None or not low <= number <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}", param=name)
    return number


def redacted_audit(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry without a password: endpoints registered before userinfo was refused
    have their URL, credentials included, in the trail."""
    detail = entry.get("detail")
    if isinstance(detail, dict) and isinstance(detail.get("url"), str):
        entry = {**entry, "detail": {**detail, "url": redact(detail["url"])}}
    return entry


class _Api:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list_apps(self, r: Request, body: Body) -> Result:
        return 200, {"data": [a.as_json() for a in self.store.list_apps()]}

    def upload(self, r: Request, body: Body) -> Result:
        actor = _req(body, "actor")
        raw = body.get("manifest")
        if isinstance(raw, dict):
            text = json.dumps(raw, indent=2) + "\n"
        elif isinstance(raw, str):
            text = raw  # kept byte for byte as the version's manifest
        else:
            raise BadRequest("manifest must be the stripe-app.json object or its text",
                             "parameter_missing", "manifest")
        try:
            m = manifest.parse(text)
        except manifest.ManifestError as e:
            raise BadRequest(str(e), "invalid_manifest", "manifest") from None
        return 201, self.store.upload_version(m, actor=actor).as_json()

    def get_app(self, r: Request, body: Body) -> Result:
        return 200, self.store.get_app(r.path_params["app_id"]).as_json()

    def list_keys(self, r: Request, body: Body) -> Result:
        now = self.store.now()
        return 200, {"data": [k.as_json(now) for k in self.store.list_keys(
            r.path_params["app_id"])]}

    def rotate_key(self, r: Request, body: Body) -> Result:
        grace = _int(body.get("grace_seconds"), "grace_seconds", 0,
                     int(MAX_GRACE.total_seconds()))
        kw = {} if grace is None else {"grace": timedelta(seconds=grace)}
        key = self.store.rotate_key(
            r.path_params["app_id"], _req(body, "mode"), actor=_req(body, "actor"),
            account=_str(body, "account", required=False), **kw)
        return 201, key.as_json()

    def list_installs(self, r: Request, body: Body) -> Result:
        q = r.query_params
        found = self.store.list_installs(
            app_id=q.get("app"), account=q.get("account"), mode=q.get("mode"))
        return 200, {"data": [g.as_json() for g in found]}

    def install(self, r: Request, body: Body) -> Result:
        result = self.store.install(
            _req(body, "app_id"), _req(body, "account"), _req(body, "mode"),
            by=_req(body, "by"), role=_req(body, "role"), via="admin_api")
        events.on_install(self.store, result.grant)
        return 201, result.as_json()

    def get_install(self, r: Request, body: Body) -> Result:
        p = r.path_params
        return 200, self.store.get_install(p["app_id"], p["account"], p["mode"]).as_json()

    def approve(self, r: Request, body: Body) -> Result:
        p = r.path_params
        grant = self.store.approve(
            p["app_id"], p["account"], p["mode"], by=_req(body, "by"), role=_req(body, "role"),
            version=_str(body, "version", required=False), via="admin_api")
        return 200, grant.as_json()

    def uninstall(self, r: Request, body: Body) -> Result:
        p = r.path_params
        grant = self.store.uninstall(
            p["app_id"], p["account"], p["mode"], by=_req(body, "by"), role=_req(body, "role"),
            via="admin_api")
        events.on_uninstall(self.store, grant)
        return 200, {"uninstalled": True, **grant.as_json()}

    def get_version(self, r: Request, body: Body) -> Result:
        p = r.path_params
        return 200, describe.describe_version(self.store, p["app_id"], p["version"]).as_json()

    def review(self, r: Request, body: Body) -> Result:
        p = r.path_params
        return 200, describe.review(self.store, p["app_id"], p["account"], p["mode"]).as_json()

    def account_session(self, r: Request, body: Body) -> Result:
        ttl = _int(body.get("expires_in"), "expires_in", 1,
                   int(people.MAX_LINK_TTL.total_seconds()))
        kw = {} if ttl is None else {"ttl": timedelta(seconds=ttl)}
        link = people.create_link(
            self.store, account=_req(body, "account"), user_id=_req(body, "user_id"),
            display_name=_str(body, "display_name", required=False) or _req(body, "user_id"),
            role=_req(body, "role"), actor=_str(body, "actor", required=False) or "platform",
            return_url=_str(body, "return_url", required=False),
            next_path=_str(body, "next", required=False), **kw)
        base = envvars.PUBLIC_URL.get() or f"{r.url.scheme}://{r.url.netloc}"
        return 201, {
            "id": link.link_id, "object": "account_session", "account": link.account,
            "user_id": link.user_id, "display_name": link.display_name, "role": link.role,
            "url": f"{base.rstrip('/')}/console/links/{link.secret}",
            "expires_at": int(link.expires_at.timestamp()),
        }

    def audit(self, r: Request, body: Body) -> Result:
        q = r.query_params
        found = self.store.audit(
            app=q.get("app"), account=q.get("account"), since=_since(q.get("since")),
            limit=_int(q.get("limit"), "limit", 1, MAX_LIMIT))
        return 200, {"data": [redacted_audit(e.as_json()) for e in found]}

    # -- webhook endpoints (permgate.events) ------------------------------------------------
    def list_webhooks(self, r: Request, body: Body) -> Result:
        found = events.list_endpoints(self.store, r.query_params.get("app"))
        return 200, {"data": [e.as_json() for e in found]}

    def add_webhook(self, r: Request, body: Body) -> Result:
        wanted = body.get("enabled_events")
        if not isinstance(wanted, list) or not 0 < len(wanted) <= 1000 or not all(
                isinstance(x, str) and x for x in wanted):
            raise BadRequest("enabled_events must be a non-empty list of event types (or "
                             "[\"*\"])", param="enabled_events")
        for x in wanted:
            _clean(x, "enabled_events")
        new = events.add_endpoint(self.store, _req(body, "app_id"), _req(body, "url"), wanted,
                                  _req(body, "mode"), by=_req(body, "actor"))
        return 201, new.as_json()

    def remove_webhook(self, r: Request, body: Body) -> Result:
        gone = events.remove_endpoint(self.store, r.path_params["endpoint_id"],
                                      by=_req(body, "actor"))
        return 200, {**gone.as_json(), "removed": True}

    def enable_webhook(self, r: Request, body: Body) -> Result:
        from permgate.events.subscriptions import enable_endpoint

        ep = enable_endpoint(self.store, r.path_params["endpoint_id"], by=_req(body, "actor"))
        return 200, ep.as_json()

    def rotate_webhook_secret(self, r: Request, body: Body) -> Result:
        grace = _int(body.get("grace_seconds"), "grace_seconds", 0,
                     int(MAX_ROTATION_GRACE.total_seconds())) or 0
        new = events.rotate_secret(self.store, r.path_params["endpoint_id"],
                                   by=_req(body, "actor"), grace=timedelta(seconds=grace))
        return 200, new.as_json()

    def changes(self, r: Request, body: Body) -> Result:
        return 200, {"change_counter": self.store.change_counter()}


Handler = Callable[[Request, Body], Result]


def create_admin_app(store: Store, admin_token: str) -> ASGIApp:
    """The admin API as an ASGI app; mount it anywhere (the gateway mounts it at /admin)."""
    check_token(admin_token)
    expected = f"Bearer {admin_token}".encode()
    api = _Api(store)

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def unauthorized() -> Response:
        return error_response(
            401, "Invalid admin token: send Authorization: Bearer <PERMGATE_ADMIN_TOKEN>",
            "invalid_admin_token")

    def endpoint(handler: Handler, required: tuple[str, ...]
                 ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not authorized(request):
                return unauthorized()
            try:
                for name, value in request.path_params.items():
                    _clean(str(value), name, where="path parameter")
                for name, value in request.query_params.multi_items():
                    _clean(value, name, where="query parameter")
                body = await _json_body(request) if request.method == "POST" else {}
                for name in required:
                    if body.get(name) is None:
                        raise BadRequest(f"missing required parameter: {name}",
                                         "parameter_missing", name)
                status, data = await run_in_threadpool(handler, request, body)
            except TooLarge:
                return error_response(413, f"the request body is larger than {MAX_BODY} bytes",
                                      "body_too_large")
            except BadRequest as e:
                return error_response(400, e.message, e.code,
                                      extra={"param": e.param} if e.param else None)
            except InvalidManifest as e:
                problems = [{"pointer": p.pointer, "message": p.message, "code": p.code}
                            for p in e.problems]
                return error_response(400, e.message, e.code, extra={"problems": problems})
            except StoreError as e:
                return error_response(e.status, e.message, e.code)
            return JSONResponse(data, status_code=status)

        return run

    async def openapi(request: Request) -> Response:
        # Behind the token like every route: it maps the admin surface and names this
        # permgate's exact version (docs/security.md); tools read it offline from
        # permgate.admin.openapi_document().
        if not authorized(request):
            return unauthorized()
        return JSONResponse(document())

    # The routes, and the body fields each requires, are the OpenAPI document's (one
    # declaration): each operation's operationId names its handler.
    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            required = tuple(body.get("schema", {}).get("required", ()))
            routes.append(Route(path, endpoint(getattr(api, op["operationId"]), required),
                                methods=[method.upper()]))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "resource_missing", 405: "method_not_allowed"}.get(
            exc.status_code, "invalid_request")
        return error_response(exc.status_code, f"{request.method} {request.url.path}: "
                              f"{exc.detail}", code)

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


class TooLarge(PermgateError):
    """A request body over MAX_BODY (declared or read): answered with a 413."""


async def _json_body(request: Request) -> Body:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdecimal() or int(declared) > MAX_BODY):
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge  # the rest is never read
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = boundedjson.loads(raw)
    except boundedjson.JsonRefused as e:
        raise BadRequest(f"the request body must be a JSON object ({e})", "invalid_json") \
            from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", "invalid_json")
    return body
