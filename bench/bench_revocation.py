"""Benchmark: how fast a revocation reaches every replica. Two `permgate serve` processes on
one PostgreSQL; each round installs an app, has both replicas allow (and cache) its call,
uninstalls it through the store, and times, per replica, until a request is refused. Once
with LISTEN/NOTIFY (the product), once by polling alone (`refresh_interval`, default
0.25 s; bench/gateway/polling.py starts the gateway without its listener).

    scripts/bench revocation [--rounds 40] [--pg postgresql://...] [--json PATH]

The time includes the probing: each replica is asked again as soon as it answered (about
a millisecond per request here). Uses a fresh schema in PERMGATE_TEST_PG (default: the
test database at 127.0.0.1:5432), dropped afterwards. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contextlib import ExitStack

from bench.bench_gateway import BIN, HERE, free_port, process

from permgate import envvars
from permgate import manifest as manifest_mod
from permgate.store import Store

MODES = ("notify", "polling")


def manifest(app_id: str) -> str:
    return json.dumps({
        "id": app_id, "version": "1.0.0", "name": "bench", "icon": "",
        "permissions": [{"permission": "customer_read", "purpose": "Benchmark reads."}],
        "stripe_api_access_type": "platform",
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": None, "image-src": None, "purpose": ""}}})


def measure(mode: str, args: argparse.Namespace, url: str, folder: Path,
            upstream_port: int) -> list[float]:
    key_file = folder / "upstream-key"
    key_file.write_text("sk_test_bench_upstream\n")
    upstream = f"http://127.0.0.1:{upstream_port}"
    times: list[float] = []
    with ExitStack() as stack, Store.open(url) as store:
        ports = []
        for i in range(2):
            port = free_port()
            flags = ["--port", str(port), "--db", url, "--upstream", upstream,
                     "--upstream-key-file", str(key_file), "--refresh-interval",
                     str(args.refresh_interval)]
            cmd = ([str(BIN / "permgate"), "serve", *flags] if mode == "notify" else
                   [sys.executable, str(HERE / "gateway" / "polling.py"), *flags])
            stack.enter_context(process(cmd, port, folder / f"{mode}-{i}.log"))
            ports.append(port)
        clients = [stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{p}"))
                   for p in ports]
        for _ in range(args.rounds):
            app_id = f"com.example.rev{secrets.token_hex(4)}"
            account = f"acct_rev{secrets.token_hex(4)}"
            result = store.upload_version(manifest_mod.parse(manifest(app_id)), actor="bench")
            key = next(k.secret for k in result.keys if k.mode == "test")
            store.install(app_id, account, "test", by="bench@example.com", role="admin")
            headers = {"Authorization": f"Bearer {key}", "Stripe-Account": account}
            for c in clients:
                for _ in range(20):  # the install may take a moment to reach a replica
                    if c.get("/v1/customers", headers=headers).status_code == 200:
                        break
                    time.sleep(0.05)
                else:
                    raise RuntimeError("the install never reached a replica")
            store.uninstall(app_id, account, "test", by="bench@example.com", role="admin")
            t0 = time.perf_counter()
            pending = set(range(len(clients)))
            deadline = t0 + 10
            while pending and time.perf_counter() < deadline:
                for i in list(pending):
                    if clients[i].get("/v1/customers", headers=headers).status_code == 403:
                        times.append(time.perf_counter() - t0)
                        pending.discard(i)
            if pending:
                raise RuntimeError("a replica still allowed the call after 10 s")
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--pg", default=envvars.TEST_PG.get(), help="PostgreSQL URL")
    p.add_argument("--refresh-interval", type=float, default=0.25)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    schema = f"permgate_rev_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(args.pg, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        print(f"bench revocation: PostgreSQL at {args.pg} is needed: {e}", file=sys.stderr)
        return 2
    out: dict[str, dict[str, float]] = {}
    with admin, tempfile.TemporaryDirectory(prefix="permgate-bench-rev-") as tmp:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = f"{args.pg}?options=-csearch_path%3D{schema}"
            Store.open(url, upgrade=True).close()
            folder = Path(tmp)
            upstream_port = free_port()
            with process([sys.executable, str(HERE / "gateway" / "upstream.py"),
                          str(upstream_port)], upstream_port, folder / "upstream.log"):
                for mode in MODES:
                    times = measure(mode, args, url, folder, upstream_port)
                    ms = [t * 1000 for t in times]
                    out[mode] = {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99),
                                 "max_ms": max(ms), "samples": len(ms)}
                    print(f"  {mode:>8}: p50 {out[mode]['p50_ms']:7.1f} ms  p99 "
                          f"{out[mode]['p99_ms']:7.1f} ms  max {out[mode]['max_ms']:7.1f} ms  "
                          f"({len(ms)} replica-revocations)", flush=True)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    load = os.getloadavg()
    print(f"two replicas on one PostgreSQL, refresh_interval {args.refresh_interval} s, "
          f"{args.rounds} rounds; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results": out, "rounds": args.rounds,
                                               "refresh_interval": args.refresh_interval,
                                               "loadavg": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
