from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.gateway.procs import Gateway, run_gateway
from tests.gateway.recorder import Recorder, recording_upstream

from permgate.gateway.demo import Upstream, start_localstripe
from permgate.store import Store


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="session")
def localstripe(workdir: Path) -> Iterator[Upstream]:
    upstream = start_localstripe(workdir / "localstripe.log")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def db_url(workdir: Path) -> str:
    url = f"sqlite:///{workdir / 'permgate.db'}"
    Store.open(url, upgrade=True).close()
    return url


@pytest.fixture(scope="session")
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


@pytest.fixture(scope="session")
def gateway(db_url: str, localstripe: Upstream, workdir: Path) -> Iterator[Gateway]:
    with run_gateway(db_url, localstripe.url, workdir) as gw:
        yield gw


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """A recording upstream per test module (what reached the upstream, and nothing else)."""
    with recording_upstream() as rec:
        yield rec
