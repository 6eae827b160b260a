"""The admin API's OpenAPI 3.1 document, served at `/openapi.json`."""

from __future__ import annotations

from functools import cache
from typing import Any

import permgate

JSON = dict[str, Any]
_MODE = {"type": "string", "enum": ["live", "test", "sandbox"]}
_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR, "uniqueItems": True}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: JSON) -> JSON:
    return {"type": "object", "required": required, "properties": props}


def _list_of(name: str) -> JSON:
    return _obj(["data"], data={"type": "array", "items": _ref(name)})


def _op(op_id: str, summary: str, ok: str | JSON, *, status: int = 200,
        body: JSON | None = None, params: list[JSON] | None = None,
        errors: tuple[int, ...] = ()) -> JSON:
    """One operation; `op_id` names the admin app's handler (`_Api.<op_id>`), and `body`'s
    `required` fields are checked before it runs: the routes come from this document."""
    schema = _ref(ok) if isinstance(ok, str) else ok
    responses: JSON = {str(status): {"description": "OK", "content": {
        "application/json": {"schema": schema}}}}
    for code in (401, *errors):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    op: JSON = {"operationId": op_id, "summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, schema: JSON, description: str) -> JSON:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _p(name: str, schema: JSON = _STR) -> JSON:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_ACTOR = {"by": {**_STR, "description": "the platform's user who acts"},
          "role": {**_STR, "description": "that user's role on the account; only `admin` may "
                   "install, approve or uninstall"}}
_INSTALL_PARAMS = [_p("app_id"), _p("account"), _p("mode", _MODE)]

_SCHEMAS: JSON = {
    "Error": _obj(["error"], error=_obj(
        ["type", "message", "code"], type={"const": "invalid_request_error"}, message=_STR,
        code=_STR, param=_STR,
        problems={"type": "array", "items": _obj(
            ["pointer", "message", "code"], pointer=_STR, message=_STR, code=_STR)})),
    "Version": _obj(
        ["app_id", "version", "seq", "permissions", "access_type", "uploaded_at", "uploaded_by"],
        app_id=_STR, version=_STR, seq={"type": "integer"}, permissions=_STRS,
        access_type={"enum": ["platform", "restricted_api_key", "oauth"]},
        uploaded_at=_TIME, uploaded_by=_STR),
    "App": _obj(
        ["app_id", "name", "latest_version", "access_type", "permissions", "versions"],
        app_id=_STR, name=_STR, latest_version=_STR, access_type=_STR, permissions=_STRS,
        created_at=_TIME, created_by=_STR,
        versions={"type": "array", "items": _ref("Version")}),
    "NewKey": _obj(
        ["key_id", "app_id", "mode", "kind", "secret"], key_id=_STR, app_id=_STR, mode=_STR,
        kind={"enum": ["secret", "restricted"]}, account=_NSTR,
        secret={**_STR, "description": "shown in this response only; stored as a hash"}),
    "Key": _obj(
        ["key_id", "app_id", "mode", "kind", "hint", "usable"], key_id=_STR, app_id=_STR,
        mode=_STR, kind=_STR, hint={**_STR, "description": "prefix and last 4 characters"},
        install_id=_NSTR, account=_NSTR, created_at=_TIME,
        expires_at={"type": ["string", "null"], "format": "date-time"},
        revoked_at={"type": ["string", "null"], "format": "date-time"},
        usable={"type": "boolean"}),
    "Upload": _obj(
        ["app_id", "version", "created_app", "permissions", "keys"], app_id=_STR,
        version=_STR, created_app={"type": "boolean"}, permissions=_STRS,
        keys={"type": "array", "items": _ref("NewKey"),
              "description": "the app's test and live secret keys, on its first upload only"}),
    "Grant": _obj(
        ["install_id", "app_id", "account", "mode", "installed_version", "approved_version",
         "approved", "pending", "status"],
        install_id=_STR, app_id=_STR, account=_STR, mode=_MODE, installed_version=_STR,
        approved_version=_STR,
        approved={**_STRS, "description": "what backend calls may use now"},
        pending={**_STRS, "description": "what the installed version asks for beyond that"},
        status={"enum": ["active", "pending_approval"]}),
    "Install": {"allOf": [_ref("Grant"), _obj([], restricted_key={
        "oneOf": [_ref("NewKey"), {"type": "null"}],
        "description": "for restricted_api_key apps: the install's key, shown once"})]},
    "Uninstalled": {"allOf": [_ref("Grant"), _obj(["uninstalled"],
                                                  uninstalled={"const": True})]},
    "AuditEntry": _obj(
        ["id", "at", "actor", "action", "detail"], id={"type": "integer"}, at=_TIME,
        actor=_STR, action={**_STR, "description": "app.created, version.uploaded, "
                            "install.created, install.approved, install.removed, key.created, "
                            "key.rotated"},
        app_id=_NSTR, account=_NSTR, mode=_NSTR, version=_NSTR, detail={"type": "object"}),
    "PermissionView": _obj(
        ["permission", "level", "title", "description", "purpose", "implies"],
        permission=_STR, level={"enum": ["read", "write", ""]},
        title={**_STR, "description": "the catalog's title of the resource"},
        description={**_STR, "description": "the catalog's description"},
        purpose={**_STR, "description": "the app's own words (manifest text: escape it)"},
        implies={"type": "array", "items": _obj(["permission", "title"], permission=_STR,
                                                title=_STR)}),
    "VersionView": _obj(
        ["app_id", "name", "version", "access_type", "permissions"], app_id=_STR, name=_STR,
        version=_STR, access_type=_STR, uploaded_by=_STR, icon=_STR,
        connect_src={"type": "array", "items": _STR}, csp_purpose=_STR,
        allowed_redirect_uris={"type": "array", "items": _STR},
        sandbox_install_compatible={"type": "boolean"},
        permissions={"type": "array", "items": _ref("PermissionView")}),
    "Review": _obj(
        ["install", "version", "needs_approval", "new", "kept", "dropped"],
        install=_ref("Grant"), version=_STR, needs_approval={"type": "boolean"},
        new={"type": "array", "items": _ref("PermissionView"),
             "description": "what approval would add: the only thing to review"},
        kept=_STRS, dropped={**_STRS, "description": "approved before, no longer asked for"}),
    "AccountSession": _obj(
        ["id", "object", "account", "user_id", "display_name", "role", "url", "expires_at"],
        id=_STR, object={"const": "account_session"}, account=_STR, user_id=_STR,
        display_name=_STR, role=_STR,
        url={**_STR, "description": "single-use; opening it starts a browser session"},
        expires_at={"type": "integer", "description": "unix time"}),
    "WebhookEndpoint": _obj(
        ["id", "app_id", "url", "mode", "enabled_events"], id=_STR, app_id=_STR, url=_STR,
        mode=_MODE, enabled_events={**_STRS, "description": "event types, or [\"*\"]: every "
                                    "event the app may receive"},
        status={"type": "string", "enum": ["enabled", "disabled", "expired", "removed"],
                "description": "disabled: failing for days (see disabled_reason); enable it "
                               "with POST .../enable"}),
    "NewWebhookEndpoint": {"allOf": [_ref("WebhookEndpoint"), _obj(["secret"], secret={
        **_STR, "description": "whsec_...: shown in this response only"})]},
}

_ERRORS = {
    400: "invalid parameters or an invalid manifest (see `problems`)",
    401: "missing or wrong bearer token",
    403: "the acting user's role is not admin",
    404: "no such app, version or install",
    409: "conflict: already installed, version exists, or a newer version was uploaded",
}


@cache
def document() -> JSON:
    paths: JSON = {
        "/v1/apps": {
            "get": _op("list_apps", "List apps", _list_of("App")),
            "post": _op("upload", "Upload a manifest as the app's newest version", "Upload",
                        status=201, body=_obj(["manifest", "actor"], actor=_STR, manifest={
                            "oneOf": [{"type": "object"}, _STR],
                            "description": "stripe-app.json, as an object or its text"}),
                        errors=(400, 409)),
        },
        "/v1/apps/{app_id}": {"get": {
            **_op("get_app", "An app and its versions", "App", errors=(404,)),
            "parameters": [_p("app_id")]}},
        "/v1/apps/{app_id}/keys": {"get": {
            **_op("list_keys", "The app's keys (never their secrets)", _list_of("Key"),
                  errors=(404,)),
            "parameters": [_p("app_id")]}},
        "/v1/apps/{app_id}/keys/rotate": {"post": {
            **_op("rotate_key", "Rotate a secret key (or an install's restricted key)", "NewKey",
                  status=201, errors=(400, 404), body=_obj(
                      ["mode", "actor"], mode=_MODE, actor=_STR, account={
                          **_STR, "description": "rotate this install's restricted key"},
                      grace_seconds={"type": "integer", "minimum": 0, "maximum": 604800,
                                     "default": 86400, "description":
                                     "how long the old key keeps working"})),
            "parameters": [_p("app_id")]}},
        "/v1/installs": {
            "get": _op("list_installs", "List installs", _list_of("Grant"), params=[
                _q("app", _STR, "only this app"), _q("account", _STR, "only this account"),
                _q("mode", _MODE, "only this mode")]),
            "post": _op("install", "Install an app: accepts its latest version's permission set",
                        "Install", status=201, errors=(400, 403, 404, 409), body=_obj(
                            ["app_id", "account", "mode", "by", "role"], app_id=_STR,
                            account=_STR, mode=_MODE, **_ACTOR)),
        },
        "/v1/installs/{app_id}/{account}/{mode}": {
            "get": _op("get_install", "An install's effective grant", "Grant", errors=(404,)),
            "parameters": _INSTALL_PARAMS},
        "/v1/installs/{app_id}/{account}/{mode}/approve": {
            "post": _op("approve", "Approve the latest version's set", "Grant",
                        errors=(400, 403, 404, 409), body=_obj(
                            ["by", "role"], **_ACTOR, version={**_STR, "description":
                            "the version the administrator reviewed; 409 if a newer one "
                            "was uploaded since"})),
            "parameters": _INSTALL_PARAMS},
        "/v1/installs/{app_id}/{account}/{mode}/uninstall": {
            "post": _op("uninstall", "Uninstall: revokes every grant and restricted key at once",
                        "Uninstalled", errors=(400, 403, 404), body=_obj(["by", "role"],
                                                                          **_ACTOR)),
            "parameters": _INSTALL_PARAMS},
        "/v1/installs/{app_id}/{account}/{mode}/review": {
            "get": _op("review", "What approving the running version would add (only what "
                       "is new)", "Review", errors=(404,)),
            "parameters": _INSTALL_PARAMS},
        "/v1/apps/{app_id}/versions/{version}": {"get": {
            **_op("get_version", "A version as the consent screen shows it: permissions "
                  "with purposes and catalog titles", "VersionView", errors=(404,)),
            "parameters": [_p("app_id"), _p("version")]}},
        "/v1/account_sessions": {"post": _op(
            "account_session",
            "A single-use link that signs one of the platform's users in to the consent "
            "pages for one account", "AccountSession", status=201, errors=(400,), body=_obj(
                ["account", "user_id", "role"], account=_STR, user_id=_STR,
                display_name=_STR, role={**_STR, "description": "admin and super_admin may "
                                         "install, approve and uninstall; others only look"},
                return_url={**_STR, "description": "http(s) URL the pages link back to"},
                next={**_STR, "description": "a path on this server to land on (e.g. an "
                      "/oauth/v2/authorize install link)"},
                expires_in={"type": "integer", "minimum": 1, "maximum": 1800,
                            "default": 300}, actor=_STR))},
        "/v1/audit": {"get": _op("audit", "The audit trail, oldest first",
                                 _list_of("AuditEntry"), errors=(400,), params=[
            _q("app", _STR, "only this app"), _q("account", _STR, "only this account"),
            _q("since", _TIME, "only entries at or after this time"),
            _q("limit", {"type": "integer", "minimum": 1}, "only the newest N entries")])},
        "/v1/webhook_endpoints": {
            "get": _op("list_webhooks", "List webhook endpoints", _list_of("WebhookEndpoint"),
                       params=[_q("app", _STR, "only this app's")]),
            "post": _op("add_webhook", "Add a webhook endpoint; refused (400) for event "
                        "types the app's manifest cannot receive", "NewWebhookEndpoint", status=201,
                        errors=(400, 404), body=_obj(
                            ["app_id", "url", "enabled_events", "mode", "actor"],
                            app_id=_STR, url=_STR, enabled_events=_STRS, mode=_MODE,
                            actor=_STR)),
        },
        "/v1/webhook_endpoints/{endpoint_id}/remove": {
            "post": _op("remove_webhook", "Remove an endpoint; its pending deliveries are "
                        "cancelled", "WebhookEndpoint", errors=(400, 404), body=_obj(["actor"],
                                                                        actor=_STR)),
            "parameters": [_p("endpoint_id")]},
        "/v1/webhook_endpoints/{endpoint_id}/enable": {
            "post": _op("enable_webhook", "Deliver again to an endpoint disabled after days "
                        "of failures (`status: disabled`)", "WebhookEndpoint", errors=(400, 404),
                        body=_obj(["actor"], actor=_STR)),
            "parameters": [_p("endpoint_id")]},
        "/v1/webhook_endpoints/{endpoint_id}/rotate_secret": {
            "post": _op("rotate_webhook_secret", "A new signing secret, shown once",
                        "NewWebhookEndpoint", errors=(400, 404), body=_obj(
                            ["actor"], actor=_STR, grace_seconds={
                            "type": "integer", "minimum": 0, "maximum": 86400,
                            "description": "how long the old secret also signs"})),
            "parameters": [_p("endpoint_id")]},
        "/v1/changes": {"get": _op(
            "changes",
            "The change counter: bumps with every change (cache invalidation)",
            _obj(["change_counter"], change_counter={"type": "integer"}))},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "permgate admin API", "version": permgate.__version__,
                 "description": "Apps, versions, installs, consent, keys and the audit trail "
                 "of a permgate store. Errors use Stripe's shape. See docs/store.md."},
        "servers": [{"url": "."}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "PERMGATE_ADMIN_TOKEN"}},
            "responses": {f"E{code}": {"description": text, "content": {"application/json": {
                "schema": _ref("Error")}}} for code, text in _ERRORS.items()},
        },
    }
