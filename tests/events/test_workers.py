"""Worker processes: kill -9 mid-run and restart; two workers sharing a PostgreSQL outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.events.support import Receiver, event, install, new_app, pg_schema, wait_until

from permgate.events import accept, add_endpoint, list_deliveries
from permgate.events.sealing import Sealer
from permgate.store import Store

PERMGATE = str(Path(sys.executable).parent / "permgate")


@contextmanager
def worker_process(db_url: str, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [PERMGATE, "events", "worker", "--db", db_url, "--timeout", "1", "--lease", "2.5",
             "--retry-first", "0.1", *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _slow_ok(path: str, n: int) -> int:
    time.sleep(0.005)  # keeps deliveries in flight when the worker is killed
    return 200


def _setup(store: Store, sealer: Sealer, rec: Receiver, count: int) -> set[str]:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/hook", ["*"], "live", by="dev", sealer=sealer)
    ids = set()
    for _ in range(count):
        ev = event("customer.updated")
        accept(store, ev)
        ids.add(ev["id"])
    return ids


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_delivers_every_event(
    store: Store, sqlite_url: str, sealer: Sealer, rec: Receiver, tmp_path: Path,
) -> None:
    rec.answer = _slow_ok
    ids = _setup(store, sealer, rec, 200)
    log = tmp_path / "worker.log"
    with worker_process(sqlite_url, log, "--batch", "50", "--concurrency", "16") as first:
        wait_until(lambda: len(rec.at("/hook")) >= 30, what="first deliveries")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    seen_before_restart = set(rec.event_ids("/hook"))
    assert seen_before_restart < ids, "the worker was killed before it finished"
    with worker_process(sqlite_url, log, "--batch", "20", "--concurrency", "4"):
        wait_until(lambda: set(rec.event_ids("/hook")) == ids, timeout=60,
                   what=f"all events delivered (log: {log})")
        wait_until(lambda: {d.status for d in list_deliveries(store)} == {"delivered"},
                   what="every delivery recorded")
    # At-least-once: attempts cut off by the kill may arrive twice, nothing is missing.
    assert set(rec.event_ids("/hook")) == ids


@pytest.mark.postgres
def test_three_batching_workers_on_postgres_never_send_the_same_attempt(
    sealer: Sealer, rec: Receiver, tmp_path: Path,
) -> None:
    with pg_schema() as url, Store.open(url, upgrade=True) as store:
        ids = _setup(store, sealer, rec, 300)
        log = tmp_path / "workers.log"
        # Three workers claiming batches of 25 from one outbox, 16 attempts in flight each.
        flags = ("--batch", "25", "--concurrency", "16")
        with worker_process(url, log, *flags) as a, worker_process(url, log, *flags) as b, \
                worker_process(url, log, *flags) as c:
            wait_until(lambda: len(rec.at("/hook")) >= len(ids), timeout=60,
                       what=f"all events delivered (log: {log})")
            wait_until(lambda: {d.status for d in list_deliveries(store)} == {"delivered"},
                       what="every delivery recorded")
            assert a.poll() is None and b.poll() is None and c.poll() is None
        counts = Counter(rec.event_ids("/hook"))
        assert set(counts) == ids
        assert max(counts.values()) == 1, "an attempt was delivered twice"
        assert {d.attempts for d in list_deliveries(store)} == {1}
