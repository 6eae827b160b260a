"""Benchmark: allowed GETs through `permgate serve`, beside the same gateway with enforcement
off, nginx as a plain reverse proxy, and a plain uvloop + httptools proxy (the Python
ceiling, bench/gateway/ceiling.py), all to one trivial upstream on 127.0.0.1.

    scripts/bench gateway [--duration 10] [--connections 32] [--workers 1] [--rounds 3]
        [--variants enforce,enforce-pure,no-enforce,nginx,ceiling]
        [--json bench/results/gateway.json]
        [--profile SECONDS]

`enforce` is `permgate serve` on its default (native) server, on the compiled call path when
it is built (tools/build_compiled.py), `enforce-pure` the same on the pure-Python modules
(PERMGATE_PURE=1); `no-enforce` the same server
and process model with enforcement off (bench/gateway/variants.py builds it: the product
has no such switch). Extra variants: `granian`, `uvicorn` (`permgate serve --server ...`),
`enforce-api` (`permgate serve --api DIR` on the example API's DIR, examples/own-api: its
edge profile, `Acme-Account`, problem+json; the same call against its own tables).
`--profile S` also samples the enforcing gateway with py-spy for S seconds under load and
prints where its time goes. Needs wrk and nginx (Debian: apt-get install -y wrk
nginx-light). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway.nginx import nginx_binary, write_config

from permgate import envvars
from permgate import manifest as manifest_mod
from permgate.gateway import BUILD
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
    cpu_us: float = 0.0  # CPU time of the server's processes per request (noise-proof)


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
def process(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        wait_port(port, proc, timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def setup_store(folder: Path, api: Path | None = None) -> tuple[str, str]:
    """A database with the bench app installed; `api`: an own API's DIR, whose database is
    its own (the store records the API it belongs to)."""
    import permgate

    url = f"sqlite:///{folder / ('bench.db' if api is None else 'bench-api.db')}"
    permgate.use_api(api)
    try:
        with Store.open(url, upgrade=True) as store:
            result = store.upload_version(
                manifest_mod.parse(json.dumps(MANIFEST)), actor="bench")
            store.install("com.example.bench", ACCOUNT, "test", by="bench", role="admin")
            key = next(k.secret for k in result.keys if k.mode == "test")
    finally:
        permgate.use_api(None)
    return url, key


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = m.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, key: str, duration: int, connections: int, threads: int,
            account_header: str = "Stripe-Account") -> Result:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "-H", f"Authorization: Bearer {key}", "-H", f"{account_header}: {ACCOUNT}", url + PATH]
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


VARIANTS = ("enforce", "enforce-pure", "no-enforce", "nginx", "ceiling", "granian", "uvicorn",
            "enforce-direct", "enforce-api")
LABELS = {
    "enforce": "permgate, enforcing", "enforce-pure": "enforcing, pure Python",
    "no-enforce": "permgate, enforcement off",
    "nginx": "nginx", "ceiling": "Python ceiling", "granian": "permgate on granian",
    "uvicorn": "permgate on uvicorn", "enforce-direct": "enforcing, bench launcher",
    "enforce-api": "enforcing, own API (--api)",
}
EXAMPLE_SPEC = HERE.parent / "examples" / "own-api" / "openapi.yaml"


def api_dir(folder: Path) -> Path:
    """The example API's DIR, made by `permgate init` (once per run)."""
    out = folder / "acme-api"
    if not out.exists():
        subprocess.run([str(BIN / "permgate"), "init", "--from-openapi", str(EXAMPLE_SPEC),
                        "--out", str(out), "--permissions", "objects"], check=True,
                       capture_output=True)
    return out


def gateway_cmd(variant: str, port: int, upstream: str, db: str, key_file: Path,
                workers: int, upstream_port: int) -> list[str]:
    flags = ["--port", str(port), "--db", db, "--upstream", upstream,
             "--upstream-key-file", str(key_file), "--workers", str(workers)]
    if variant == "ceiling":
        return [sys.executable, str(HERE / "gateway" / "ceiling.py"), str(port),
                str(upstream_port), str(workers)]
    if variant in ("no-enforce", "enforce-direct"):
        which = "no-enforce" if variant == "no-enforce" else "enforce"
        return [sys.executable, str(HERE / "gateway" / "variants.py"), which, *flags]
    if variant in ("granian", "uvicorn"):
        flags += ["--server", variant]
    if variant == "enforce-api":
        flags += ["--api", str(api_dir(key_file.parent))]
    if variant == "enforce-pure":  # the same server on the pure-Python call path
        return ["env", f"{envvars.PURE.name}=1", str(BIN / "permgate"), "serve", *flags]
    return [str(BIN / "permgate"), "serve", *flags]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its living children (workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with suppress(OSError):
        pids += [int(c) for c in
                 Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def missing_tools() -> list[str]:
    out = []
    if shutil.which("wrk") is None:
        out.append("wrk")
    if nginx_binary() is None:
        out.append("nginx")
    return out


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
                          key_file, args.workers, upstream_port)
    # The example API names the account with its own header (its api.toml's).
    header = "Acme-Account" if variant == "enforce-api" else "Stripe-Account"
    with process(cmd, port, log) as proc:
        check = httpx.get(url + PATH, headers={"Authorization": f"Bearer {key}",
                                               header: ACCOUNT})
        if check.status_code != 200:
            raise RuntimeError(f"{variant}: {check.status_code} {check.text[:300]}")
        run_wrk(url, key, 2, args.connections, args.threads, header)  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        result = run_wrk(url, key, args.duration, args.connections, args.threads, header)
        used = cpu_seconds(proc.pid) - cpu0
        if result.rps > 0:
            result.cpu_us = used / (result.rps * args.duration) * 1e6
        if variant == "enforce" and args.profile and not getattr(args, "_profiled", False):
            args._profiled = True
            profile(proc.pid, url, key, args, folder)
    result.variant = variant
    return result


def profile(pid: int, url: str, key: str, args: argparse.Namespace, folder: Path) -> None:
    """py-spy samples the gateway (and its workers) under wrk load; prints own time by
    function (the innermost Python frame of each sample) and time by caller chain."""
    out = folder / "profile.txt"
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses",
                            "--duration", str(args.profile), "--rate", "500",
                            "--format", "raw", "--output", str(out),
                            *(["--native"] if args.profile_native else ["--nonblocking"])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_wrk(url, key, args.profile + 1, args.connections, args.threads)
    _, err = spy.communicate(timeout=60)
    if not out.exists():
        print(f"py-spy could not sample: {err.decode()[-400:]}")
        return
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        leaf = stack.split(";")[-1]
        leaf = re.sub(r" \(([^)]*/)?([^/)]+)\)$", r" (\2)", leaf)
        own[leaf] = own.get(leaf, 0) + count
    print(f"\nprofile of the enforcing gateway under load ({total} samples; own time by "
          f"innermost frame; 'idle' frames are the event loop waiting in epoll):")
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {n / total:6.1%}  {name[:110]}")
    saved = Path(args.json).with_suffix(".profile.txt") if args.json else None
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, saved)


def parse_variants(p: argparse.ArgumentParser, text: str, known: Sequence[str]) -> list[str]:
    """The comma-separated variants asked for, or the parser's usage error naming the known."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in known]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return variants


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--workers", type=int, default=1, help="gateway workers = nginx workers")
    p.add_argument("--variants", default="enforce,enforce-pure,no-enforce,nginx,ceiling",
                   help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per variant, interleaved; the median run is reported")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                   help="sample the enforcing gateway with py-spy for this long, once")
    p.add_argument("--profile-native", action="store_true",
                   help="with --profile: include C frames (uvloop, httptools, the kernel calls)")
    args = p.parse_args(argv)
    variants = parse_variants(p, args.variants, VARIANTS)
    missing = missing_tools()
    if missing:
        print(f"bench gateway: {' and '.join(missing)} not installed; this benchmark needs "
              "both (Debian: apt-get install -y wrk nginx-light)", file=sys.stderr)
        return 2
    print(f"the gateway's call path: {BUILD} (enforce-pure: pure Python, {envvars.PURE.name}=1)")
    with tempfile.TemporaryDirectory(prefix="permgate-bench-") as tmp:
        folder = Path(tmp)
        db, key = setup_store(folder)
        api_db = setup_store(folder, api_dir(folder)) if "enforce-api" in variants else None
        upstream_port = free_port()
        runs: dict[str, list[Result]] = {v: [] for v in variants}
        with process([sys.executable, str(HERE / "gateway" / "upstream.py"),
                      str(upstream_port)], upstream_port, folder / "upstream.log"):
            # Interleaved rounds: a noisy neighbour then hurts every variant alike.
            for _ in range(args.rounds):
                for variant in variants:
                    r = bench_variant(variant, args, folder, upstream_port,
                                      *(api_db if variant == "enforce-api" and api_db
                                        else (db, key)))
                    runs[variant].append(r)
                    print(f"  {LABELS[r.variant]:>26}: {r.rps:9.0f} req/s  "
                          f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                          f"cpu {r.cpu_us:5.1f} us/req  errors {r.errors}  "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
    results = [sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for rs in runs.values()]
    load = os.getloadavg()
    print(f"\nmedian of {args.rounds} round(s), {args.connections} connections, "
          f"{args.duration} s each, {args.workers} worker(s) per server, {os.cpu_count()} CPUs "
          f"shared with wrk and the upstream, wrk threads {args.threads}; load average now "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}:")
    print(f"  {'variant':>26}  {'req/s':>9}  {'p50':>9}  {'p99':>9}  {'CPU/request':>11}")
    for r in results:
        print(f"  {LABELS[r.variant]:>26}  {r.rps:9.0f}  {r.p50_ms:6.2f} ms  {r.p99_ms:6.2f} ms"
              f"  {r.cpu_us:8.1f} us")
    by = {r.variant: r for r in results}
    ratios: dict[str, float] = {}
    if "enforce" in by and "no-enforce" in by and by["no-enforce"].rps > 0:
        cost = 1 - by["enforce"].rps / by["no-enforce"].rps
        ratios["enforcement_cost"] = cost
        print(f"enforcement off vs on: {cost:+.1%} of throughput (goal <= 5%)")
    if "enforce" in by and "enforce-api" in by and by["enforce"].rps > 0:
        ratio = by["enforce-api"].rps / by["enforce"].rps
        ratios["own_api_vs_stripe"] = ratio
        print(f"own API (--api) / Stripe's profile: {ratio:.2f}x requests/s, CPU/request "
              f"{by['enforce-api'].cpu_us:.1f} vs {by['enforce'].cpu_us:.1f} us (goal: no loss)")
    for mine, tag in (("enforce", ""), ("enforce-pure", "_pure")):
        for peer, goal in (("nginx", "goal >= 0.8x, p99 within 1 ms"), ("ceiling", "")):
            if mine in by and peer in by and by[peer].rps > 0:
                ratio = by[mine].rps / by[peer].rps
                gap = by[mine].p99_ms - by[peer].p99_ms
                ratios[f"rps{tag}_vs_{peer}"] = ratio
                ratios[f"p99{tag}_gap_{peer}_ms"] = gap
                print(f"gateway ({BUILD if mine == 'enforce' else 'pure'}) / {LABELS[peer]}: "
                      f"{ratio:.2f}x requests/s; p99 {by[mine].p99_ms:.2f} ms vs "
                      f"{by[peer].p99_ms:.2f} ms ({gap:+.2f} ms)"
                      + (f"  [{goal}]" if goal and mine == "enforce" else ""))
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
