"""Database URLs and engines: SQLite by default, PostgreSQL (psycopg 3) by URL."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from permgate.store.errors import StoreError

ENV_VAR = "PERMGATE_DB"
DEFAULT_PATH = Path(".permgate") / "permgate.db"
WRITE = {"permgate_write": True}  # execution option: this transaction will write


def resolve_url(url: str | None) -> URL:
    """`None` -> $PERMGATE_DB -> the SQLite file ./.permgate/permgate.db."""
    text = url or os.environ.get(ENV_VAR) or f"sqlite:///{DEFAULT_PATH}"
    try:
        parsed = make_url(text)
    except sa.exc.ArgumentError as e:
        raise StoreError(f"not a database URL: {text!r}", "bad_database_url") from e
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise StoreError(
        f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...",
        "bad_database_url",
    )


def create(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite(url)
    return sa.create_engine(url, pool_pre_ping=True)


def _prepare_sqlite_file(database: str) -> None:
    """Create the database's folder 0700 and the file 0600 before SQLite opens it: the file
    holds event payloads (customer data) and key hashes. SQLite gives its -wal and -shm files
    the database file's mode. Existing folders and files keep the mode they have."""
    path = Path(database)
    folder = path.parent
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _sqlite(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        _prepare_sqlite_file(url.database)
    engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to choose.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front: read-then-write transactions then cannot
        # deadlock or lose updates, which is SQLite's equivalent of SELECT ... FOR UPDATE.
        write = conn.get_execution_options().get("permgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
