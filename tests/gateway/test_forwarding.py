"""What the gateway sends upstream and returns, against a recording upstream of our own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.gateway.procs import (
    UPSTREAM_KEY,
    App,
    Gateway,
    new_app,
    raw_request,
    run_gateway,
    upload,
)
from tests.gateway.recorder import BIG, Recorder

from permgate.gateway.demo import free_port
from permgate.store import Store

pytestmark = pytest.mark.e2e
LIMIT = 4096
METRICS_TOKEN = "metrics-" + "m" * 40


@pytest.fixture(scope="module")
def gw(db_url: str, recorder: Recorder, workdir: Path) -> Iterator[Gateway]:
    with run_gateway(db_url, recorder.url, workdir,
                     ["--body-limit", str(LIMIT), "--upstream-timeout", "1"],
                     env={"PERMGATE_METRICS_TOKEN": METRICS_TOKEN}) as g:
        yield g


@pytest.fixture(scope="module")
def app(store: Store) -> App:
    return new_app(store, ["customer_write", "charge_read"])


def headers(app: App, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account, **extra}


def test_forwards_the_decided_request_with_the_upstream_key(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    body = ("email=a%40example.com&metadata[k]=v"
            "&expand[]=invoice_settings.default_payment_method")
    r = httpx.post(gw.url + "/v1/customers?x=1", content=body, headers=headers(
        app, **{"Content-Type": "application/x-www-form-urlencoded",
                "Stripe-Version": "2025-03-31.basil", "Idempotency-Key": "idem-1",
                "Cookie": "secret=1", "X-Forwarded-For": "6.6.6.6"}))
    # the default payment method needs payment_method_read: denied, not forwarded.
    assert r.status_code == 403
    assert not any(q["target"].startswith("/v1/customers?x=1") for q in recorder.requests)

    body = "email=a%40example.com&metadata[k]=v"
    r = httpx.post(gw.url + "/v1/customers?x=1", content=body, headers=headers(
        app, **{"Content-Type": "application/x-www-form-urlencoded",
                "Stripe-Version": "2025-03-31.basil", "Idempotency-Key": "idem-1",
                "Cookie": "secret=1"}))
    assert r.status_code == 201, r.text
    seen = r.json()
    assert seen["method"] == "POST" and seen["target"] == "/v1/customers?x=1"
    assert seen["body"] == body
    h = seen["headers"]
    assert h["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert h["stripe-account"] == app.account
    assert h["stripe-version"] == "2025-03-31.basil"
    assert h["idempotency-key"] == "idem-1"
    assert h["content-type"] == "application/x-www-form-urlencoded"
    assert "cookie" not in h
    # The answer comes back with the upstream's headers, our request id first.
    assert r.headers["x-upstream-header"] == "kept"
    assert r.headers["request-id"].startswith("req_")
    assert r.headers["request-id"] != "req_from_upstream"
    assert r.headers["upstream-request-id"] == "req_from_upstream"


def test_query_is_forwarded_byte_for_byte(gw: Gateway, recorder: Recorder, app: App) -> None:
    target = "/v1/customers?email=a%2Bb%40example.com&limit=3&starting_after=cus_1"
    answer = raw_request(gw.url, f"GET {target} HTTP/1.1",
                         [f"{k}: {v}" for k, v in headers(app).items()])
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert recorder.paths()[-1] == target


def test_upstream_connections_are_kept_alive(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    for i in range(5):
        r = httpx.get(gw.url + f"/v1/customers?keepalive={i}", headers=headers(app))
        assert r.status_code == 200
    seen = [q for q in recorder.requests if "keepalive=" in q["target"]]
    assert len(seen) == 5
    assert len({q["peer_port"] for q in seen}) == 1  # one upstream connection, reused


def test_streams_a_large_chunked_answer(gw: Gateway, app: App) -> None:
    with httpx.stream("GET", gw.url + "/v1/customers/cus_big", headers=headers(app)) as r:
        assert r.status_code == 200
        assert b"".join(r.iter_bytes()) == BIG


def test_body_over_the_limit_is_refused_unread(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    big = "email=" + "a" * LIMIT
    r = httpx.post(gw.url + "/v1/customers", content=big, headers=headers(
        app, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        yield b"email="
        for _ in range(LIMIT // 512 + 2):
            yield b"a" * 512

    r = httpx.post(gw.url + "/v1/customers", content=chunks(), headers=headers(
        app, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert r.status_code == 413
    assert not any(q["body"].startswith("email=aaaa") for q in recorder.requests)


def test_slow_upstream_gives_504(gw: Gateway, app: App) -> None:
    r = httpx.get(gw.url + "/v1/customers/cus_slow", headers=headers(app), timeout=30)
    assert r.status_code == 504
    err = r.json()["error"]
    assert err["type"] == "api_error" and "did not answer within 1 s" in err["message"]


def test_post_is_not_retried_when_the_upstream_drops_it(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    before = len([p for p in recorder.paths() if p == "/v1/customers/cus_drop"])
    r = httpx.post(gw.url + "/v1/customers/cus_drop", content="name=x", headers=headers(
        app, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "api_error"
    after = len([p for p in recorder.paths() if p == "/v1/customers/cus_drop"])
    assert after - before == 1


def test_account_rules(gw: Gateway, app: App) -> None:
    no_account = {"Authorization": f"Bearer {app.key}"}
    r = httpx.get(gw.url + "/v1/customers", headers=no_account)
    assert r.status_code == 400 and "Stripe-Account" in r.json()["error"]["message"]
    r = httpx.get(gw.url + "/v1/customers", headers={**no_account, "Stripe-Account": "acct_1;x"})
    assert r.status_code == 400


def test_restricted_key_carries_its_install(
    gw: Gateway, store: Store, recorder: Recorder
) -> None:
    import secrets

    from tests.gateway.procs import manifest_text

    from permgate import manifest as manifest_mod

    app_id = f"com.example.rk{secrets.token_hex(4)}"
    account = f"acct_rk{secrets.token_hex(4)}"
    store.upload_version(manifest_mod.parse(
        manifest_text(app_id, "1.0.0", ["customer_read"], "restricted_api_key")), actor="t")
    installed = store.install(app_id, account, "test", by="admin@example.com", role="admin")
    assert installed.key is not None and installed.key.secret.startswith("rk_test_")
    key = installed.key.secret
    r = httpx.get(gw.url + "/v1/customers", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["stripe-account"] == account
    r = httpx.get(gw.url + "/v1/customers",
                  headers={"Authorization": f"Bearer {key}", "Stripe-Account": "acct_other"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "account_invalid"


def test_metrics_health_and_readiness(gw: Gateway, app: App) -> None:
    httpx.get(gw.url + "/v1/charges", headers=headers(app))
    httpx.get(gw.url + "/v1/payouts", headers=headers(app))
    text = httpx.get(gw.url + "/metrics",
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert f'permgate_decisions_total{{app="{app.app_id}",outcome="allowed"}}' in text
    assert f'permgate_decisions_total{{app="{app.app_id}",outcome="missing"}}' in text
    assert "permgate_decision_seconds_bucket" in text
    assert "permgate_upstream_seconds_count" in text
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok", "upstream": "ok"}


def test_denials_are_logged_as_audit_records(gw: Gateway, app: App) -> None:
    r = httpx.get(gw.url + "/v1/payouts", headers=headers(app))
    assert r.status_code == 403
    rid = r.headers["request-id"]
    rec = gw.record(rid)
    assert rec["audit"] is True and rec["outcome"] == "missing" and rec["status"] == 403
    assert rec["app"] == app.app_id and rec["account"] == app.account
    assert rec["missing"][0][:2] == ["payout_read", "payout_write"]  # type: ignore[index]
    assert "payout_read" in str(rec["reason"])


def test_a_denial_says_when_an_upgrade_awaiting_approval_asks_for_it(
    gw: Gateway, store: Store
) -> None:
    """Version 2 asks for invoice_read; until an administrator approves it, the install
    keeps version 1's grant, and a call needing invoice_read is told approval is pending."""
    waiting = new_app(store, ["customer_read"])
    upload(store, waiting, "2.0.0", ["customer_read", "invoice_read"])
    grant = store.effective_grant(waiting.app_id, waiting.account, "test")
    assert grant is not None and grant.status == "pending_approval"
    r = httpx.get(gw.url + "/v1/invoices", headers=headers(waiting))
    message = r.json()["error"]["message"]
    assert r.status_code == 403 and "'invoice_read'" in message
    assert (f"Version 2.0.0 of '{waiting.app_id}' asks for 'invoice_read'" in message
            and f"account '{waiting.account}' has not approved it yet" in message
            and "once approved, this request will be allowed" in message), message
    r = httpx.get(gw.url + "/v1/payouts", headers=headers(waiting))  # not what v2 asks for
    assert r.status_code == 403 and "approv" not in r.json()["error"]["message"]
    plain = new_app(store, ["customer_read"])  # no upgrade waiting: no hint
    r = httpx.get(gw.url + "/v1/invoices", headers=headers(plain))
    assert r.status_code == 403 and "approv" not in r.json()["error"]["message"]


def test_dead_upstream_gives_502_and_not_ready(
    db_url: str, store: Store, workdir: Path
) -> None:
    app = new_app(store, ["customer_read"])
    dead = f"http://127.0.0.1:{free_port()}"
    with run_gateway(db_url, dead, workdir, ["--connect-timeout", "1"]) as g:
        r = httpx.get(g.url + "/v1/customers", headers=headers(app))
        assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"
        ready = httpx.get(g.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["upstream"].startswith("error")


def test_report_only_forwards_denied_calls_but_never_hostile_paths(
    db_url: str, store: Store, recorder: Recorder, workdir: Path
) -> None:
    app = new_app(store, ["customer_read"])
    with run_gateway(db_url, recorder.url, workdir, ["--report-only"]) as g:
        r = httpx.get(g.url + "/v1/charges?report_only=1", headers=headers(app))
        assert r.status_code == 200  # forwarded: the recorder answered
        assert "/v1/charges?report_only=1" in recorder.paths()
        rid = r.headers["request-id"]
        rec = g.record(rid)
        assert rec["would_deny"] is True and rec["outcome"] == "missing"
        answer = raw_request(g.url, "GET /v1/customers/../charges?hostile=1 HTTP/1.1",
                             [f"{k}: {v}" for k, v in headers(app).items()])
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert not any("hostile=1" in p for p in recorder.paths())
        # A body the engine does not read is never forwarded either (issue 11, item 1).
        r = httpx.post(g.url + "/v1/customers/cus_1?json_body=1",
                       content=b'{"expand":["default_source"]}',
                       headers={**headers(app), "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content_type"
        assert not any("json_body=1" in p for p in recorder.paths())


def test_metrics_need_the_metrics_token(gw: Gateway, app: App) -> None:
    # Regression (issue 11, item 7): /metrics answered anyone, naming every calling app.
    httpx.get(gw.url + "/v1/charges", headers=headers(app))
    for given in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN},
                  {"Authorization": f"Basic {METRICS_TOKEN}"}):
        r = httpx.get(gw.url + "/metrics", headers=given)
        assert r.status_code == 401, given
        assert app.app_id not in r.text
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and app.app_id in r.text


def test_metrics_are_off_without_a_token(
    db_url: str, store: Store, recorder: Recorder, workdir: Path
) -> None:
    app = new_app(store, ["customer_read"])
    with run_gateway(db_url, recorder.url, workdir) as g:
        httpx.get(g.url + "/v1/customers", headers=headers(app))
        r = httpx.get(g.url + "/metrics")
        assert r.status_code == 404 and app.app_id not in r.text
        assert "PERMGATE_METRICS_TOKEN" in r.json()["error"]["message"]


def test_sandbox_restricted_key_is_forwarded_with_the_test_key(
    gw: Gateway, store: Store, recorder: Recorder
) -> None:
    # Regression (issue 11, item 7): a sandbox install's restricted key always got 503
    # ("no upstream key for sandbox mode").
    import secrets

    from tests.gateway.procs import manifest_text

    from permgate import manifest as manifest_mod

    app_id = f"com.example.sb{secrets.token_hex(4)}"
    account = f"acct_sb{secrets.token_hex(4)}"
    store.upload_version(manifest_mod.parse(
        manifest_text(app_id, "1.0.0", ["customer_read"], "restricted_api_key")), actor="t")
    installed = store.install(app_id, account, "sandbox", by="admin@example.com", role="admin")
    assert installed.key is not None
    r = httpx.get(gw.url + "/v1/customers?sandbox=1",
                  headers={"Authorization": f"Bearer {installed.key.secret}"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert seen["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen["stripe-account"] == account
    r = httpx.get(gw.url + "/v1/charges",
                  headers={"Authorization": f"Bearer {installed.key.secret}"})
    assert r.status_code == 403


def test_malformed_and_oversized_keys_and_headers(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    # Regression (issue 11, item 3): huge keys were parsed, looked up, cached and echoed.
    before = len(recorder.requests)
    huge = "sk_test_" + "x" * 200_000
    r = httpx.get(gw.url + "/v1/customers", headers={"Authorization": f"Bearer {huge}",
                                                      "Stripe-Account": app.account})
    assert r.status_code in (401, 431), r.status_code  # the server may refuse it first
    assert "xxxxxxxx" not in r.text
    r = httpx.get(gw.url + "/v1/customers", headers={
        "Authorization": f"Bearer {app.key}x", "Stripe-Account": app.account})
    assert r.status_code == 401 and app.key not in r.text
    assert "does not hold a key" in r.json()["error"]["message"]
    r = httpx.get(gw.url + "/v1/customers", headers={
        **headers(app), **{f"X-Pad-{i}": "p" * 1000 for i in range(20)}})
    assert r.status_code == 431, r.text
    assert r.json()["error"]["code"] == "request_headers_too_large"
    assert len(recorder.requests) == before


def test_a_replaced_sqlite_file_fails_closed(
    recorder: Recorder, workdir: Path, tmp_path: Path
) -> None:
    # Regression (issue 11, item 7): a database file replaced under a running gateway went
    # unnoticed; the gateway went on answering from the old, unlinked file.
    import os
    import shutil

    from tests.gateway.procs import wait_until

    path = tmp_path / "replaced.db"
    url = f"sqlite:///{path}"
    with Store.open(url, upgrade=True) as s:
        app = new_app(s, ["customer_read"])
    shutil.copy(path, tmp_path / "restore.db")
    with run_gateway(url, recorder.url, workdir) as g:
        assert httpx.get(g.url + "/v1/customers", headers=headers(app)).status_code == 200
        os.replace(tmp_path / "restore.db", path)
        wait_until(lambda: httpx.get(g.url + "/v1/customers", headers=headers(app))
                   .status_code == 503, what="503 after the file was replaced")
        ready = httpx.get(g.url + "/readyz")
        assert ready.status_code == 503 and "replaced" in ready.json()["checks"]["database"]


def test_workers_share_the_load_and_metrics_add_up_across_them(
    db_url: str, store: Store, recorder: Recorder, workdir: Path
) -> None:
    from tests.gateway.procs import wait_until

    app = new_app(store, ["customer_read"])
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with run_gateway(db_url, recorder.url, workdir, ["--workers", "2"],
                     env={"PERMGATE_METRICS_TOKEN": METRICS_TOKEN}) as g:
        pid = g.process.pid
        workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(workers) == 2
        prefixes = set()
        for _ in range(40):  # a new connection each: the kernel spreads them over workers
            r = httpx.get(g.url + "/v1/customers", headers=headers(app))
            assert r.status_code == 200
            prefixes.add(r.headers["request-id"][:12])
        assert len(prefixes) == 2  # both workers answered
        line = f'permgate_decisions_total{{app="{app.app_id}",outcome="allowed"}} 40'

        def summed() -> bool:
            return line in httpx.get(g.url + "/metrics", headers=token).text

        wait_until(summed, what="metrics summed over both workers")
    for worker in workers:  # stopping the gateway stopped its workers
        assert not Path(f"/proc/{worker}").exists() or \
            "zombie" in Path(f"/proc/{worker}/status").read_text()


def test_a_customers_source_is_decided_by_its_id(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    # Issue 24 review: a customer's card_ is the customer's (customer_read, implied by the
    # app's customer_write); its src_ is a Source, its own API object (source_read).
    r = httpx.get(gw.url + "/v1/customers/cus_1/sources/card_1?by_prefix=1",
                  headers=headers(app))
    assert r.status_code == 200, r.text
    r = httpx.get(gw.url + "/v1/customers/cus_1/sources/src_1?by_prefix=2",
                  headers=headers(app))
    assert r.status_code == 403 and "'source_read'" in r.json()["error"]["message"]
    assert any("by_prefix=1" in p for p in recorder.paths())
    assert not any("by_prefix=2" in p for p in recorder.paths())
