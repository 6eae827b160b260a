"""The admin HTTP API, through a real uvicorn server on 127.0.0.1 and httpx."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from tests.asgi import serve
from tests.store.conftest import APP, manifest_text

import permgate
from permgate.admin import create_admin_app, openapi_document
from permgate.events import targets
from permgate.store import Store

TOKEN = secrets.token_urlsafe(32)
ACCT = "acct_1Http"
ADMIN = {"by": "ann", "role": "admin"}
INSTALL = f"/v1/installs/{APP}/{ACCT}/live"


@pytest.fixture
def base_url(store: Store) -> Iterator[str]:
    with serve(create_admin_app(store, TOKEN)) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        yield client


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == code and err["message"]
    return err


def test_walkthrough(http: httpx.Client) -> None:
    r = http.post("/v1/apps", json={"actor": "dev",
                                    "manifest": manifest_text("1.0.0", ["customer_read"])})
    assert r.status_code == 201, r.text
    assert [k["secret"][:8] for k in r.json()["keys"]] == ["sk_test_", "sk_live_"]
    r = http.post("/v1/installs", json={"app_id": APP, "account": ACCT, "mode": "live", **ADMIN})
    assert r.status_code == 201 and r.json()["status"] == "active"
    r = http.post("/v1/apps", json={"actor": "dev", "manifest": {
        "id": APP, "version": "1.1.0", "name": "x", "icon": "",
        "permissions": [{"permission": p, "purpose": "Needed."}
                        for p in ("customer_read", "charge_read")],
        "ui_extension": {"views": []}}})
    assert r.status_code == 201, r.text
    assert r.json()["keys"] == []
    g = http.get(INSTALL).json()
    assert (g["status"], g["pending"]) == ("pending_approval", ["charge_read"])
    _error(http.post(INSTALL + "/approve", json={"by": "dev", "role": "developer"}),
           403, "admin_role_required")
    _error(http.post(INSTALL + "/approve", json={**ADMIN, "version": "1.0.0"}),
           409, "version_superseded")
    r = http.post(INSTALL + "/approve", json={**ADMIN, "version": "1.1.0"})
    assert r.status_code == 200 and r.json()["approved"] == ["charge_read", "customer_read"]
    assert [i["install_id"] for i in http.get("/v1/installs", params={
        "account": ACCT}).json()["data"]] == [g["install_id"]]
    r = http.post(INSTALL + "/uninstall", json=ADMIN)
    assert r.status_code == 200 and r.json()["uninstalled"] is True
    _error(http.get(INSTALL), 404, "not_installed")
    actions = [e["action"] for e in http.get("/v1/audit", params={"account": ACCT}).json()[
        "data"]]
    assert actions == ["install.created", "install.approved", "install.removed"]
    assert http.get("/v1/changes").json()["change_counter"] == 5


def test_apps_and_keys(http: httpx.Client) -> None:
    assert http.get("/v1/apps").json() == {"data": []}
    http.post("/v1/apps", json={"actor": "dev",
                                "manifest": manifest_text("1.0.0", ["customer_read"])})
    assert [a["app_id"] for a in http.get("/v1/apps").json()["data"]] == [APP]
    assert http.get(f"/v1/apps/{APP}").json()["latest_version"] == "1.0.0"
    r = http.post(f"/v1/apps/{APP}/keys/rotate",
                  json={"mode": "test", "actor": "ops", "grace_seconds": 0})
    assert r.status_code == 201 and r.json()["secret"].startswith("sk_test_")
    keys = http.get(f"/v1/apps/{APP}/keys").json()["data"]
    assert sorted((k["mode"], k["usable"]) for k in keys) == [
        ("live", True), ("test", False), ("test", True)]
    assert all("secret" not in k for k in keys)
    _error(http.get("/v1/apps/com.example.none"), 404, "app_not_found")


def test_errors_are_stripe_shaped(http: httpx.Client, base_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(base_url + "/v1/apps", headers=headers)
        _error(r, 401, "invalid_admin_token")
        assert r.headers["www-authenticate"] == "Bearer"
    err = _error(http.post("/v1/apps", json={"actor": "dev", "manifest": manifest_text(
        "1.0.0", ["customer_reed"])}), 400, "invalid_manifest")
    assert any("customer_reed" in p["message"] or "customer_reed" in p["pointer"]
               or p["pointer"].startswith("/permissions") for p in err["problems"])
    assert http.get("/v1/apps").json() == {"data": []}
    _error(http.post("/v1/apps", content=b"[1]"), 400, "invalid_json")
    _error(http.post("/v1/installs", json={"app_id": APP}), 400, "parameter_missing")
    _error(http.post("/v1/installs", json={
        "app_id": APP, "account": ACCT, "mode": "live", **ADMIN}), 404, "app_not_found")
    _error(http.get("/v1/nowhere"), 404, "resource_missing")
    _error(http.delete("/v1/apps"), 405, "method_not_allowed")
    _error(http.get("/v1/audit", params={"since": "yesterday"}), 400, "parameter_invalid")


def test_openapi_document_describes_every_route(http: httpx.Client, store: Store) -> None:
    doc = http.get("/openapi.json").json()
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.")
    app = create_admin_app(store, TOKEN)
    served = {(r.path, m.lower()) for r in getattr(app, "routes", []) if isinstance(r, Route)
              for m in (r.methods or ()) if m != "HEAD" and r.path != "/openapi.json"}
    documented = {(p, m) for p, item in doc["paths"].items() for m in item
                  if m != "parameters"}
    assert served == documented
    refs = {v for v in _walk(doc) if v.startswith("#/")}
    for ref in refs:
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_an_empty_token_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="token"):
        create_admin_app(store, "")


def test_webhook_endpoints(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERMGATE_WEBHOOK_KEY", "ab" * 32)
    # app.example is reserved and resolves nowhere: answer as a public DNS name would.
    monkeypatch.setattr(targets, "system_resolve", lambda host, port: ["93.184.215.14"])
    r = http.post("/v1/apps", json={"actor": "dev", "manifest": manifest_text(
        "1.0.0", ["event_read", "customer_read"])})
    assert r.status_code == 201, r.text
    new = {"app_id": APP, "url": "https://app.example/hook", "mode": "live", "actor": "dev"}
    err = _error(http.post("/v1/webhook_endpoints", json={**new, "enabled_events": [
        "invoice.paid"]}), 400, "event_not_permitted")
    assert "invoice_read" in err["message"]
    _error(http.post("/v1/webhook_endpoints", json={**new, "enabled_events": []}),
           400, "parameter_invalid")
    r = http.post("/v1/webhook_endpoints", json={**new, "enabled_events": ["customer.created"]})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("whsec_")
    listed = http.get("/v1/webhook_endpoints", params={"app": APP}).json()["data"]
    assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
    r = http.post(f"/v1/webhook_endpoints/{made['id']}/rotate_secret", json={"actor": "dev"})
    assert r.status_code == 200 and r.json()["secret"] not in (made["secret"], None)
    r = http.post(f"/v1/webhook_endpoints/{made['id']}/remove", json={"actor": "dev"})
    assert r.status_code == 200 and r.json()["removed"] is True
    assert http.get("/v1/webhook_endpoints").json()["data"] == []


def test_the_document_is_what_the_server_accepts(
        http: httpx.Client, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes and required body fields come from the OpenAPI document: for every operation,
    a body missing any one required field is refused (400, naming it, nothing changed) and
    one with just the required fields is accepted."""
    from permgate.admin.app import _Api

    monkeypatch.setenv("PERMGATE_WEBHOOK_KEY", "ab" * 32)
    monkeypatch.setattr(targets, "system_resolve", lambda host, port: ["93.184.215.14"])
    ops = {op["operationId"]: (path, method, op)
           for path, item in openapi_document()["paths"].items()
           for method, op in item.items() if method != "parameters"}
    assert set(ops) == {n for n in vars(_Api) if not n.startswith("_")}
    params = {"app_id": APP, "account": ACCT, "mode": "live", "version": "1.0.0"}
    admin = {"by": "ann", "role": "admin"}
    # In an order where each full body is valid; (status, code) when the store refuses it
    # after the document's checks passed.
    steps: list[tuple[str, dict[str, Any], int | tuple[int, str]]] = [
        ("upload", {"actor": "dev", "manifest": manifest_text(
            "1.0.0", ["event_read", "customer_read"])}, 201),
        ("list_apps", {}, 200), ("get_app", {}, 200), ("get_version", {}, 200),
        ("rotate_key", {"mode": "live", "actor": "dev"}, 201), ("list_keys", {}, 200),
        ("install", {"app_id": APP, "account": ACCT, "mode": "live", **admin}, 201),
        ("list_installs", {}, 200), ("get_install", {}, 200), ("review", {}, 200),
        ("approve", admin, 200),
        ("account_session", {"account": ACCT, "user_id": "u_1", "role": "admin"}, 201),
        ("add_webhook", {"app_id": APP, "url": "https://app.example/hook", "mode": "live",
                         "enabled_events": ["customer.created"], "actor": "dev"}, 201),
        ("list_webhooks", {}, 200), ("rotate_webhook_secret", {"actor": "dev"}, 200),
        ("enable_webhook", {"actor": "dev"}, (400, "not_disabled")),
        ("remove_webhook", {"actor": "dev"}, 200),
        ("uninstall", admin, 200), ("audit", {}, 200), ("changes", {}, 200),
    ]
    assert {name for name, _, _ in steps} == set(ops)
    for name, full, want in steps:
        path, method, op = ops[name]
        url = path.format(**params)
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        required = schema.get("schema", {}).get("required", [])
        # exactly the required fields: a handler needing one the document does not list fails
        assert set(required) == set(full), name
        for field in required:
            before = store.change_counter()
            r = http.request(method, url, json={k: v for k, v in full.items() if k != field})
            err = _error(r, 400, "parameter_missing")
            assert err["param"] == field, (name, field)
            assert store.change_counter() == before, (name, field)
        r = http.request(method, url, json=full if method == "post" else None)
        if isinstance(want, int):
            assert r.status_code == want, (name, r.text)
        else:
            _error(r, *want)
        if name == "add_webhook":
            params["endpoint_id"] = r.json()["id"]


def test_openapi_document_needs_the_admin_token(base_url: str) -> None:
    # It maps the admin surface and names the exact version: an outsider gets a 401.
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(base_url + "/openapi.json", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "invalid_admin_token"
        assert "paths" not in r.text and permgate.__version__ not in r.text
