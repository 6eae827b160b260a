"""Benchmark `permgate scan`: files/s on a large TypeScript tree, and memory as it grows.

    .venv/bin/python bench/bench_scan.py                 # generated trees of 2k and 10k files
    .venv/bin/python bench/bench_scan.py --tree DIR      # any tree, e.g. node_modules/stripe/esm
    .venv/bin/python bench/bench_scan.py --startup       # `permgate scan EMPTY` wall time

Start-up is measured against `python -c pass` in the same run (the interpreter's own floor),
as the median of 15 runs of the installed `permgate` command on an empty folder, with bytecode
caching on (as an installed package runs; PYTHONDONTWRITEBYTECODE is dropped for these runs so
the first one writes the caches) and, for comparison, with it off (every module compiled).

Not a test: figures depend on the machine. Memory is the peak RSS growth of a child process
per tree size; flat means it does not grow with the number of files.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import permgate

TEMPLATE = """import Stripe from 'stripe';
import {{helper{m}}} from './helper{m}';

const stripe = new Stripe(process.env.STRIPE_SECRET_KEY!);
const EXPAND_{i} = ['data.customer'];

export async function handler{i}(accountId: string, id: string): Promise<number> {{
  const c = await stripe.customers.retrieve(id, {{expand: ['default_source']}},
    {{stripeAccount: accountId}});
  const list = await stripe.charges.list({{limit: 3, expand: EXPAND_{i}}},
    {{stripeAccount: accountId}});
  const total = list.data.reduce((s, ch) => s + ch.amount, 0);
  for (let k = 0; k < {i} % 7; k++) {{
    helper{m}(k, c.id, total);
  }}
  return total;
}}

export function route{i}(event: {{type: string}}): string {{
  switch (event.type) {{
    case 'invoice.paid': return 'paid';
    case 'customer.created': return 'created';
    default: return 'other';
  }}
}}
"""
PLAIN = """export function util{i}(xs: number[]): number {{
  return xs.filter((x) => x % {m} === 0).map((x) => x * 2).reduce((a, b) => a + b, 0);
}}
"""


def generate(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"pkg{i // 500}"
        d.mkdir(exist_ok=True)
        body = TEMPLATE if i % 2 == 0 else PLAIN
        (d / f"mod{i}.ts").write_text(body.format(i=i, m=i % 13))


def _measure(root: str, queue: mp.Queue[dict[str, float]]) -> None:
    from permgate.scan.scanner import scan_tree

    events = frozenset(permgate.engine.catalog.events)
    # progress=False: a bar would be timed too (the bench shows its own, in the parent)
    scan_tree(Path(__file__).parent, events, progress=False)  # warm: grammars, SDK table
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    c0 = time.process_time()
    f = scan_tree(Path(root), events, progress=False)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"files": f.files, "calls": len(f.calls), "events": len(f.events),
               "seconds": dt, "files_per_s": f.files / dt,
               # CPU seconds: the figure that holds on a shared, loaded machine
               "cpu_seconds": cpu, "files_per_cpu_s": f.files / cpu,
               "load_average_1min": os.getloadavg()[0],
               "rss_growth_mb": (after - before) / 1024})


def measure(root: Path) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q: mp.Queue[dict[str, float]] = ctx.Queue()
    p = ctx.Process(target=_measure, args=(str(root), q))
    p.start()
    out = q.get()
    p.join()
    return out


def startup(runs: int = 15) -> dict[str, float]:
    import shutil
    import statistics
    import subprocess
    import sys

    exe = shutil.which("permgate", path=str(Path(sys.executable).parent)) or "permgate"

    import os

    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    uncached = {**cached, "PYTHONDONTWRITEBYTECODE": "1"}

    def median(cmd: list[str], env: dict[str, str]) -> float:
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, env=env)  # warm caches
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, env=env)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as empty:
        scan_s = median([exe, "scan", empty], cached)
        scan_nobc = median([exe, "scan", empty], uncached)
    floor = median([sys.executable, "-c", "pass"], cached)
    return {"permgate_scan_empty_s": round(scan_s, 3),
            "without_bytecode_cache_s": round(scan_nobc, 3),
            "python_floor_s": round(floor, 3), "ratio_to_floor": round(scan_s / floor, 1),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=Path)
    ap.add_argument("--sizes", default="2000,10000")
    ap.add_argument("--startup", action="store_true", help="only the empty-folder start-up")
    args = ap.parse_args()
    if args.startup:
        print(json.dumps(startup(), indent=1))
        return
    if args.tree:
        print(json.dumps({str(args.tree): measure(args.tree)}, indent=1))
        return
    from permgate._progress import progress

    results = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    with progress("bench scan: generated trees", len(sizes)) as bar:  # stderr, terminal only
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                generate(Path(tmp), n)
                results[f"generated-{n}"] = measure(Path(tmp))
            bar.advance()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
