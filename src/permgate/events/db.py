"""Transactions on the store's engine, and audit entries in the store's trail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from permgate.store import Store
from permgate.store.engine import WRITE
from permgate.store.store import append_audit


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def writing(store: Store) -> Iterator[Connection]:
    """One write transaction (SQLite: BEGIN IMMEDIATE, as the store's own writes)."""
    with store.engine.execution_options(**WRITE).begin() as conn:
        yield conn


def audit(conn: Connection, actor: str, action: str, *, app_id: str | None = None,
          mode: str | None = None, **detail: Any) -> None:
    append_audit(conn, actor, action, at=utcnow(), app_id=app_id, mode=mode, **detail)
