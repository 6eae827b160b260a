"""Benchmark: what hostile connections cost the gateway (issue 20), before and after.

    scripts/bench connections [--pythonpath LABEL=SRC ...] [--phases crlf,slow,unread,flood]
        [--idle 20000] [--slow 300] [--unread 20] [--flood-rate 300] [--hold 45]
        [--duration 10] [--json FILE]

Starts `permgate serve` (native server, one worker, settings as shipped) in front of a
small upstream on 127.0.0.1, once per phase and per `--pythonpath` (the same script
measures several checkouts in one window, interleaved: e.g. `--pythonpath
base=/tmp/base/src --pythonpath new=src`; the gateway process gets `PYTHONPATH=SRC`, so
it imports that tree's permgate; default: this tree). The gateway's open-file limit, and
the bench's, are raised to the hard limit. Phases, each bounded in time and count:

- `crlf`: `--idle` connections (over several client processes, each from its own
  loopback address) that send `\\r\\n` at once and every 20 s, held `--hold` seconds; an
  installed app's GET on a new connection probes the gateway every 5 s;
- `slow`: `--slow` POSTs to the mounted token endpoint (`/oauth/token`), each announcing
  1 MiB and sending it 16 KiB every 0.5 s;
- `unread`: `--unread` clients that ask for an 8 MiB answer and never read it (small
  receive buffers), held `--hold` seconds; also reports the kernel's TCP memory
  (/proc/net/sockstat, the whole machine);
- `flood`: an installed app's allowed GETs (8 keep-alive connections, `--duration`
  seconds) alone, then during a `--flood-rate`/s flood of unauthenticated POSTs to
  `/v1/oauth/token` (a new connection each), alternating three times; the ratio is the
  target (within 10 %). As a control, the same flood is also sent to a stand-in server
  that answers 401 at once (not the gateway): `ratio_control` is what the flood's sender
  and its connections alone cost the app on this machine (the bench, the gateway and the
  upstream share its cores), and `gateway_cpu_us` is the gateway's CPU per app GET alone,
  during the control and during the flood (the flood's own cost, spread over the GETs).

Each phase samples the gateway process's resident memory (VmRSS) and open descriptors
(/proc/PID/fd) every second and reports before, peak and end. Loopback only; not a test:
figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway import ACCOUNT, BIN, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BIG = 8 * 1024 * 1024
SMALL = (b'{"object":"list","url":"/v1/customers","has_more":false,"data":[{"id":"cus_bench",'
         b'"object":"customer"}]}\n')
APP_GET = "/v1/customers?limit=1"


# -- the upstream: small answers, and 8 MiB for /v1/customers/cus_big ----------------------

def _upstream(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b"x" * BIG if b"cus_big" in head.split(b"\r\n", 1)[0] else SMALL
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the gateway process and its figures ---------------------------------------------------

def raise_nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tcp_mem_mb() -> float:
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return 0.0


@dataclass
class Sampler:
    pid: int
    samples: list[tuple[float, float, int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()
        # The first sample before the phase starts anything.
        self.samples.append((0.0, rss_mb(self.pid), fds(self.pid), tcp_mem_mb()))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, rss_mb(self.pid),
                                 fds(self.pid), tcp_mem_mb()))
            self._stop.wait(1.0)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, rss_mb(self.pid), fds(self.pid),
                             tcp_mem_mb()))
        first, last = self.samples[0], self.samples[-1]
        return {
            "rss_mb": [round(first[1], 1), round(max(s[1] for s in self.samples), 1),
                       round(last[1], 1)],
            "fds": [first[2], max(s[2] for s in self.samples), last[2]],
            "tcp_mem_mb": [round(first[3], 1), round(max(s[3] for s in self.samples), 1),
                           round(last[3], 1)],
        }


@dataclass
class Env:
    folder: Path
    db: str
    key: str
    key_file: Path
    upstream: str


@contextmanager
def gateway(env: Env, src: str, label: str, phase: str) -> Iterator[tuple[int, int]]:
    port = free_port()
    log = env.folder / f"gateway-{label}-{phase}.log"
    cmd = [str(BIN / "permgate"), "serve", "--port", str(port), "--db", env.db,
           "--upstream", env.upstream, "--upstream-key-file", str(env.key_file)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=raise_nofile,
                                env={**os.environ, "PYTHONPATH": src})
    try:
        wait_port(port, proc)
        # Warm: the app's caller cached, an upstream connection open.
        for _ in range(3):
            probe(port, env.key)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def app_request(key: str, target: str = APP_GET, close: bool = True) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Stripe-Account: {ACCOUNT}\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n").encode()


def probe(port: int, key: str, timeout: float = 5.0) -> str:
    """An installed app's GET on a new connection: its status, or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(app_request(key))
            out = b""
            while data := s.recv(65536):
                out += data
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    return out[9:12].decode() if out[9:12].isdigit() else "closed"


def probes_every(port: int, key: str, period: float, until: float) -> dict[str, int]:
    got: dict[str, int] = {}
    while time.monotonic() < until:
        status = probe(port, key)
        got[status] = got.get(status, 0) + 1
        time.sleep(max(0.0, min(period, until - time.monotonic())))
    return got


# -- phase: idle connections that send CRLF -------------------------------------------------

def _crlf_client(port: int, count: int, source: str, hold: float, ready: Any) -> None:
    raise_nofile()
    socks: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"\r\n")
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    ready.put(len(socks))
    end = time.monotonic() + hold + 5  # past the parent's last sample
    while time.monotonic() < end:
        time.sleep(min(20.0, max(0.0, end - time.monotonic())))
        for s in socks:
            with suppress(OSError):
                s.send(b"\r\n")
    for s in socks:
        s.close()


def phase_crlf(port: int, pid: int, args: argparse.Namespace, env: Env, run: int
               ) -> dict[str, Any]:
    procs = max(1, -(-args.idle // 5000))
    per = args.idle // procs
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    sampler = Sampler(pid)
    t0 = time.monotonic()
    workers = [ctx.Process(target=_crlf_client, args=(
        port, per, f"127.{run % 250 + 1}.{i + 1}.1", args.hold, ready)) for i in range(procs)]
    for w in workers:
        w.start()
    opened = sum(ready.get(timeout=args.hold + 120) for _ in workers)
    opened_at = time.monotonic() - t0
    got = probes_every(port, env.key, 5.0, t0 + args.hold)
    held = {"fds_at_hold_end": fds(pid), "rss_mb_at_hold_end": round(rss_mb(pid), 1)}
    figures = sampler.stop()
    for w in workers:
        w.join(60)
    return {"connected": opened, "connect_seconds": round(opened_at, 1), "probes": got,
            **held, **figures}


# -- phase: slow 1 MiB bodies to a mounted path --------------------------------------------

async def _slow_body(port: int, hold: float) -> str:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        return type(e).__name__
    size = 1 << 20
    writer.write(b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: %d\r\n\r\n" % size)
    sent = 0
    chunk = b"a" * 16384
    end = time.monotonic() + hold
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        while sent < size and time.monotonic() < end and not answer.done():
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
            await asyncio.sleep(0.5)
        out = await asyncio.wait_for(answer, max(0.1, end - time.monotonic()))
        return out[9:12].decode() if out[9:12].isdigit() else "closed"
    except TimeoutError:
        return "no answer"
    except ConnectionError:
        return "reset"
    finally:
        answer.cancel()
        writer.close()


def phase_slow(port: int, pid: int, args: argparse.Namespace, env: Env, run: int
               ) -> dict[str, Any]:
    sampler = Sampler(pid)

    async def all_of() -> list[str]:
        return await asyncio.gather(*(_slow_body(port, args.hold) for _ in range(args.slow)))

    results = asyncio.run(all_of())
    got: dict[str, int] = {}
    for r in results:
        got[r] = got.get(r, 0) + 1
    return {"answers": got, "held_mb": round(max(s[1] for s in sampler.samples)
                                            - sampler.samples[0][1], 1), **sampler.stop()}


# -- phase: clients that never read a large answer -----------------------------------------

def phase_unread(port: int, pid: int, args: argparse.Namespace, env: Env, run: int
                 ) -> dict[str, Any]:
    sampler = Sampler(pid)
    socks = []
    for _ in range(args.unread):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(app_request(env.key, "/v1/customers/cus_big", close=False))
        socks.append(s)
    time.sleep(args.hold)
    # Which ones the gateway has given up on: a read sees its close (or reset) after the
    # buffered part.
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(1 << 20):
                pass
        except BlockingIOError:
            continue  # still open, still unread
        except OSError:
            pass
        closed += 1
    mid = sampler.stop()
    for s in socks:
        s.close()
    return {"closed_by_gateway": closed, "probe_after": probe(port, env.key), **mid}


# -- phase: an app's throughput during an unauthenticated token flood -----------------------

def _load(port: int, key: str, seconds: float, conns: int, out: Any) -> None:
    async def one(deadline: float) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        req = app_request(key, close=False)
        n = 0
        while time.monotonic() < deadline:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                n += 1
        writer.close()
        return n

    async def main() -> int:
        deadline = time.monotonic() + seconds
        return sum(await asyncio.gather(*(one(deadline) for _ in range(conns))))

    out.put(asyncio.run(main()))


def _flood(port: int, rate: float, seconds: float, out: Any) -> None:
    body = b"grant_type=authorization_code&code=ac_bogus"
    req = (b"POST /v1/oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%b"
           % (len(body), body))
    statuses: dict[str, int] = {}

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(req)
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            status = data[9:12].decode() if data[9:12].isdigit() else "closed"
        except (OSError, TimeoutError) as e:
            status = type(e).__name__
        statuses[status] = statuses.get(status, 0) + 1

    async def main() -> None:
        tasks = []
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate) + 1
            while sent < due:
                tasks.append(asyncio.ensure_future(one()))
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    out.put(statuses)


def _stand_in(port: int) -> None:
    """The control's flood target: reads a request, answers 401 and closes, at once."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = head.lower().split(b"content-length: ", 1)[-1].split(b"\r\n", 1)[0]
            await reader.readexactly(int(length) if length.isdigit() else 0)
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n"
                         b"connection: close\r\n\r\n{}")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase_flood(port: int, pid: int, args: argparse.Namespace, env: Env, run: int
                ) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    sampler = Sampler(pid)
    stand_in_port = free_port()
    stand_in = ctx.Process(target=_stand_in, args=(stand_in_port,), daemon=True)
    stand_in.start()
    rates: dict[str, list[float]] = {"alone": [], "control": [], "flood": []}
    cpu: dict[str, list[float]] = {"alone": [], "control": [], "flood": []}
    flood_statuses: dict[str, int] = {}
    try:
        for _ in range(3):
            for kind in ("alone", "control", "flood"):
                q = ctx.Queue()
                load = ctx.Process(target=_load, args=(port, env.key, args.duration, 8, q))
                flood = None
                fq = ctx.Queue()
                if kind != "alone":
                    target = port if kind == "flood" else stand_in_port
                    flood = ctx.Process(target=_flood, args=(target, args.flood_rate,
                                                             args.duration, fq))
                    flood.start()
                before = _cpu_seconds(pid)
                load.start()
                n = q.get(timeout=args.duration + 60)
                load.join(30)
                if flood is not None:
                    answers = fq.get(timeout=60)
                    if kind == "flood":
                        for k, v in answers.items():
                            flood_statuses[k] = flood_statuses.get(k, 0) + v
                    flood.join(30)
                rates[kind].append(n / args.duration)
                cpu[kind].append((_cpu_seconds(pid) - before) / n * 1e6 if n else 0.0)
    finally:
        stand_in.terminate()
    mid = {k: sorted(v)[1] for k, v in rates.items()}
    alone = mid["alone"]
    return {"rps_alone": round(alone, 1), "rps_flood": round(mid["flood"], 1),
            "ratio": round(mid["flood"] / alone, 3) if alone else 0.0,
            "rps_control": round(mid["control"], 1),
            "ratio_control": round(mid["control"] / alone, 3) if alone else 0.0,
            "gateway_cpu_us": {k: round(sorted(v)[1], 1) for k, v in cpu.items()},
            "flood_answers": flood_statuses, **sampler.stop()}


PHASES: dict[str, Callable[[int, int, argparse.Namespace, Env, int], dict[str, Any]]] = {
    "crlf": phase_crlf, "slow": phase_slow, "unread": phase_unread, "flood": phase_flood,
}


def tree_store(folder: Path, src: str) -> tuple[str, str]:
    """`setup_store` run by the tree at `src` (its own migrations): (db url, app key)."""
    folder.mkdir(parents=True)
    script = ("import json, sys; from pathlib import Path; "
              "from bench.bench_gateway import setup_store; "
              "print(json.dumps(setup_store(Path(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", script, str(folder)], check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}).stdout
    db, key = json.loads(out.strip().splitlines()[-1])
    return str(db), str(key)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pythonpath", action="append", default=[], metavar="LABEL=SRC",
                   help="a checkout's src folder to run the gateway from (repeatable)")
    p.add_argument("--phases", default="crlf,slow,unread,flood")
    p.add_argument("--idle", type=int, default=20_000)
    p.add_argument("--slow", type=int, default=300)
    p.add_argument("--unread", type=int, default=20)
    p.add_argument("--flood-rate", type=float, default=300.0)
    p.add_argument("--hold", type=float, default=45.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    trees = [tuple(x.split("=", 1)) for x in args.pythonpath] or [("this", str(ROOT / "src"))]
    phases = [x for x in args.phases.split(",") if x]
    for name in phases:
        if name not in PHASES:
            p.error(f"unknown phase {name!r}; phases: {', '.join(PHASES)}")
    hard = raise_nofile()
    print(f"open-file limit (bench and gateway): {hard}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="permgate-bench-conn-") as tmp:
        folder = Path(tmp)
        key_file = folder / "upstream-key"
        key_file.write_text("sk_test_bench_upstream\n")
        up_port = free_port()
        up = multiprocessing.get_context("fork").Process(target=_upstream, args=(up_port,),
                                                         daemon=True)
        up.start()
        # A database per tree, made by that tree's own code: an older checkout refuses a
        # database a newer one migrated past its head.
        envs = {}
        for label, src in trees:
            db, key = tree_store(folder / label, str(Path(src).resolve()))
            envs[label] = Env(folder, db, key, key_file, f"http://127.0.0.1:{up_port}")
        run = 0
        try:
            for name in phases:  # interleaved: each phase on every tree before the next
                for label, src in trees:
                    run += 1
                    env = envs[label]
                    with gateway(env, str(Path(src).resolve()), label, name) as (port, pid):
                        print(f"[{name}] {label}: running", flush=True)
                        r = PHASES[name](port, pid, args, env, run)
                    results.setdefault(name, {})[label] = r
                    print(f"[{name}] {label}: {json.dumps(r)}", flush=True)
        finally:
            up.terminate()
    print("\nsummary (rss_mb, fds, tcp_mem_mb: before, peak, end):")
    for name, by_tree in results.items():
        for label, r in by_tree.items():
            print(f"  {name:7} {label:8} {json.dumps(r)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
