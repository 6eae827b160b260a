"""The fast path (`Gateway.admit` + `HttpConn._fast`) held against the full path (`proxy`).

The fast path must be invisible: the same bytes upstream, the same answer, the same counts
and log lines, and it must never let through a call `proxy` would refuse. Through the real
native server and a real recording upstream; `admit` is wrapped (not replaced) only to know
which way a call went.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httptools
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.gateway.listening import listening
from tests.gateway.procs import UPSTREAM_KEY, App, manifest_text, new_app, upload
from tests.gateway.recorder import BIG, Recorder

import permgate
from permgate import manifest as manifest_mod
from permgate.gateway.app import Admitted, Gateway, Headers
from permgate.gateway.config import Settings
from permgate.gateway.native import NativeServer
from permgate.serve import build
from permgate.store import Store

T = TypeVar("T")


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(store: Store) -> App:
    return new_app(store, ["customer_read"])


@pytest.fixture(scope="module")
def other(store: Store) -> App:
    """Another app, granted charges but not customers."""
    return new_app(store, ["charge_read"])


@dataclass
class Restricted:
    app_id: str
    account: str
    key: str


@pytest.fixture(scope="module")
def restricted(store: Store) -> Restricted:
    """An app with a restricted key: the key names its install's account."""
    app_id = f"com.example.fp{secrets.token_hex(4)}"
    account = f"acct_fp{secrets.token_hex(4)}"
    store.upload_version(manifest_mod.parse(
        manifest_text(app_id, "1.0.0", ["customer_read"], "restricted_api_key")), actor="t")
    installed = store.install(app_id, account, "test", by="admin@example.com", role="admin")
    assert installed.key is not None
    return Restricted(app_id, account, installed.key.secret)


# -- the server, a spy on admit, a raw HTTP/1.1 client ------------------------------------------

@dataclass
class Served:
    gw: Gateway
    url: str
    server: NativeServer
    log: io.StringIO


def _settings(db_url: str, upstream: str, **overrides: Any) -> Settings:
    return Settings(db=db_url, upstream=upstream, upstream_key=UPSTREAM_KEY,
                    **{"access_log": False, **overrides})


@asynccontextmanager
async def serving(db_url: str, upstream: str, **overrides: Any) -> AsyncIterator[Served]:
    gw = build(_settings(db_url, upstream, **overrides))
    log = io.StringIO()
    gw.log.stream = log  # read by the log test; keeps the others quiet
    await gw.startup()
    try:
        async with listening(gw) as (server, url):
            yield Served(gw, url, server, log)
    finally:
        await gw.shutdown()


def run(scenario: Callable[[], Awaitable[None]], limit: float = 60.0) -> None:
    """Run a scenario on uvloop; one that hangs (a regression) fails within `limit` s."""
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), limit)

    uvloop.run(bounded())


class Spy:
    """Wraps `Gateway.admit`: what it answered, call by call (None: the full path)."""

    def __init__(self, gw: Gateway) -> None:
        self.inner = gw.admit
        self.results: list[Admitted | None] = []

    def __call__(self, method: str, raw_path: bytes, query: bytes,
                 headers: Sequence[tuple[bytes, bytes]]) -> Admitted | None:
        got = self.inner(method, raw_path, query, headers)
        self.results.append(got)
        return got

    @property
    def fast(self) -> int:
        return sum(r is not None for r in self.results)


def spy_on(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy(gw)
    monkeypatch.setattr(gw, "admit", spy)
    return spy


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        found = [v for n, v in self.headers if n == name]
        assert len(found) <= 1, (name, self.headers)
        return found[0] if found else None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive connection, bytes written exactly as given, answers parsed in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = httptools.HttpResponseParser(self)
        self.answers: list[Answer] = []
        self._status = 0
        self._headers: Headers = []
        self._body: list[bytes] = []

    @classmethod
    async def open(cls, url: str) -> Client:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.answers.append(Answer(self._status, self._headers, b"".join(self._body)))
        self._headers = []
        self._body = []

    async def exchange(self, data: bytes, count: int = 1) -> list[Answer]:
        start = len(self.answers)
        self.writer.write(data)
        while len(self.answers) < start + count:
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)  # a hang guard only
            if not chunk:
                raise ConnectionError(f"closed after {len(self.answers) - start} answers")
            self.parser.feed_data(chunk)
        return self.answers[start:start + count]

    async def get(self, target: str, headers: Sequence[tuple[str, str]]) -> Answer:
        return (await self.exchange(request(target, headers)))[0]

    def close(self) -> None:
        self.writer.close()


def request(target: str, headers: Sequence[tuple[str, str]], method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test",
             *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def auth(app: App) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {app.key}"), ("Stripe-Account", app.account)]


# What the SDKs send, and two headers that must stay at the gateway.
SDK = [
    ("User-Agent", "Stripe/v1 PythonBindings/12.0.0"),
    ("Stripe-Version", "2024-06-20"),
    ("Idempotency-Key", "idem-fast-1"),
    ("X-Stripe-Client-User-Agent", '{"bindings_version":"12.0.0","lang":"python"}'),
    ("Accept-Encoding", "gzip, deflate"),
    ("Accept", "application/json"),
    ("Accept-Language", "en-US"),
]
NOT_FORWARDED = [("Cookie", "session=s3cret"), ("Stripe-Context", "acct_other/ctx_1")]

# Allowed with customer_read (checked: each one's repeat must be admitted).
TARGETS = [
    "/v1/customers",
    "/v1/customers?limit=3",
    "/v1/customers?expand[]=data.test_clock",
    "/v1/customers/cus_1?expand%5B%5D=tax_ids",
    "/v1/customers/search?query=email%3A%27a%27",
    "/v1/customers/cus_1/tax_ids",
]


def header_sets(app: App, rk: Restricted) -> list[list[tuple[str, str]]]:
    """Auth first, last and in between, with and without the SDK's headers; the
    restricted key without Stripe-Account and with its own account."""
    return [
        auth(app),
        [*SDK, *NOT_FORWARDED, *auth(app)],
        [auth(app)[0], *SDK[:3], *NOT_FORWARDED, auth(app)[1], *SDK[3:]],
        [("Authorization", f"Bearer {rk.key}"), *SDK],
        [*NOT_FORWARDED, ("Stripe-Account", rk.account), ("Authorization", f"Bearer {rk.key}")],
        # stripe-node's GETs: a Content-Type without a body (dropped on both paths).
        [*SDK, ("Content-Type", "application/x-www-form-urlencoded"), *auth(app)],
    ]


@dataclass
class Pair:
    target: str
    sent: list[tuple[str, str]]
    first_up: dict[str, Any]
    repeat_up: dict[str, Any]
    first: Answer
    repeat: Answer


async def first_and_repeat(served: Served, spy: Spy, recorder: Recorder,
                           app: App, rk: Restricted) -> list[Pair]:
    """Each request twice: on a cold cache (the full path), then again (the fast path)."""
    gw = served.gw
    assert gw.resolver is not None
    client = await Client.open(served.url)
    pairs = []
    try:
        for headers in header_sets(app, rk):
            for target in TARGETS:
                gw.resolver.invalidate()  # a cache miss: admit cannot say yes
                fast = spy.fast
                first = await client.get(target, headers)
                assert spy.fast == fast, "the first call must take the full path"
                first_up = recorder.requests[-1]
                repeat = await client.get(target, headers)
                assert spy.fast == fast + 1, f"the repeat of {target} was not admitted"
                pairs.append(Pair(target, headers, first_up, recorder.requests[-1],
                                  first, repeat))
    finally:
        client.close()
    return pairs


def upstream_view(seen: dict[str, Any]) -> tuple[Any, ...]:
    # Header order included: dicts keep it.
    return seen["method"], seen["target"], list(seen["headers"].items()), seen["body"]


# -- 1, 2: same bytes upstream, same answer --------------------------------------------------

def test_the_upstream_gets_the_same_request_from_both_paths(
    db_url: str, recorder: Recorder, app: App, restricted: Restricted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            spy = spy_on(served.gw, monkeypatch)
            pairs = await first_and_repeat(served, spy, recorder, app, restricted)
        assert len(pairs) == len(TARGETS) * len(header_sets(app, restricted))
        for p in pairs:
            assert upstream_view(p.first_up) == upstream_view(p.repeat_up), p.target
            got = p.repeat_up["headers"]
            assert p.repeat_up["target"] == p.target
            assert got["authorization"] == f"Bearer {UPSTREAM_KEY}"
            account = app.account if any(v == f"Bearer {app.key}" for _, v in p.sent) \
                else restricted.account
            assert got["stripe-account"] == account
            assert "cookie" not in got and "stripe-context" not in got
            assert "content-length" not in got and "transfer-encoding" not in got
            assert "content-type" not in got  # no body: the client's Content-Type is dropped
            for name, value in p.sent:
                if (name, value) in SDK:
                    assert got[name.lower()] == value, name

    run(scenario)


def comparable(a: Answer) -> tuple[Any, ...]:
    """The answer minus what differs by design: our request id, the upstream's Date (a
    clock) and the echo's client port (a connection detail)."""
    headers = [(n, v) for n, v in a.headers if n not in (b"request-id", b"date")]
    body: Any = a.body
    if a.header(b"content-type") == b"application/json":
        body = a.json()
        body.pop("peer_port", None)
    return a.status, headers, body


def test_the_client_gets_the_same_answer_from_both_paths(
    db_url: str, recorder: Recorder, app: App, restricted: Restricted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            spy = spy_on(served.gw, monkeypatch)
            pairs = await first_and_repeat(served, spy, recorder, app, restricted)
        ids: set[bytes | None] = set()
        for p in pairs:
            assert p.first.status == 200 and p.first.json()["object"] == "echo"
            assert comparable(p.first) == comparable(p.repeat), p.target
            assert p.repeat.header(b"upstream-request-id") == b"req_from_upstream"
            assert p.repeat.header(b"x-upstream-header") == b"kept"
            assert p.repeat.headers[0][0] == b"request-id"  # ours first, as proxy puts it
            ids.update((p.first.header(b"request-id"), p.repeat.header(b"request-id")))
        assert len(ids) == 2 * len(pairs) and None not in ids

    run(scenario)


# -- 3: admit never lets through what proxy refuses ---------------------------------------------

class FakeReply:
    def __init__(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []

    async def send(self, status: int, headers: Headers, body: bytes) -> None:
        self.status, self.headers = status, headers
        self.chunks.append(body)

    async def start(self, status: int, headers: Headers) -> None:
        self.status, self.headers = status, headers

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    async def end(self) -> None:
        pass

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.chunks))


@dataclass
class Direct:
    """A started gateway driven call by call on its own loop (no server): `proxy` and
    `admit` side by side; `sent` holds what was written to upstream connections."""

    loop: asyncio.AbstractEventLoop
    gw: Gateway
    sent: list[bytes]

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def proxy(self, method: str, path: bytes, query: bytes, headers: Headers) -> Answer:
        async def no_body() -> bytes | None:
            return b""

        reply = FakeReply()
        self.run(self.gw.proxy(method, path, query, headers, no_body, reply))
        return reply.answer()

    def admit(self, method: str, path: bytes, query: bytes, headers: Headers
              ) -> Admitted | None:
        return self.gw.admit(method, path, query, headers)

    def check(self, method: str, path: bytes, query: bytes, headers: Headers
              ) -> tuple[Admitted | None, Answer]:
        """`proxy` once (the cold call fills the caches), then `admit`; if it admits,
        `proxy` again must forward exactly `admitted.data` and relay the upstream's answer."""
        first = self.proxy(method, path, query, headers)
        admitted = self.admit(method, path, query, headers)
        if admitted is None:
            return None, first
        self.sent.clear()
        again = self.proxy(method, path, query, headers)
        assert again.status == 200 and again.json()["object"] == "echo", (
            method, path, query, headers, again)
        assert self.sent == [admitted.data], (self.sent, admitted.data)
        assert first.status == 200
        return admitted, again


class _Recording:
    """An upstream connection's transport that keeps what is written to it (each request
    is one write), the rest passed through."""

    def __init__(self, transport: Any, sent: list[bytes]) -> None:
        self._transport = transport
        self._sent = sent

    def write(self, data: bytes) -> None:
        self._sent.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CapturingLoop(uvloop.Loop):  # type: ignore[misc]
    """Every connection the pool opens writes through a `_Recording` (the pool and its
    connections are compiled classes in the compiled build: nothing of theirs is patched)."""

    sent: list[bytes]

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super().create_connection(*args, **kwargs)
        protocol.transport = _Recording(transport, self.sent)
        return transport, protocol


@contextmanager
def direct(db_url: str, upstream: str, **overrides: Any) -> Iterator[Direct]:
    loop = _CapturingLoop()
    loop.sent = sent = []
    gw = build(_settings(db_url, upstream, **overrides))
    gw.log.stream = io.StringIO()
    try:
        loop.run_until_complete(gw.startup())
        assert gw.pool is not None
        yield Direct(loop, gw, sent)
    finally:
        loop.run_until_complete(gw.shutdown())
        loop.close()


def hdrs(*pairs: tuple[str, str]) -> Headers:
    return [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


def refusal_table(app: App, rk: Restricted, other: App
                  ) -> list[tuple[str, str, str, str, Headers, int]]:
    """(what, method, path, query, headers, proxy's status): admit must say None to all."""
    key = ("Authorization", f"Bearer {app.key}")
    acct = ("Stripe-Account", app.account)
    rkey = ("Authorization", f"Bearer {rk.key}")
    ok = hdrs(key, acct)
    return [
        ("denied permission", "GET", "/v1/charges", "", ok, 403),
        ("another app's grant", "GET", "/v1/customers", "", hdrs(*auth(other)), 403),
        ("another app's key on this account", "GET", "/v1/charges", "",
         hdrs(("Authorization", f"Bearer {other.key}"), acct), 403),
        ("denied expansion", "GET", "/v1/customers/cus_1",
         "expand[]=invoice_settings.default_payment_method", ok, 403),
        ("account not installed", "GET", "/v1/customers", "",
         hdrs(key, ("Stripe-Account", "acct_notinstalled1")), 403),
        ("invalid account", "GET", "/v1/customers", "", hdrs(key, ("Stripe-Account", "cus_1")),
         400),
        ("no account, secret key", "GET", "/v1/customers", "", hdrs(key), 400),
        ("restricted key, other account", "GET", "/v1/customers", "",
         hdrs(rkey, ("Stripe-Account", app.account)), 403),
        ("restricted key, invalid account", "GET", "/v1/customers", "",
         hdrs(rkey, ("Stripe-Account", "nope")), 400),
        ("missing key", "GET", "/v1/customers", "", hdrs(acct), 401),
        ("malformed key", "GET", "/v1/customers", "",
         hdrs(("Authorization", "Bearer sk_test_nope"), acct), 401),
        ("basic auth junk", "GET", "/v1/customers", "",
         hdrs(("Authorization", "Basic Zm9vOmJhcg=="), acct), 401),
        ("live key, installed in test only", "GET", "/v1/customers", "",
         hdrs(("Authorization", f"Bearer {app.live_key}"), acct), 403),
        ("brace in path", "GET", "/v1/customers/{id}", "", ok, 400),
        ("closing brace in path", "GET", "/v1/customers/cus_}", "", ok, 400),
        ("too many headers", "GET", "/v1/customers", "",
         ok + [(b"x-pad-%d" % i, b"1") for i in range(70)], 431),
        ("headers too large", "GET", "/v1/customers", "",
         [*ok, (b"x-pad", b"p" * 17000)], 431),
        ("content-encoding", "GET", "/v1/customers", "",
         [*ok, (b"content-encoding", b"gzip")], 400),
        ("two content-types", "GET", "/v1/customers", "",
         [*ok, (b"content-type", b"a/b"), (b"content-type", b"c/d")], 400),
        ("bad content-length", "GET", "/v1/customers", "",
         [*ok, (b"content-length", b"x")], 413),
        ("POST", "POST", "/v1/customers", "", ok, 403),
        ("DELETE", "DELETE", "/v1/customers/cus_1", "", ok, 403),
        ("HEAD", "HEAD", "/v1/customers", "", ok, 404),
        ("/v2 with include", "GET", "/v2/core/events", "include=x", ok, 400),
        ("/v2 with escaped include", "GET", "/v2/core/events", "inc%6Cude=x", ok, 400),
    ]


def test_admit_declines_every_call_proxy_refuses(
    db_url: str, recorder: Recorder, app: App, restricted: Restricted, other: App
) -> None:
    with direct(db_url, recorder.url) as d:
        # First what it must admit, once warm, with the bytes proxy sends: every cache
        # (keys, installs, callers, decisions) then holds these callers for what follows.
        ok = hdrs(*auth(app))
        rk = restricted
        for headers in (ok, hdrs(("Authorization", f"Bearer {rk.key}")),
                        hdrs(("Stripe-Account", rk.account), ("Authorization", f"Bearer {rk.key}")),
                        hdrs(*SDK, *NOT_FORWARDED, *auth(app))):
            for target in TARGETS:
                raw, _, q = target.encode().partition(b"?")
                admitted, _ = d.check("GET", raw, q, headers)
                assert admitted is not None, (target, headers)
        admitted, _ = d.check("GET", b"/v1/charges", b"", hdrs(*auth(other)))
        assert admitted is not None
        for what, method, path, query, headers, status in refusal_table(app, rk, other):
            for _ in range(2):  # the second time, every cache proxy fills is warm
                answer = d.proxy(method, path.encode(), query.encode(), headers)
                assert answer.status == status, (what, answer)
                assert d.admit(method, path.encode(), query.encode(), headers) is None, what
        # Body headers the full path accepts (an empty body): only admit declines them.
        for extra in ([(b"content-length", b"0")], [(b"transfer-encoding", b"chunked")],
                      [(b"content-encoding", b"identity")],
                      [(b"content-type", b"text/plain"), (b"content-length", b"0")]):
            assert d.proxy("GET", b"/v1/customers", b"", ok + extra).status == 200
            assert d.admit("GET", b"/v1/customers", b"", ok + extra) is None, extra
        # But one Content-Type without a body (stripe-node sends one on every GET) is
        # admitted, and dropped as `proxy` drops it.
        typed = [*ok, (b"content-type", b"application/x-www-form-urlencoded")]
        admitted, _ = d.check("GET", b"/v1/customers", b"", typed)
        assert admitted is not None and b"content-type" not in admitted.data.lower()


def test_admit_keeps_v2_include_off_the_fast_path_even_if_the_engine_allowed_it(
    db_url: str, recorder: Recorder, app: App
) -> None:
    # Today's catalog allows no /v2 GET, so the engine alone refuses the table's /v2 rows.
    # With an engine that allowed them, the `include` check must still decline what proxy
    # refuses, and admit what proxy forwards.
    with direct(db_url, recorder.url) as d:
        assert d.gw.calls is not None
        real = d.gw.calls.decide
        yes = real("GET", "/v1/customers", None, permgate.engine.grant(["customer_read"]))
        assert yes.allowed

        def v2_open(method: str, target: str, body: Any, grants: Any) -> Any:
            return yes if target.startswith("/v2/") else real(method, target, body, grants)

        d.gw.calls.decide = v2_open
        ok = hdrs(*auth(app))
        for query in (b"include=x", b"inc%6Cude=x", b"a=1&include[]=y", b"expand[]=data"):
            for _ in range(2):
                assert d.proxy("GET", b"/v2/core/events", query, ok).status == 400, query
                assert d.admit("GET", b"/v2/core/events", query, ok) is None, query
        admitted, _ = d.check("GET", b"/v2/core/events", b"limit=2", ok)
        assert admitted is not None


def test_report_only_sends_would_be_denials_down_the_full_path(
    db_url: str, recorder: Recorder, app: App
) -> None:
    with direct(db_url, recorder.url, report_only=True) as d:
        ok = hdrs(*auth(app))
        for _ in range(2):
            forwarded = d.proxy("GET", b"/v1/charges", b"", ok)
            assert forwarded.status == 200  # report-only forwards it, logged as would_deny
            assert d.admit("GET", b"/v1/charges", b"", ok) is None
        log = d.gw.log
        log.flush()
        assert isinstance(log.stream, io.StringIO)
        records = [json.loads(line) for line in log.stream.getvalue().splitlines()]
        assert sum(r.get("would_deny") is True for r in records) == 2
        admitted, _ = d.check("GET", b"/v1/customers", b"", ok)
        assert admitted is not None


# Generated calls: whatever admit lets through, proxy must forward byte for byte. Each
# dimension leans towards a value admit could take, so both sides of the line are reached.
GOOD_PATHS = ["/v1/customers", "/v1/customers/cus_1", "/v1/customers/cus_1/tax_ids",
              "/v1/customers/search"]
BAD_PATHS = ["/v1/charges", "/v1/payouts", "/v1/customers/{x}", "/v1/customers/cus_%7B",
             "/v2/core/events", "/v1/accounts", "/v1//customers", "/v1/customers/"]
GOOD_QUERIES = ["", "limit=3", "expand[]=data.test_clock", "expand%5B%5D=tax_ids"]
BAD_QUERIES = ["expand[]=invoice_settings.default_payment_method", "include=x",
               "a=1&include[]=y", "expand[]=data.sources"]
FORWARDED = [(b"user-agent", b"Stripe/v1 x"), (b"stripe-version", b"2024-06-20"),
             (b"idempotency-key", b"k1"), (b"accept-encoding", b"gzip"),
             (b"x-stripe-client-user-agent", b"{}"), (b"cookie", b"a=b"),
             (b"stripe-context", b"acct_x"), (b"x-other", b"1")]
# Extras that send a call down the full path (one Content-Type alone does not: two do).
DECLINED = [(b"content-length", b"0"), (b"content-type", b"a/b"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"transfer-encoding", b"chunked"), (b"content-encoding", b"gzip"),
            (b"x-pad", b"p" * 9000)]


def mostly(good: Sequence[T], bad: Sequence[T]) -> st.SearchStrategy[T]:
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good),
                     st.sampled_from(bad))


@pytest.mark.slow
def test_whatever_admit_lets_through_proxy_forwards_identically(
    db_url: str, recorder: Recorder, app: App, restricted: Restricted, other: App
) -> None:
    rk = restricted
    unknown = app.key[:-1] + ("A" if app.key[-1] != "A" else "B")
    good_pairs: list[tuple[str | None, str | None]] = [
        (app.key, app.account), (rk.key, None), (rk.key, rk.account),
        (other.key, other.account)]
    bad_pairs = [(k, a) for k in (None, app.key, app.live_key, rk.key, "sk_test_short",
                                  "garbage", unknown)
                 for a in (None, app.account, rk.account, "acct_other1", "cus_1",
                           " " + app.account)
                 if (k, a) not in good_pairs]
    seen = {"admitted": 0, "declined": 0}
    with direct(db_url, recorder.url) as d:
        for key, account in good_pairs:  # every caller warm from the start
            warm = hdrs(("Authorization", f"Bearer {key}"),
                        *([("Stripe-Account", account)] if account else []))
            for path in ("/v1/customers", "/v1/charges"):
                d.proxy("GET", path.encode(), b"", warm)

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(method=mostly(["GET"], ["POST", "DELETE", "HEAD", "get"]),
               path=mostly(GOOD_PATHS, BAD_PATHS), query=mostly(GOOD_QUERIES, BAD_QUERIES),
               pair=st.one_of(st.sampled_from(good_pairs), st.sampled_from(bad_pairs)),
               extra=st.lists(mostly(FORWARDED, DECLINED), max_size=3),
               pads=mostly([0], [62, 63, 64]), auth_at=st.integers(0, 4))
        def check(method: str, path: str, query: str, pair: tuple[str | None, str | None],
                  extra: list[tuple[bytes, bytes]], pads: int, auth_at: int) -> None:
            key, account = pair
            headers: Headers = list(extra) + [(b"x-n%d" % i, b"1") for i in range(pads)]
            mine: Headers = []
            if key is not None:
                mine.append((b"authorization", f"Bearer {key}".encode()))
            if account is not None:
                mine.append((b"stripe-account", account.encode()))
            at = min(auth_at, len(headers))
            headers[at:at] = mine
            admitted, _ = d.check(method, path.encode(), query.encode(), headers)
            seen["admitted" if admitted is not None else "declined"] += 1

        check()
    # The property held on both sides of the line, not only on refusals. About one call in
    # eight is admitted on average, but hypothesis's choices are not uniform (14 of 300 was
    # seen): the bound asks for real coverage without turning the draw into a flaky failure.
    assert seen["admitted"] >= 5 and seen["declined"] >= 20, seen


# -- 4, 5: invalidation and key expiry bind at once -------------------------------------------

def test_an_uninstall_or_revoked_key_stops_the_fast_path_at_once(
    db_url: str, recorder: Recorder, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = new_app(store, ["customer_read"])
    revoked = new_app(store, ["customer_read"])
    narrowed = new_app(store, ["customer_read"])

    async def scenario() -> None:
        async with serving(db_url, recorder.url, refresh_interval=3600) as served:
            gw = served.gw
            assert gw.resolver is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            for who in (gone, revoked, narrowed):
                for _ in range(2):
                    assert (await client.get("/v1/customers", auth(who))).status == 200
            assert spy.fast == 3  # each app's repeat went the fast path
            # A new version granting charges instead of customers, approved by the account.
            upload(store, narrowed, "2.0.0", ["charge_read"])
            store.approve(narrowed.app_id, narrowed.account, "test", by="admin@example.com",
                          role="admin")
            await gw.resolver.refresh_once()
            r = await client.get("/v1/customers", auth(narrowed))
            assert r.status == 403 and "customer_read" in r.json()["error"]["message"], r
            assert spy.results[-1] is None and spy.fast == 3
            assert (await client.get("/v1/charges", auth(narrowed))).status == 200
            assert (await client.get("/v1/charges", auth(narrowed))).status == 200
            assert spy.fast == 5  # the new grant is admitted (the 403 warmed the caches)
            store.uninstall(gone.app_id, gone.account, "test", by="admin@example.com",
                            role="admin")
            # What the poller does within refresh_interval (or a NOTIFY at once).
            await gw.resolver.refresh_once()
            r = await client.get("/v1/customers", auth(gone))
            assert r.status == 403 and r.json()["error"]["code"] == "account_invalid", r
            assert spy.results[-1] is None and spy.fast == 5
            store.rotate_key(revoked.app_id, "test", grace=timedelta(0), actor="tests")
            gw.resolver.invalidate()  # as a mount that changes the store does
            r = await client.get("/v1/customers", auth(revoked))
            assert r.status == 401, r
            assert spy.fast == 5
            # Still refused on the repeat (nothing cached lets it back in).
            assert (await client.get("/v1/customers", auth(gone))).status == 403
            assert (await client.get("/v1/customers", auth(revoked))).status == 401
            assert spy.fast == 5
            client.close()

    run(scenario)


def test_a_cached_caller_is_not_admitted_once_its_key_expired(
    db_url: str, recorder: Recorder, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = new_app(store, ["customer_read"])
    store.rotate_key(old.app_id, "test", grace=timedelta(hours=1), actor="tests")

    async def scenario() -> None:
        async with serving(db_url, recorder.url, refresh_interval=3600) as served:
            gw = served.gw
            resolver = gw.resolver
            assert resolver is not None
            now = [time.time()]
            resolver.clock = lambda: now[0]
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            for _ in range(2):
                assert (await client.get("/v1/customers", auth(old))).status == 200
            assert spy.fast == 1
            expiry = resolver.key_expiry(old.key)
            assert now[0] < expiry < now[0] + 3700  # the grace period's end
            headers = hdrs(*auth(old))
            now[0] = expiry - 1
            assert spy.inner("GET", b"/v1/customers", b"", headers) is not None
            now[0] = expiry
            assert spy.inner("GET", b"/v1/customers", b"", headers) is None
            # Through the server: the full path asks the store again (whose own clock is
            # still inside the grace period, so it answers), never the fast path.
            before = spy.fast
            for _ in range(2):
                assert (await client.get("/v1/customers", auth(old))).status == 200
            assert spy.fast == before
            client.close()

    run(scenario)


# -- 6: upstream trouble on the fast path -----------------------------------------------------

@asynccontextmanager
async def flaky_upstream(drop: Callable[[int, int], bool]) -> AsyncIterator[str]:
    """Answers each request with {"conn": i, "n": n} (its connection's index and the
    request's number on it), except those `drop(i, n)` says to close without answering."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(conns)
        conns.append(0)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                conns[index] += 1
                if drop(index, conns[index]):
                    return
                body = json.dumps({"conn": index, "n": conns[index]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%b" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await asyncio.sleep(0.1)  # the handlers see their connections closed and end


def test_a_kept_alive_connection_closed_unanswered_is_retried_by_the_full_path(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        # The first connection's third request is dropped (an upstream's idle close racing
        # our send): that one reused connection must not cost the client its call.
        async with flaky_upstream(lambda conn, n: conn == 0 and n == 3) as up, \
                serving(db_url, up) as served:
            spy = spy_on(served.gw, monkeypatch)
            client = await Client.open(served.url)
            got = [await client.get("/v1/customers", auth(app)) for _ in range(3)]
            assert [a.status for a in got] == [200, 200, 200], got
            assert [a.json() for a in got] == [{"conn": 0, "n": 1}, {"conn": 0, "n": 2},
                                               {"conn": 1, "n": 1}]
            assert spy.fast == 2  # the 2nd and 3rd were admitted; the 3rd then retried
            m = served.gw.metrics
            assert m.responses.get(200) == 3 and m.decisions[(app.app_id, "allowed")] == 3
            client.close()

    run(scenario)


def same_record(served: Served, one: Answer, two: Answer) -> None:
    """The two calls' log lines agree in fields, order and values (but id, time, ms)."""
    served.gw.log.flush()
    records = {}
    for line in served.log.getvalue().splitlines():
        rec = json.loads(line)
        if "request_id" in rec:
            records[rec["request_id"]] = rec
    first, second = (records[a.header(b"request-id").decode()]  # type: ignore[union-attr]
                     for a in (one, two))
    assert list(first) == list(second), (first, second)
    for field in first:
        if field not in ("ts", "request_id", "ms"):
            assert first[field] == second[field], (field, first, second)


def test_an_upstream_that_drops_every_try_gets_the_same_502_as_proxy(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            gw = served.gw
            assert gw.resolver is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            for _ in range(2):
                assert (await client.get("/v1/customers", auth(app))).status == 200
            answers = []
            for cold in (True, False):  # the full path, then the fast path
                if cold:
                    gw.resolver.invalidate()
                else:
                    assert (await client.get("/v1/customers", auth(app))).status == 200
                fast = spy.fast
                before = recorder.paths().count("/v1/customers/cus_drop")
                answers.append(await client.get("/v1/customers/cus_drop", auth(app)))
                assert spy.fast == fast + (0 if cold else 1)
                # Sent on the reused connection, then once more on a fresh one: both paths.
                assert recorder.paths().count("/v1/customers/cus_drop") == before + 2
            full, fast_answer = answers
            assert full.status == fast_answer.status == 502
            assert comparable(full) == comparable(fast_answer)
            same_record(served, full, fast_answer)
            assert full.json()["error"]["type"] == "api_error"
            # And the gateway goes on serving on both paths.
            assert (await client.get("/v1/customers", auth(app))).status == 200
            assert (await client.get("/v1/customers", auth(app))).status == 200
            client.close()

    run(scenario)


def test_a_slow_upstream_gets_the_same_504_on_the_fast_path(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "slow_seconds", 1.0)

    async def scenario() -> None:
        async with serving(db_url, recorder.url, upstream_timeout=0.3) as served:
            gw = served.gw
            assert gw.resolver is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            answers = []
            for cold in (True, False):
                if cold:
                    gw.resolver.invalidate()
                else:
                    for _ in range(2):  # a warm cache and an idle upstream connection
                        assert (await client.get("/v1/customers", auth(app))).status == 200
                fast = spy.fast
                before = recorder.paths().count("/v1/customers/cus_slow")
                answers.append(await client.get("/v1/customers/cus_slow", auth(app)))
                assert spy.fast == fast + (0 if cold else 1)
                # A timeout is not retried (the call may have run upstream): sent once.
                assert recorder.paths().count("/v1/customers/cus_slow") == before + 1
            full, fast_answer = answers
            assert full.status == fast_answer.status == 504
            assert comparable(full) == comparable(fast_answer)
            same_record(served, full, fast_answer)
            assert gw.metrics.upstream_errors.get("timeout") == 2
            assert (await client.get("/v1/customers", auth(app))).status == 200
            client.close()

    run(scenario)


def test_a_big_answer_arrives_whole_on_the_fast_path(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            gw = served.gw
            assert gw.resolver is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            assert (await client.get("/v1/customers", auth(app))).status == 200
            gw.resolver.invalidate()
            full = await client.get("/v1/customers/cus_big", auth(app))
            fast = spy.fast
            streamed = await client.get("/v1/customers/cus_big", auth(app))
            assert spy.fast == fast + 1
            assert full.status == streamed.status == 200
            assert full.body == BIG and streamed.body == BIG
            assert comparable(full) == comparable(streamed)
            # The connection is still good for the next call (the stream ended cleanly).
            assert (await client.get("/v1/customers", auth(app))).status == 200
            client.close()
            # HTTP/1.0 has no chunks: the streamed answer ends with the connection.
            fast = spy.fast
            host, port = served.url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request("/v1/customers/cus_big", auth(app)).replace(
                b"HTTP/1.1", b"HTTP/1.0", 1))
            out = await asyncio.wait_for(reader.read(), 10)  # to the close
            writer.close()
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head
            assert body == BIG and spy.fast == fast + 1

    run(scenario)


async def quiet(served: Served) -> None:
    """Until no upstream exchange is in flight (the last one ended or was closed); the
    bound only guards against a hang."""
    pool = served.gw.pool
    assert pool is not None
    for _ in range(200):
        if not pool.waiting:
            return
        await asyncio.sleep(0.05)


async def leave_mid_stream(served: Served, spy: Spy, app: App) -> None:
    """A fast-path GET of the 1 MiB answer whose client stops reading, so that the gateway
    pauses the upstream mid-answer, then goes away."""
    loop = asyncio.get_running_loop()
    # The gateway's writes back up (its transport pauses writing), so it pauses the
    # upstream's reading.
    sock, conn = await stalled_client(served)
    fast = spy.fast
    await loop.sock_sendall(sock, request("/v1/customers/cus_big", auth(app)))
    for _ in range(200):
        if conn.upstream_paused:
            break
        await asyncio.sleep(0.05)
    assert conn.upstream_paused and conn.exchange is not None
    assert spy.fast == fast + 1
    head = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    sock.close()
    await quiet(served)


def test_a_client_leaving_mid_stream_leaves_the_gateway_healthy(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            gw = served.gw
            assert gw.pool is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            assert (await client.get("/v1/customers", auth(app))).status == 200
            for _ in range(3):
                # An idle upstream connection for the fast path to take.
                assert (await client.get("/v1/customers", auth(app))).status == 200
                await leave_mid_stream(served, spy, app)
            # Healthy: no upstream exchange left hanging (a paused one would wait out its
            # deadline), no connection kept, and calls go on, the fast path too.
            for _ in range(200):
                if len(served.server.connections) == 1:
                    break
                await asyncio.sleep(0.05)
            assert not gw.pool.waiting and len(served.server.connections) == 1
            assert gw.pool.open <= gw.settings.pool_size
            for _ in range(3):
                r = await client.get("/v1/customers/cus_big", auth(app))
                assert r.status == 200 and r.body == BIG
            fast = spy.fast
            assert (await client.get("/v1/customers", auth(app))).status == 200
            assert spy.fast == fast + 1
            client.close()

    run(scenario)


def test_a_fast_call_cut_short_by_its_client_is_still_counted_and_logged(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # proxy counts a decision when it makes it, and a client that leaves mid-answer does
    # not stop it reading the answer to its end (the response and log line follow): an
    # allowed call that reached the upstream is in the metrics and the access log.
    async def scenario() -> None:
        async with serving(db_url, recorder.url, access_log=True) as served:
            gw = served.gw
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            for _ in range(2):
                assert (await client.get("/v1/customers", auth(app))).status == 200
            before = gw.metrics.decisions.get((app.app_id, "allowed"), 0)
            await leave_mid_stream(served, spy, app)
            client.close()
            gw.log.flush()
            lines = [json.loads(line) for line in served.log.getvalue().splitlines()]
            big = [r for r in lines if r.get("path") == "/v1/customers/cus_big"]
            assert gw.metrics.decisions.get((app.app_id, "allowed"), 0) == before + 1
            assert len(big) == 1 and big[0]["outcome"] == "allowed", big

    run(scenario)


# -- 7: pipelining -------------------------------------------------------------------------

def test_pipelined_fast_calls_are_answered_in_order(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url) as served:
            spy = spy_on(served.gw, monkeypatch)
            client = await Client.open(served.url)
            assert (await client.get("/v1/customers", auth(app))).status == 200
            fast = spy.fast
            n = 8
            data = b"".join(request(f"/v1/customers?n={i}", [*SDK, *auth(app)])
                            for i in range(n))
            got = await client.exchange(data, n)
            assert [a.status for a in got] == [200] * n
            assert [a.json()["target"] for a in got] == [f"/v1/customers?n={i}"
                                                          for i in range(n)]
            ids = [a.header(b"request-id") for a in got]
            assert len(set(ids)) == n and None not in ids
            assert spy.fast == fast + n
            # A streamed answer in the middle of a pipeline keeps its place and its bytes.
            data = b"".join(request(t, auth(app)) for t in (
                "/v1/customers?n=a", "/v1/customers/cus_big", "/v1/customers?n=b"))
            got = await client.exchange(data, 3)
            assert [a.status for a in got] == [200] * 3
            assert got[0].json()["target"] == "/v1/customers?n=a" and got[1].body == BIG
            assert got[2].json()["target"] == "/v1/customers?n=b"
            assert spy.fast == fast + n + 3
            client.close()

    run(scenario)


# -- 8: metrics and the access log ------------------------------------------------------------

def test_fast_calls_are_counted_and_logged_as_proxy_does(
    db_url: str, recorder: Recorder, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with serving(db_url, recorder.url, access_log=True) as served:
            gw = served.gw
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            first = await client.get("/v1/customers?limit=1", auth(app))
            assert first.status == 200 and spy.fast == 0
            m = gw.metrics
            allowed = m.decisions.get((app.app_id, "allowed"), 0)
            ok = m.responses.get(200, 0)
            n = 5
            fast = [await client.get("/v1/customers?limit=1", auth(app)) for _ in range(n)]
            assert spy.fast == n
            assert m.decisions.get((app.app_id, "allowed"), 0) == allowed + n
            assert m.responses.get(200, 0) == ok + n
            text = m.render().decode()
            assert (f'permgate_decisions_total{{app="{app.app_id}",outcome="allowed"}} '
                    f"{allowed + n}") in text
            assert f'permgate_responses_total{{status="200"}} {ok + n}' in text
            client.close()
            gw.log.flush()
            records = {}
            for line in served.log.getvalue().splitlines():
                rec = json.loads(line)
                if rec.get("event") == "request":
                    records[rec["request_id"]] = rec
            full_rec = records[first.header(b"request-id").decode()]  # type: ignore[union-attr]
            for a in fast:
                rec = records[a.header(b"request-id").decode()]  # type: ignore[union-attr]
                assert list(rec) == list(full_rec)  # the same fields, in the same order
                for field in ("level", "method", "path", "app", "mode", "account", "outcome",
                              "status"):
                    assert rec[field] == full_rec[field], field
                assert rec["app"] == app.app_id and rec["account"] == app.account
                assert rec["mode"] == "test" and rec["outcome"] == "allowed"
                assert rec["method"] == "GET" and rec["path"] == "/v1/customers"
                assert rec["status"] == 200 and isinstance(rec["ms"], float) and rec["ms"] >= 0

    run(scenario)


# -- 9: after review: paused releases, backpressure, stray bytes, metrics parity --------------

Script = list[tuple[bytes | None, float]]


class Scripted:
    """A keep-alive upstream whose writes, per request, `script(path)` gives: (bytes, delay
    before writing them); None for the bytes closes the connection."""

    def __init__(self, script: Callable[[str], Script]) -> None:
        self.script = script
        self.paths: list[str] = []
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                self.paths.append(path)
                for data, delay in self.script(path):
                    if delay:
                        await asyncio.sleep(delay)
                    if data is None:
                        return
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Scripted]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()
            await asyncio.sleep(0.1)  # the handlers see their connections closed and end


def small(body: bytes = b'{"object":"list"}') -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
            % (len(body), body))


async def stalled_client(served: Served) -> tuple[socket.socket, Any]:
    """A raw client that never reads, with small buffers on both ends, so that the gateway's
    writes to it back up; and the gateway's connection for it."""
    loop = asyncio.get_running_loop()
    host, port = served.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    known = set(served.server.connections)
    await loop.sock_connect(sock, (host, int(port)))
    for _ in range(200):
        if served.server.connections - known:
            break
        await asyncio.sleep(0.01)
    (conn,) = served.server.connections - known
    assert conn.transport is not None
    conn.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock, conn


BIG_N = 300_000


def test_a_paused_upstream_connection_is_resumed_when_a_fast_call_releases_it(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer's last read crosses the high-water mark while the client is not reading:
    # the upstream connection is paused, then the answer ends and it goes back to the pool.
    # Kept paused, the next call on it would wait out its deadline (504).
    first = 250_000  # under the high-water mark: buffered whole, nothing paused yet

    def script(path: str) -> Script:
        if "cus_big" in path:
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG_N
            return [(head + b"x" * first, 0), (b"y" * (BIG_N - first), 0.3)]
        return [(small(), 0)]

    async def scenario() -> None:
        async with Scripted(script).running() as up, \
                serving(db_url, up.url, upstream_timeout=3.0) as served:
            gw = served.gw
            assert gw.pool is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            assert (await client.get("/v1/customers", auth(app))).status == 200
            sock, conn = await stalled_client(served)
            fast = spy.fast
            await asyncio.get_running_loop().sock_sendall(
                sock, request("/v1/customers/cus_big", auth(app)))
            for _ in range(200):  # until the call was admitted
                if spy.fast > fast:
                    break
                await asyncio.sleep(0.01)
            for _ in range(200):  # until the answer has ended and its connection is back
                if gw.pool._idle and not gw.pool.waiting:
                    break
                await asyncio.sleep(0.05)
            assert spy.fast == fast + 1 and conn.write_paused
            assert len(gw.pool._idle) == 1 and not gw.pool.waiting
            assert all(c.transport is not None and c.transport.is_reading()
                       for c in gw.pool._idle)
            fast = spy.fast
            nxt = await client.get("/v1/customers", auth(app))
            assert nxt.status == 200 and nxt.json() == {"object": "list"}
            assert spy.fast == fast + 1
            sock.close()
            client.close()

    run(scenario)


def test_a_paused_upstream_connection_is_resumed_when_the_full_path_releases_it(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer over the high-water mark that arrives whole before proxy resumes.
    def script(path: str) -> Script:
        if "cus_big" in path:
            return [(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG_N
                     + b"x" * BIG_N, 0)]
        return [(small(), 0)]

    async def scenario() -> None:
        async with Scripted(script).running() as up, \
                serving(db_url, up.url, upstream_timeout=3.0) as served:
            gw = served.gw
            assert gw.pool is not None
            monkeypatch.setattr(gw, "admit", lambda *a: None)  # the full path only
            client = await Client.open(served.url)
            for _ in range(2):
                big = await client.get("/v1/customers/cus_big", auth(app))
                assert big.status == 200 and big.body == b"x" * BIG_N
                assert all(c.transport is not None and c.transport.is_reading()
                           for c in gw.pool._idle)
                assert (await client.get("/v1/customers", auth(app))).status == 200
            client.close()

    run(scenario)


def test_a_client_that_pipelines_and_never_reads_holds_back_the_fast_path(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each next pipelined call waits for the client to take the answer before (as proxy
    # does): without that the gateway fetched answer after answer into its write buffer.
    body = b"z" * 100_000

    async def scenario() -> None:
        async with Scripted(lambda path: [(small(body), 0)]).running() as up, \
                serving(db_url, up.url) as served:
            spy = spy_on(served.gw, monkeypatch)
            client = await Client.open(served.url)
            assert (await client.get("/v1/customers", auth(app))).status == 200
            sock, conn = await stalled_client(served)
            fast = spy.fast
            one = request("/v1/customers", auth(app))
            for _ in range(50):  # offer requests for a while; never read an answer
                with suppress(BlockingIOError):
                    sock.send(one * 20)
                await asyncio.sleep(0.05)
            assert spy.fast > fast  # the fast path took them
            # The full path stops near 32 answers; the unbounded fast path made >1000.
            assert len(up.paths) < 100, len(up.paths)
            assert conn.transport.get_write_buffer_size() < 5_000_000
            sock.close()
            client.close()

    run(scenario)


def test_bytes_after_an_upstream_answer_never_reach_the_next_call(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = b"HTTP/1.1 200 OK\r\nx-stale: yes\r\ncontent-length: 5\r\n\r\nSTALE"

    def script(path: str) -> Script:
        if "cus_extra" in path:
            return [(small(b'{"first":1}') + stray, 0)]
        return [(small(b'{"second":2}'), 0)]

    async def scenario() -> None:
        async with Scripted(script).running() as up, serving(db_url, up.url) as served:
            gw = served.gw
            assert gw.resolver is not None
            spy = spy_on(gw, monkeypatch)
            client = await Client.open(served.url)
            for cold in (True, False):  # the full path, then the fast path
                assert (await client.get("/v1/customers", auth(app))).status == 200
                if cold:
                    gw.resolver.invalidate()
                fast = spy.fast
                first = await client.get("/v1/customers/cus_extra", auth(app))
                assert spy.fast == fast + (0 if cold else 1)
                assert first.status == 200 and first.body == b'{"first":1}'
                for _ in range(2):
                    nxt = await client.get("/v1/customers", auth(app))
                    assert nxt.status == 200 and nxt.body == b'{"second":2}', nxt
                    assert nxt.header(b"x-stale") is None
            client.close()

    run(scenario)


def test_a_bad_or_slow_upstream_answer_is_counted_alike_on_both_paths(
    db_url: str, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    def script(path: str) -> Script:
        if "cus_bad" in path:  # a malformed answer: 502
            return [(b"HTTP/1.1 2xx nonsense\r\n\r\n", 0)]
        if "cus_slow" in path:  # the head at once, the body a second later
            return [(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", 0), (b"hello", 1.0)]
        return [(small(), 0)]

    async def scenario() -> None:
        async with Scripted(script).running() as up, serving(db_url, up.url) as served:
            gw = served.gw
            assert gw.resolver is not None
            m = gw.metrics
            spy = spy_on(gw, monkeypatch)

            def snap() -> tuple[int, int, int, float, dict[str, int]]:
                return (m.decisions.get((app.app_id, "allowed"), 0), m.decision_seconds.count,
                        m.upstream_seconds.count, m.upstream_seconds.total,
                        dict(m.upstream_errors))

            for target, status in (("/v1/customers/cus_bad", 502),
                                   ("/v1/customers/cus_slow", 200)):
                deltas = []
                for cold in (True, False):  # the full path, then the fast path
                    # A cached caller and an idle upstream connection for the fast path.
                    warm = await Client.open(served.url)
                    assert (await warm.get("/v1/customers", auth(app))).status == 200
                    warm.close()
                    if cold:
                        gw.resolver.invalidate()
                    before = snap()
                    fast = spy.fast
                    client = await Client.open(served.url)
                    assert (await client.get(target, auth(app))).status == status
                    client.close()
                    await quiet(served)
                    assert spy.fast == fast + (0 if cold else 1)
                    after = snap()
                    errors = {k: v - before[4].get(k, 0) for k, v in after[4].items()
                              if v != before[4].get(k, 0)}
                    deltas.append((after[0] - before[0], after[1] - before[1],
                                   after[2] - before[2], errors))
                    if not cold and target.endswith("cus_slow"):
                        # Send to head: not the second the body took.
                        assert after[3] - before[3] < 0.5, after[3] - before[3]
                full, fast_delta = deltas
                assert full == fast_delta, (target, full, fast_delta)
                # One decision each; an upstream time for the answer that had a head; an
                # upstream error for the malformed one.
                assert full[0] == full[1] == 1, full
                assert full[2] == (status == 200) and bool(full[3]) == (status == 502), full

    run(scenario)
