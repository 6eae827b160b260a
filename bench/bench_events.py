"""Events at platform scale (not a test): ingest and delivery, each beside its bare baseline.

Setup per database: 1,000 accounts x 3 installed apps (different grants) x 1 endpoint each,
and a mix of Stripe's common event types (some reach no app, as on a real platform).

- ingest: events/s accepted into the outbox (routing by grant, duplicate check, events and
  deliveries written in one transaction per batch), beside a bare batched INSERT of the
  same event and delivery rows in the same batches (no routing, no checks);
- delivery: deliveries/s from one worker process (claim, re-check, sign, POST, record) to a
  local keep-alive receiver running in its own process, beside a bare keep-alive POST loop
  (the same HTTP client, pool and concurrency, no database) to the same receiver, run just
  before and just after each worker run (the ratio is to their mean) and once at the end.

    scripts/bench events [--events 20000] [--batch 500] [--no-postgres] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import psycopg
import sqlalchemy as sa

from permgate import envvars, manifest
from permgate.events import DeliveryWorker, RetryPolicy, Sealer, add_endpoint, sign
from permgate.events.outbox import Router, accept_many
from permgate.events.schema import deliveries, events
from permgate.events.transport import Target, Transport
from permgate.store import Store
from permgate.store.schema import installs

# The receiver listens on 127.0.0.1: the explicit local-development setting lets endpoints
# of every mode use it (events/targets.py); the worker and the bare loop both go through the
# address policy, as in production.
os.environ.setdefault(envvars.DEV_PRIVATE_WEBHOOKS.name, "all")
PG = envvars.TEST_PG.get()
ACCOUNTS = 1000
APPS = {  # app -> (permissions, subscribed events)
    "com.bench.billing": (["event_read", "customer_read", "invoice_read", "subscription_read"],
                          ["*"]),
    "com.bench.payments": (["event_read", "charge_read", "payment_intent_read"], ["*"]),
    "com.bench.crm": (["event_read", "customer_read"],
                      ["customer.created", "customer.updated", "customer.deleted"]),
}
# Stripe's common events, weighted roughly as a payments platform sees them.
MIX = {
    "payment_intent.created": 14, "payment_intent.succeeded": 14, "charge.succeeded": 14,
    "charge.refunded": 2, "customer.created": 5, "customer.updated": 10,
    "invoice.created": 5, "invoice.finalized": 5, "invoice.paid": 6,
    "invoice.payment_succeeded": 6, "customer.subscription.created": 3,
    "customer.subscription.updated": 6, "checkout.session.completed": 4,
    "balance.available": 3, "payout.paid": 1, "payment_method.attached": 2,
}


def _event(k: int, rnd: random.Random) -> dict[str, Any]:
    etype = rnd.choices(list(MIX), weights=list(MIX.values()))[0]
    obj = etype.rsplit(".", 1)[0].split(".")[-1]
    return {
        "id": f"evt_{secrets.token_hex(12)}", "object": "event", "api_version": "2024-04-10",
        "account": f"acct_bench{rnd.randrange(ACCOUNTS)}", "created": 1_700_000_000 + k,
        "livemode": True, "pending_webhooks": 1, "type": etype,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": None},
        "data": {"object": {
            "id": f"{obj[:3]}_{secrets.token_hex(12)}", "object": obj, "amount": 2000,
            "currency": "usd", "customer": f"cus_{secrets.token_hex(7)}",
            "description": "bench " * 20, "livemode": True, "created": 1_700_000_000 + k,
            "metadata": {"order_id": str(k), "source": "bench"},
            "status": "succeeded",
        }},
    }


def _populate(store: Store, url: str, sealer: Sealer) -> None:
    """3 apps with an endpoint each, installed (live) on every account; installs written in
    bulk (the store's install() is one audited transaction each: not what is measured)."""
    rows = []
    for app_id, (perms, subscribed) in APPS.items():
        data = {"id": app_id, "version": "1", "name": app_id, "icon": "",
                "permissions": [{"permission": p, "purpose": "bench"} for p in perms],
                "ui_extension": {"views": []}}
        store.upload_version(manifest.parse(json.dumps(data)), actor="bench")
        store.install(app_id, "acct_bench0", "live", by="bench", role="admin")
        with store.engine.connect() as conn:
            template = dict(conn.execute(sa.select(installs).where(
                installs.c.app_id == app_id)).mappings().one())
        rows += [{**template, "install_id": f"in_{app_id[10:]}{i}", "account": f"acct_bench{i}"}
                 for i in range(1, ACCOUNTS)]
        add_endpoint(store, app_id, f"{url}/{app_id}", subscribed, "live", by="bench",
                     sealer=sealer)
    with store.engine.begin() as conn:
        conn.execute(installs.insert(), rows)


# -- the receiver: its own process, so it never competes with the worker for the GIL --------

RECEIVER = r'''
import asyncio, sys, httptools
count = 0
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.p = httptools.HttpRequestParser(self); self.url = b""
    def on_url(self, url): self.url = url
    def on_message_complete(self):
        global count
        if self.url == b"/count":
            body = str(count).encode()
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            count += 1
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    def data_received(self, data): self.p.feed_data(data)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
'''


@contextmanager
def receiver() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _received(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/count") as r:
        return int(r.read())


# -- ingest -----------------------------------------------------------------------------------

def bench_ingest(store: Store, evs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    router = Router(store)
    raws = [(e, json.dumps(e).encode()) for e in evs]
    warm = raws[:batch]
    accept_many(store, warm, router=router)  # fills the per-account caches a little
    t0 = time.perf_counter()
    stored = 0
    for k in range(batch, len(raws), batch):
        results = accept_many(store, raws[k:k + batch], router=router)
        stored += sum(getattr(r, "deliveries", 0) for r in results)
    seconds = time.perf_counter() - t0
    return {"events": len(raws) - batch, "deliveries": stored, "seconds": seconds}


def bench_bare_insert(store: Store, evs: list[dict[str, Any]], batch: int,
                      routes: dict[str, list[tuple[str, str, str]]]) -> dict[str, Any]:
    """The same rows, written by plain batched INSERTs: the floor of what the outbox costs."""
    now = time.time()
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(now, UTC)
    body = [(e, json.dumps(e)) for e in evs[batch:]]
    t0 = time.perf_counter()
    rows = 0
    for k in range(0, len(body), batch):
        chunk = body[k:k + batch]
        ev_rows = [{"event_id": "b" + e["id"], "account": e["account"], "mode": "live",
                    "type": e["type"], "created": e["created"], "payload": raw,
                    "source": "webhook", "target_app_id": None, "received_at": at}
                   for e, raw in chunk]
        d_rows = [{"event_id": "b" + e["id"], "endpoint_id": ep, "app_id": app,
                   "install_id": inst, "status": "pending", "attempts": 0,
                   "next_attempt_at": at, "created_at": at}
                  for e, _ in chunk for ep, app, inst in routes.get(e["id"], ())]
        with store.engine.begin() as conn:
            conn.execute(events.insert(), ev_rows)
            if d_rows:
                conn.execute(deliveries.insert(), d_rows)
        rows += len(d_rows)
    seconds = time.perf_counter() - t0
    return {"events": len(body), "deliveries": rows, "seconds": seconds}


def bench_bare_unnest(store: Store, evs: list[dict[str, Any]], batch: int,
                      routes: dict[str, list[tuple[str, str, str]]]) -> dict[str, Any]:
    """PostgreSQL: the same rows as one INSERT ... SELECT FROM unnest() per table and batch
    (binary arrays), the fastest bare form, without routing or the duplicate check."""
    from datetime import UTC, datetime

    at = datetime.now(UTC)
    body = [(e, json.dumps(e)) for e in evs[batch:]]
    ev_sql = ("INSERT INTO events (event_id, account, mode, type, created, payload, source, "
              "received_at) SELECT u.*, 'webhook', %(at)b FROM unnest(%(ids)b::text[], "
              "%(acc)b::text[], %(modes)b::text[], %(types)b::text[], %(cr)b::bigint[], "
              "%(pl)b::text[]) AS u")
    d_sql = ("INSERT INTO event_deliveries (event_id, endpoint_id, app_id, install_id, status, "
             "attempts, next_attempt_at, created_at) SELECT u.*, 'pending', 0, %(at)b, %(at)b "
             "FROM unnest(%(ev)b::text[], %(ep)b::text[], %(app)b::text[], %(inst)b::text[]) AS u")
    t0 = time.perf_counter()
    rows = 0
    for k in range(0, len(body), batch):
        chunk = body[k:k + batch]
        d = [("u" + e["id"], ep, app, inst) for e, _ in chunk
             for ep, app, inst in routes.get(e["id"], ())]
        with store.engine.begin() as conn:
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute(ev_sql, {
                    "at": at, "ids": ["u" + e["id"] for e, _ in chunk],
                    "acc": [e["account"] for e, _ in chunk], "modes": ["live"] * len(chunk),
                    "types": [e["type"] for e, _ in chunk],
                    "cr": [e["created"] for e, _ in chunk], "pl": [raw_ for _, raw_ in chunk]})
                if d:
                    cur.execute(d_sql, {"at": at, "ev": [x[0] for x in d],
                                        "ep": [x[1] for x in d], "app": [x[2] for x in d],
                                        "inst": [x[3] for x in d]})
        rows += len(d)
    return {"events": len(body), "deliveries": rows, "seconds": time.perf_counter() - t0}


def _routes_written(store: Store) -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list[tuple[str, str, str]]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(deliveries.c.event_id, deliveries.c.endpoint_id,
                                        deliveries.c.app_id, deliveries.c.install_id)):
            out.setdefault(r[0], []).append((r[1], r[2], r[3]))
    return out


# -- delivery ---------------------------------------------------------------------------------

def _server_cpu() -> float | None:
    """CPU seconds used so far by every process of the local `postgres` user (the server's
    backends, autovacuum, WAL writer...), or None when that cannot be read. Other clients of
    the same server count too: an upper bound on the worker's share."""
    try:
        import pwd

        uid = pwd.getpwnam("postgres").pw_uid
        ticks = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (KeyError, OSError, ImportError, ValueError):
        return None


def bench_worker(store: Store, sealer: Sealer, rurl: str, *, concurrency: int,
                 per_endpoint: int, batch: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        due = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
            deliveries.c.status == "pending")).scalar_one()
    before = _received(rurl)
    stop = threading.Event()
    policy = RetryPolicy(first_delay=0.05, max_delay=0.2, jitter=0)
    with DeliveryWorker(store, sealer=sealer, batch=batch, concurrency=concurrency,
                        per_endpoint=per_endpoint, policy=policy) as worker:
        thread = threading.Thread(target=worker.run, args=(stop, 0.02))
        s0 = _server_cpu() if store.engine.dialect.name == "postgresql" else None
        t0, c0 = time.perf_counter(), time.process_time()
        thread.start()
        try:
            # Watch the receiver's counter (another process) rather than the outbox, so the
            # watching costs the worker nothing; then wait for the last results to be
            # recorded: the time includes them.
            while _received(rurl) - before < due:
                time.sleep(0.05)
            while True:
                with store.engine.connect() as conn:
                    left = conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                        .where(deliveries.c.status == "pending")).scalar_one()
                if not left:
                    break
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - c0  # this process: the worker (the receiver is apart)
            s1 = _server_cpu() if s0 is not None else None
        finally:
            stop.set()
            thread.join()
    got = _received(rurl) - before
    assert got >= due, (got, due)
    return {"deliveries": due, "received": got, "seconds": seconds, "cpu_seconds": cpu,
            "server_cpu_seconds": s1 - s0 if s0 is not None and s1 is not None else None}


def bench_bare_posts(rurl: str, bodies: list[bytes], *, concurrency: int,
                     per_endpoint: int, client: str) -> dict[str, Any]:
    """The same bodies POSTed with no database: `permgate` = the worker's own transport
    (same pool and limits), `aiohttp` = the library, same concurrency and pool size."""
    secret = "whsec_" + secrets.token_hex(16)

    async def run() -> float:
        gate = asyncio.Semaphore(concurrency)
        if client == "permgate":
            transport = Transport(concurrency=concurrency, per_destination=per_endpoint)
            # Three endpoints, as in the setup: each has its own pool.
            targets = [Target(f"we_bare{i}", f"{rurl}/bare{i}", local=False, mode="live")
                       for i in range(3)]

            async def one(k: int, body: bytes) -> None:
                async with gate:
                    resp = await transport.post(targets[k % 3], body, {
                        "Content-Type": "application/json; charset=utf-8",
                        "Stripe-Signature": sign(body, [secret])})
                    assert resp.status == 200

            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(k, b) for k, b in enumerate(bodies)))
            seconds = time.perf_counter() - t0
            cpu[0] = time.process_time() - c0
            await transport.close()
            return seconds
        # aiohttp pools per host: the three endpoints' connections together.
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=3 * per_endpoint)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one_aio(body: bytes) -> None:
                async with gate, session.post(f"{rurl}/bare", data=body, headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "Stripe-Signature": sign(body, [secret])}) as resp:
                    await resp.read()
                    assert resp.status == 200

            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one_aio(b) for b in bodies))
            cpu[0] = time.process_time() - c0
            return time.perf_counter() - t0

    cpu = [0.0]
    seconds = asyncio.run(run())
    return {"deliveries": len(bodies), "seconds": seconds, "cpu_seconds": cpu[0]}


def bench_serial_loop(rurl: str, bodies: list[bytes]) -> dict[str, Any]:
    """One keep-alive connection, one POST after another (http.client): a second reference."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(rurl)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    t0 = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/serial", body=body,
                     headers={"Content-Type": "application/json; charset=utf-8"})
        resp = conn.getresponse()
        resp.read()
    seconds = time.perf_counter() - t0
    conn.close()
    return {"deliveries": len(bodies), "seconds": seconds}


# -- the run ----------------------------------------------------------------------------------

_schemas: list[str] = []


def _fresh(label: str) -> str:
    if label == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='permgate-bench-')}/bench.db"
    schema = f"permgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schemas.append(schema)
    return f"{PG}?options=-csearch_path%3D{schema}"


def _rate(n: int, seconds: float) -> int:
    return round(n / seconds) if seconds else 0


def _us(cpu_seconds: float, n: int) -> int:
    """CPU microseconds per delivery (every thread of this process)."""
    return round(cpu_seconds * 1e6 / n) if n else 0


def run_db(label: str, args: argparse.Namespace, rurl: str) -> dict[str, Any]:
    sealer = Sealer(secrets.token_bytes(32))
    rnd = random.Random(15)
    evs = [_event(k, rnd) for k in range(args.events + args.batch)]
    with Store.open(_fresh(label), upgrade=True) as store:
        _populate(store, rurl, sealer)
        ingest = bench_ingest(store, evs, args.batch)
        routes = _routes_written(store)
        bare = bench_bare_insert(store, evs, args.batch, routes)
        unnest = bench_bare_unnest(store, evs, args.batch, routes) if label != "sqlite" else None
        # Only permgate's own rows are pending; the bare rows would double the delivery run.
        with store.engine.begin() as conn:
            conn.execute(deliveries.delete().where(deliveries.c.event_id.like("bevt_%")
                                                   | deliveries.c.event_id.like("uevt_%")))
        # The bare loop right before and right after the worker, with as many bodies: on a
        # shared machine the load moves within a run, so the ratio is taken against the
        # loop measured beside the worker (the mean rate of the two), not one run later.
        bodies = [json.dumps(e).encode() for e in evs]
        before = bench_bare_posts(rurl, bodies, concurrency=args.concurrency,
                                  per_endpoint=args.per_endpoint, client="permgate")
        worker = bench_worker(store, sealer, rurl, concurrency=args.concurrency,
                              per_endpoint=args.per_endpoint, batch=args.worker_batch)
        after = bench_bare_posts(rurl, bodies, concurrency=args.concurrency,
                                 per_endpoint=args.per_endpoint, client="permgate")
    return {"db": label, "ingest": ingest, "bare_insert": bare, "bare_unnest": unnest,
            "worker": worker, "bare_beside": [before, after], "bodies": bodies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500, help="events per ingest transaction")
    ap.add_argument("--worker-batch", type=int, default=500, help="deliveries per claim")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--per-endpoint", type=int, default=64,
                    help="attempts in flight (and connections) per endpoint")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    try:
        with receiver() as rurl:
            for label in ("sqlite", "postgresql"):
                if (label == "sqlite" and args.no_sqlite) or (
                        label == "postgresql" and args.no_postgres):
                    continue
                results.append(run_db(label, args, rurl))
            bodies = results[0]["bodies"] if results else [b"{}"] * 10_000
            bare = bench_bare_posts(rurl, bodies, concurrency=args.concurrency,
                                    per_endpoint=args.per_endpoint, client="permgate")
            aio = bench_bare_posts(rurl, bodies, concurrency=args.concurrency,
                                   per_endpoint=args.per_endpoint, client="aiohttp")
            serial = bench_serial_loop(rurl, bodies[:5000])
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            for schema in _schemas:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    out = {"setup": {"accounts": ACCOUNTS, "apps": len(APPS), "endpoints_per_app": 1,
                     "events": args.events, "ingest_batch": args.batch,
                     "worker": {"batch": args.worker_batch, "concurrency": args.concurrency,
                                "per_endpoint": args.per_endpoint}},
           "bare_post_loop_per_s": _rate(bare["deliveries"], bare["seconds"]),
           "aiohttp_post_loop_per_s": _rate(aio["deliveries"], aio["seconds"]),
           "serial_keepalive_loop_per_s": _rate(serial["deliveries"], serial["seconds"]),
           "bare_post_loop_cpu_us": _us(bare["cpu_seconds"], bare["deliveries"]),
           "databases": []}
    for r in results:
        ing, ins, w = r["ingest"], r["bare_insert"], r["worker"]
        beside = [_rate(b["deliveries"], b["seconds"]) for b in r["bare_beside"]]
        beside_rate = round(sum(beside) / len(beside))
        server = w["server_cpu_seconds"]
        out["databases"].append({
            "db": r["db"],
            "ingest_events_per_s": _rate(ing["events"], ing["seconds"]),
            "ingest_deliveries_written_per_s": _rate(ing["deliveries"], ing["seconds"]),
            "bare_insert_events_per_s": _rate(ins["events"], ins["seconds"]),
            "ingest_vs_bare": round(ins["seconds"] / ing["seconds"], 2),
            "bare_unnest_events_per_s": _rate(r["bare_unnest"]["events"],
                                              r["bare_unnest"]["seconds"])
            if r["bare_unnest"] else None,
            "worker_deliveries": w["deliveries"],
            "worker_deliveries_per_s": _rate(w["deliveries"], w["seconds"]),
            "worker_cpu_us": _us(w["cpu_seconds"], w["deliveries"]),
            # The database server's CPU per delivery (PostgreSQL on this machine only).
            "server_cpu_us": _us(server, w["deliveries"]) if server is not None else None,
            # The bare loop run just before and just after this worker run, and the ratio
            # to their mean: the figure the aim (>= 0.5) is about.
            "bare_beside_per_s": beside,
            "bare_beside_cpu_us": [_us(b["cpu_seconds"], b["deliveries"])
                                   for b in r["bare_beside"]],
            "worker_vs_bare_post_loop": round(
                _rate(w["deliveries"], w["seconds"]) / beside_rate, 2),
            # Against the loop run once at the end of the run (the earlier definition).
            "worker_vs_bare_end_of_run": round(
                _rate(w["deliveries"], w["seconds"]) / out["bare_post_loop_per_s"], 2),
        })
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["setup"]
    print(f"events bench: {s['accounts']} accounts x {s['apps']} apps x 1 endpoint, "
          f"{s['events']} events of {len(MIX)} types, ingest batches of {s['ingest_batch']}; "
          f"worker batch {args.worker_batch}, concurrency {args.concurrency}, "
          f"per endpoint {args.per_endpoint}")
    print(f"{'':12}{'ingest ev/s':>13}{'bare INSERT ev/s':>18}{'ratio':>7}"
          f"{'deliveries/s':>14}{'bare POST loop/s':>18}{'ratio':>7}")
    for d in out["databases"]:
        beside = round(sum(d["bare_beside_per_s"]) / len(d["bare_beside_per_s"]))
        print(f"{d['db']:12}{d['ingest_events_per_s']:>13,}{d['bare_insert_events_per_s']:>18,}"
              f"{d['ingest_vs_bare']:>7}{d['worker_deliveries_per_s']:>14,}"
              f"{beside:>18,}{d['worker_vs_bare_post_loop']:>7}")
    print("bare POST loop/s: the mean of the loop run just before and just after each worker "
          "run (" + "; ".join(f"{d['db']} {d['bare_beside_per_s'][0]:,} and "
                              f"{d['bare_beside_per_s'][1]:,}" for d in out["databases"])
          + f"); once more at the end of the run: {out['bare_post_loop_per_s']:,}/s")
    rows = ", ".join(f"{d['db']} {d['ingest_deliveries_written_per_s']:,}"
                     for d in out["databases"])
    print(f"ingest also wrote delivery rows/s: {rows}")
    print("bare INSERT = SQLAlchemy Core insert() of the same rows, same batches, one "
          "transaction each")
    for d in out["databases"]:
        if d["bare_unnest_events_per_s"]:
            print(f"{d['db']}: the same rows as INSERT ... SELECT FROM unnest() (binary "
                  f"arrays, permgate's own form, no routing): {d['bare_unnest_events_per_s']:,}"
                  f" ev/s; ingest / that = "
                  f"{d['ingest_events_per_s'] / d['bare_unnest_events_per_s']:.2f}")
    cpus = ", ".join(f"worker ({d['db']}) {d['worker_cpu_us']}" for d in out["databases"])
    print(f"CPU µs per delivery: {cpus}; bare POST loop {out['bare_post_loop_cpu_us']}")
    for d in out["databases"]:
        if d["server_cpu_us"] is not None:
            print(f"{d['db']} server processes (every client's work while the worker ran): "
                  f"{d['server_cpu_us']} CPU µs per delivery")
    print(f"bare POST loop = the worker's transport, same pool, no database; same loop with "
          f"aiohttp: {out['aiohttp_post_loop_per_s']:,}/s; one keep-alive connection, "
          f"serial http.client: {out['serial_keepalive_loop_per_s']:,}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
