"""One app cannot starve the others of upstream connections (issue 20 item 4): the exchange's
one deadline holds while the answer waits for its reader, and each app holds at most its
share of the pool (`pool_per_app`). The pool over real sockets, then a real gateway process
with two apps: one whose clients never read a large answer, one whose calls must all work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.procs import new_app, run_gateway, wait_until
from tests.test_http1_clients import CLOSE, answer, receiving

from permgate.gateway.upstream import Origin, Pool, UpstreamError
from permgate.store import Store

HUGE = 32 << 20  # far more than the sockets between the processes can buffer


def big_answer(size: int = 4 << 20) -> bytes:
    return answer(200, b"x" * size)


def test_an_answer_not_read_by_its_deadline_is_cut_and_its_connection_freed() -> None:
    async def scenario() -> None:
        async with receiving([[big_answer(), CLOSE], [answer(200, b"next")]]) as rec:
            pool = Pool(Origin(rec.url.removesuffix("/hook")), 1, 2.0, 0.5)
            try:
                resp = await pool.request(b"GET", b"/big", [], b"")
                body = resp.body()
                first = await body.__anext__()  # one chunk, then our reader stops reading
                assert first
                # The deadline passes while nobody iterates: the pool's sweep closes the
                # connection, so its one slot is free for the next call.
                for _ in range(1000):
                    if pool.open == 0:
                        break
                    await asyncio.sleep(0.01)
                assert pool.open == 0
                again = await pool.request(b"GET", b"/next", [], b"")
                assert (again.status, again.take_all()) == (200, b"next")
                with pytest.raises(UpstreamError) as cut:
                    async for _ in body:
                        pass
                assert cut.value.timeout
            finally:
                pool.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_app_holds_at_most_its_share_and_the_others_keep_theirs() -> None:
    async def scenario() -> None:
        scripts = ([[big_answer(), CLOSE] for _ in range(2)]
                   + [[answer(200, b"b")]] * 2 + [[answer(200, b"a")]])
        async with receiving(scripts) as rec:
            pool = Pool(Origin(rec.url.removesuffix("/hook")), 4, 2.0, 10.0, per_owner=2)
            try:
                held = [await pool.request(b"GET", b"/a", [], b"", owner="app_a")
                        for _ in range(2)]
                assert pool.held == {"app_a": 2}
                assert pool.take_idle("app_a") is None  # the fast path defers to the wait
                # app_a's third call waits for one of its own; app_b is served meanwhile.
                third = asyncio.ensure_future(
                    pool.request(b"GET", b"/a", [], b"", owner="app_a"))
                for _ in range(2):
                    got = await pool.request(b"GET", b"/b", [], b"", owner="app_b")
                    assert (got.status, got.take_all()) == (200, b"b")
                assert not third.done() and pool.held == {"app_a": 2}
                held[0].abort()  # one of app_a's comes back: its waiting call goes
                got = await third
                assert got.status == 200 and pool.held == {"app_a": 2}
                # A call that finds no place within its deadline is a timeout naming the
                # share (a shorter deadline for it: app_a's two still hold theirs).
                pool.timeout = 0.2
                with pytest.raises(UpstreamError) as waited:
                    await pool.request(b"GET", b"/a", [], b"", owner="app_a")
                assert waited.value.timeout and "app_a" in waited.value.detail
                assert got.take_all() == b"a"
                held[1].abort()
                assert pool.held == {} and pool.open == len(pool._idle)  # the rest idle
            finally:
                pool.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_place_given_up_passes_to_the_next_waiting_call_of_the_app() -> None:
    async def scenario() -> None:
        async with receiving([[answer(200, b"1")], [answer(200, b"2")]]) as rec:
            pool = Pool(Origin(rec.url.removesuffix("/hook")), 4, 2.0, 5.0, per_owner=1)
            try:
                first = await pool.request(b"GET", b"/1", [], b"", owner="app")
                cancelled = asyncio.ensure_future(pool.request(b"GET", b"/x", [], b"",
                                                               owner="app"))
                second = asyncio.ensure_future(pool.request(b"GET", b"/2", [], b"",
                                                            owner="app"))
                await asyncio.sleep(0)
                cancelled.cancel()
                assert first.take_all() == b"1"  # releases: the place goes to `second`
                got = await second
                assert got.take_all() == b"2"
                assert pool.held == {}
            finally:
                pool.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


# -- two apps through a real gateway process ------------------------------------------------

@contextmanager
def huge_upstream() -> Iterator[tuple[str, list[str]]]:
    """An upstream whose /v1/customers/cus_huge answer is far larger than any socket buffer;
    anything else gets a small JSON answer. Records the paths it was asked for."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            if "cus_huge" in self.path:
                self.send_response(200)
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                piece = b"h" * 65536
                try:
                    for _ in range(HUGE // len(piece)):
                        self.wfile.write(piece)
                except OSError:
                    self.close_connection = True
                return
            body = b'{"object":"customer","id":"cus_1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_an_app_whose_clients_never_read_cannot_starve_another(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    greedy = new_app(store, ["customer_read"])
    polite = new_app(store, ["customer_read"])
    stalled: list[socket.socket] = []
    with huge_upstream() as (upstream, seen), run_gateway(
            db_url, upstream, tmp_path,
            ["--pool-size", "4", "--upstream-timeout", "3"]) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        try:
            for _ in range(6):  # more calls than the whole pool, none of them ever read
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect((host, int(port)))
                s.sendall(
                    b"GET /v1/customers/cus_huge HTTP/1.1\r\nHost: gw\r\n"
                    b"Authorization: Bearer " + greedy.key.encode() + b"\r\n"
                    b"Stripe-Account: " + greedy.account.encode() + b"\r\n\r\n")
                stalled.append(s)
            wait_until(lambda: sum("cus_huge" in p for p in seen) >= 2,
                       what="the greedy app's calls reaching the upstream")
            # The greedy app holds its share (2 of 4); the polite app's calls all go through.
            with httpx.Client(base_url=gw.url, timeout=30.0) as client:
                for i in range(8):
                    r = client.get("/v1/customers/cus_1", headers={
                        "Authorization": f"Bearer {polite.key}",
                        "Stripe-Account": polite.account})
                    assert r.status_code == 200, (i, r.status_code, r.text)
                    assert r.json()["id"] == "cus_1"
        finally:
            for s in stalled:
                s.close()


def test_a_connection_handed_to_a_cancelled_call_goes_back_to_the_pool() -> None:
    """Under ASGI servers a request's task can be cancelled while it waits for a
    connection; one handed over just before must not be lost with it."""
    async def scenario() -> None:
        async with receiving([[answer(200, b"1")], [answer(200, b"2")]]) as rec:
            pool = Pool(Origin(rec.url.removesuffix("/hook")), 1, 2.0, 5.0)
            try:
                first = await pool.request(b"GET", b"/1", [], b"")
                waiting = asyncio.ensure_future(pool.request(b"GET", b"/2", [], b""))
                await asyncio.sleep(0.05)  # it waits: the pool's one connection is taken
                assert first.take_all() == b"1"  # read whole: released, handed to it
                waiting.cancel()  # before it ran again
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                assert pool.open == 1 and len(pool._idle) == 1  # back, not lost
                again = await pool.request(b"GET", b"/2", [], b"")
                assert (again.status, again.take_all()) == (200, b"2")
            finally:
                pool.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
