"""OAuth with the official Python SDK through `permgate serve` to localstripe.

The person's part (account link, consent) is plain HTTP here; tests/console/test_browser.py
does it in a real browser. The app's part is `stripe.OAuth.token` pointed at the gateway, and
the access token used as the SDK's api_key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import stripe
from tests.console.e2e import Platform, csrf_of, platform
from tests.console.support import ACCOUNT, APP, upload
from tests.needs import npm_ci

pytestmark = pytest.mark.e2e
CALLBACK = "https://app.example/oauth/callback"
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("consent-sdk")) as p:
        yield p


@pytest.fixture
def sdk(plat: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "api_base", plat.url)
    monkeypatch.setattr(stripe, "connect_api_base", plat.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)


def _consent(plat: Platform, person: httpx.Client, app_id: str = APP, *,
             name_redirect: bool = True) -> str:
    """A code from an install link; `name_redirect`: the link names its redirect_uri (then
    the token request must repeat it, RFC 6749 4.1.3), else the first listed one is used."""
    link = plat.account_link()
    assert person.get(link).status_code == 303
    params = {"client_id": app_id, "state": "s1", "mode": "test"}
    if name_redirect:
        params["redirect_uri"] = CALLBACK
    page = person.get("/oauth/v2/authorize?" + urlencode(params))
    assert page.status_code == 200, page.text
    r = person.post("/oauth/v2/authorize", data={
        "csrf": csrf_of(page.text), **params, "decision": "allow"})
    assert r.status_code == 303
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def test_official_sdk_oauth_token_then_calls_with_the_access_token(
    plat: Platform, sdk: None
) -> None:
    keys = upload(plat.store, "1.0.0", ["customer_read"], access="oauth",
                  redirect_uris=[CALLBACK]).keys
    secret = next(k.secret for k in keys if k.mode == "test")
    with httpx.Client(base_url=plat.url, follow_redirects=False) as person:
        code = _consent(plat, person)
        token = stripe.OAuth.token(api_key=secret, grant_type="authorization_code", code=code,
                                   redirect_uri=CALLBACK)
        assert token["stripe_user_id"] == ACCOUNT and token["scope"] == "stripe_apps"
        assert token["livemode"] is False
        access = token["access_token"]
        app = stripe.StripeClient(access, base_addresses={"api": plat.url},
                                  max_network_retries=0)
        created = app.v1.customers.list()
        assert created.object == "list"
        with pytest.raises(stripe.PermissionError, match="charge_read"):
            app.v1.charges.list()
        with pytest.raises(stripe.oauth_error.InvalidGrantError):
            stripe.OAuth.token(api_key=secret, grant_type="authorization_code", code=code,
                               redirect_uri=CALLBACK)
        # The replayed code revoked that family: a new consent gives a new one (from a link
        # that names no redirect_uri, as Stripe's install links may).
        code = _consent(plat, person, name_redirect=False)
        first = stripe.OAuth.token(api_key=secret, grant_type="authorization_code", code=code)
        second = stripe.OAuth.token(api_key=secret, grant_type="refresh_token",
                                    refresh_token=first["refresh_token"])
        fresh = stripe.StripeClient(second["access_token"], base_addresses={"api": plat.url},
                                    max_network_retries=0)
        assert fresh.v1.customers.list().object == "list"
        with pytest.raises(stripe.oauth_error.InvalidGrantError):
            stripe.OAuth.token(api_key=secret, grant_type="refresh_token",
                               refresh_token=first["refresh_token"])
        with pytest.raises(stripe.AuthenticationError):
            fresh.v1.customers.list()  # reuse revoked the whole family at once
        with pytest.raises(stripe.oauth_error.InvalidClientError):
            stripe.OAuth.token(api_key="sk_test_" + "0" * 64, grant_type="refresh_token",
                               refresh_token=second["refresh_token"])


def test_uninstall_stops_every_token_and_key_at_once(plat: Platform, sdk: None) -> None:
    app_id = "com.example.console.rk"
    keys = upload(plat.store, "1.0.0", ["customer_read"], app_id=app_id,
                  access="restricted_api_key").keys
    secret = next(k.secret for k in keys if k.mode == "test")
    with httpx.Client(base_url=plat.url, follow_redirects=False) as person:
        assert person.get(plat.account_link()).status_code == 303
        install = f"/console/apps/{app_id}/install?mode=test"
        done = person.post(install, data={"csrf": csrf_of(person.get(install).text)})
        assert done.status_code == 200
        restricted = done.text.split('<code class="key">')[1].split("<")[0]
        platform_key = stripe.StripeClient(secret, stripe_account=ACCOUNT,
                                           base_addresses={"api": plat.url},
                                           max_network_retries=0)
        rk = stripe.StripeClient(restricted, base_addresses={"api": plat.url},
                                 max_network_retries=0)
        assert platform_key.v1.customers.list().object == "list"
        assert rk.v1.customers.list().object == "list"
        page = f"/console/apps/{app_id}/uninstall?mode=test"
        r = person.post(page, data={"csrf": csrf_of(person.get(page).text)})
        assert r.status_code == 303
        # No waiting: the console's change reaches the gateway's cache before the answer.
        with pytest.raises(stripe.AuthenticationError):
            rk.v1.customers.list()
        with pytest.raises(stripe.PermissionError, match="not installed"):
            platform_key.v1.customers.list()


def test_official_node_sdk_oauth_token_refresh_and_reuse(plat: Platform) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the node SDK end-to-end test")
    npm_ci(NODE_DIR, NODE_DIR / "node_modules" / "stripe")
    app_id = "com.example.console.node"
    keys = upload(plat.store, "1.0.0", ["customer_read"], app_id=app_id, access="oauth",
                  redirect_uris=[CALLBACK]).keys
    secret = next(k.secret for k in keys if k.mode == "test")
    with httpx.Client(base_url=plat.url, follow_redirects=False) as person:
        code = _consent(plat, person, app_id, name_redirect=False)
    done = subprocess.run(
        ["node", "oauth.mjs", json.dumps({"url": plat.url, "key": secret, "code": code})],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["stripe_user_id"] == ACCOUNT and out["scope"] == "stripe_apps"
    assert out["livemode"] is False and out["access_prefix"] == "rk_test_"
    assert out["customers"] == "list" and out["rotated"] is True
    assert out["denied"]["name"] == "StripePermissionError"
    assert out["reused"]["name"] == "StripeInvalidGrantError"
    assert out["afterReuse"]["name"] == "StripeAuthenticationError"
