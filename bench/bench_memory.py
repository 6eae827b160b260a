"""Benchmark: the gateway's memory under hostile traffic that must not grow it.

    scripts/bench memory [--server native|granian|uvicorn] [--keys 600] [--key-kb 200]
        [--expand-requests 120] [--expand-entries 20000] [--json FILE]

Starts `permgate serve` (one worker) in front of a trivial upstream on 127.0.0.1 and
measures the resident memory of the gateway's processes (the server and its workers,
summed from /proc) before and after:

- `bogus-keys`: N requests, each with its own random `Authorization: Bearer sk_test_...`
  of the given size (issue 11: 2,000 keys of 400 KB grew it from 76 MB to 1.64 GB);
- `shaped-keys`: N requests with distinct well-formed but unknown keys (these are looked
  up and cached: the cache is bounded by count and, by the key shape, in bytes);
- `expand-lists`: requests from an installed app, each with its own list of unique
  `expand[]` entries in a form body (issue 11, item 4: the engine's plan cache).

Each phase reports RSS before and after and the difference; the goal is flat (within
30 MB). Not a test: figures depend on the machine and the allocator.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway import ACCOUNT, BIN, HERE, free_port, process, setup_store

_ALNUM = string.ascii_letters + string.digits


def tree_rss_kb(pid: int) -> int:
    """Resident set of `pid` and all its descendants, in KiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def send(port: int, head: bytes, body: bytes = b"") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        answer = b""
        while data := s.recv(65536):
            answer += data
    return int(answer[9:12]) if answer[9:12].isdigit() else 0


def request(method: str, target: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def phase(
    name: str, pid: int, port: int, requests: list[tuple[bytes, bytes]]
) -> dict[str, object]:
    time.sleep(0.5)
    before = tree_rss_kb(pid)
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for head, body in requests:
        status = send(port, head, body)
        statuses[status] = statuses.get(status, 0) + 1
    seconds = time.perf_counter() - started
    time.sleep(1.0)  # let batched log lines flush
    after = tree_rss_kb(pid)
    out = {"phase": name, "requests": len(requests), "statuses": statuses,
           "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
           "delta_mb": round((after - before) / 1024, 1), "seconds": round(seconds, 2)}
    print(f"{name:14} {len(requests):5} requests  RSS {out['rss_before_mb']:7.1f} MB -> "
          f"{out['rss_after_mb']:7.1f} MB  (delta {out['delta_mb']:+6.1f} MB)  "
          f"statuses {statuses}  {seconds:.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="native", choices=("native", "granian", "uvicorn"))
    ap.add_argument("--keys", type=int, default=600)
    ap.add_argument("--key-kb", type=int, default=200)
    ap.add_argument("--expand-requests", type=int, default=120)
    ap.add_argument("--expand-entries", type=int, default=20_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="permgate-bench-mem-") as tmp:
        folder = Path(tmp)
        db, key = setup_store(folder)
        up_port, gw_port = free_port(), free_port()
        key_file = folder / "upstream-key"
        key_file.write_text("sk_test_bench_upstream\n")
        upstream = [sys.executable, str(HERE / "gateway" / "upstream.py"), str(up_port)]
        gateway = [str(BIN / "permgate"), "serve", "--port", str(gw_port), "--db", db,
                   "--upstream", f"http://127.0.0.1:{up_port}", "--upstream-key-file",
                   str(key_file), "--server", args.server, "--no-access-log",
                   "--body-limit", str(4 * 1024 * 1024)]
        with process(upstream, up_port, folder / "upstream.log"), \
                process(gateway, gw_port, folder / "gateway.log") as gw:
            good = [f"Authorization: Bearer {key}", f"Stripe-Account: {ACCOUNT}"]
            warm = [(request("GET", "/v1/customers?limit=1", good), b"")] * 200
            results.append(phase("warm-up", gw.pid, gw_port, warm))
            size = args.key_kb * 1024
            bogus = [(request("GET", "/v1/customers", [
                "Authorization: Bearer sk_test_" + secrets.token_urlsafe(size)[:size],
                f"Stripe-Account: {ACCOUNT}"]), b"") for _ in range(args.keys)]
            results.append(phase("bogus-keys", gw.pid, gw_port, bogus))
            del bogus
            shaped = [(request("GET", "/v1/customers", [
                "Authorization: Bearer sk_test_" + "".join(
                    secrets.choice(_ALNUM) for _ in range(64)),
                f"Stripe-Account: {ACCOUNT}"]), b"") for _ in range(args.keys)]
            results.append(phase("shaped-keys", gw.pid, gw_port, shaped))
            expand = []
            for i in range(args.expand_requests):
                body = "&".join(f"expand[]=f{i}_{j}" for j in range(args.expand_entries))
                data = body.encode()
                head = request("POST", "/v1/customers", [
                    *good, "Content-Type: application/x-www-form-urlencoded"], data)
                expand.append((head, data))
            results.append(phase("expand-lists", gw.pid, gw_port, expand))
    if args.json:
        args.json.write_text(json.dumps({"server": args.server, "phases": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
