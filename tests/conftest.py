"""Fixtures every test folder shares.

- Every test runs with a user data folder of its own: the default database's fallback place
  (store/engine.py `default_database`: no `.permgate/` up the tree -> $XDG_DATA_HOME/permgate/)
  is never the real ~/.local/share/permgate, nor shared between tests.
- A test marked `postgres` (directly or through a parameter) gets a throwaway cluster started
  from the installed binaries, once per session (per xdist worker), or the server that
  PERMGATE_TEST_PG names; it skips with one line when there are no binaries.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests import pg
from tests.needs import missing

from permgate import envvars

_SESSION: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # For what starts before any test's fixture (session fixtures' processes).
    _SESSION.append(tempfile.mkdtemp(prefix="permgate-xdg-"))
    os.environ["XDG_DATA_HOME"] = _SESSION[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _SESSION:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_user_data_folder(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of the tests' PostgreSQL database (`test`)."""
    if envvars.TEST_PG.name in os.environ:
        url = envvars.TEST_PG.get()
        pg.set_server(url)
        yield url
        return
    bindir = pg.find_binaries()
    if bindir is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl)", pg.HOW)
    cluster = pg.Cluster(bindir)
    try:
        url = cluster.start()
        pg.set_server(url)
        yield url
    finally:
        pg.set_server(None)
        cluster.stop()


@pytest.fixture(autouse=True)
def _postgres_server_for_marked_tests(request: pytest.FixtureRequest) -> None:
    # Tests that open pg.pg_schema() themselves need the server running (or skip) first.
    if request.node.get_closest_marker("postgres") is not None:
        request.getfixturevalue("pg_server")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema of its own."""
    with pg.pg_schema() as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The longest tests (slow and e2e: the fresh clone's own quick run) go first, so that the
    # parallel workers run the rest beside them instead of waiting for them at the end.
    items.sort(key=lambda item: not (item.get_closest_marker("slow") is not None
                                     and item.get_closest_marker("e2e") is not None))
