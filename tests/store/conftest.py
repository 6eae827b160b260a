"""Store fixtures: every store test runs on a fresh SQLite file and a fresh PostgreSQL schema.

PostgreSQL is a real server: the throwaway cluster tests/conftest.py starts (or the one
PERMGATE_TEST_PG names); each test gets its own uniquely named schema (`pg_url`, from
tests/conftest.py), dropped afterwards, so concurrent test runs never see each other's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from permgate import manifest
from permgate.store import Store

APP = "com.example.consent"
MakeManifest = Callable[..., manifest.Manifest]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/permgate.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url, upgrade=True) as s:
        yield s


def manifest_text(
    version: str, permissions: list[str], *, app_id: str = APP, access: str | None = None
) -> str:
    data: dict[str, Any] = {
        "id": app_id, "version": version, "name": "Consent example", "icon": "",
        "permissions": [{"permission": p, "purpose": f"The app needs {p}."} for p in permissions],
        "ui_extension": {
            "views": [{"viewport": "stripe.dashboard.customer.detail", "component": "App"}]
        },
    }
    if access is not None:
        data["stripe_api_access_type"] = access
    return json.dumps(data, indent=2) + "\n"


@pytest.fixture
def make_manifest() -> MakeManifest:
    def make(version: str, permissions: list[str], **kw: Any) -> manifest.Manifest:
        return manifest.parse(manifest_text(version, permissions, **kw))

    return make
