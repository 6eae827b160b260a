"""The admin API against hostile input and weak tokens (issue 11, item 7): every refusal is
a Stripe-shaped 4xx, never a 500; a guessable token stops it from starting."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest
from tests.store.conftest import APP, manifest_text
from tests.store.test_admin import TOKEN, _error, base_url, http

from permgate.admin import create_admin_app
from permgate.admin.app import MAX_BODY, WeakToken, check_token
from permgate.cli import main
from permgate.store import Store

__all__ = ["base_url", "http"]  # fixtures, used by name


@pytest.mark.parametrize("limit", ["1e23", "100000000000000000000000", "-1", "0", "1.5",
                                   "١٢", ""])
def test_a_bad_limit_is_a_400(http: httpx.Client, limit: str) -> None:
    err = _error(http.get("/v1/audit", params={"limit": limit}), 400, "parameter_invalid")
    assert err["param"] == "limit"


@pytest.mark.parametrize("grace", [1e20, 1e400, 1.5, True, "1e3", -1, 10**30])
def test_a_bad_grace_period_is_a_400(http: httpx.Client, grace: Any) -> None:
    http.post("/v1/apps", json={"actor": "dev",
                                "manifest": manifest_text("1.0.0", ["customer_read"])})
    number = "1e400" if grace == 1e400 else json.dumps(grace)  # 1e400: inf when parsed
    raw = '{"mode": "test", "actor": "ops", "grace_seconds": ' + number + "}"
    r = http.post(f"/v1/apps/{APP}/keys/rotate", content=raw.encode(),
                  headers={"Content-Type": "application/json"})
    assert _error(r, 400, "parameter_invalid")["param"] == "grace_seconds"
    r = http.post("/v1/webhook_endpoints/we_x/rotate_secret", json={
        "actor": "ops", "grace_seconds": 86_401})
    assert _error(r, 400, "parameter_invalid")["param"] == "grace_seconds"


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b'{"a": NaN}'])
def test_deep_or_odd_json_is_a_400(http: httpx.Client, body: bytes) -> None:
    r = http.post("/v1/apps", content=body, headers={"Content-Type": "application/json"})
    _error(r, 400, "invalid_json")


def test_an_oversized_body_is_a_413(http: httpx.Client) -> None:
    r = http.post("/v1/apps", content=b" " * (MAX_BODY + 1))
    _error(r, 413, "body_too_large")


@pytest.mark.parametrize("token", ["x", "test-admin-token-0123456789", "a" * 200,
                                   "correcthorsebatterystaple" * 3,
                                   # a fixed id: parallel workers must collect the same tests
                                   pytest.param(secrets.token_hex(16), id="random-16-bytes")])
def test_a_guessable_token_is_refused(store: Store, token: str) -> None:
    with pytest.raises(WeakToken, match=r"too weak|needs a bearer token"):
        create_admin_app(store, token)


def test_random_32_byte_tokens_are_accepted() -> None:
    for _ in range(200):
        check_token(secrets.token_hex(32))
        check_token(secrets.token_urlsafe(32))
    assert check_token(TOKEN) == TOKEN


def test_serve_and_admin_serve_refuse_to_start_with_a_weak_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str,
) -> None:
    monkeypatch.setenv("PERMGATE_ADMIN_TOKEN", "hunter2")
    assert main(["admin", "serve", "--db", sqlite_url, "--port", "0"]) == 2
    assert "PERMGATE_ADMIN_TOKEN is too weak" in capsys.readouterr().err
    assert main(["serve", "--db", sqlite_url, "--port", "1",
                 "--upstream", "http://127.0.0.1:9"]) == 2
    assert "PERMGATE_ADMIN_TOKEN is too weak" in capsys.readouterr().err


def test_the_audit_trail_never_shows_a_stored_password(http: httpx.Client, store: Store) -> None:
    from datetime import UTC, datetime

    from permgate.store.store import append_audit

    with store.engine.begin() as conn:  # as an earlier version recorded webhooks add
        append_audit(conn, "dev", "webhook.added", at=datetime.now(UTC), app_id=None,
                     mode="live", url="https://user:hunter2@old.example.com/h")
    r = http.get("/v1/audit")
    assert r.status_code == 200 and "hunter2" not in r.text
    assert r.json()["data"][-1]["detail"]["url"] == "https://***@old.example.com/h"


def test_a_huge_number_in_a_body_is_a_400(http: httpx.Client) -> None:
    body = b'{"actor": "dev", "manifest": ' + b"1" * 5000 + b"}"
    r = http.post("/v1/apps", content=body, headers={"Content-Type": "application/json"})
    _error(r, 400, "invalid_json")
