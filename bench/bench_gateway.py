"""Benchmark: allowed GETs through `permgate serve`, beside the same gateway with enforcement
off and nginx as a plain reverse proxy, all to one trivial upstream on 127.0.0.1.

    .venv/bin/python bench/bench_gateway.py [--duration 10] [--connections 32] [--workers 1]
        [--variants enforce,no-enforce,nginx] [--json bench/results/gateway.json]

`enforce` and `no-enforce` run on the default server (granian when installed); extra
variants for choosing the server and the upstream client: `uvicorn`, `uvicorn-no-enforce`
(the gateway forced onto uvicorn) and `httpx` (httpx as the upstream client).
Needs wrk and nginx (Debian: apt-get install -y wrk nginx-light). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway.nginx import nginx_binary, write_config

from permgate import manifest as manifest_mod
from permgate.store import Store

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
PATH = "/v1/customers?limit=1"
ACCOUNT = "acct_bench"
MANIFEST = {
    "id": "com.example.bench", "version": "1.0.0", "name": "bench", "icon": "",
    "permissions": [{"permission": "customer_read", "purpose": "Benchmark reads."}],
    "stripe_api_access_type": "platform",
    "ui_extension": {"views": [], "content_security_policy": {
        "connect-src": None, "image-src": None, "purpose": ""}},
}


@dataclass
class Result:
    variant: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {port}")


@contextmanager
def process(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def setup_store(folder: Path) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'bench.db'}"
    with Store.open(url, upgrade=True) as store:
        result = store.upload_version(
            manifest_mod.parse(json.dumps(MANIFEST)), actor="bench")
        store.install("com.example.bench", ACCOUNT, "test", by="bench", role="admin")
        key = next(k.secret for k in result.keys if k.mode == "test")
    return url, key


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = m.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, key: str, duration: int, connections: int, threads: int) -> Result:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "-H", f"Authorization: Bearer {key}", "-H", f"Stripe-Account: {ACCOUNT}", url + PATH]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: .*", out)
    errors = int(bad.group(1)) if bad else 0
    if sock:
        errors += sum(int(n) for n in re.findall(r"\d+", sock.group(0)))
    return Result("", rps, p50, p99, errors)


def gateway_cmd(variant: str, port: int, upstream: str, db: str, key_file: Path,
                workers: int) -> list[str]:
    """`enforce` / `no-enforce`: the default server; `uvicorn*`: forced; `httpx`: client."""
    flags = ["--port", str(port), "--db", db, "--upstream", upstream,
             "--upstream-key-file", str(key_file), "--workers", str(workers)]
    if variant.endswith("no-enforce"):
        flags.append("--bench-no-enforcement")
    if variant.startswith("uvicorn"):
        flags += ["--server", "uvicorn"]
    if variant == "httpx":
        flags += ["--upstream-client", "httpx"]
    return [str(BIN / "permgate"), "serve", *flags]


def bench_variant(variant: str, args: argparse.Namespace, folder: Path, upstream_port: int,
                  db: str, key: str) -> Result:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / f"{variant}.log"
    if variant == "nginx":
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
        conf = write_config(folder / "nginx", port, upstream_port, args.workers)
        cmd = [binary, "-c", str(conf), "-p", str(folder / "nginx")]
    else:
        key_file = folder / "upstream-key"
        key_file.write_text("sk_test_bench_upstream\n")
        cmd = gateway_cmd(variant, port, f"http://127.0.0.1:{upstream_port}", db,
                          key_file, args.workers)
    with process(cmd, port, log):
        check = httpx.get(url + PATH, headers={"Authorization": f"Bearer {key}",
                                               "Stripe-Account": ACCOUNT})
        if check.status_code != 200:
            raise RuntimeError(f"{variant}: {check.status_code} {check.text[:300]}")
        run_wrk(url, key, 2, args.connections, args.threads)  # warm-up
        result = run_wrk(url, key, args.duration, args.connections, args.threads)
    result.variant = variant
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--workers", type=int, default=1, help="gateway workers = nginx workers")
    p.add_argument("--variants", default="enforce,no-enforce,nginx")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per variant, interleaved; the median run is reported")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    with tempfile.TemporaryDirectory(prefix="permgate-bench-") as tmp:
        folder = Path(tmp)
        db, key = setup_store(folder)
        upstream_port = free_port()
        runs: dict[str, list[Result]] = {v: [] for v in variants}
        with process([sys.executable, str(HERE / "gateway" / "upstream.py"),
                      str(upstream_port)], upstream_port, folder / "upstream.log"):
            # Interleaved rounds: a noisy neighbour then hurts every variant alike.
            for _ in range(args.rounds):
                for variant in variants:
                    r = bench_variant(variant, args, folder, upstream_port, db, key)
                    runs[variant].append(r)
                    print(f"  {r.variant:>18}: {r.rps:9.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                          f"p99 {r.p99_ms:6.2f} ms  errors {r.errors}", flush=True)
    results = [sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for rs in runs.values()]
    print("\nmedian of", args.rounds, "rounds:")
    for r in results:
        print(f"  {r.variant:>18}: {r.rps:9.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
              f"p99 {r.p99_ms:6.2f} ms")
    by = {r.variant: r for r in results}
    print(f"{args.connections} connections, {args.duration} s, {args.workers} worker(s), "
          f"{os.cpu_count()} CPUs, wrk threads {args.threads}")
    ratios: dict[str, float] = {}
    if "enforce" in by and "no-enforce" in by:
        cost = 1 - by["enforce"].rps / by["no-enforce"].rps
        ratios["enforcement_cost"] = cost
        print(f"enforcement costs {cost:.1%} of the gateway's throughput (goal <= 5%)")
    if "enforce" in by and "nginx" in by:
        ratio = by["enforce"].rps / by["nginx"].rps
        gap = by["enforce"].p99_ms - by["nginx"].p99_ms
        ratios["rps_vs_nginx"] = ratio
        ratios["p99_gap_ms"] = gap
        print(f"gateway / nginx requests/s: {ratio:.2f}x (goal >= 0.5x); "
              f"p99 gap {gap:+.2f} ms (goal <= 1 ms)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"results": [asdict(r) for r in results], "ratios": ratios,
             "connections": args.connections, "duration": args.duration,
             "workers": args.workers, "rounds": args.rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
