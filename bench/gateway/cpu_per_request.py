"""CPU time of the gateway's proxy path per allowed request, with and without enforcement.

No network and no server: the upstream pool is replaced by one that answers at once, so
what is left is exactly what permgate adds per request (auth, install lookup, decision,
metrics, log line, header handling). Complements bench_gateway.py, whose wrk figures also
carry the server, the sockets and the machine's noise.

    .venv/bin/python bench/gateway/cpu_per_request.py [--native] [--api]
        [--builds [ROUNDS]] [--instructions [CALLS] [--tree DIR]]

`--native`: only the whole native call (what `bench gateway`'s enforcing variant runs) and
`permgate authz`'s whole check (the same over its check listener).
`--builds [ROUNDS]`: the whole native call and the authz check on the compiled and the
pure-Python call path (tools/build_compiled.py; PERMGATE_PURE=1), side by side: each round
runs both, in turns, in child processes; the median of the rounds per build and their ratio.
`--instructions [CALLS]`: instructions per whole native call (enforcing, access log on and
off), counted by valgrind's callgrind over CALLS calls (default 2,000) run inside one
`functools.reduce` (the only code counted: `--toggle-collect`), so the figure does not
depend on the machine's load. Compiled and pure, and with `--tree DIR` also another
checkout's call path (its `src` and `bench` first on sys.path, this script's code), e.g.
the commit before the compiled path: `git archive d9f5a39 | tar -x -C DIR`.
Also counted: the same call with enforcement off (`NoEnforce`, bench/gateway/variants.py)
and the Python ceiling's whole call (bench/gateway/ceiling.py on the same fake sockets);
`--keep DIR` keeps the callgrind files (for `callgrind_annotate --inclusive=yes`).
`--api`: also the same calls through the example API's profile (`--api DIR`, its own tables
and edge: Acme-Account, problem+json), beside Stripe's, in the same run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

# `--count N --tree DIR` (a child of `--instructions`): another checkout's permgate and
# bench, this script's code.
_CHILD_TREE = "--count" in sys.argv and "--tree" in sys.argv
_TREE = (Path(sys.argv[sys.argv.index("--tree") + 1]).resolve() if _CHILD_TREE
         else Path(__file__).resolve().parents[2])
sys.path.insert(0, str(_TREE))
if _CHILD_TREE:
    sys.path.insert(0, str(_TREE / "src"))

from bench.bench_gateway import ACCOUNT, setup_store  # noqa: E402 - after the sys.path set-up
from bench.gateway.variants import build_variant  # noqa: E402 - after the sys.path set-up

from permgate.gateway.config import Settings  # noqa: E402 - after the sys.path set-up


class _Answer:
    def __init__(self) -> None:
        self.status = 200
        self.headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
        self.complete = True

    def take_all(self) -> bytes:
        return b"{}"


class _NoReply:
    refused: int | None = None  # a status >= 400 sent: the bench would time a refusal

    async def send(self, status: int, *args: Any) -> None:
        if status >= 400:
            self.refused = status

    async def start(self, *args: Any) -> None:
        pass

    async def write(self, chunk: bytes) -> None:
        pass

    async def end(self) -> None:
        pass


class _InstantUpstream:
    async def request(self, *args: Any, **kwargs: Any) -> _Answer:
        return _Answer()

    def close(self) -> None:
        pass


async def _measure(db: str, key: str, enforce: bool, log: bool, n: int,
                   api: str | None = None) -> float:
    from permgate.gateway import BUILD

    if BUILD == "compiled":  # its FullPath takes a real Pool only (declared types checked)
        raise SystemExit("the proxy path alone swaps the upstream pool for a stand-in: run "
                         "it with PERMGATE_PURE=1, or use --native")
    app = build_variant(Settings(db=db, upstream="http://127.0.0.1:9", api=api,
                                 upstream_key="sk_test_bench", access_log=log), enforce)
    await app.startup()
    app.log.stream = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
    assert app.full is not None
    app.full.pool = _InstantUpstream()  # type: ignore[assignment]
    headers = [(b"host", b"gw"), (b"authorization", b"Bearer " + key.encode()),
               (b"acme-account" if api else b"stripe-account", ACCOUNT.encode()),
               (b"user-agent", b"bench")]

    async def read() -> bytes:
        return b""

    reply = _NoReply()
    proxy = app.proxy
    for _ in range(n // 10):  # warm the caches
        await proxy("GET", b"/v1/customers", b"limit=1", headers, read, reply)
    if reply.refused is not None:
        raise RuntimeError(f"the measured call is refused ({reply.refused}): not the allowed "
                           "path")
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            await proxy("GET", b"/v1/customers", b"limit=1", headers, read, reply)
        best = min(best, (time.process_time() - started) / n * 1e6)
    await app.shutdown()
    return best


def main() -> int:
    """The proxy path alone (no server, an upstream that answers at once)."""
    with tempfile.TemporaryDirectory(prefix="permgate-cpu-") as tmp:
        db, key = setup_store(Path(tmp))
        for log in (True, False):
            on = uvloop.run(_measure(db, key, True, log, 20_000))
            off = uvloop.run(_measure(db, key, False, log, 20_000))
            print(f"access log {'on ' if log else 'off'}: enforce {on:5.1f} us, "
                  f"no enforcement {off:5.1f} us -> enforcement {on - off:4.1f} us/request")
    return 0




# -- the whole native path: server protocol, fast path, pool, over fake sockets -----------

UPSTREAM_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
                   b"request-id: req_up\r\n\r\n{}")


class _FakeTransport:
    """A socket that keeps count of writes and the last one."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def _measure_native(db: str, key: str, enforce: bool, log: bool, n: int,
                          api: str | None = None, count: int = 0) -> float:
    """Every line of Python one call runs on the native server (parsing callbacks, the fast
    path's admission, the upstream exchange, the answer, metrics, the log line): the client
    connection is fed the request, the upstream connection the answer, as the kernel would
    hand them over. Nothing of the kernel's is counted."""
    import asyncio

    from permgate.gateway.native import HttpConn, NativeServer
    from permgate.gateway.upstream import _Conn

    # `api` only when given: a `--tree` checkout from before `--api` has no such setting.
    app = build_variant(Settings(db=db, upstream="http://127.0.0.1:9",
                                 **({"api": api} if api else {}),
                                 upstream_key="sk_test_bench", access_log=log), enforce)
    await app.startup()
    app.log.stream = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
    assert app.pool is not None
    upstream = _Conn(app.pool)
    up = _FakeTransport()
    upstream.connection_made(up)  # type: ignore[arg-type]
    upstream.keep_alive = True
    app.pool.open = 1
    app.pool.release(upstream)
    conn = HttpConn(NativeServer(app))
    client = _FakeTransport()
    conn.connection_made(client)  # type: ignore[arg-type]
    request = (b"GET /v1/customers?limit=1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n"
               b"Authorization: Bearer " + key.encode()
               + (b"\r\nAcme-Account: " if api else b"\r\nStripe-Account: ")
               + ACCOUNT.encode() + b"\r\n\r\n")

    # The first call misses the caches and takes the full path (a store lookup on a thread).
    conn.data_received(request)
    while not up.writes:
        await asyncio.sleep(0.001)
    upstream.data_received(UPSTREAM_ANSWER)
    while not client.writes:
        await asyncio.sleep(0.001)

    def one() -> None:
        conn.data_received(request)
        upstream.data_received(UPSTREAM_ANSWER)

    for _ in range(n // 10):
        one()
    assert client.last.startswith(b"HTTP/1.1 200"), client.last[-300:]
    if count:
        _counted(one, count)
        assert client.writes == n // 10 + 1 + count
        await app.shutdown()
        return 0.0
    best = float("inf")
    for _ in range(5):
        before = client.writes
        started = time.process_time()
        for _ in range(n):
            one()
        best = min(best, (time.process_time() - started) / n * 1e6)
        assert client.writes - before == n, "each call answered, in one write"
    await app.shutdown()
    return best


def _counted(one: Any, count: int) -> None:
    """`count` calls of `one` inside functools.reduce: callgrind counts only in there
    (`--toggle-collect=functools_reduce`, main_instructions)."""
    import functools

    functools.reduce(lambda _, __: one(), range(count), None)


def _count_ceiling(count: int) -> None:
    """The Python ceiling's (bench/gateway/ceiling.py) whole proxied call, fed as
    `_measure_native` feeds the gateway: the client connection the request, its upstream
    connection the answer, over the same fake sockets; `count` calls inside `_counted`."""
    from bench.gateway.ceiling import Client, Upstream

    client = Client(9)
    down = _FakeTransport()
    client.transport = down  # type: ignore[assignment]
    up = Upstream(client)
    up_transport = _FakeTransport()
    up.connection_made(up_transport)  # type: ignore[arg-type]
    client.up = up
    request = (b"GET /v1/customers?limit=1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n"
               b"Authorization: Bearer sk_test_x\r\nStripe-Account: " + ACCOUNT.encode()
               + b"\r\n\r\n")

    def one() -> None:
        client.data_received(request)
        up.data_received(UPSTREAM_ANSWER)

    for _ in range(200):
        one()
    _counted(one, count)
    assert down.writes == up_transport.writes == 200 + count
    assert down.last.startswith(b"HTTP/1.1 200"), down.last


async def _measure_authz(db: str, key: str, log: bool, n: int) -> float:
    """`permgate authz`'s whole check, as Envoy asks it (a bodiless GET with
    `content-length: 0`), over the check listener of the native server: parsing, the fast
    path's admission, the allow answer's headers (removals included), metrics, the log."""
    import asyncio

    from permgate.gateway import authz
    from permgate.gateway.native import HttpConn, NativeServer

    gateway = authz.build(Settings(db=db, upstream_key="sk_test_bench", access_log=log))
    await gateway.startup()
    gateway.log.stream = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
    check, _ = gateway.listeners()
    conn = HttpConn(NativeServer(check))
    client = _FakeTransport()
    conn.connection_made(client)  # type: ignore[arg-type]
    request = (b"GET /v1/customers?limit=1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n"
               b"Authorization: Bearer " + key.encode() + b"\r\nStripe-Account: "
               + ACCOUNT.encode() + b"\r\nx-request-id: 1\r\nx-forwarded-proto: http\r\n"
               b"content-length: 0\r\n\r\n")
    conn.data_received(request)  # the first misses the caches (the store, on a thread)
    while not client.writes:
        await asyncio.sleep(0.001)
    for _ in range(n // 10):
        conn.data_received(request)
    if not client.last.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the measured check is refused: {client.last[:300]!r}")
    best = float("inf")
    for _ in range(5):
        before = client.writes
        started = time.process_time()
        for _ in range(n):
            conn.data_received(request)
        best = min(best, (time.process_time() - started) / n * 1e6)
        assert client.writes - before == n, "each check answered, in one write"
    await gateway.shutdown()
    return best


def main_native() -> None:
    from permgate import gateway

    print(f"the gateway's call path: {getattr(gateway, 'BUILD', 'pure')}")
    with tempfile.TemporaryDirectory(prefix="permgate-cpu-") as tmp:
        db, key = setup_store(Path(tmp))
        for log in (True, False):
            on = uvloop.run(_measure_native(db, key, True, log, 50_000))
            off = uvloop.run(_measure_native(db, key, False, log, 50_000))
            print(f"native server, whole call, access log {'on ' if log else 'off'}: enforce "
                  f"{on:5.1f} us, no enforcement {off:5.1f} us")
        for log in (True, False):
            check = uvloop.run(_measure_authz(db, key, log, 50_000))
            print(f"permgate authz, whole check, access log {'on ' if log else 'off'}: "
                  f"{check:5.1f} us")


def main_count(calls: int) -> None:
    """The whole native call, enforcing (or with `--no-enforce` not), `calls` times per
    access-log setting inside `_counted` (the child of main_instructions, under callgrind);
    with `--ceiling` the Python ceiling's call instead."""
    from permgate import gateway

    if "--ceiling" in sys.argv:
        print("the gateway's call path: ceiling")
        _count_ceiling(calls)
        return
    print(f"the gateway's call path: {getattr(gateway, 'BUILD', 'pure')}")
    with tempfile.TemporaryDirectory(prefix="permgate-cpu-") as tmp:
        db, key = setup_store(Path(tmp))
        log = "--log-off" not in sys.argv
        enforce = "--no-enforce" not in sys.argv
        uvloop.run(_measure_native(db, key, enforce, log, 200, count=calls))


def main_instructions(calls: int) -> None:
    import re
    import shutil
    import subprocess

    from permgate import envvars

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    # (name, PERMGATE_PURE, the child's flags, the access-log settings counted)
    both = ("on", "off")
    runs: list[tuple[str, str, list[str], tuple[str, ...]]] = [
        ("this tree", "", [], both), ("this tree", "1", [], both),
        ("this tree, no enforcement", "", ["--no-enforce"], both),
        ("the Python ceiling (bench/gateway/ceiling.py)", "", ["--ceiling"], ("none",))]
    trees = [a for i, a in enumerate(sys.argv) if i and sys.argv[i - 1] == "--tree"]
    runs += [(f"tree {tree}", "", ["--tree", tree], both) for tree in trees]
    # `--keep DIR`: the callgrind files stay there, for callgrind_annotate --inclusive=yes.
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    print(f"instructions per whole call, enforcing unless said (callgrind, {calls} calls):")
    for n, (name, pure, extra, logs) in enumerate(runs):
        figures = []
        build = "?"
        for log in logs:
            with tempfile.TemporaryDirectory(prefix="permgate-cg-") as tmp:
                out = f"{keep or tmp}/cg.{n}.{log}.out"
                cmd = [valgrind, "--tool=callgrind", "--toggle-collect=functools_reduce",
                       f"--callgrind-out-file={out}", sys.executable, __file__,
                       "--count", str(calls), *extra, *(["--log-off"] if log == "off" else [])]
                env = {**os.environ, envvars.PURE.name: pure, "PYTHONHASHSEED": "0"}
                run = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if run.returncode != 0:
                    raise SystemExit(f"{name}: {run.stderr[-2000:]}")
                m = re.search(r"Collected : (\d+)", run.stderr)
                assert m is not None, run.stderr[-2000:]
                figures.append(f"access log {log} {int(m.group(1)) / calls:9,.0f}")
                b = re.search(r"call path: (\w+)", run.stdout)
                build = b.group(1) if b else "?"
        print(f"  {name}, {build}: " + ", ".join(figures))


def main_builds(rounds: int) -> None:
    import re
    import statistics
    import subprocess

    from permgate import envvars

    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for build, pure in (("compiled", ""), ("pure", "1")):
            out = subprocess.run([sys.executable, __file__, "--native"], check=True,
                                 capture_output=True, text=True,
                                 env={**os.environ, envvars.PURE.name: pure}).stdout
            if f"call path: {build}" not in out:
                raise SystemExit(f"the {build} build did not run (is it built and current? "
                                 "tools/build_compiled.py)")
            for log, on, off in re.findall(
                    r"access log (on|off)\s*: enforce\s+([\d.]+) us, no enforcement\s+([\d.]+)",
                    out):
                figures.setdefault((build, log), []).append(float(on))
                figures.setdefault((build + " no-enforce", log), []).append(float(off))
            for log, check in re.findall(
                    r"authz, whole check, access log (on|off)\s*:\s+([\d.]+) us", out):
                figures.setdefault((build + " authz", log), []).append(float(check))
    for title, kind in (("whole native call, enforcing", ""),
                        ("permgate authz, whole check", " authz")):
        print(f"{title}, median of {rounds} interleaved round(s):")
        for log in ("on", "off"):
            c = statistics.median(figures.get(("compiled" + kind, log), [0.0]))
            p = statistics.median(figures.get(("pure" + kind, log), [0.0]))
            print(f"  access log {log:3}: compiled {c:5.1f} us, pure {p:5.1f} us"
                  + (f" -> compiled/pure {c / p:.2f}" if p else ""))


def main_api() -> None:
    """Stripe's profile and the example API's (`--api`), the same call, the same run."""
    from bench.bench_gateway import api_dir

    with tempfile.TemporaryDirectory(prefix="permgate-cpu-") as tmp:
        db, key = setup_store(Path(tmp))
        acme = str(api_dir(Path(tmp)))
        # The own API's database is its own (the store records its API).
        api_db, api_key = setup_store(Path(tmp), Path(acme))
        for log in (True, False):
            stripe = uvloop.run(_measure(db, key, True, log, 20_000))
            own = uvloop.run(_measure(api_db, api_key, True, log, 20_000, acme))
            print(f"proxy path, access log {'on ' if log else 'off'}: Stripe's profile "
                  f"{stripe:5.1f} us, own API {own:5.1f} us ({own / stripe:.2f}x)")
            stripe = uvloop.run(_measure_native(db, key, True, log, 50_000))
            own = uvloop.run(_measure_native(api_db, api_key, True, log, 50_000, acme))
            print(f"native whole call, access log {'on ' if log else 'off'}: Stripe's profile "
                  f"{stripe:5.1f} us, own API {own:5.1f} us ({own / stripe:.2f}x)")


if __name__ == "__main__":
    import sys as _sys

    def _number(flag: str, default: int) -> int:
        rest = _sys.argv[_sys.argv.index(flag) + 1:]
        return int(rest[0]) if rest and rest[0].isdigit() else default

    if "--count" in _sys.argv:
        main_count(_number("--count", 2000))
        raise SystemExit(0)
    if "--instructions" in _sys.argv:
        main_instructions(_number("--instructions", 2000))
        raise SystemExit(0)
    if "--builds" in _sys.argv:
        main_builds(_number("--builds", 3))
        raise SystemExit(0)
    if "--api" in _sys.argv:
        main_api()
    else:
        if "--native" not in _sys.argv:
            main()
        main_native()
