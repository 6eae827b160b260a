"""Where a loaded server's CPU per request goes, counted rather than timed: system calls,
context switches and CPU (user and system) per request, or user-space instructions per
request of the live server, for each variant of `scripts/bench gateway`.

    .venv/bin/python bench/gateway/under_load.py [--variants enforce,nginx,...]
        [--duration 4] [--connections 32] [--strace] [--instructions [--keep DIR]]

Each variant is started as `scripts/bench gateway` starts it (the same store, upstream,
wrk and connections) and warmed up. Then:

- default: a first wrk run with nothing attached gives CPU per request, user and system,
  and context switches (voluntary and preempted) of the server's processes and threads
  (/proc); a second run with `perf stat` counting every `syscalls:sys_enter_*` tracepoint
  of them gives system calls per request (a tracer's own cost lands in system time, hence
  two runs). `--strace`: `strace -c -f` counts instead (slower: calls that batch with
  load, such as epoll waits, count higher; reads and writes per request do not change).
- `--instructions`: the server runs under valgrind's callgrind (not instrumenting until
  warmed up); counters are zeroed, wrk runs, the counters are dumped: instructions per
  request of the server's main thread (every thread's with `--all-threads`), everything in
  user space (Python, uvloop, libuv, httptools, libc), none of the kernel. Under callgrind
  the server is about 50 times slower, so each event-loop turn carries more requests than
  at full speed, and work done per second (timers, the store's change polling) is spread
  over fewer requests: the main thread's figure is the one to compare with
  `cpu_per_request.py --instructions` (the same call over fake sockets).

Counts do not depend on the machine's load; the CPU figures do (give `uptime`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench.bench_gateway as bg  # after the sys.path set-up

TICK = os.sysconf("SC_CLK_TCK")
VALGRIND_START = 600.0  # seconds a variant may take to listen under valgrind


def pids_of(pid: int) -> list[int]:
    """The process and its children (nginx's and the supervisor's workers)."""
    out = [pid]
    with contextlib.suppress(OSError):
        out += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return out


def usage(pids: list[int]) -> dict[str, float]:
    """User and system seconds and context switches of the processes, every thread."""
    out = {"user": 0.0, "system": 0.0, "switches": 0.0, "preempted": 0.0}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        out["user"] += int(fields[11]) / TICK
        out["system"] += int(fields[12]) / TICK
        for task in tasks:
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name == "voluntary_ctxt_switches":
                        out["switches"] += int(value)
                    elif name == "nonvoluntary_ctxt_switches":
                        out["preempted"] += int(value)
    return out


def thread_names(pids: list[int]) -> list[str]:
    out = []
    for p in pids:
        with contextlib.suppress(OSError):
            for task in sorted(Path(f"/proc/{p}/task").iterdir()):
                out.append((task / "comm").read_text().strip())
    return out


def parse_counts(text: str, strace: bool) -> dict[str, int]:
    """System call -> count, from `strace -c` or `perf stat -x,` output."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if strace:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) != "total":
                out[m.group(2)] = int(m.group(1))
            continue
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
            n = parts[0].strip()
            if n.isdigit() and int(n):
                out[parts[2].removeprefix("syscalls:sys_enter_")] = int(n)
    return out


def callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def server_cmd(variant: str, folder: Path, port: int, upstream_port: int, db: str
               ) -> list[str]:
    if variant == "nginx":
        binary = bg.nginx_binary()
        if binary is None:
            raise SystemExit("nginx is not installed (apt-get install -y nginx-light)")
        conf = bg.write_config(folder / "nginx", port, upstream_port, 1)
        return [binary, "-c", str(conf), "-p", str(folder / "nginx")]
    key_file = folder / "upstream-key"
    key_file.write_text("sk_test_bench_upstream\n")
    return bg.gateway_cmd(variant, port, f"http://127.0.0.1:{upstream_port}", db, key_file,
                          1, upstream_port)


def syscalls(variant: str, args: argparse.Namespace, folder: Path, upstream_port: int,
             db: str, key: str) -> None:
    port = bg.free_port()
    url = f"http://127.0.0.1:{port}"
    with bg.process(server_cmd(variant, folder, port, upstream_port, db), port,
                    folder / f"{variant}.log") as proc:
        bg.run_wrk(url, key, 2, args.connections, 1)  # warm-up: caches, pool
        pids = pids_of(proc.pid)
        before = usage(pids)
        timed = bg.run_wrk(url, key, args.duration, args.connections, 1)
        after = usage(pids)
        out = folder / f"{variant}.counts"
        if args.strace:
            tracer = ["strace", "-c", "-f", "-o", str(out),
                      *[a for p in pids for a in ("-p", str(p))]]
        else:
            tracer = ["perf", "stat", "-x", ",", "-o", str(out), "-e", "syscalls:sys_enter_*",
                      "-p", ",".join(map(str, pids))]
        spy = subprocess.Popen(tracer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
        counted = bg.run_wrk(url, key, args.duration, args.connections, 1)
        spy.send_signal(signal.SIGINT)  # both tracers print their counts and detach
        spy.wait(30)
        names = thread_names(pids)
    n = timed.rps * args.duration
    per = {k: (after[k] - before[k]) / n for k in after}
    print(f"\n{variant}: {timed.rps:.0f} req/s, errors {timed.errors}; per request: CPU user "
          f"{per['user'] * 1e6:.1f} us, system {per['system'] * 1e6:.1f} us; context "
          f"switches {per['switches']:.3f}, preempted {per['preempted']:.3f}; threads "
          f"{len(names)} ({', '.join(sorted(set(names)))})")
    requests = counted.rps * args.duration
    calls = parse_counts(out.read_text(), args.strace)
    print(f"  system calls per request: {sum(calls.values()) / requests:.2f}")
    for name, count in sorted(calls.items(), key=lambda kv: -kv[1]):
        if count / requests >= 0.005:
            print(f"    {name:<22} {count / requests:7.3f}")


def instructions(variant: str, args: argparse.Namespace, folder: Path, upstream_port: int,
                 db: str, key: str) -> None:
    port = bg.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = server_cmd(variant, folder, port, upstream_port, db)
    if variant == "nginx":  # one process: callgrind follows no fork
        conf = Path(cmd[2])
        conf.write_text("master_process off;\n" + conf.read_text())
    out = folder / f"callgrind.{variant}"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
           f"--callgrind-out-file={out}.%p", *cmd]
    with bg.process(cmd, port, folder / f"{variant}.log", timeout=VALGRIND_START) as proc:
        control = ["callgrind_control"]
        subprocess.run([*control, "-i", "on", str(proc.pid)], capture_output=True, check=True)
        bg.run_wrk(url, key, 4, args.connections, 1)  # warm-up, instrumented
        subprocess.run([*control, "-z", str(proc.pid)], capture_output=True, check=True)
        result = bg.run_wrk(url, key, args.duration, args.connections, 1)
        subprocess.run([*control, "-d", "measured", str(proc.pid)], capture_output=True,
                       check=True)
    # One dump per thread, callgrind.VARIANT.PID.1-NN; -01 is the main thread.
    dumps = sorted(folder.glob(f"callgrind.{variant}.*"))
    measured = [d for d in dumps if "Trigger: dump measured" in
                d.read_text(errors="replace")[:4000]]
    n = result.rps * args.duration
    if not n:
        print(f"{variant}: no request completed under callgrind (wrk's errors "
              f"{result.errors}): a machine this busy starves the slowed server", flush=True)
        return
    main = [d for d in measured if d.name.endswith("-01")]
    chosen = measured if args.all_threads else main
    total = sum(callgrind_total(d) for d in chosen)
    print(f"{variant}: {n:.0f} requests under callgrind ({result.rps:.0f} req/s, errors "
          f"{result.errors}): {total / n:,.0f} instructions per request, "
          f"{'all ' + str(len(measured)) + ' threads' if args.all_threads else 'main thread'}",
          flush=True)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for d in measured:
            shutil.copy(d, args.keep / d.name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--variants", default="enforce,enforce-direct,no-enforce,nginx,ceiling",
                   help="comma-separated, of: " + ", ".join(bg.VARIANTS))
    p.add_argument("--duration", type=int, default=4, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--strace", action="store_true", help="count with strace, not perf")
    p.add_argument("--instructions", action="store_true",
                   help="instructions per request of the live server, under callgrind")
    p.add_argument("--all-threads", action="store_true",
                   help="with --instructions: every thread's, not the main thread's only")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="with --instructions: keep the callgrind files here")
    args = p.parse_args()
    variants = bg.parse_variants(p, args.variants, bg.VARIANTS)
    tools = ["wrk", "valgrind" if args.instructions else "strace" if args.strace else "perf"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        p.error(f"not installed: {', '.join(missing)}")
    measure = instructions if args.instructions else syscalls
    print(f"the gateway's call path: {bg.BUILD}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="permgate-under-load-") as tmp:
        folder = Path(tmp)
        db, key = bg.setup_store(folder)
        upstream_port = bg.free_port()
        with bg.process([sys.executable, str(bg.HERE / "gateway" / "upstream.py"),
                         str(upstream_port)], upstream_port, folder / "upstream.log"):
            for variant in variants:
                measure(variant, args, folder, upstream_port, db, key)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
