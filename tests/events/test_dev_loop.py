"""`permgate listen` and `permgate trigger`, as an app builder runs them; endpoint health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe
from tests.events.conftest import FAST
from tests.events.support import ACCOUNT, Receiver, event, install, new_app, wait_until

from permgate.cli import main
from permgate.events import DeliveryWorker, Sealer, accept, add_endpoint, list_deliveries
from permgate.events.listen import describe, open_session, run_session
from permgate.events.outbox import Router
from permgate.events.subscriptions import get_endpoint, list_endpoints
from permgate.events.trigger import trigger
from permgate.events.worker import Outcome
from permgate.store import Store

PERMGATE = str(Path(sys.executable).parent / "permgate")


@pytest.mark.slow
def test_listen_command_forwards_a_triggered_event_that_the_sdk_verifies(
    store: Store, sqlite_url: str, webhook_key: str, rec: Receiver, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app, "test")
    forward = rec.url.removeprefix("http://") + "/webhooks"  # as typed: no scheme
    proc = subprocess.Popen(
        [PERMGATE, "listen", "--app", app, "--forward-to", forward, "--db", sqlite_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("Ready!"), lines
        secret = lines[1].split("secret is ")[1].split()[0]
        assert secret.startswith("whsec_")
        [ep] = list_endpoints(store, app)
        assert (ep.kind, ep.mode, ep.url) == ("local", "test", "http://" + forward)
        assert main(["trigger", "customer.created", "--app", app, "--db", sqlite_url]) == 0
        out = capsys.readouterr().out
        assert f"{app} (test): received; queued for {ep.endpoint_id}" in out
        wait_until(lambda: len(rec.at("/webhooks")) == 1, what="the forwarded event")
        [got] = rec.at("/webhooks")
        verified = stripe.Webhook.construct_event(
            got.body.decode(), got.headers["Stripe-Signature"], secret)
        assert verified["type"] == "customer.created" and verified["account"] == ACCOUNT
        assert verified["data"]["object"]["object"] == "customer"  # Stripe's sample
        line = proc.stdout.readline()
        assert line.split() == ["customer.created", verified["id"], ACCOUNT, "->", "[200]"]
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert f"removed {ep.endpoint_id}" in rest
    assert list_endpoints(store, app) == []


def test_listen_session_gets_only_what_the_grant_allows_and_workers_leave_it_alone(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app, "test")
    new = open_session(store, app, rec.url + "/local", ["*"], by="dev", sealer=sealer)
    allowed = event("customer.updated", livemode=False)
    denied = event("charge.succeeded", livemode=False)  # needs charge_read
    assert accept(store, allowed).deliveries == 1
    assert accept(store, denied).deliveries == 0
    with DeliveryWorker(store, sealer=sealer, policy=FAST) as general:
        assert general.drain() == 0  # a local endpoint is its session's alone
    seen: list[Outcome] = []
    stop = threading.Event()
    session = threading.Thread(target=run_session, args=(store, new, stop), kwargs={
        "on_outcome": seen.append, "by": "dev", "sealer": sealer, "idle": 0.02})
    session.start()
    try:
        wait_until(lambda: len(seen) == 1, what="the forward")
    finally:
        stop.set()
        session.join()
    assert rec.event_ids("/local") == [allowed["id"]]
    assert describe(seen[0]).endswith("-> [200]")
    assert get_endpoint(store, new.endpoint.endpoint_id).status == "removed"


def test_local_endpoints_target_loopback_only(store: Store, sealer: Sealer) -> None:
    from permgate.store import StoreError

    app = new_app(store, ["event_read", "customer_read"])
    with pytest.raises(StoreError, match="must target this machine"):
        open_session(store, app, "example.com/hooks", ["*"], by="dev", sealer=sealer)


def test_trigger_names_the_missing_permission(
    store: Store, sqlite_url: str, webhook_key: str, capsys: pytest.CaptureFixture[str],
) -> None:
    reader = new_app(store, ["event_read", "customer_read"])
    no_events = new_app(store, ["customer_read"])
    invoices = new_app(store, ["event_read", "invoice_read"])
    for app in (reader, no_events, invoices):
        install(store, app, "test")
    done = trigger(store, "customer.created", account=ACCOUNT)
    verdicts = {v.app_id: v for v in done.verdicts}
    assert verdicts[reader].allowed
    assert not verdicts[no_events].allowed and "'event_read'" in verdicts[no_events].message
    assert not verdicts[invoices].allowed
    assert "'customer_read'" in verdicts[invoices].message
    db = ("--db", sqlite_url)
    assert main(["trigger", "customer.created", "--app", invoices, *db]) == 3
    out = capsys.readouterr().out
    assert f"{invoices} (test): not received." in out and "'customer_read'" in out
    assert main(["trigger", "invoice.paid", "--app", invoices, "--json", *db]) == 0
    [v] = json.loads(capsys.readouterr().out)["apps"]
    assert v["allowed"] and v["app_id"] == invoices
    assert main(["trigger", "customer.creatd", *db]) != 0
    assert "not an event type" in capsys.readouterr().err
    # --api-version: a Go/.NET handler's pinned version; a malformed one is bad input (2)
    assert main(["trigger", "invoice.paid", "--app", invoices, "--api-version",
                 "2024-09-30.acacia", "--json", *db]) == 0
    capsys.readouterr()
    assert main(["trigger", "invoice.paid", "--api-version", "yesterday", *db]) == 2
    assert "--api-version: an API version is a date" in capsys.readouterr().err


def test_an_endpoint_failing_for_days_is_disabled_until_enabled(
    store: Store, sqlite_url: str, sealer: Sealer, webhook_key: str, rec: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rec.answer = lambda path, n: 500 if path == "/dead" else 200
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    dead = add_endpoint(store, app, rec.url + "/dead", ["*"], "live", by="dev",
                        sealer=sealer).endpoint
    add_endpoint(store, app, rec.url + "/ok", ["*"], "live", by="dev", sealer=sealer)
    router = Router(store)
    assert accept(store, event("customer.created"), router=router).deliveries == 2
    now = [datetime.now(UTC)]
    with DeliveryWorker(store, sealer=sealer, policy=FAST, clock=lambda: now[0],
                        disable_after=timedelta(days=3)) as w:
        w.drain(max_rounds=1)
        ep = get_endpoint(store, dead.endpoint_id)
        assert ep.status == "enabled" and ep.failing_since is not None
        # New events keep coming and keep failing there (and succeeding at /ok).
        now[0] += timedelta(days=2)
        accept(store, event("customer.updated"), router=router)
        w.drain(max_rounds=1)
        assert get_endpoint(store, dead.endpoint_id).status == "enabled"
        now[0] += timedelta(days=1, minutes=1)
        accept(store, event("customer.updated"), router=router)
        w.drain(max_rounds=1)
    ep = get_endpoint(store, dead.endpoint_id)
    assert ep.status == "disabled" and "failed since" in (ep.disabled_reason or "")
    last = [d for d in list_deliveries(store) if d.endpoint_id == dead.endpoint_id][-1]
    assert (last.status, last.last_error) == ("cancelled", "endpoint disabled")
    [healthy] = [e for e in list_endpoints(store, app) if e.endpoint_id != dead.endpoint_id]
    assert healthy.failing_since is None
    assert [e.action for e in store.audit(app=app) if e.action == "webhook.disabled"]
    # New events skip it (the router's cache saw the change), the healthy endpoint not.
    assert accept(store, event("customer.updated"), router=router).deliveries == 1
    db = ("--db", sqlite_url)
    assert main(["webhooks", "list", "--app", app, *db]) == 0
    out = capsys.readouterr().out
    assert "disabled since" in out and f"permgate webhooks enable {dead.endpoint_id}" in out
    assert main(["webhooks", "list", "--app", app, "--json", *db]) == 0
    states = {e["id"]: e["status"] for e in json.loads(capsys.readouterr().out)}
    assert states[dead.endpoint_id] == "disabled"
    assert main(["webhooks", "enable", dead.endpoint_id, *db]) == 0
    capsys.readouterr()
    assert get_endpoint(store, dead.endpoint_id).status == "enabled"
    assert accept(store, event("customer.updated"), router=router).deliveries == 2
