"""Webhook SSRF (issue 11, item 5): where endpoints may point, checked at registration (API,
CLI, admin API) and at every delivery, with connections pinned to the checked address."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.events.support import Receiver, event, install, new_app, receiver, wait_until
from tests.store.test_admin import base_url, http

from permgate.cli import main
from permgate.events import (
    DeliveryWorker,
    RetryPolicy,
    Sealer,
    accept,
    add_endpoint,
    list_deliveries,
)
from permgate.events.schema import webhook_endpoints
from permgate.events.targets import DEV_SETTING, TargetPolicy, TargetRefused, redact
from permgate.events.transport import Target, Transport
from permgate.store import Store

__all__ = ["base_url", "http"]  # fixtures, used by name
PUBLIC = "93.184.215.14"
FAST = RetryPolicy(first_delay=0.05, max_delay=0.2, horizon=60.0, jitter=0.0)


def dns(table: dict[str, list[str]]) -> TargetPolicy:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]
    return TargetPolicy(resolver=resolve)


NAMES = {"hooks.example.com": [PUBLIC], "inside.example.com": ["10.0.0.7"],
         "both.example.com": [PUBLIC, "127.0.0.1"], "v6.example.com": ["2606:4700::1111"],
         "mapped.example.com": ["::ffff:169.254.169.254"]}


@pytest.fixture(autouse=True)
def no_dev_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEV_SETTING, raising=False)


@pytest.fixture
def app(store: Store) -> str:
    app_id = new_app(store, ["event_read", "customer_read"])
    install(store, app_id)
    return app_id


@pytest.fixture
def sealer(monkeypatch: pytest.MonkeyPatch) -> Sealer:
    key = secrets.token_hex(32)
    monkeypatch.setenv("PERMGATE_WEBHOOK_KEY", key)
    return Sealer(bytes.fromhex(key))


REFUSED = [
    "https://127.1/h", "https://0x7f000001/h", "https://2130706433/h", "https://0177.0.0.1/h",
    "https://[::1]/h", "https://169.254.169.254/latest/meta-data", "https://10.0.0.1/h",
    "https://metadata.google.internal/computeMetadata/v1/", "https://user:pw@hooks.example.com/h",
    "https://hooks.example.com/a b", "https://hooks.example.com/\x1b", "http://hooks.example.com/h",
    "https://[::ffff:127.0.0.1]/h", "https://[64:ff9b::a00:1]/h", "https://[2002:a00:1::]/h",
    "https://localhost/h", "https://hooks.example.com/h#frag", "https://inside.example.com/h",
    "https://both.example.com/h", "https://mapped.example.com/h", "https://nowhere.example.com/",
    "https://intranet/h", "https://svc.internal/h", "https://0.0.0.0/h", "https://[fe80::1%25eth0]/",
    "ftp://hooks.example.com/h", "https:///h", "https://hooks.example.com\\@10.0.0.1/",
    "https://" + "a" * 2050 + ".com/", "https://hooks.example.com:0/h",
]


@pytest.mark.parametrize("url", REFUSED)
def test_live_endpoints_must_be_https_on_a_public_address(
    store: Store, app: str, sealer: Sealer, url: str,
) -> None:
    with pytest.raises(TargetRefused):
        add_endpoint(store, app, url, ["*"], "live", by="dev", sealer=sealer,
                     targets=dns(NAMES))
    assert not store.engine.connect().execute(sa.select(webhook_endpoints)).all()


@pytest.mark.parametrize("url", ["https://hooks.example.com/h?x=1", "https://93.184.215.14/",
                                 "https://v6.example.com:8443/hooks", "https://HOOKS.example.com/"])
def test_public_https_endpoints_are_registered(
    store: Store, app: str, sealer: Sealer, url: str,
) -> None:
    ep = add_endpoint(store, app, url, ["*"], "live", by="dev", sealer=sealer,
                      targets=dns({**NAMES, "HOOKS.example.com": [PUBLIC]}))
    assert ep.endpoint.url == url


def test_the_dev_setting_opens_private_targets_for_test_mode_only(
    store: Store, app: str, sealer: Sealer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(store, app, "test")
    with pytest.raises(TargetRefused, match="https"):
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "test", by="d", sealer=sealer)
    monkeypatch.setenv(DEV_SETTING, "test")
    add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "test", by="d", sealer=sealer)
    with pytest.raises(TargetRefused):
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="d", sealer=sealer)
    monkeypatch.setenv(DEV_SETTING, "all")
    for url in ("https://169.254.169.254/", "http://u:p@127.0.0.1:9/",
                "http://metadata.google.internal/", "http://[fd00:ec2::254]/",
                "http://127.0.0.1:9/ x"):
        with pytest.raises(TargetRefused):  # never, whatever the setting
            add_endpoint(store, app, url, ["*"], "test", by="d", sealer=sealer)
    monkeypatch.setenv(DEV_SETTING, "yes please")
    with pytest.raises(TargetRefused, match="must be 'test' or 'all'"):
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "test", by="d", sealer=sealer)


def test_cli_webhooks_add_refuses_and_list_never_shows_a_password(
    store: Store, app: str, sqlite_url: str, sealer: Sealer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url, says in (("https://127.1/h", "numeric host"),
                      ("https://user:hunter2@hooks.example.com/h", "user name or password")):
        code = main(["webhooks", "add", app, "--url", url, "--events", "*", "--mode", "live",
                     "--db", sqlite_url])
        assert code == 2
        assert says in capsys.readouterr().err
    # An endpoint stored before userinfo was refused keeps its row, but not in listings.
    with store.engine.begin() as conn:
        conn.execute(webhook_endpoints.insert().values(
            endpoint_id="we_legacy", app_id=app, url="https://user:hunter2@old.example.com/h",
            mode="live", enabled_events=["*"], secret_sealed="x", secret_hint="whsec_...abcd",
            created_at=sa.func.now(), created_by="old"))
    assert main(["webhooks", "list", "--db", sqlite_url]) == 0
    assert main(["webhooks", "list", "--json", "--db", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "https://***@old.example.com/h" in out
    assert redact("https://a:b@h.example/x?y#z") == "https://***@h.example/x?y#z"


@contextmanager
def counting_listener() -> Iterator[tuple[int, list[int]]]:
    """A TCP port that counts the connections made to it (and answers nothing)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    count = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            count[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], count
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_delivery_re_resolves_and_refuses_a_rebound_name(
    store: Store, app: str, sealer: Sealer,
) -> None:
    answers = {"hooks.example.com": [PUBLIC]}
    policy = dns(answers)
    with counting_listener() as (port, connections):
        add_endpoint(store, app, f"https://hooks.example.com:{port}/h", ["*"], "live",
                     by="dev", sealer=sealer, targets=policy)
        answers["hooks.example.com"] = ["127.0.0.1"]  # the name now points inside
        accept(store, event("customer.created"))
        with DeliveryWorker(store, sealer=sealer, policy=FAST, timeout=5.0,
                            targets=policy) as w:
            assert w.run_once() == 1
        [d] = list_deliveries(store, app_id=app)
        assert d.status == "pending" and d.attempts == 1
        assert "127.0.0.1 is a loopback address" in (d.last_error or "")
        assert connections[0] == 0  # refused before any connection


def test_delivery_connects_to_the_address_it_checked(
    store: Store, app: str, sealer: Sealer,
) -> None:
    # A name only our resolver knows: the delivery can reach the receiver only through the
    # address the policy checked, never by a second lookup of its own.
    install(store, app, "test")
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    policy = TargetPolicy(private_modes=frozenset({"test"}), resolver=resolve)
    rec: Receiver
    with receiver() as rec:
        port = rec.url.rsplit(":", 1)[1]
        add_endpoint(store, app, f"http://pinned.test-only.example:{port}/h", ["*"], "test",
                     by="dev", sealer=sealer, targets=policy)
        accept(store, event("customer.created", livemode=False))
        with DeliveryWorker(store, sealer=sealer, policy=FAST, timeout=5.0,
                            targets=policy) as w:
            w.drain()
        wait_until(lambda: len(rec.at("/h")) == 1, what="the delivery")
    [got] = rec.at("/h")
    assert got.headers["Host"] == f"pinned.test-only.example:{port}"
    assert json.loads(got.body)["type"] == "customer.created"
    assert calls == ["pinned.test-only.example"] * 2  # registration, then the one connection


def test_admin_api_refuses_private_targets(
    http: httpx.Client, sealer: Sealer, app: str,
) -> None:
    for url, code in (("https://169.254.169.254/", "url_not_public"),
                      ("https://u:p@hooks.example.com/", "url_invalid")):
        r = http.post("/v1/webhook_endpoints", json={
            "app_id": app, "url": url, "mode": "live", "actor": "dev",
            "enabled_events": ["*"]})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code


# -- the delivery transport (events/transport.py) applies the same policy ---------------------

def _post(transport: Transport, target: Target) -> int:
    async def go() -> int:
        try:
            resp = await transport.post(target, b"{}", {"Content-Type": "application/json"})
            return resp.status
        finally:
            await transport.close()
    return asyncio.run(go())


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["10.0.0.7"], [PUBLIC, "127.0.0.1"],
                                    ["::ffff:169.254.169.254"]])
def test_transport_refuses_a_live_name_that_now_resolves_inside(answer: list[str]) -> None:
    # Registered while the name was public; at delivery it points inside (DNS rebinding):
    # refused before any connection, with the address that was refused in the reason.
    with counting_listener() as (port, connections):
        transport = Transport(policy=dns({"hooks.example.com": answer}), timeout=5.0)
        with pytest.raises(TargetRefused, match=r"webhooks may not go to hooks\.example\.com"):
            _post(transport, Target("we_1", f"https://hooks.example.com:{port}/h", False,
                                    "live"))
        assert connections[0] == 0


def test_transport_connects_to_the_checked_address_and_never_resolves_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The policy's resolver answers 127.0.0.1 once and something else afterwards; the
    # system resolver must never see the name: the connection goes to the address checked.
    name = "rebind.test-only.example"
    answers = [["127.0.0.1"]]
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers.pop(0) if answers else ["10.0.0.7"]

    real = socket.getaddrinfo

    def system(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host != name, "the name was resolved a second time"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", system)
    policy = TargetPolicy(private_modes=frozenset({"test"}), resolver=resolve)
    rec: Receiver
    with receiver() as rec:
        port = rec.url.rsplit(":", 1)[1]
        transport = Transport(policy=policy, timeout=5.0)
        assert _post(transport, Target("we_1", f"http://{name}:{port}/h", False, "test")) == 200
        wait_until(lambda: len(rec.at("/h")) == 1, what="the request")
    assert asked == [name]  # resolved once, for the one connection
    [got] = rec.at("/h")
    assert got.headers["Host"] == f"{name}:{port}"  # sent to the address, named as the URL
    # A new connection resolves again; the name now points inside: refused for live.
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.7 is a private"):
        _post(Transport(policy=TargetPolicy(resolver=resolve), timeout=5.0),
              Target("we_1", f"https://{name}:{port}/h", False, "live"))


def test_transport_keeps_listen_targets_on_loopback() -> None:
    # A local (listen) target needs no development setting, but only loopback will do.
    with counting_listener() as (port, connections):
        for url, answer, says in (
                (f"http://hooks.example.com:{port}/h", [PUBLIC], "must target this machine"),
                (f"http://localhost:{port}/h", ["10.0.0.7"], "not a loopback address"),
                (f"http://169.254.169.254:{port}/h", [], "must target this machine")):
            transport = Transport(policy=dns({"localhost": answer}), timeout=5.0)
            with pytest.raises(TargetRefused, match=says):
                _post(transport, Target("we_l", url, True, "test"))
        assert connections[0] == 0
        with pytest.raises(TargetRefused, match="https"):  # a standard one: no http:// here
            _post(Transport(policy=dns({}), timeout=5.0),
                  Target("we_s", f"http://127.0.0.1:{port}/h", False, "test"))
