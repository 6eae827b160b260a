"""`apps grant url` / `apps revoke url`: connect-src edits, made on the text like grant/revoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permgate import manifest as mf
from permgate.cli import main

BASE = """{
  "id": "com.example.app",
  "version": "1.0.0",
  "permissions": [],
  "custom": {"keep": [1, 2, 3]}
}
"""


def csp(m: mf.Manifest) -> dict[str, object]:
    value: dict[str, object] = json.loads(m.text)["ui_extension"]["content_security_policy"]
    return value


def test_grant_creates_the_policy_and_keeps_everything_else() -> None:
    m = mf.parse(BASE)
    c = mf.grant_url(m, "https://api.example.com/v1/", "Sync invoices")
    assert c.action == "added"
    assert c.pointers == ("/ui_extension/content_security_policy/connect-src/0",)
    assert csp(m) == {"connect-src": ["https://api.example.com/v1/"], "purpose": "Sync invoices"}
    assert m.text.startswith(BASE.rstrip()[:-1].rstrip())  # the old members are untouched
    assert '  "ui_extension": {\n    "content_security_policy": {\n' in m.text


def test_grant_appends_updates_purpose_and_is_idempotent() -> None:
    m = mf.parse(BASE)
    mf.grant_url(m, "https://a.example.com/x/", "One")
    assert mf.grant_url(m, "https://*.b.example.com/y/", "One").action == "added"
    assert mf.grant_url(m, "https://a.example.com/x/", "One").action == "unchanged"
    assert mf.grant_url(m, "https://a.example.com/x/", "Two").action == "updated"
    assert csp(m) == {"connect-src": ["https://a.example.com/x/", "https://*.b.example.com/y/"],
                      "purpose": "Two"}


def test_existing_policy_with_null_connect_src() -> None:
    m = mf.parse('{"ui_extension": {"views": [], "content_security_policy": '
                 '{"connect-src": null, "image-src": null, "purpose": ""}}}')
    mf.grant_url(m, "https://api.example.com/v1/", "Sync")
    assert csp(m) == {"connect-src": ["https://api.example.com/v1/"], "image-src": None,
                      "purpose": "Sync"}


@pytest.mark.parametrize(("url", "why"), [
    ("http://api.example.com/v1/", "https"),
    ("https://api.example.com", "must contain a path"),
    ("https://api.example.com/", "must contain a path"),
    ("https://api.stripe.com/v1/", "Stripe API"),
    ("https://a.*.example.com/x/", "left-most"),
    ("https://api.example.com/a b/", "not a URL"),
])
def test_stripe_url_rules(url: str, why: str) -> None:
    m = mf.parse(BASE)
    with pytest.raises(mf.BadUrl, match=why):
        mf.grant_url(m, url, "p")
    assert m.text == BASE


def test_empty_purpose_and_misshapen_policy_change_nothing() -> None:
    m = mf.parse(BASE)
    with pytest.raises(mf.GrantError, match="purpose is empty"):
        mf.grant_url(m, "https://api.example.com/v1/", "  ")
    m = mf.parse('{"ui_extension": {"content_security_policy": []}}')
    with pytest.raises(mf.ManifestError, match="must be an object"):
        mf.grant_url(m, "https://api.example.com/v1/", "p")


def test_revoke() -> None:
    m = mf.parse(BASE)
    mf.grant_url(m, "https://a.example.com/x/", "One")
    mf.grant_url(m, "https://b.example.com/y/", "One")
    assert mf.revoke_url(m, "https://a.example.com/x/").action == "removed"
    assert csp(m)["connect-src"] == ["https://b.example.com/y/"]
    with pytest.raises(mf.NotGranted):
        mf.revoke_url(m, "https://a.example.com/x/")
    with pytest.raises(mf.NotGranted):
        mf.revoke_url(mf.parse(BASE), "https://a.example.com/x/")


def test_cli_verbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stripe-app.json").write_text(BASE)
    assert main(["apps", "grant", "url", "https://api.example.com/v1/", "Sync"]) == 0
    assert main(["grant", "url", "https://b.example.com/v1/", "Sync"]) == 0  # the alias
    assert main(["apps", "revoke", "connect-src", "https://api.example.com/v1/"]) == 0
    assert main(["apps", "revoke", "url", "https://api.example.com/v1/"]) == 1  # not granted
    assert main(["apps", "grant", "url", "http://x.example.com/v1/", "Sync"]) == 2
    out = capsys.readouterr()
    assert "granted https://api.example.com/v1/ (connect-src) in stripe-app.json" in out.out
    assert "nothing written" in out.err
    data = json.loads((tmp_path / "stripe-app.json").read_text())
    assert data["ui_extension"]["content_security_policy"]["connect-src"] == [
        "https://b.example.com/v1/"]
    assert data["custom"] == {"keep": [1, 2, 3]}
    assert main(["apps", "grant", "permission", "customer_read", "Show customers"]) == 0
    assert main(["apps", "revoke", "permission", "customer_read"]) == 0
