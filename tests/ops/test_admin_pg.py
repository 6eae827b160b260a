"""The admin API on PostgreSQL: strings the database cannot store are a 400, not a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.store.conftest import APP, manifest_text, pg_url
from tests.store.test_admin import _error, base_url, http

from permgate.store import Store

__all__ = ["base_url", "http", "pg_url"]  # fixtures, used by name
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
