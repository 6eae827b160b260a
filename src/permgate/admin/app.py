"""The admin HTTP API: the store's operations as JSON over HTTP, behind a bearer token.

Platforms drive installs from their own dashboards with it. The platform is trusted to say
which of its users acts (`by`) and with which account role (`role`), as Stripe's Dashboard
is; the store still refuses every role but admin.
"""

from __future__ import annotations

import hmac
import json
import os
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

from permgate import events, manifest
from permgate.admin.openapi import document
from permgate.store import InvalidManifest, Store, StoreError

TOKEN_ENV = "PERMGATE_ADMIN_TOKEN"
Body = dict[str, Any]
Result = tuple[int, Any]


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


class BadRequest(Exception):
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


def _str(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing required parameter: {name}", "parameter_missing", name)
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string", "parameter_invalid", name)
    return value


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


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer", param=name) from None


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
        grace = _int(body.get("grace_seconds"), "grace_seconds")
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
            by=_req(body, "by"), role=_req(body, "role"))
        events.on_install(self.store, result.grant)
        return 201, result.as_json()

    def get_install(self, r: Request, body: Body) -> Result:
        p = r.path_params
        return 200, self.store.get_install(p["app_id"], p["account"], p["mode"]).as_json()

    def approve(self, r: Request, body: Body) -> Result:
        p = r.path_params
        grant = self.store.approve(
            p["app_id"], p["account"], p["mode"], by=_req(body, "by"), role=_req(body, "role"),
            version=_str(body, "version", required=False))
        return 200, grant.as_json()

    def uninstall(self, r: Request, body: Body) -> Result:
        p = r.path_params
        grant = self.store.uninstall(
            p["app_id"], p["account"], p["mode"], by=_req(body, "by"), role=_req(body, "role"))
        events.on_uninstall(self.store, grant)
        return 200, {"uninstalled": True, **grant.as_json()}

    def audit(self, r: Request, body: Body) -> Result:
        q = r.query_params
        found = self.store.audit(
            app=q.get("app"), account=q.get("account"), since=_since(q.get("since")),
            limit=_int(q.get("limit"), "limit"))
        return 200, {"data": [e.as_json() for e in found]}

    # -- webhook endpoints (permgate.events) ------------------------------------------------
    def list_webhooks(self, r: Request, body: Body) -> Result:
        found = events.list_endpoints(self.store, r.query_params.get("app"))
        return 200, {"data": [e.as_json() for e in found]}

    def add_webhook(self, r: Request, body: Body) -> Result:
        wanted = body.get("enabled_events")
        if not isinstance(wanted, list) or not wanted or not all(
                isinstance(x, str) and x for x in wanted):
            raise BadRequest("enabled_events must be a non-empty list of event types (or "
                             "[\"*\"])", param="enabled_events")
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
        grace = _int(body.get("grace_seconds"), "grace_seconds") or 0
        new = events.rotate_secret(self.store, r.path_params["endpoint_id"],
                                   by=_req(body, "actor"), grace=timedelta(seconds=grace))
        return 200, new.as_json()

    def changes(self, r: Request, body: Body) -> Result:
        return 200, {"change_counter": self.store.change_counter()}


Handler = Callable[[Request, Body], Result]


def create_admin_app(store: Store, admin_token: str) -> ASGIApp:
    """The admin API as an ASGI app; mount it anywhere (the gateway mounts it at /admin)."""
    if not admin_token:
        raise ValueError("the admin API needs a non-empty bearer token")
    expected = f"Bearer {admin_token}".encode()
    api = _Api(store)

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not authorized(request):
                return error_response(
                    401, "Invalid admin token: send Authorization: Bearer <PERMGATE_ADMIN_TOKEN>",
                    "invalid_admin_token")
            try:
                body = await _json_body(request) if request.method == "POST" else {}
                status, data = await run_in_threadpool(handler, request, body)
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
        return JSONResponse(document())

    install_path = "/v1/installs/{app_id}/{account}/{mode}"
    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/apps", endpoint(api.list_apps), methods=["GET"]),
        Route("/v1/apps", endpoint(api.upload), methods=["POST"]),
        Route("/v1/apps/{app_id}", endpoint(api.get_app), methods=["GET"]),
        Route("/v1/apps/{app_id}/keys", endpoint(api.list_keys), methods=["GET"]),
        Route("/v1/apps/{app_id}/keys/rotate", endpoint(api.rotate_key), methods=["POST"]),
        Route("/v1/installs", endpoint(api.list_installs), methods=["GET"]),
        Route("/v1/installs", endpoint(api.install), methods=["POST"]),
        Route(install_path, endpoint(api.get_install), methods=["GET"]),
        Route(install_path + "/approve", endpoint(api.approve), methods=["POST"]),
        Route(install_path + "/uninstall", endpoint(api.uninstall), methods=["POST"]),
        Route("/v1/audit", endpoint(api.audit), methods=["GET"]),
        Route("/v1/webhook_endpoints", endpoint(api.list_webhooks), methods=["GET"]),
        Route("/v1/webhook_endpoints", endpoint(api.add_webhook), methods=["POST"]),
        Route("/v1/webhook_endpoints/{endpoint_id}/remove", endpoint(api.remove_webhook),
              methods=["POST"]),
        Route("/v1/webhook_endpoints/{endpoint_id}/enable", endpoint(api.enable_webhook),
              methods=["POST"]),
        Route("/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
              endpoint(api.rotate_webhook_secret), methods=["POST"]),
        Route("/v1/changes", endpoint(api.changes), methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "resource_missing", 405: "method_not_allowed"}.get(
            exc.status_code, "invalid_request")
        return error_response(exc.status_code, f"{request.method} {request.url.path}: "
                              f"{exc.detail}", code)

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


async def _json_body(request: Request) -> Body:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body must be a JSON object", "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", "invalid_json")
    return body
