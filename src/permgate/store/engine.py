"""Database URLs and engines: SQLite by default, PostgreSQL (psycopg 3) by URL."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from permgate import envvars
from permgate.store.errors import SchemaOutOfDate, StoreError

ENV_VAR = envvars.DB.name
PROJECT_FOLDER = ".permgate"
DB_FILE = "permgate.db"
WRITE = {"permgate_write": True}  # execution option: this transaction will write


def default_database(start: Path | None = None) -> Path:
    """The one rule for the default database, which every command, the gateway and its
    workers follow (and the webhook sealing keys, kept beside it): `.permgate/permgate.db`
    in the nearest folder, from `start` (the current folder) up, that has a `.permgate/`
    folder, as git finds `.git`; else `permgate/permgate.db` in the user's data folder. So a
    command run anywhere outside a project reaches the same database as `serve` did."""
    here = Path.cwd() if start is None else start
    for folder in (here, *here.parents):
        marker = folder / PROJECT_FOLDER
        if marker.is_dir():
            return marker / DB_FILE
        if os.path.lexists(marker):
            # A file or a dangling link where the project's folder should be: going on up
            # (or to the user's database) would silently use another database than meant.
            raise StoreError(
                f"{marker} is not a folder (a file or a link to nothing): make it the "
                "project's database folder, remove it, or name a database with --db",
                "bad_database_url")
    return Path(envvars.user_data_home()) / "permgate" / DB_FILE


def resolve_url(url: str | None) -> URL:
    """`None` -> $PERMGATE_DB -> `default_database()`. A SQLite file is made absolute (as
    SQLite itself would read it from the current folder), so that what is printed (banner,
    messages) names the same file from any folder."""
    text = url or envvars.DB.get()
    if not text:
        # Built from the path, not formatted into a URL: a folder named with `?`, `#` or
        # `%` would otherwise be read as a query or an escape, i.e. another file.
        return URL.create("sqlite", database=str(default_database()))
    try:
        parsed = make_url(text)
    except sa.exc.ArgumentError as e:
        raise StoreError(f"not a database URL: {text!r}", "bad_database_url") from e
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        path = sqlite_file(parsed)
        # A query such as ?timeout=5 leaves the file as it is; ?uri=true makes the database
        # a `file:` URI, which is SQLite's to read.
        if path is not None and not path.is_absolute() and parsed.query.get("uri") != "true":
            return parsed.set(database=str(Path.cwd() / path))
        return parsed
    raise StoreError(
        f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...",
        "bad_database_url",
    )


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def create(url: URL, *, create_file: bool = True) -> Engine:
    """An engine for `url`. With `create_file` false, a SQLite file that does not exist yet is
    refused instead of created: a command that only reads must not leave an empty file."""
    if url.get_backend_name() == "sqlite":
        return _sqlite(url, create_file)
    return sa.create_engine(url, pool_pre_ping=True)


def _create_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it: it holds event payloads
    (customer data) and key hashes. SQLite gives its -wal and -shm files the database file's
    mode. An existing file keeps the mode it has."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _sqlite(url: URL, create_file: bool) -> Engine:
    path = sqlite_file(url)
    if path is not None:
        try:
            _check_sqlite_path(path, create_file)
            _create_sqlite_file(path)
        except OSError as e:  # a name too long, a loop of links, ...
            raise StoreError(f"cannot use {str(path)[:200]} as a database: {e.strerror}",
                             "bad_database_url") from None
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


def _check_sqlite_path(path: Path, create_file: bool) -> None:
    """Refuse what cannot be a database file; create its folder only when allowed."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file", "bad_database_url")
    if not create_file and not path.exists():
        raise SchemaOutOfDate(
            f"there is no database at {path}: run `permgate db upgrade` to create it",
            "database_missing",
        )
    try:
        # The folder 0700 (the file is 0600): both hold customer data. An existing folder
        # keeps the mode it has.
        if not path.parent.exists():
            path.parent.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first
                path.parent.mkdir(mode=0o700)
        if not path.parent.is_dir():
            raise FileExistsError
    except FileExistsError:
        raise StoreError(
            f"cannot create the database {path}: {_in_the_way(path.parent)} is a file, "
            "not a folder", "bad_database_url",
        ) from None
    except OSError as e:
        raise StoreError(
            f"cannot create the folder {path.parent} for the database: {e.strerror}",
            "bad_database_url",
        ) from None


def _in_the_way(folder: Path) -> Path:
    """The first part of `folder` that exists but is not a folder."""
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.is_dir():
            return part
    return folder
