"""SQLite files hold event payloads: folder 0700, database and its -wal/-shm 0600 (item 7)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlalchemy as sa

from permgate.store import Store


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_sqlite_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which files used to come out 0644
    try:
        db = tmp_path / "state" / "permgate.db"
        with Store.open(f"sqlite:///{db}", upgrade=True) as store:
            with store.engine.begin() as conn:  # a write: the -wal and -shm files exist now
                conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
            assert _mode(db.parent) == 0o700
    finally:
        os.umask(old)
