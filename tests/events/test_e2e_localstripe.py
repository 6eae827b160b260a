"""End to end: localstripe pushes signed webhooks to `permgate events ingest`; the worker
delivers what each app's approved permissions allow; both SDKs verify; through restarts; the
poller picks up what a stopped ingest missed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe
from tests.events.conftest import FAST
from tests.events.procs import free_port, ingest, localstripe, node_verify
from tests.events.support import ACCOUNT, Receiver, install, new_app, wait_until

from permgate.events import DeliveryWorker, add_endpoint, list_deliveries
from permgate.events.poller import Poller
from permgate.events.sealing import Sealer
from permgate.store import Store

pytestmark = pytest.mark.e2e
UPSTREAM_SECRET = "whsec_localstripe_upstream_e2e"
KEY = "sk_test_permgate_events_e2e"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with localstripe(port, tmp_path / "localstripe.log"):
        yield f"http://127.0.0.1:{port}"


def _customer(upstream: str, name: str) -> str:
    r = httpx.post(f"{upstream}/v1/customers", data={"name": name}, auth=(KEY, ""))
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_localstripe_to_app_verified_and_counted(
    upstream: str, store: Store, sqlite_url: str, sealer: Sealer, rec: Receiver,
    tmp_path: Path,
) -> None:
    reader = new_app(store, ["event_read", "customer_read"])
    blind = new_app(store, ["event_read", "invoice_read"])  # may not see customer events
    for app in (reader, blind):
        install(store, app, "test")  # localstripe's events are test mode (livemode false)
    ep = add_endpoint(store, reader, rec.url + "/reader", ["*"], "test", by="dev",
                      sealer=sealer)
    add_endpoint(store, blind, rec.url + "/blind", ["*"], "test", by="dev", sealer=sealer)
    secret_file = tmp_path / "upstream-secret"
    secret_file.write_text(UPSTREAM_SECRET + "\n")
    port = free_port()
    # localstripe's registration API is /_config/webhooks/{id} (it has no
    # /v1/webhook_endpoints); it signs t=<event.created>,v1=HMAC(t.payload) as Stripe does.
    r = httpx.post(f"{upstream}/_config/webhooks/permgate", data={
        "url": f"http://127.0.0.1:{port}/", "secret": UPSTREAM_SECRET})
    assert r.status_code == 200, r.text

    stop = threading.Event()
    w = DeliveryWorker(store, sealer=sealer, policy=FAST, timeout=5.0)
    thread = threading.Thread(target=w.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        log = tmp_path / "ingest.log"
        with ingest(sqlite_url, port, secret_file, ACCOUNT, log):
            _customer(upstream, "one")
            _customer(upstream, "two")
            wait_until(lambda: len(rec.at("/reader")) == 2, what="two customer.created")
        with ingest(sqlite_url, port, secret_file, ACCOUNT, log):  # a restart loses nothing
            _customer(upstream, "three")
            wait_until(lambda: len(rec.at("/reader")) == 3, what="the third after a restart")
        # Ingest down: localstripe's push is lost (it does not retry); the poller reads
        # /v1/events from where it stopped and accepts only what is new.
        missed = _customer(upstream, "four")
        poller = Poller(store, upstream, KEY, account=ACCOUNT)
        try:
            wait_until(lambda: poller.poll_once().accepted == 1, what="the poller's catch-up")
            assert poller.poll_once().accepted == 0  # resumes: nothing twice
        finally:
            poller.close()
        wait_until(lambda: len(rec.at("/reader")) == 4, what="the missed event delivered")
    finally:
        stop.set()
        thread.join()
        w.close()

    got = rec.at("/reader")
    assert [g.event["type"] for g in got] == ["customer.created"] * 4
    assert got[-1].event["data"]["object"]["id"] == missed
    assert {g.event["account"] for g in got} == {ACCOUNT}
    for g in got:
        header = g.headers["Stripe-Signature"]
        assert stripe.Webhook.construct_event(g.body.decode(), header, ep.secret)["id"]
        assert node_verify(g.body, header, ep.secret) == g.event["id"]
    with pytest.raises(AssertionError, match="stripe-node refused"):
        node_verify(got[0].body, got[0].headers["Stripe-Signature"], "whsec_not_it")
    assert rec.at("/blind") == []
    assert {d.status for d in list_deliveries(store)} == {"delivered"}
    assert len(list_deliveries(store)) == 4
