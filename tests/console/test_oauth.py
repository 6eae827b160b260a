"""OAuth for apps, in process: install links, the consent redirect, the token endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from tests.console.support import ACCOUNT, APP, Browser, platform_app, serve, upload

from permgate.events.schema import events
from permgate.store import Store

CALLBACK = "https://app.example/oauth/callback?from=permgate"
STATE = "st-8b2f<&>"


@pytest.fixture
def env(store: Store) -> Iterator[tuple[Browser, str, str]]:
    keys = upload(store, "1.0.0", ["customer_read"], access="oauth",
                  redirect_uris=[CALLBACK, "https://app.example/other"]).keys
    test_key = next(k.secret for k in keys if k.mode == "test")
    with serve(platform_app(store)) as url:
        b = Browser(store, url)
        try:
            yield b, url, test_key
        finally:
            b.close()


def _authorize(**params: str) -> str:
    base = {"client_id": APP, "redirect_uri": CALLBACK, "state": STATE, "mode": "test",
            "response_type": "code"}
    return "/oauth/v2/authorize?" + urlencode({**base, **params})


def _query(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    assert location.startswith("https://app.example/oauth/callback?")
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


def _allow(b: Browser, decision: str = "allow") -> httpx.Response:
    page = b.get(_authorize())
    assert page.status_code == 200, page.text
    fields = dict(client_id=APP, redirect_uri=CALLBACK, state=STATE, mode="test",
                  decision=decision)
    return b.post("/oauth/v2/authorize", fields, from_page=_authorize())


def _token(url: str, key: str, **form: str) -> httpx.Response:
    return httpx.post(url + "/v1/oauth/token", data=form, auth=(key, ""))


def test_install_link_needs_a_session_and_an_exact_redirect(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, _, _ = env
    assert b.get(_authorize()).status_code == 401
    b.sign_in()
    for bad in (dict(redirect_uri="https://app.example/oauth/callback"),
                dict(redirect_uri="https://evil.example/cb"), dict(client_id="com.nobody"),
                dict(response_type="token")):
        r = b.get(_authorize(**bad))
        assert r.status_code == 400 and "location" not in r.headers, bad
    page = b.get(_authorize())
    assert "form-action 'self' https://app.example" in page.headers["content-security-policy"]
    assert "customer_read" in page.text and "https://app.example/oauth/callback" in page.text


def test_deny_redirects_with_access_denied(store: Store, env: tuple[Browser, str, str]) -> None:
    b, _, _ = env
    b.sign_in()
    r = _allow(b, "deny")
    assert r.status_code == 303
    q = _query(r.headers["location"])
    assert q == {"from": "permgate", "error": "access_denied", "state": STATE,
                 "error_description": "The user denied your request"}
    assert store.effective_grant(APP, ACCOUNT, "test") is None


def test_code_token_refresh_and_reuse(store: Store, env: tuple[Browser, str, str]) -> None:
    b, url, key = env
    b.sign_in()
    r = _allow(b)
    assert r.status_code == 303
    q = _query(r.headers["location"])
    assert q["state"] == STATE and q["code"].startswith("ac_")
    assert store.effective_grant(APP, ACCOUNT, "test") is not None
    with store.engine.connect() as conn:
        fired = conn.execute(sa.select(events.c.type).where(events.c.account == ACCOUNT)
                             ).scalars().all()
    assert fired == ["account.application.authorized"]
    bad = _token(url, "sk_test_" + "x" * 64, grant_type="authorization_code", code=q["code"])
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    got = _token(url, key, grant_type="authorization_code", code=q["code"])
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["stripe_user_id"] == ACCOUNT and body["livemode"] is False
    assert body["access_token"].startswith("rk_test_") and body["token_type"] == "bearer"
    assert got.headers["cache-control"] == "no-store"
    again = _token(url, key, grant_type="authorization_code", code=q["code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert store.authenticate(body["access_token"]) is None  # replayed code: family revoked
    # A fresh authorization, then rotation.
    q = _query(_allow(b).headers["location"])
    first = _token(url, key, grant_type="authorization_code", code=q["code"]).json()
    second = _token(url, key, grant_type="refresh_token",
                    refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert store.authenticate(second["access_token"]) is not None
    reused = _token(url, key, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert store.authenticate(second["access_token"]) is None
    odd = _token(url, key, grant_type="password")
    assert odd.json()["error"] == "unsupported_grant_type"
    assert _token(url, key, grant_type="refresh_token").json()["error"] == "invalid_request"


def test_non_admin_sees_no_buttons_and_cannot_allow(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, _, _ = env
    b.sign_in(role="view_only")
    page = b.get(_authorize()).text
    assert "Only an administrator" in page and 'value="allow"' not in page
    token = b.csrf("/console/")
    r = b.post("/oauth/v2/authorize", dict(client_id=APP, redirect_uri=CALLBACK, mode="test",
                                            decision="allow"), csrf=token)
    assert r.status_code == 403
    assert store.effective_grant(APP, ACCOUNT, "test") is None


def test_account_link_can_land_on_the_install_link(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, _, _ = env
    r = b.sign_in(next=_authorize())
    assert r.headers["location"] == _authorize()
