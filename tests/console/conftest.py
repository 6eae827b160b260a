"""Console fixtures: the store's (fresh SQLite file / PostgreSQL schema per test)."""

from tests.store.conftest import db_url, make_manifest, store  # noqa: F401
