"""Helpers for the console tests: manifests with hostile text, sessions, form posts."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.asgi import serve as serve

from permgate import manifest
from permgate.admin import create_admin_app
from permgate.console import ConsoleSettings, create_console_app
from permgate.store import Store, UploadResult

ADMIN_TOKEN = secrets.token_hex(32)  # the admin API refuses weak tokens
ACCOUNT = "acct_console1"
APP = "com.example.console"
HOSTILE = '<script>alert("pwned")</script>'
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def manifest_text(
    version: str, permissions: list[str], *, app_id: str = APP, access: str = "platform",
    purpose: str | None = None, redirect_uris: list[str] | None = None,
    name: str = "Console example",
) -> str:
    data: dict[str, Any] = {
        "id": app_id, "version": version, "name": name, "icon": "",
        "permissions": [{"permission": p, "purpose": purpose or f"Needed for {p}."}
                        for p in permissions],
        "stripe_api_access_type": access,
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": ["https://api.app.example/v1/"], "image-src": None,
            "purpose": "Sends invoice totals to the app's own server."}},
    }
    if redirect_uris is not None:
        data["allowed_redirect_uris"] = redirect_uris
    return json.dumps(data, indent=2) + "\n"


def upload(store: Store, version: str, permissions: list[str], **kw: Any) -> UploadResult:
    return store.upload_version(manifest.parse(manifest_text(version, permissions, **kw)),
                                actor="dev@app.example")


def platform_app(store: Store, settings: ConsoleSettings | None = None) -> ASGIApp:
    """The admin API at /admin and the console beside it, as the gateway composes them."""
    admin = create_admin_app(store, ADMIN_TOKEN)
    console = create_console_app(store, settings or ConsoleSettings())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/admin/"):
            child = dict(scope)
            child["root_path"] = "/admin"
            child["path"] = scope["path"][len("/admin"):]
            await admin(child, receive, send)
        else:
            await console(scope, receive, send)

    return app




class Browser:
    """A person's browser on the console: one cookie jar, no redirects followed."""

    def __init__(self, store: Store, url: str, host: str | None = None) -> None:
        self.store = store
        headers = {"Host": host} if host else {}
        self.console = httpx.Client(base_url=url, follow_redirects=False, headers=headers,
                                    timeout=30)
        self.admin = httpx.Client(base_url=url + "/admin", headers=headers, timeout=30)

    def close(self) -> None:
        self.console.close()
        self.admin.close()

    def account_link(self, role: str = "admin", user: str = "ann", **extra: Any) -> str:
        r = self.admin.post("/v1/account_sessions", headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}"}, json={
            "account": ACCOUNT, "user_id": user, "display_name": user.title(), "role": role,
            "return_url": "https://platform.example/settings", **extra})
        assert r.status_code == 201, r.text
        url: str = r.json()["url"]
        return url

    def sign_in(self, role: str = "admin", **extra: Any) -> httpx.Response:
        url = self.account_link(role, **extra)
        r = self.console.get(url.split("/console/", 1)[1].join(("/console/", "")))
        assert r.status_code == 303, r.text
        return r

    def get(self, path: str) -> httpx.Response:
        return self.console.get(path)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def post(self, path: str, data: dict[str, str], *, from_page: str | None = None,
             csrf: str | None = None) -> httpx.Response:
        token = csrf if csrf is not None else self.csrf(from_page or path)
        return self.console.post(path, data={"csrf": token, **data})
