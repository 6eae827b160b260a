"""Fixtures every test folder shares: the PostgreSQL server of the `postgres` tests.

A test marked `postgres` (directly or through a parameter) gets a throwaway cluster started
from the installed binaries, once per session (per xdist worker), or the server that
PERMGATE_TEST_PG names; it skips with one line when there are no binaries.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests import pg
from tests.needs import missing

from permgate import envvars


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
