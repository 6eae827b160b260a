"""The gateway's pieces a profile configures, one by one: the Authorization schemes, the
body rules, RFC 9457 answers, the account header, the upstream credential."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from permgate.api.profile import STRIPE_PROFILE, ApiProfile
from permgate.gateway.app import upstream_authorization
from permgate.gateway.auth import presented_key
from permgate.gateway.body import (
    FORM,
    JSON,
    STRIPE_BODY,
    BodyRefused,
    body_rules,
    decide_body,
)
from permgate.gateway.calls import Caller
from permgate.gateway.config import ConfigError, Settings, upstream_keys
from permgate.gateway.errors import as_problem, error_body

KEY = "sk_test_" + "a" * 64
OWN = ApiProfile(name="acme", title="Acme", base_paths=("/v1",), account_header="Acme-Account",
                 auth_schemes=("bearer",), body_encodings=("json",), expand_style="comma",
                 error_style="problem", directory="/x")


def test_only_the_profiles_schemes_carry_a_key() -> None:
    basic = b"Basic " + base64.b64encode(f"{KEY}:".encode())
    bearer = f"Bearer {KEY}".encode()
    assert presented_key(basic) == presented_key(bearer) == KEY  # Stripe's: both
    assert presented_key(bearer, frozenset({b"bearer"})) == KEY
    assert presented_key(basic, frozenset({b"bearer"})) == ""  # present, not a key here
    assert presented_key(basic, frozenset({b"basic"})) == KEY
    assert presented_key(bearer, frozenset({b"basic"})) == ""


def test_json_only_profile() -> None:
    rules = body_rules(OWN)
    assert not rules.stripe and rules.json and not rules.form
    body = b'{"customer": "cus_1", "items": [1, 2]}'
    got = decide_body("POST", b"/v1/orders", [b"application/json"], [], body, rules)
    assert (got.form, got.forward, got.content_type) == (None, body, JSON)
    for ctype, raw, words in [
        (FORM, b"customer=cus_1", "application/json"),
        (b"multipart/form-data; boundary=x", b"--x\r\n", "application/json"),
        (JSON, b'{"a": 1, "a": 2}', "repeats the key"),
        (JSON, b"[1]", "must be an object"),
        (JSON, b'{"expand": ["customer"]}', "query string only"),
        (JSON, b'{"Expand_fields": 1}', "query string only"),
        (JSON, b'{"a": NaN}', "not JSON"),
    ]:
        with pytest.raises(BodyRefused, match=words):
            decide_body("POST", b"/v1/orders", [ctype], [], raw, rules)
    with pytest.raises(BodyRefused, match="must not have a body"):
        decide_body("GET", b"/v1/orders", [JSON], [], b"{}", rules)
    # Stripe's rules are untouched: forms on /v1, JSON on /v2 only.
    assert decide_body("POST", b"/v1/customers", [FORM], [], b"name=x").form == b"name=x"
    with pytest.raises(BodyRefused):
        decide_body("POST", b"/v1/customers", [JSON], [], b"{}", STRIPE_BODY)


def test_form_profile_reads_forms_on_every_path_without_multipart() -> None:
    rules = body_rules(replace(OWN, body_encodings=("form",), expand_param="embed"))
    got = decide_body("POST", b"/api/things", [FORM], [], b"a=1&embed=owner", rules)
    assert got.form == b"a=1&embed=owner" and got.content_type == FORM
    with pytest.raises(BodyRefused, match="looks like JSON"):
        decide_body("POST", b"/api/things", [FORM], [], b'{"a":1}', rules)
    with pytest.raises(BodyRefused):
        decide_body("POST", b"/v1/files", [b"multipart/form-data; boundary=x"], [],
                    b"--x\r\n", rules)
    both = body_rules(replace(OWN, body_encodings=("form", "json"), expand_param="embed"))
    with pytest.raises(BodyRefused, match="query string only"):
        decide_body("POST", b"/api/things", [JSON], [], b'{"embed": "owner"}', both)


def test_problem_answers_keep_the_message_code_and_param() -> None:
    body = error_body("invalid_request_error", "Having 'x_read' would allow it.",
                      "more_permissions_required_for_application", "expand")
    doc = json.loads(as_problem(403, body))
    assert doc == {"type": "urn:permgate:error:more_permissions_required_for_application",
                   "title": "Forbidden", "status": 403,
                   "detail": "Having 'x_read' would allow it.",
                   "code": "more_permissions_required_for_application", "param": "expand"}
    doc = json.loads(as_problem(502, error_body("api_error", "upstream down")))
    assert doc["type"] == "urn:permgate:error:api_error" and doc["title"] == "Bad Gateway"
    assert "code" not in doc
    assert json.loads(as_problem(599, b"not json"))["title"] == "Error"


def test_the_account_header_is_the_profiles() -> None:
    c = Caller("app", "test", "acct_1", None, b"Bearer up", 0.0, 1,
               account_name=b"acme-account")
    assert c.block == b"authorization: Bearer up\r\nacme-account: acct_1\r\n"
    c = Caller("app", "test", "acct_1", None, b"Bearer up", 0.0, 1, account_name=b"")
    assert c.block == b"authorization: Bearer up\r\n" and c.account_b == b""
    c = Caller("app", "test", "acct_1", None, b"Bearer up", 0.0, 1)
    assert c.block.endswith(b"stripe-account: acct_1\r\n")  # Stripe's, the default
    assert STRIPE_PROFILE.account_header_lower == b"stripe-account"


def test_the_upstream_credential() -> None:
    assert upstream_authorization("bearer", "tok") == b"Bearer tok"
    assert upstream_authorization("basic", "tok") == b"Basic " + base64.b64encode(b"tok:")
    s = Settings(upstream_key="acme_secret")
    with pytest.raises(ConfigError, match="must start with sk_live_"):
        upstream_keys(s)  # Stripe's: the prefix says the mode
    # An own API's untagged credential serves live only unless api.toml says otherwise: a
    # test-mode install must not reach production data.
    assert upstream_keys(s, untagged=("live",)) == {"live": "acme_secret"}
    assert upstream_keys(s, untagged=("live", "test")) == {
        "live": "acme_secret", "test": "acme_secret"}
    s = Settings(upstream_key="sk_test_x")
    assert upstream_keys(s, untagged=("live",)) == {"test": "sk_test_x"}
    with pytest.raises(ConfigError, match="one printable line"):
        upstream_keys(Settings(upstream_key="a\x00b"), untagged=("live",))
    with pytest.raises(ConfigError, match="one printable line"):
        upstream_keys(Settings(upstream_key="test: "), untagged=("live",))
    # Mode tags: "live: KEY" / "test: KEY", each for its mode only.
    tagged = Settings(upstream_key="test: staging-token")
    assert upstream_keys(tagged, untagged=("live",)) == {"test": "staging-token"}
    with pytest.raises(ConfigError, match="must start with sk_live_"):
        upstream_keys(tagged)  # Stripe's keys carry their mode in the prefix, no tags


def test_basic_upstream_credential_keeps_a_password() -> None:
    # Stripe's form: the key is the user, no password. A user:password credential is sent
    # as it is, not with a colon added to the password.
    assert upstream_authorization("basic", "sk_test_x") == b"Basic " + base64.b64encode(
        b"sk_test_x:")
    assert upstream_authorization("basic", "user:pa55") == b"Basic " + base64.b64encode(
        b"user:pa55")
    assert upstream_authorization("basic", "user:pa:55") == b"Basic " + base64.b64encode(
        b"user:pa:55")
