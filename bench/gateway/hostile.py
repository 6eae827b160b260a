"""What unauthenticated clients can make a gateway hold or lose (issue 20, items 2, 3, 8).

    .venv/bin/python bench/gateway/hostile.py padded|slow|flood [--rounds N]

One enforcing gateway (`bench/gateway/variants.py enforce`, the native server, one worker)
in front of the benchmark's trivial upstream, on a fresh SQLite store with one installed
app; the gateway's RSS is its worker processes' VmRSS from /proc.

- `padded`: 9,900 allowed GETs, each with `Stripe-Account` padded by ~14 KB of distinct
  whitespace: RSS before and after.
- `slow`: 300 connections each start a chunked POST to the token endpoint and send ~900 KB
  of it, then hold; RSS while they hold and after they closed.
- `flood`: an installed app's allowed GETs per second (8 connections, 5 s) with and
  without 300 unauthenticated `POST /v1/oauth/token` a second beside them, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.bench_gateway import ACCOUNT, HERE, free_port, process, setup_store


def rss_kb(pid: int) -> int:
    """VmRSS of `pid` and its children (the native workers), in KiB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Pid", "").strip() == str(pid) or fields.get("PPid", "").strip() == \
                str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


async def answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return head


def get(key: str, account: bytes) -> bytes:
    return (b"GET /v1/customers HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
            + key.encode() + b"\r\nStripe-Account: " + account + b"\r\n\r\n")


async def padded(port: int, key: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(9_900):
        pad = b" " * i + b"\t" + b" " * (14_000 - i)  # distinct: where its tab is
        writer.write(get(key, ACCOUNT.encode() + pad))
        head = await answer(reader)
        assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


async def slow(port: int, held: list[asyncio.StreamWriter]) -> None:
    chunk = b"a" * 16_384
    for _ in range(300):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/oauth/token HTTP/1.1\r\nHost: gw\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(55):  # ~900 KB, never the last chunk
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        with contextlib.suppress(ConnectionError):  # refused early: it may close
            await writer.drain()
        held.append(writer)


async def flood(port: int, seconds: float) -> None:
    """300 unauthenticated token-endpoint POSTs a second, one connection, for `seconds`."""
    stop = time.monotonic() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    post = (b"POST /v1/oauth/token HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n")
    sent = 0
    started = time.monotonic()
    while time.monotonic() < stop:
        for _ in range(int((time.monotonic() - started) * 300) - sent):
            writer.write(post)
            head = await answer(reader)
            assert head.startswith(b"HTTP/1.1 401"), head
            sent += 1
        await asyncio.sleep(0.005)
    writer.close()


async def calls_per_second(port: int, key: str, seconds: float, flooded: bool) -> float:
    """Allowed GETs a second over 8 connections; with `flooded`, beside a flood sent from
    a process of its own (so the load's client does not share its CPU)."""
    done = 0
    flooder = None
    if flooded:
        # Started (its imports done, the flood on) before the window, and ending after it.
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "_flood", "--port", str(port),
            "--seconds", str(seconds + 4))
        await asyncio.sleep(2)
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = get(key, ACCOUNT.encode())
        while time.monotonic() < stop:
            writer.write(request)
            await answer(reader)
            done += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(8)))
    if flooder is not None:
        assert await flooder.wait() == 0
    return done / seconds


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=("padded", "slow", "flood", "_flood"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int)
    p.add_argument("--seconds", type=float)
    args = p.parse_args()
    if args.scenario == "_flood":  # the flood's own process
        asyncio.run(flood(args.port, args.seconds))
        return 0
    with tempfile.TemporaryDirectory(prefix="permgate-hostile-") as tmp:
        folder = Path(tmp)
        db, key = setup_store(folder)
        key_file = folder / "upstream.key"
        key_file.write_text("sk_test_" + "u" * 64 + "\n")
        up_port, gw_port = free_port(), free_port()
        with process([sys.executable, str(HERE / "gateway" / "upstream.py"), str(up_port)],
                     up_port, folder / "upstream.log"), \
                process([sys.executable, str(HERE / "gateway" / "variants.py"), "enforce",
                         "--port", str(gw_port), "--db", db,
                         "--upstream", f"http://127.0.0.1:{up_port}",
                         "--upstream-key-file", str(key_file)],
                        gw_port, folder / "gateway.log") as gw:
            # Warm: the key, the install, the caller.
            asyncio.run(calls_per_second(gw_port, key, 0.5, False))
            before = rss_kb(gw.pid)
            if args.scenario == "padded":
                asyncio.run(padded(gw_port, key))
                print(f"RSS before {before / 1024:.0f} MB, after 9,900 padded accounts "
                      f"{rss_kb(gw.pid) / 1024:.0f} MB")
            elif args.scenario == "slow":
                async def hold() -> None:
                    held: list[asyncio.StreamWriter] = []
                    await slow(gw_port, held)
                    await asyncio.sleep(2)
                    print(f"RSS before {before / 1024:.0f} MB, with 300 slow bodies held "
                          f"{rss_kb(gw.pid) / 1024:.0f} MB")
                    for w in held:
                        w.close()
                    await asyncio.sleep(12)  # past the discard window of refused bodies

                asyncio.run(hold())
                print(f"RSS after they closed {rss_kb(gw.pid) / 1024:.0f} MB")
            else:
                ratios = []
                for _ in range(args.rounds):
                    quiet = asyncio.run(calls_per_second(gw_port, key, 5, False))
                    loud = asyncio.run(calls_per_second(gw_port, key, 5, True))
                    ratios.append(loud / quiet)
                    print(f"allowed GETs/s: no flood {quiet:7.0f}, with 300/s token-endpoint "
                          f"POSTs {loud:7.0f} ({loud / quiet - 1:+.0%})")
                print(f"median: {statistics.median(ratios) - 1:+.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
