"""The gateway's parts on their own: settings, key parsing, the resolver, metrics, ids."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from tests.gateway.procs import new_app

import permgate
from permgate.gateway.auth import account_header, presented_key
from permgate.gateway.calls import HeaderValues
from permgate.gateway.config import ConfigError, resolve, upstream_keys
from permgate.gateway.errors import redact
from permgate.gateway.logs import RequestIds
from permgate.gateway.metrics import Metrics
from permgate.gateway.resolver import Resolver
from permgate.store import Store
from permgate.store.keys import new_secret, well_formed


def test_settings_precedence_flags_env_file(tmp_path: Path) -> None:
    conf = tmp_path / "permgate.toml"
    conf.write_text('[gateway]\nport = 9000\nworkers = 3\nbody-limit = 2048\n'
                    'report_only = true\nupstream = "https://api.example.com"\n')
    env = {"PERMGATE_PORT": "9100", "PERMGATE_REPORT_ONLY": "false"}
    s = resolve({"port": 9200, "host": None}, env, str(conf))
    assert s.port == 9200  # flag over env over file
    assert s.report_only is False  # env over file
    assert s.workers == 3 and s.body_limit == 2048  # file over defaults
    assert s.host == "127.0.0.1"  # default; a flag left unset does not count
    assert resolve({}, {"PERMGATE_CONFIG": str(conf)}).port == 9000


@pytest.mark.parametrize(("env", "message"), [
    ({"PERMGATE_PORT": "http"}, "PERMGATE_PORT"),
    ({"PERMGATE_WORKERS": "0"}, "workers"),
    ({"PERMGATE_UPSTREAM": "api.stripe.com"}, "upstream"),
    ({"PERMGATE_BODY_LIMIT": "10"}, "body_limit"),
    ({"PERMGATE_REPORT_ONLY": "maybe"}, "report_only"),
])
def test_bad_settings_are_refused_with_their_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve({}, env)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[gateway]\nbody_limt = 5\n")
    with pytest.raises(ConfigError, match="unknown setting 'body_limt'"):
        resolve({}, {}, str(conf))


def test_upstream_keys_by_mode(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# upstream keys\nsk_live_abc\n\nsk_test_def\n")
    s = resolve({"upstream_key_file": str(f)}, {})
    assert upstream_keys(s) == {"live": "sk_live_abc", "test": "sk_test_def"}
    f.write_text("pk_test_nope\n")
    with pytest.raises(ConfigError, match="must start with"):
        upstream_keys(s)


KEY1 = "sk_test_" + "a1B2" * 16
KEY2 = "rk_live_" + "Z9" * 32


def test_presented_key_forms() -> None:
    assert presented_key(None) is None
    assert presented_key(f"Bearer {KEY1}".encode()) == KEY1
    assert presented_key(f"bearer   {KEY1} ".encode()) == KEY1
    basic = b"Basic " + base64.b64encode(f"{KEY2}:".encode())
    assert presented_key(basic) == KEY2
    assert presented_key(b"Basic !!!") == ""
    assert presented_key(f"Token {KEY1}".encode()) == ""
    assert presented_key("Bearer sk_\u00e9".encode()) == ""


@pytest.mark.parametrize("bad", [
    "sk_test_1",  # too short
    KEY1 + "a",  # too long
    KEY1[:-1] + "-",  # outside the alphabet
    KEY1[:-1] + "\u00e9",
    "pk_test_" + "a" * 64,  # publishable keys are not app keys
    "sk_prod_" + "a" * 64,
    "SK_TEST_" + "a" * 64,
    "sk_test_" + "a" * 200_000,
])
def test_only_well_formed_keys_are_presented(bad: str) -> None:
    # Regression (issue 11, item 3): any printable value used to be taken as a key, looked
    # up and cached, so distinct 400 KB keys grew the gateway to gigabytes.
    assert not well_formed(bad)
    assert presented_key(f"Bearer {bad}".encode()) == ""
    assert presented_key(b"Basic " + base64.b64encode(f"{bad}:".encode())) == ""


def test_the_key_shape_is_the_minted_shape() -> None:
    for kind in ("secret", "restricted"):
        for mode in ("live", "test", "sandbox"):
            assert well_formed(new_secret(kind, mode))


def test_huge_authorization_values_are_not_cached(tmp_path: Path) -> None:
    # Regression (issue 11, item 3): the keys seen kept every distinct header value.
    seen = HeaderValues()
    for i in range(50):
        assert seen.key(b"Bearer sk_test_" + str(i).encode() + b"x" * 100_000) == ""
        assert seen.key(b"Bearer " + KEY1[:-3].encode() + b"-%02d" % i) == ""
    assert seen.keys == {}
    assert seen.key(f"Bearer {KEY1}".encode()) == KEY1
    assert list(seen.keys.values()) == [KEY1]
    assert seen.account(b"acct_" + b"1" * 100_000) is None
    assert seen.accounts == {}


def test_account_header() -> None:
    assert account_header(b"acct_1AbC") == "acct_1AbC"
    assert account_header(b" acct_1 ") == "acct_1"
    for bad in (b"acct_", b"acct_1;x", b"cus_1", b"acct_1\r\nx: y"):
        assert account_header(bad) is None


def test_resolver_honours_a_cached_keys_expiry(tmp_path: Path) -> None:
    # Regression (issue 11, item 2): a rotated key stayed usable on a running gateway after
    # its grace period, because expiry moves no change counter and the cache kept the key.
    from datetime import timedelta

    url = f"sqlite:///{tmp_path / 'e.db'}"
    now = [1_000.0]
    with Store.open(url, upgrade=True) as store:
        app = new_app(store, ["customer_read"])
        resolver = Resolver(store, permgate.engine.grant, refresh_interval=60,
                            clock=lambda: now[0])

        async def scenario() -> None:
            await resolver.refresh_once()
            store.rotate_key(app.app_id, "test", grace=timedelta(hours=1))
            await resolver.refresh_once()  # the rotation moved the counter: caches dropped
            info = await resolver.authenticate(app.key)
            assert info is not None and info.expires_at is not None
            deadline = info.expires_at.timestamp()
            import time

            assert abs(deadline - (time.time() + 3600)) < 300  # an aware UTC instant
            now[0] = deadline - 1
            assert resolver.cached_key(app.key) is info  # within the grace period
            now[0] = deadline
            from permgate.gateway.resolver import MISS

            assert resolver.cached_key(app.key) is MISS  # no refresh needed
            await resolver.stop()

        asyncio.run(scenario())


def test_resolver_fails_closed_when_the_sqlite_file_is_replaced(tmp_path: Path) -> None:
    # Regression (issue 11, item 7): a database file replaced under a running gateway (a
    # restore) went unnoticed: pooled connections kept reading the old, unlinked file.
    import os
    import shutil

    from permgate.gateway.resolver import StoreReplaced

    path = tmp_path / "live.db"
    with Store.open(f"sqlite:///{path}", upgrade=True) as store:
        app = new_app(store, ["customer_read"])
    shutil.copy(path, tmp_path / "copy.db")
    with Store.open(f"sqlite:///{path}") as store:
        resolver = Resolver(store, permgate.engine.grant, refresh_interval=60,
                            sqlite_path=str(path))

        async def scenario() -> None:
            await resolver.refresh_once()
            assert await resolver.authenticate(app.key) is not None
            os.replace(tmp_path / "copy.db", path)  # same content, another file
            with pytest.raises(StoreReplaced):
                await resolver.refresh_once()
            resolver.invalidate()  # what the refresh loop does on any failure
            with pytest.raises(StoreReplaced):
                await resolver.authenticate(app.key)
            with pytest.raises(StoreReplaced):
                await resolver.install(app.app_id, app.account, "test")
            with pytest.raises(StoreReplaced):
                await resolver.check_database()  # /readyz reports it
            await resolver.stop()

        asyncio.run(scenario())


def test_redact_keeps_only_prefix_and_last_four() -> None:
    secret = "sk_test_" + "A" * 60 + "wxyz"
    shown = redact(secret)
    assert shown.startswith("sk_test_") and shown.endswith("wxyz") and "AAAA" not in shown


def test_request_ids_are_unique_and_stripe_shaped() -> None:
    ids = RequestIds()
    seen = {ids.new() for _ in range(1000)}
    assert len(seen) == 1000 and all(i.startswith("req_") for i in seen)
    assert RequestIds().new() not in seen


def test_request_ids_are_the_prefix_and_the_counter_in_hex() -> None:
    """Across the points where the id's kept head changes (every 256 ids)."""
    ids = RequestIds()
    got = [ids.new() for _ in range(700)]
    prefix = got[0][:12]
    assert all(i[:12] == prefix for i in got)
    assert [i[12:] for i in got] == [f"{n:x}" for n in range(16**7, 16**7 + 700)]


def test_the_logs_decimals_are_what_the_float_formats_write() -> None:
    """The timestamp's six decimals and the fast line's milliseconds' three, made from
    integers: the float format's text, or one unit off where the float sits a hair from a
    half."""
    import io
    import random

    from permgate.gateway.logs import JsonLog, fixed6

    def close(got: str, want: str, unit: float) -> bool:
        return got == want or (len(got) == len(want)
                               and abs(float(got) - float(want)) <= 1.5 * unit)

    rng = random.Random(27)
    clocks = [0.0, 1.0, 0.0000004, 1796689620.378388, 1796689620.9999994,
              *(rng.uniform(1.7e9, 1.9e9) for _ in range(2000))]
    for t in clocks:
        assert close(fixed6(t), f"{t:.6f}", 1e-6), t
    out = io.StringIO()
    log = JsonLog(out)
    seconds = [0.0, 0.0000004, 0.0000005, 0.00125, 0.9999996, 30.0,
               *(rng.uniform(0, 0.1) for _ in range(2000))]
    for s in seconds:
        log.allowed("req_1", b"/v1/customers", ',"app":"a"', 200, s)
    log.flush()
    got = [line.rsplit('"ms":', 1)[1][:-1] for line in out.getvalue().splitlines()]
    assert len(got) == len(seconds)
    for text, s in zip(got, seconds, strict=True):
        assert close(text, f"{s * 1000:.3f}", 1e-3), (s, text)


def test_histogram_buckets_are_bisect_lefts() -> None:
    """A value on a bound counts in that bound's bucket (`le`), above the last in +Inf."""
    from bisect import bisect_left

    from permgate.gateway.metrics import UPSTREAM_BUCKETS, Histogram

    values = [0.0, 1e-9, 100.0, *UPSTREAM_BUCKETS, *(b * 1.0000001 for b in UPSTREAM_BUCKETS),
              *(b * 0.9999999 for b in UPSTREAM_BUCKETS)]
    for v in values:
        h = Histogram("h", "", UPSTREAM_BUCKETS)
        h.observe(v)
        assert h.counts.index(1) == bisect_left(UPSTREAM_BUCKETS, v), v


def test_metrics_exposition() -> None:
    m = Metrics()
    m.decision('app"x', "allowed")
    m.decision('app"x', "allowed")
    m.decision_seconds.observe(0.00002)
    m.upstream_seconds.observe(0.3)
    text = m.render().decode()
    assert 'permgate_decisions_total{app="app\\"x",outcome="allowed"} 2' in text
    assert 'permgate_decision_seconds_bucket{le="2.5e-05"} 1' in text
    assert 'permgate_decision_seconds_bucket{le="1e-05"} 0' in text
    assert 'permgate_upstream_seconds_bucket{le="0.25"} 0' in text
    assert 'permgate_upstream_seconds_bucket{le="0.5"} 1' in text
    assert "permgate_upstream_seconds_count 1" in text


def test_resolver_drops_caches_on_the_first_refresh_after_a_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Store.open(url, upgrade=True) as store:
        app = new_app(store, ["customer_read"])
        resolver = Resolver(store, permgate.engine.grant, refresh_interval=60)

        async def scenario() -> None:
            await resolver.refresh_once()
            info = await resolver.authenticate(app.key)
            assert info is not None and info.app_id == app.app_id
            found = await resolver.install(app.app_id, app.account, "test")
            assert found is not None and "customer_read" in found.compiled.closure
            store.uninstall(app.app_id, app.account, "test", by="a@example.com", role="admin")
            # Until the next refresh the cached grant stands; one refresh drops it.
            assert await resolver.install(app.app_id, app.account, "test") is not None
            await resolver.refresh_once()
            assert await resolver.install(app.app_id, app.account, "test") is None
            await resolver.stop()

        asyncio.run(scenario())


@pytest.mark.parametrize(("url", "host", "port", "header", "prefix", "tls"), [
    ("https://api.stripe.com", "api.stripe.com", 443, b"api.stripe.com", b"", True),
    ("http://127.0.0.1:12111", "127.0.0.1", 12111, b"127.0.0.1:12111", b"", False),
    ("http://[::1]:8080/stripe/", "::1", 8080, b"[::1]:8080", b"/stripe", False),
])
def test_upstream_origin(
    url: str, host: str, port: int, header: bytes, prefix: bytes, tls: bool
) -> None:
    from permgate.gateway.upstream import Origin

    o = Origin(url)
    assert (o.host, o.port, o.host_header, o.prefix, o.tls) == (host, port, header, prefix, tls)


def test_log_lines_are_json_whatever_repeats() -> None:
    import json

    from permgate.gateway.logs import _line

    # A value that spells a key (outcome "missing", key "missing") must stay a value.
    for _ in range(2):
        line = _line(1.0, "warning", "request", {
            "outcome": "missing", "missing": [["a", "b"]], "path": 'x"\n\u00e9', "ms": 1.5})
        assert json.loads(line) == {"ts": 1.0, "level": "warning", "event": "request",
                                    "outcome": "missing", "missing": [["a", "b"]],
                                    "path": 'x"\n\u00e9', "ms": 1.5}


def test_the_fast_request_line_is_the_general_one() -> None:
    import io
    import json

    from permgate.gateway.logs import JsonLog

    rec = {"request_id": "req_x1", "method": "GET", "path": '/v1/c"\u00e9', "app": "com.a",
           "mode": "test", "account": "acct_1", "outcome": "allowed", "status": 200,
           "ms": 0.25}
    fast, general = io.StringIO(), io.StringIO()
    JsonLog(fast).request("info", dict(rec))
    JsonLog(general).write("request", "info", **rec)
    for out in (fast, general):
        out.seek(0)
    a, b = json.loads(fast.getvalue()), json.loads(general.getvalue())
    assert a.pop("ts") and b.pop("ts")
    assert a == b == {"level": "info", "event": "request", **rec}


def test_the_fast_paths_pre_rendered_line_is_the_general_one() -> None:
    """`JsonLog.allowed` writes from kept pieces: each line is still the general writer's,
    field for field and in order, whichever pieces it reuses (same path, another status,
    another caller, a path too long to keep)."""
    import io
    import json

    from permgate.gateway.calls import Caller
    from permgate.gateway.logs import JsonLog

    fast, general = io.StringIO(), io.StringIO()
    log, ref = JsonLog(fast), JsonLog(general)
    long_path = "/v1/customers/" + "c\u00e9\"" * 200
    cases = [("/v1/customers", "com.a", 200), ("/v1/customers", "com.a", 200),
             ("/v1/customers", "com.a", 404), ("/v1/customers", "com.b", 200),
             ('/v1/c"\u00e9', "com.a", 200), (long_path, "com.a", 200),
             (long_path, "com.a", 200)]
    for n, (path, app, status) in enumerate(cases):
        raw = path.encode("utf-8")
        text = raw[:256].decode("latin-1")  # as the fast path reads a raw path
        caller = Caller(app, "test", "acct_1", None, None, 0.0, 0)
        log.allowed(f"req_{n}", raw, caller.logged, status, 0.00125)
        ref.write("request", "info", request_id=f"req_{n}", method="GET", path=text, app=app,
                  mode="test", account="acct_1", outcome="allowed", status=status, ms=1.25)
    log.flush()
    ref.flush()
    got = [json.loads(line) for line in fast.getvalue().splitlines()]
    want = [json.loads(line) for line in general.getvalue().splitlines()]
    assert len(got) == len(cases)
    for a, b in zip(got, want, strict=True):
        assert a.pop("ts") and b.pop("ts")
        assert list(a.items()) == list(b.items())


def test_the_request_log_skips_the_clis_escaping_its_lines_need_none() -> None:
    """`permgate serve`'s stderr escapes terminal controls (cli/_output.py); the request log
    writes past it, so its own lines must carry no control character, hostile paths too."""
    import io
    import json
    from typing import TextIO, cast

    from permgate.cli._output import EscapingStream
    from permgate.gateway.calls import Caller
    from permgate.gateway.logs import JsonLog

    raw = io.StringIO()
    log = JsonLog(cast(TextIO, EscapingStream(raw)))
    assert log.stream is raw
    hostile = "/v1/\x1b]0;owned\x07\u202e\x85"
    caller = Caller("com.\x1ba", "test", "acct_\x07", None, None, 0.0, 0)
    log.allowed("req_1", hostile.encode("utf-8"), caller.logged, 200, 0.001)
    log.write("request", "warning", path=hostile, missing=[hostile], reason=hostile)
    log.flush()
    text = raw.getvalue()
    assert text.isascii()
    assert not any((ord(c) < 32 and c != "\n") or ord(c) == 127 for c in text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["app"] == "com.\x1ba" and lines[0]["account"] == "acct_\x07"
    assert lines[1]["path"] == hostile and lines[1]["missing"] == [hostile]


def test_metrics_tallies_are_the_counts_read_and_summed() -> None:
    """The call path adds to a counter it holds (`tally`); `decisions`, `responses`, the
    exposition and a worker's snapshot read the same counts."""
    m = Metrics()
    held = m.tally("app_1", "allowed")
    held.n += 2
    m.decision("app_1", "allowed")
    m.decision("app_1", "missing")
    assert m.tally("app_1", "allowed") is held
    for status in (200, 200, 404):
        m.response(status)
    assert m.decisions == {("app_1", "allowed"): 3, ("app_1", "missing"): 1}
    assert m.responses == {200: 2, 404: 1}
    text = m.render().decode()
    assert 'permgate_decisions_total{app="app_1",outcome="allowed"} 3' in text
    assert 'permgate_responses_total{status="200"} 2' in text
    total = Metrics()
    total.response(200)
    total.add(m.snapshot())
    total.add(m.snapshot())
    assert total.decisions == {("app_1", "allowed"): 6, ("app_1", "missing"): 2}
    assert total.responses == {200: 5, 404: 2}
    m.decisions[("app_1", "allowed")] = 0  # a copy: writing to it counts nothing
    assert m.decisions[("app_1", "allowed")] == 3


def test_mount_lookups_remember_proxied_paths_boundedly() -> None:
    """A path no mount serves is remembered as the proxy's (one set lookup on a repeat):
    bounded in count and length, and forgotten when anything is mounted."""
    from permgate.gateway import mounts

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    table = mounts.MountTable(1024)
    table.mount("/healthz", app)
    assert table.mounted(b"/healthz") is not None
    for _ in range(2):
        assert table.mounted(b"/admin/apps") is None
    table.mount("/admin", app, prefix=True)  # mounted after the path was proxied
    assert table.mounted(b"/admin/apps") is not None
    assert table.mounted(b"/admin") is not None
    assert table.mounted(b"/administrator") is None
    for i in range(mounts._PROXIED_MAX + 10):
        assert table.mounted(b"/v1/customers/cus_%d" % i) is None
    assert table.mounted(b"/v1/" + b"x" * 10_000) is None
    assert 0 < len(table._proxied) <= mounts._PROXIED_MAX
    assert all(len(p) <= mounts._PROXIED_PATH for p in table._proxied)
    assert table.mounted(b"/admin/apps") is not None


def test_the_last_callers_pair_follows_the_cache(tmp_path: Path) -> None:
    """`Calls.cached` asks the pair it saw last before its dictionary: a caller made again
    (the generation moved) replaces it there too, and another pair never gets it."""
    from permgate.gateway.calls import Caller, Calls

    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", upgrade=True) as store:
        resolver = Resolver(store, permgate.engine.grant, refresh_interval=60)
        calls = Calls(resolver, permgate.engine.decide, {}, HeaderValues())
        auth, other = f"Bearer {KEY1}".encode(), b"Bearer sk_test_other"

        def caller(app: str) -> Caller:
            return Caller(app, "test", "acct_1", None, None, float("inf"), resolver.generation)

        old = caller("app_old")
        calls.remember(auth, b"acct_1", old)
        assert calls.cached(auth, b"acct_1") is old
        assert calls.cached(auth, None) is None
        assert calls.cached(other, b"acct_1") is None
        assert calls.cached(auth, b"acct_1") is old
        resolver.generation += 1  # as a store change moves it
        assert calls.cached(auth, b"acct_1") is None
        new = caller("app_new")
        calls.remember(auth, b"acct_1", new)
        assert calls.cached(auth, b"acct_1") is new
        calls.remember(other, None, caller("app_other"))
        assert calls.cached(auth, b"acct_1") is new  # from the dictionary again
        assert calls.cached(other, None) is not new


def test_the_last_pairs_key_is_never_compared_byte_by_byte(tmp_path: Path) -> None:
    """The last pair may be another client's: a wrong Authorization is never compared
    with its key byte by byte (`==`/`!=`: memcmp stops at the first differing byte), only
    their keyed hashes, as in the dictionary. A bytes subclass notes any `==`/`!=` asked of
    it (the pure build calls them; the compiled one is checked by the same code)."""
    from permgate.gateway.calls import Caller, Calls

    asked: list[str] = []

    class Guess(bytes):
        def __eq__(self, other: object) -> bool:
            asked.append("==")
            return bytes(self) == other

        def __ne__(self, other: object) -> bool:
            asked.append("!=")
            return bytes(self) != other

        __hash__ = bytes.__hash__

    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", upgrade=True) as store:
        resolver = Resolver(store, permgate.engine.grant, refresh_interval=60)
        calls = Calls(resolver, permgate.engine.decide, {}, HeaderValues())
        auth = f"Bearer {KEY1}".encode()
        victim = Caller("app_1", "test", "acct_1", None, None, float("inf"),
                        resolver.generation)
        calls.remember(auth, b"acct_1", victim)
        near = auth[:-1] + (b"0" if auth[-1:] != b"0" else b"1")  # one byte off, same length
        for guess in (near, b"B" * len(auth), auth[:-1], auth + b"0"):
            assert calls.cached(Guess(guess), b"acct_1") is None
        assert calls.cached(auth, b"acct_1") is victim
        assert asked == []
        assert calls.cached(Guess(b"B" + auth[1:]), b"acct_1") is victim  # equal bytes


def test_relay_lines_write_what_relay_headers_give() -> None:
    """The fast path's answer head (`relay_lines`) and the full path's headers
    (`relay_headers`) are one rule written twice: the same lines for the same upstream
    head, hop-by-hop names dropped, the upstream's request id renamed, Content-Length
    returned and not written, anything already on `out` kept."""
    from permgate.gateway.proxy import relay_headers, relay_lines

    upstream = [(b"content-type", b"application/json"), (b"connection", b"keep-alive"),
                (b"request-id", b"req_up"), (b"content-length", b"42"),
                (b"transfer-encoding", b"chunked"), (b"keep-alive", b"timeout=5"),
                (b"x-odd", b"\x00\xff" * 100), (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"), (b"request-id", b"req_up2")]
    for head in (upstream, [], [(b"content-length", b"0")]):
        headers, length = relay_headers("req_1", head)
        out = [b"HTTP/1.1 200 OK\r\n"]
        assert relay_lines("req_1", head, out) == length
        assert b"".join(out) == b"HTTP/1.1 200 OK\r\n" + b"".join(
            n + b": " + v + b"\r\n" for n, v in headers)
    headers, length = relay_headers("req_1", upstream)
    assert length == b"42" and headers[0] == (b"request-id", b"req_1")
    assert (b"upstream-request-id", b"req_up") in headers
    assert not {n for n, _ in headers} & {b"connection", b"content-length",
                                          b"transfer-encoding", b"keep-alive"}
