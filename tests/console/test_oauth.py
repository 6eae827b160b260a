"""OAuth for apps, in process: install links, the consent redirect, the token endpoint."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from tests.console.support import (
    ACCOUNT,
    APP,
    Browser,
    manifest_text,
    platform_app,
    serve,
    upload,
)

from permgate.events.schema import events
from permgate.store import InvalidManifest, Store
from permgate.store.schema import app_versions

CALLBACK = "https://app.example/oauth/callback?from=permgate"
STATE = "st-8b2f<&>"
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


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


def _allow(b: Browser, decision: str = "allow", link: str | None = None) -> httpx.Response:
    """Open the install link and press a button, sending the form as a browser would: its
    hidden fields as the page wrote them."""
    page = b.get(link or _authorize())
    assert page.status_code == 200, page.text
    fields = {k: html.unescape(v) for k, v in HIDDEN.findall(page.text)}
    return b.console.post("/oauth/v2/authorize", data={**fields, "decision": decision})


def _token(url: str, key: str, **form: str) -> httpx.Response:
    if form.get("grant_type") == "authorization_code":
        form.setdefault("redirect_uri", CALLBACK)  # the link named it: RFC 6749 4.1.3
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


# -- PKCE (RFC 7636) with a real OAuth client --------------------------------------------------

def _client(key: str) -> OAuth2Session:
    # The app's side: Authlib's client as RFC 6749 has it: client_id is the app's id, the
    # client secret its secret key, sent as HTTP basic (client_secret_basic).
    return OAuth2Session(APP, key, redirect_uri=CALLBACK, code_challenge_method="S256",
                         token_endpoint_auth_method="client_secret_basic")


def test_pkce_s256_through_a_real_oauth_client(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, url, key = env
    b.sign_in()
    app = _client(key)
    verifier = generate_token(64)
    link, _ = app.create_authorization_url(url + "/oauth/v2/authorize",
                                           code_verifier=verifier, state=STATE, mode="test")
    assert f"code_challenge={create_s256_code_challenge(verifier)}" in link
    r = _allow(b, link=link.removeprefix(url))
    assert r.status_code == 303, r.text
    q = _query(r.headers["location"])
    assert q["state"] == STATE
    token_url = url + "/v1/oauth/token"
    for wrong in (None, generate_token(64), "x"):
        extra = {} if wrong is None else {"code_verifier": wrong}
        with pytest.raises(AuthlibOAuthError) as e:
            app.fetch_token(token_url, code=q["code"], **extra)
        assert e.value.error == "invalid_grant", wrong
    token = app.fetch_token(token_url, code=q["code"], code_verifier=verifier)
    info = store.authenticate(token["access_token"])
    assert info is not None and info.account == ACCOUNT


def test_pkce_without_a_verifier_is_refused_at_the_token_endpoint(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    # The words: a code is redeemed with no code_verifier (or a wrong one).
    b, url, key = env
    b.sign_in()
    verifier = generate_token(64)
    link = _authorize(code_challenge=create_s256_code_challenge(verifier),
                      code_challenge_method="S256")
    q = _query(_allow(b, link=link).headers["location"])
    for form in ({}, {"code_verifier": generate_token(64)}):
        r = _token(url, key, grant_type="authorization_code", code=q["code"], **form)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    ok = _token(url, key, grant_type="authorization_code", code=q["code"],
                code_verifier=verifier)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("pkce", [
    {"code_challenge": "A" * 43},  # no method: plain (RFC 7636 4.3), which is not accepted
    {"code_challenge": "A" * 43, "code_challenge_method": "plain"},
    {"code_challenge": "A" * 43, "code_challenge_method": "S512"},
    {"code_challenge": "A" * 20, "code_challenge_method": "S256"},
    {"code_challenge_method": "S256"},
])
def test_a_challenge_we_cannot_check_is_redirected_as_invalid_request(
    store: Store, env: tuple[Browser, str, str], pkce: dict[str, str]
) -> None:
    b, _, _ = env
    for signed_in in (False, True):
        if signed_in:
            b.sign_in()
        r = b.get(_authorize(**pkce))
        assert r.status_code == 303, r.text
        q = _query(r.headers["location"])
        assert q["error"] == "invalid_request" and q["state"] == STATE, q
        assert q["from"] == "permgate" and "code" not in q
        assert "code_challenge" in q["error_description"]
    assert store.effective_grant(APP, ACCOUNT, "test") is None


# -- redirect_uri at the token endpoint (RFC 6749 section 4.1.3) -------------------------------

def test_the_token_request_must_repeat_a_redirect_uri_the_link_named(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, url, key = env
    b.sign_in()
    q = _query(_allow(b).headers["location"])  # the link named redirect_uri
    bare = httpx.post(url + "/v1/oauth/token", auth=(key, ""),
                      data={"grant_type": "authorization_code", "code": q["code"]})
    assert bare.status_code == 400 and bare.json()["error"] == "invalid_grant", bare.text
    assert "redirect_uri is required" in bare.json()["error_description"]
    assert _token(url, key, grant_type="authorization_code", code=q["code"]).status_code == 200
    # A link that named none (the first listed URI is used) needs none at the token endpoint.
    link = "/oauth/v2/authorize?" + urlencode({"client_id": APP, "mode": "test"})
    r = _allow(b, link=link)
    assert r.headers["location"].startswith(CALLBACK + "&code=")
    code = _query(r.headers["location"])["code"]
    ok = httpx.post(url + "/v1/oauth/token", auth=(key, ""),
                    data={"grant_type": "authorization_code", "code": code})
    assert ok.status_code == 200, ok.text


# -- client authentication failures (RFC 6749 sections 2.3.1 and 5.2) --------------------------

def test_a_client_that_failed_basic_auth_is_challenged_with_basic(
    env: tuple[Browser, str, str]
) -> None:
    _, url, key = env
    form = {"grant_type": "refresh_token", "refresh_token": "rt_x"}
    wrong = "sk_test_" + "0" * 64
    for auth, challenge in (
        ({"auth": (wrong, "")}, 'Basic realm="permgate"'),
        ({"auth": (APP, wrong)}, 'Basic realm="permgate"'),  # RFC 6749 2.3.1's pair
        ({"auth": ("com.example.other", key)}, 'Basic realm="permgate"'),  # not its app
        ({"headers": {"Authorization": "Basic !!notbase64"}}, 'Basic realm="permgate"'),
        ({"headers": {"Authorization": f"Bearer {wrong}"}}, 'Bearer realm="permgate"'),
        ({}, 'Basic realm="permgate", Bearer realm="permgate"'),
    ):
        r = httpx.post(url + "/v1/oauth/token", data=form, **auth)  # type: ignore[arg-type]
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", auth
        assert r.headers["www-authenticate"] == challenge, auth


# -- http redirect URIs (issue 20 item 9) --------------------------------------------------------

def test_http_redirect_uris_to_public_hosts_are_refused(
    store: Store, env: tuple[Browser, str, str]
) -> None:
    b, _, _ = env
    with pytest.raises(InvalidManifest) as e:
        upload(store, "2.0.0", ["customer_read"], access="oauth",
               redirect_uris=["http://app.example/oauth/callback"])
    [problem] = e.value.problems
    assert problem.pointer == "/allowed_redirect_uris/0"
    assert problem.code == "insecure-redirect-uri" and "https://" in problem.message
    # Loopback is fine over http (a developer's machine).
    upload(store, "2.0.0", ["customer_read"], access="oauth",
           redirect_uris=["http://127.0.0.1:8000/cb", "http://[::1]/cb", "http://localhost/cb"])
    # A version stored before the rule: its install link sends no code in clear.
    legacy = manifest_text("2.0.0", ["customer_read"], access="oauth",
                           redirect_uris=["http://app.example/cb"])
    with store.engine.begin() as conn:
        conn.execute(app_versions.update().where(
            app_versions.c.app_id == APP, app_versions.c.version == "2.0.0").values(
            manifest=json.loads(legacy), manifest_text=legacy))
    b.sign_in()
    r = b.get("/oauth/v2/authorize?" + urlencode({"client_id": APP, "mode": "test"}))
    assert r.status_code == 400 and "location" not in r.headers
    assert "https" in r.text
