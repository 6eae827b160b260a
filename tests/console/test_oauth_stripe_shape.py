"""OAuth answers in Stripe's shape (issue 24), field by field.

Stripe's documented token answer, docs.stripe.com/stripe-apps/api-authentication/oauth
("Exchange the authorization code for an access token" and "Refresh your access token"; a
copy of the page: tanisss46/firecrawl docs/docs_stripe_com/
docs_stripe_com_stripe-apps_api-authentication_oauth.md):

    {"access_token": "{{ ACCESS_TOKEN }}", "livemode": true,
     "refresh_token": "{{ REFRESH_TOKEN }}", "scope": "stripe_apps",
     "stripe_publishable_key": "pk_live_***", "stripe_user_id": "acct_***",
     "token_type": "bearer"}

and "Access tokens expire in 1 hour": permgate adds RFC 6749's `expires_in` (3600). The same
page: install links are `https://marketplace.stripe.com/oauth/v2/authorize?client_id=...`,
"Stripe generates separate links for both live and test modes" (the test one carries a
`chnlink_...` segment: `/oauth/v2/chnlink_.../authorize`). A token request without
credentials gets Stripe's words (isaacsanders/omniauth-stripe-connect#2 quotes Stripe's
answer: invalid_client, "No authentication credentials were provided. Send your secret API
key in the Authorization header using the Bearer authentication method").
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from tests.console.support import ACCOUNT, APP, Browser, platform_app, serve, upload

from permgate.oauth import client_id_of, link_of
from permgate.store import Store

CALLBACK = "https://app.example/oauth/callback"
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
STRIPE_SAMPLE_FIELDS = {"access_token", "livemode", "refresh_token", "scope",
                        "stripe_publishable_key", "stripe_user_id", "token_type"}


@pytest.fixture
def env(store: Store) -> Iterator[tuple[Browser, str, str]]:
    keys = upload(store, "1.0.0", ["customer_read"], access="oauth",
                  redirect_uris=[CALLBACK]).keys
    test_key = next(k.secret for k in keys if k.mode == "test")
    with serve(platform_app(store)) as url:
        b = Browser(store, url)
        try:
            b.sign_in()
            yield b, url, test_key
        finally:
            b.close()


def _code(b: Browser, link: str) -> str:
    page = b.get(link)
    assert page.status_code == 200, page.text
    fields = {k: html.unescape(v) for k, v in HIDDEN.findall(page.text)}
    assert fields["mode"] == "test" and fields["client_id"] == APP
    r = b.console.post("/oauth/v2/authorize", data={**fields, "decision": "allow"})
    assert r.status_code == 303, r.text
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    return q["code"]


def _check_stripe_shape(body: dict[str, object]) -> None:
    assert set(body) == STRIPE_SAMPLE_FIELDS | {"expires_in"}
    assert isinstance(body["access_token"], str) and body["access_token"].startswith("rk_test_")
    assert body["livemode"] is False  # a test-mode install
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert body["refresh_token"] != body["access_token"]
    assert body["scope"] == "stripe_apps"
    pk = body["stripe_publishable_key"]
    assert isinstance(pk, str) and pk.startswith("pk_test_")  # matches the token's mode
    assert body["stripe_user_id"] == ACCOUNT
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600  # "Access tokens expire in 1 hour"


def test_token_answers_are_stripes_sample_field_by_field(
        env: tuple[Browser, str, str]) -> None:
    b, url, key = env
    link = "/oauth/v2/authorize?" + urlencode({"client_id": APP, "mode": "test"})
    got = httpx.post(url + "/v1/oauth/token", auth=(key, ""),
                     data={"grant_type": "authorization_code", "code": _code(b, link)})
    assert got.status_code == 200, got.text
    first = got.json()
    _check_stripe_shape(first)
    again = httpx.post(url + "/v1/oauth/token", auth=(key, ""), data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert again.status_code == 200, again.text
    second = again.json()
    _check_stripe_shape(second)
    assert second["stripe_publishable_key"] == first["stripe_publishable_key"]  # per account
    assert second["refresh_token"] != first["refresh_token"]  # rolled on every exchange


def test_stripes_link_shapes_are_aliases_of_the_app(env: tuple[Browser, str, str]) -> None:
    b, url, key = env
    ca, ca_test = client_id_of(APP), client_id_of(APP, "test")
    assert ca.startswith("ca_") and client_id_of(APP) == ca and ca_test != ca  # one per mode
    test_link = f"/oauth/v2/{link_of(APP)}/authorize?" + urlencode({"client_id": ca_test})
    code = _code(b, test_link)  # the external test link with the test ca_: mode test
    # RFC 6749 2.3.1 Basic client_id:secret with the ca_ client id is the same app.
    got = httpx.post(url + "/v1/oauth/token", auth=(ca_test, key),
                     data={"grant_type": "authorization_code", "code": code})
    assert got.status_code == 200, got.text
    _check_stripe_shape(got.json())
    # The test ca_ on the ordinary link says test mode by itself.
    _code(b, "/oauth/v2/authorize?" + urlencode({"client_id": ca_test}))
    for bad in (f"/oauth/v2/chnlink_{'0' * 32}/authorize?client_id={ca}",
                "/oauth/v2/authorize?client_id=ca_" + "0" * 32,
                "/oauth/v2/authorize?client_id=ca_" + "Z" * 32):
        r = b.get(bad)
        assert r.status_code == 400 and "location" not in r.headers, bad


def test_the_mode_comes_from_the_client_id_and_the_test_link_never_goes_live(
        env: tuple[Browser, str, str], store: Store) -> None:
    b, _, _ = env
    other = "com.example.other"
    upload(store, "1.0.0", ["customer_read"], app_id=other, access="oauth",
           redirect_uris=[CALLBACK])
    link, ca, ca_test = link_of(APP), client_id_of(APP), client_id_of(APP, "test")
    refused = [
        # the external test link installs in test mode only (reviewer's probe: mode=live)
        f"/oauth/v2/{link}/authorize?" + urlencode({"client_id": ca_test, "mode": "live"}),
        f"/oauth/v2/{link}/authorize?" + urlencode({"client_id": APP, "mode": "live"}),
        f"/oauth/v2/{link}/authorize?" + urlencode({"client_id": ca}),  # a live ca_ id
        # a mode that contradicts the ca_ id
        "/oauth/v2/authorize?" + urlencode({"client_id": ca, "mode": "test"}),
        "/oauth/v2/authorize?" + urlencode({"client_id": ca_test, "mode": "live"}),
        # another real app's link, both ways round
        f"/oauth/v2/{link_of(other)}/authorize?" + urlencode({"client_id": ca_test}),
        f"/oauth/v2/{link}/authorize?" + urlencode({"client_id": client_id_of(other, "test")}),
    ]
    for target in refused:
        r = b.get(target)
        assert r.status_code == 400 and "location" not in r.headers, target
        assert 'name="mode" value="live"' not in r.text, target
    # The live ca_ id on the ordinary link: a live-mode consent page.
    page = b.get("/oauth/v2/authorize?" + urlencode({"client_id": ca}))
    assert page.status_code == 200 and 'name="mode" value="live"' in page.text


def test_head_on_install_links_is_not_an_error(env: tuple[Browser, str, str]) -> None:
    # Starlette adds HEAD to GET routes; link unfurlers and proxies send it (was a 500).
    b, _, _ = env
    ca_test = client_id_of(APP, "test")
    for target in (f"/oauth/v2/{link_of(APP)}/authorize?client_id={ca_test}",
                   f"/oauth/v2/authorize?client_id={ca_test}"):
        r = b.console.head(target)
        assert r.status_code == 200, (target, r.status_code)


def test_unauthenticated_token_request_gets_stripes_error(
        env: tuple[Browser, str, str]) -> None:
    _, url, _ = env
    r = httpx.post(url + "/v1/oauth/token", data={"grant_type": "authorization_code",
                                                   "code": "ac_x"})
    assert r.status_code == 401
    assert r.json() == {
        "error": "invalid_client",
        "error_description": "No authentication credentials were provided. Send your secret "
        "API key in the Authorization header using the Bearer authentication method"}
