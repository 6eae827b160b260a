"""The Python cost of one proxied call on the native server, in process, without sockets.

The gateway's connection protocol is fed a request as the kernel would hand it over, its
upstream connection the upstream's answer; fake transports keep what each writes. What is
timed is every line of Python a call runs (parsing callbacks, admission, the upstream
exchange, the answer, metrics, the access log), and nothing of the kernel's: the number to
hold beside `bench gateway`'s CPU per request, whose rest is system calls.

    python bench/gateway/python_cost.py [--calls 100000] [--repeat 5] [--no-access-log] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.bench_gateway import ACCOUNT, PATH, setup_store
from bench.gateway.upstream import RESPONSE

from permgate.gateway import native
from permgate.gateway.config import resolve
from permgate.gateway.upstream import _Conn
from permgate.serve import build


class FakeTransport:
    """Keeps the last write; says nothing of the peer."""

    def __init__(self) -> None:
        self.last = b""
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else None

    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool:
        return False


async def run(calls: int, repeat: int, access_log: bool, profile: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="permgate-cost-") as tmp:
        db, key = setup_store(Path(tmp))
        key_file = Path(tmp) / "upstream-key"
        key_file.write_text("sk_test_bench_upstream\n")
        settings = resolve({"db": db, "upstream": "http://127.0.0.1:9",
                            "upstream_key_file": str(key_file),
                            "access_log": access_log}, {})
        gateway = build(settings)
        await gateway.startup()
        gateway.log.stream = io.StringIO()  # lines are still formatted and flushed
        server = native.NativeServer(gateway)
        conn = native.HttpConn(server)
        client = FakeTransport()
        conn.connection_made(client)  # type: ignore[arg-type]
        assert gateway.pool is not None
        up = _Conn(gateway.pool)
        upstream = FakeTransport()
        up.connection_made(upstream)  # type: ignore[arg-type]
        gateway.pool.open += 1
        up.keep_alive = True
        gateway.pool.release(up)  # idle, kept alive: the fast path's connection
        request = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {key}\r\nStripe-Account: {ACCOUNT}\r\n\r\n").encode()

        def one() -> None:
            conn.data_received(request)
            up.data_received(RESPONSE)

        # The first call misses the caches and takes the full path: let it finish.
        conn.data_received(request)
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if upstream.writes:
                break
        up.data_received(RESPONSE)
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if client.writes:
                break
        assert client.last.startswith(b"HTTP/1.1 200"), client.last[-300:]
        for _ in range(1000):  # warm: every cache filled
            one()
        assert client.last.startswith(b"HTTP/1.1 200"), client.last[-300:]
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        runs = []
        for _ in range(repeat):  # the best run: the least disturbed by the machine
            before = client.writes
            t0 = time.perf_counter()
            for _ in range(calls):
                one()
            runs.append(time.perf_counter() - t0)
            assert client.writes - before == calls, "every call answered with one write"
        if prof is not None:
            prof.disable()
        print(f"{min(runs) / calls * 1e6:.2f} us of Python per proxied call (best of "
              f"{repeat} runs of {calls}, access log {'on' if access_log else 'off'})")
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        await gateway.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile the timed calls")
    args = p.parse_args()
    import uvloop

    uvloop.run(run(args.calls, args.repeat, not args.no_access_log, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
