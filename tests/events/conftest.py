from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.events.support import Receiver, pg_schema, receiver

from permgate.events import RetryPolicy, Sealer
from permgate.events.sealing import KEY_ENV
from permgate.events.targets import DEV_SETTING
from permgate.store import Store

# Fast retries for tests; the horizon still bounds them.
FAST = RetryPolicy(first_delay=0.05, max_delay=0.2, horizon=60.0, jitter=0.0)


@pytest.fixture(autouse=True)
def private_webhook_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here listen on 127.0.0.1: the explicit local-development setting lets
    endpoints of every mode use them (tests/ops/test_targets.py checks the policy itself)."""
    monkeypatch.setenv(DEV_SETTING, "all")


@pytest.fixture
def webhook_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = secrets.token_hex(32)
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture
def sealer(webhook_key: str) -> Sealer:
    return Sealer(bytes.fromhex(webhook_key))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/permgate.db"
    else:
        with pg_schema() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/permgate.db"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url, upgrade=True) as s:
        yield s


@pytest.fixture
def any_store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url, upgrade=True) as s:
        yield s


@pytest.fixture
def rec() -> Iterator[Receiver]:
    with receiver() as r:
        yield r
