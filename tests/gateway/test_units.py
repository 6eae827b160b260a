"""The gateway's parts on their own: settings, key parsing, the resolver, metrics, ids."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from tests.gateway.procs import new_app

import permgate
from permgate.gateway.auth import account_header, presented_key
from permgate.gateway.config import ConfigError, resolve, upstream_keys
from permgate.gateway.errors import redact
from permgate.gateway.logs import RequestIds
from permgate.gateway.metrics import Metrics
from permgate.gateway.resolver import Resolver
from permgate.store import Store


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


def test_presented_key_forms() -> None:
    assert presented_key(None) is None
    assert presented_key(b"Bearer sk_test_1") == "sk_test_1"
    assert presented_key(b"bearer   sk_test_1 ") == "sk_test_1"
    basic = b"Basic " + base64.b64encode(b"sk_test_2:")
    assert presented_key(basic) == "sk_test_2"
    assert presented_key(b"Basic !!!") == ""
    assert presented_key(b"Token sk_test_1") == ""
    assert presented_key("Bearer sk_\u00e9".encode()) == ""


def test_account_header() -> None:
    assert account_header(b"acct_1AbC") == "acct_1AbC"
    assert account_header(b" acct_1 ") == "acct_1"
    for bad in (b"acct_", b"acct_1;x", b"cus_1", b"acct_1\r\nx: y"):
        assert account_header(bad) is None


def test_redact_keeps_only_prefix_and_last_four() -> None:
    secret = "sk_test_" + "A" * 60 + "wxyz"
    shown = redact(secret)
    assert shown.startswith("sk_test_") and shown.endswith("wxyz") and "AAAA" not in shown


def test_request_ids_are_unique_and_stripe_shaped() -> None:
    ids = RequestIds()
    seen = {ids.new() for _ in range(1000)}
    assert len(seen) == 1000 and all(i.startswith("req_") for i in seen)
    assert RequestIds().new() not in seen


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
