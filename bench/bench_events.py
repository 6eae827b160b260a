"""Fan-out benchmark (not a test): one event on an account with 1, 100 and 10,000 installs.

Reports events/s accepted into the outbox (each event fanned out to every install) and
deliveries/s from the outbox to a local HTTP receiver, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_events.py [--sizes 1,100,10000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import sqlalchemy as sa

from permgate import manifest
from permgate.events import DeliveryWorker, RetryPolicy, Sealer, accept, add_endpoint
from permgate.events.routing import Grants
from permgate.store import Store
from permgate.store.schema import installs

ACCOUNT = "acct_bench"
# The receiver listens on 127.0.0.1: the explicit local-development setting lets endpoints
# of every mode use it (events/targets.py).
os.environ.setdefault("PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS", "all")
PG = os.environ.get("PERMGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class _DeepQueueServer(ThreadingHTTPServer):
    # With the default accept queue (5), concurrent deliveries can be refused at connect,
    # and a refused attempt is retried: the receiver must not be the bottleneck measured.
    request_queue_size = 128


@contextmanager
def receiver() -> Iterator[tuple[str, list[int]]]:
    count = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                count[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _DeepQueueServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", count
    finally:
        server.shutdown()
        server.server_close()


def _populate(store: Store, n: int, url: str, sealer: Sealer) -> None:
    """n apps, each installed on the account with one endpoint; installs written in bulk
    (the store's install() is one audited transaction each, which is not what we measure)."""
    for i in range(n):
        app_id = f"com.bench.app{i}"
        data = {"id": app_id, "version": "1", "name": app_id, "icon": "",
                "permissions": [{"permission": p, "purpose": "bench"}
                                for p in ("event_read", "customer_read")],
                "ui_extension": {"views": []}}
        store.upload_version(manifest.parse(json.dumps(data)), actor="bench")
        if i == 0:
            store.install(app_id, ACCOUNT, "live", by="bench", role="admin")
            with store.engine.connect() as conn:
                template = dict(conn.execute(sa.select(installs)).mappings().one())
            rows = []
        else:
            rows.append({**template, "install_id": f"in_bench{i}", "app_id": app_id})
        add_endpoint(store, app_id, f"{url}/{i}", ["*"], "live", by="bench", sealer=sealer)
    if rows:
        with store.engine.begin() as conn:
            conn.execute(installs.insert(), rows)


def _bench(url: str, label: str, sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    sealer = Sealer(secrets.token_bytes(32))
    for n in sizes:
        with receiver() as (rurl, count), Store.open(_fresh(url, label, n), upgrade=True) as store:
            _populate(store, n, rurl, sealer)
            events = max(1, min(200, 20_000 // n))
            grants = Grants()
            t0 = time.perf_counter()
            for k in range(events):
                accept(store, {"id": f"evt_b{n}_{k}", "type": "customer.updated",
                               "livemode": True, "account": ACCOUNT, "created": 1,
                               "data": {"object": {"id": "cus_1"}}}, grants=grants)
            accept_s = time.perf_counter() - t0
            policy = RetryPolicy(first_delay=0.01, max_delay=0.05, jitter=0)
            with DeliveryWorker(store, sealer=sealer, batch=500, concurrency=32,
                                policy=policy) as w:
                t0 = time.perf_counter()
                attempts = 0
                while count[0] < events * n:  # failed attempts come back after 10 ms
                    attempts += w.drain()
                deliver_s = time.perf_counter() - t0
            assert count[0] == events * n, (count[0], events, n)
            row = {"db": label, "installs": n, "events": events,
                   "events_per_s": round(events / accept_s, 1),
                   "fanout_rows_per_s": round(events * n / accept_s),
                   "deliveries": count[0], "attempts": attempts,
                   "deliveries_per_s": round(count[0] / deliver_s)}
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


_schemas: list[str] = []


def _fresh(base: str, label: str, n: int) -> str:
    if label == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='permgate-bench-')}/bench.db"
    schema = f"permgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schemas.append(schema)
    return f"{PG}?options=-csearch_path%3D{schema}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="1,100,10000")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        _bench("", "sqlite", sizes)
        if not args.no_postgres:
            _bench(PG, "postgresql", sizes)
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            for schema in _schemas:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
