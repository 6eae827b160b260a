"""The admin API on PostgreSQL: strings the database cannot store are a 400, not a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.store.conftest import APP, manifest_text
from tests.store.test_admin import _error, base_url, http

from permgate.store import Store

__all__ = ["base_url", "http"]  # fixtures, used by name
pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    with Store.open(pg_url, upgrade=True) as s:
        yield s


def test_nul_bytes_and_overlong_names_are_a_400(http: httpx.Client) -> None:
    # PostgreSQL refuses NUL in text and 255-character columns refuse longer values: both
    # used to surface as 500 Internal Server Error.
    r = http.post("/v1/apps", json={"actor": "dev",
                                    "manifest": manifest_text("1.0.0", ["customer_read"])})
    assert r.status_code == 201, r.text
    install = {"app_id": APP, "account": "acct_1", "mode": "live", "by": "a", "role": "admin"}
    for field, value in (("app_id", "a\x00b"), ("by", "x" * 100_000), ("account", "\x1b[2J")):
        r = http.post("/v1/installs", json={**install, field: value})
        assert _error(r, 400, "parameter_invalid")["param"] == field
    for path in ("/v1/apps/a%00b", "/v1/installs?app=a%00b", "/v1/audit?app=a%00b",
                 "/v1/webhook_endpoints?app=%00", "/v1/installs/a%00/b/live"):
        _error(http.get(path), 400, "parameter_invalid")
    assert http.post("/v1/installs", json=install).status_code == 201


HOSTILE: list[Any] = ["a\x00b", "", "x" * 5000, 1, 1.5, None, [], {}, ["a"], True, "é\u202e",
                      -(10**30)]
ROUTES = [
    ("/v1/installs", ["app_id", "account", "mode", "by", "role"]),
    (f"/v1/apps/{APP}/keys/rotate", ["mode", "actor", "grace_seconds", "account"]),
    ("/v1/webhook_endpoints", ["app_id", "url", "mode", "actor", "enabled_events"]),
    (f"/v1/installs/{APP}/acct_1/live/approve", ["by", "role", "version"]),
    (f"/v1/installs/{APP}/acct_1/live/uninstall", ["by", "role"]),
    ("/v1/webhook_endpoints/we_1/rotate_secret", ["actor", "grace_seconds"]),
    ("/v1/apps", ["actor", "manifest"]),
]
GOOD = {"account": "acct_1", "mode": "live", "role": "admin", "enabled_events": ["*"],
        "app_id": APP, "url": "https://hooks.example.com/h"}


def test_no_field_value_makes_a_500(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bounded fuzz: every field of every write route, one hostile value at a time."""
    monkeypatch.setenv("PERMGATE_WEBHOOK_KEY", "ab" * 32)
    http.post("/v1/apps", json={"actor": "dev", "manifest": manifest_text(
        "1.0.0", ["customer_read", "event_read"])})
    for path, fields in ROUTES:
        for field in fields:
            for value in HOSTILE:
                body = {k: GOOD.get(k, "dev") for k in fields}
                body[field] = value
                r = http.post(path, json=body)
                assert r.status_code < 500, (path, field, value, r.text)


def test_cli_reports_a_value_the_database_refuses(
    store: Store, pg_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    from permgate import manifest
    from permgate.cli import main

    store.upload_version(manifest.parse(manifest_text("1.0.0", ["customer_read"])),
                         actor="dev")
    code = main(["install", APP, "--account", "acct_1", "--mode", "live", "--by", "x" * 300,
                 "--role", "admin", "--db", pg_url])
    assert code == 2
    err = capsys.readouterr().err
    assert "the database refused a value" in err and "Traceback" not in err
