"""CLI start-up: wall time of whole `permgate` processes, as a user waits for them.

    scripts/bench cli                # or: .venv/bin/python bench/bench_cli.py [--runs 15]
    scripts/bench cli --before DIR   # also time another checkout's src/ (e.g. `git archive`
                                     # of an older commit), interleaved run by run

Each command runs `--runs` times as a fresh process (the venv's `permgate` entry point, in a
temporary folder holding a small manifest); the table gives the median and the best wall
time, plus `python -c pass` and `python -c "import permgate"` as the floor they stand on.
With --before, both versions run through the same launcher (`python -c` importing
permgate.cli from a given src/), alternating, so that a busy machine slows both alike.
The target (issue 16) is <= 150 ms median for check, explain, permissions, validate and lint.
No assertion: this reports, the reader judges.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = {
    "id": "com.example.bench", "version": "1.0.0", "name": "Bench",
    "permissions": [{"permission": "customer_read", "purpose": "Show the customer"}],
}
TARGET_MS = 150.0


def commands(permgate: str, python: str) -> list[tuple[str, list[str]]]:
    return [
        ("python -c pass (floor)", [python, "-c", "pass"]),
        ("python -c 'import permgate'", [python, "-c", "import permgate"]),
        ("permgate --version", [permgate, "--version"]),
        ("permgate check", [permgate, "check", "GET", "/v1/customers/cus_1",
                            "--grant", "customer_read"]),
        ("permgate explain", [permgate, "explain", "GET",
                              "/v1/charges?expand[]=data.customer"]),
        ("permgate permissions", [permgate, "permissions", "--product", "Billing"]),
        ("permgate validate", [permgate, "validate", "stripe-app.json"]),
        ("permgate lint", [permgate, "lint", "stripe-app.json"]),
        ("permgate events check", [permgate, "events", "check", "invoice.paid",
                                   "--grant", "event_read", "--grant", "invoice_read"]),
        ("permgate scan (empty folder)", [permgate, "scan", "empty"]),
        ("permgate --help", [permgate, "--help"]),
    ]


def time_once(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> float:
    return run_once(argv, cwd, env)[0]


def run_once(argv: list[str], cwd: str, env: dict[str, str] | None = None
             ) -> tuple[float, float]:
    """(wall ms, CPU ms) of one process; CPU (user + system) barely moves when the machine is
    busy, wall time does: both are reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, env=env)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


LAUNCH = "import sys; from permgate.cli import main; sys.argv[0] = 'permgate'; " \
         "raise SystemExit(main(sys.argv[1:]))"


def compare(python: str, before: Path, runs: int, tmp: str) -> None:
    """Interleaved runs of this checkout's src/ and `before`'s, through the same launcher."""
    here = Path(__file__).resolve().parent.parent
    envs = {}
    for label, root in (("before", before), ("after", here)):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root / "src")
        envs[label] = env
    print(f"load {os.getloadavg()[0]:.1f}; medians of {runs} runs, wall (and CPU)")
    print(f"{'command':<28}  {'before':>15}  {'after':>15}  after/before")
    from permgate._progress import track

    for label, argv in track(commands("permgate", python)[2:], "bench cli: commands"):
        if argv[0] != "permgate":
            continue
        full = [python, "-c", LAUNCH, *argv[1:]]
        times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for k in times:
            time_once(full, tmp, envs[k])
        for _ in range(runs):
            for k in times:
                times[k].append(run_once(full, tmp, envs[k]))
        (bw, bc), (aw, ac) = (
            (statistics.median(r[0] for r in times[k]), statistics.median(r[1] for r in times[k]))
            for k in ("before", "after"))
        print(f"{label:<28}  {bw:>5.0f} ({bc:>4.0f})ms  {aw:>5.0f} ({ac:>4.0f})ms  "
              f"{aw / bw:>5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per command (15)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="a checkout (with src/) to compare with, e.g. an older commit")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    permgate = shutil.which("permgate", path=str(bindir)) or "permgate"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "stripe-app.json").write_text(json.dumps(MANIFEST, indent=2))
        Path(tmp, "empty").mkdir()
        env_note = f"{os.cpu_count()} cpus, {sys.version.split()[0]}"
        if args.before is not None:
            compare(sys.executable, args.before, args.runs, tmp)
            return 0
        from permgate._progress import track  # after the launch: not in what is timed

        for label, argv in track(commands(permgate, sys.executable), "bench cli: commands"):
            time_once(argv, tmp)  # warm the page cache and .pyc files
            runs = [run_once(argv, tmp) for _ in range(args.runs)]
            walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
            rows.append((label, statistics.median(walls), min(walls), statistics.median(cpus)))
    if args.json:
        print(json.dumps([{"command": r[0], "median_ms": round(r[1], 1),
                           "best_ms": round(r[2], 1), "cpu_median_ms": round(r[3], 1)}
                          for r in rows], indent=2))
        return 0
    load = os.getloadavg()[0]
    print(f"CLI wall time, {args.runs} runs each ({env_note}, load {load:.1f}); "
          f"target <= {TARGET_MS:.0f} ms")
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  {'median':>8}  {'best':>8}  {'cpu':>8}")
    for label, med, best, cpu in rows:
        print(f"{label:<{width}}  {med:>6.0f}ms  {best:>6.0f}ms  {cpu:>6.0f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
