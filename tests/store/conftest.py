"""Store fixtures: every store test runs on a fresh SQLite file and a fresh PostgreSQL schema.

PostgreSQL is the real server at 127.0.0.1:5432, database `test` (override with
PERMGATE_TEST_PG); each test gets its own uniquely named schema, dropped afterwards, so
concurrent test runs never see each other's rows.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from permgate import envvars, manifest
from permgate.store import Store

PG_URL = envvars.TEST_PG.get()
APP = "com.example.consent"
MakeManifest = Callable[..., manifest.Manifest]


def _pg_conninfo() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema of its own."""
    schema = f"permgate_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(_pg_conninfo(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_URL} is needed (start it with .ci/run): {e}")
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        try:
            yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
