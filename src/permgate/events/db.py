"""Transactions on the store's engine, and audit entries in the store's trail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from permgate.store import NOTIFY_CHANNEL, Store
from permgate.store.engine import WRITE
from permgate.store.schema import state
from permgate.store.store import append_audit


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def writing(store: Store) -> Iterator[Connection]:
    """One write transaction (SQLite: BEGIN IMMEDIATE, as the store's own writes)."""
    with store.engine.execution_options(**WRITE).begin() as conn:
        yield conn


@contextmanager
def changing(store: Store) -> Iterator[Connection]:
    """A write transaction that also bumps the store's change counter (and NOTIFYs on
    PostgreSQL), so routing caches drop what they hold about endpoints, as for installs."""
    with writing(store) as conn:
        yield conn
        bump_change_counter(conn)


def bump_change_counter(conn: Connection) -> None:
    counter = conn.execute(
        state.update().where(state.c.id == 1)
        .values(change_counter=state.c.change_counter + 1)
        .returning(state.c.change_counter)).scalar_one()
    if conn.dialect.name == "postgresql":
        # Delivered at commit, as the store's own: the schema says which store changed.
        conn.execute(sa.select(sa.func.pg_notify(
            NOTIFY_CHANNEL, sa.func.current_schema() + f":{counter}")))


def audit(conn: Connection, actor: str, action: str, *, app_id: str | None = None,
          mode: str | None = None, **detail: Any) -> None:
    append_audit(conn, actor, action, at=utcnow(), app_id=app_id, mode=mode, **detail)
