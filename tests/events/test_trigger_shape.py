"""`permgate trigger` events as Stripe sends them, accepted by the official libraries (issue 24).

stripe-go's and Stripe.net's webhook helpers refuse by default an event whose `api_version`
is not their pinned one, so test events carry a real one, the caller's if named;
`*.updated` events carry `data.previous_attributes`; an upcoming invoice has no id;
`pending_webhooks` counts the endpoints the event is queued for. Each event is delivered
through the real pipeline and verified by stripe-python's and stripe-node's `construct_event`.
"""

from __future__ import annotations

import json

import pytest
import stripe
from stripe._api_version import _ApiVersion
from tests.events.conftest import FAST
from tests.events.procs import node_verify
from tests.events.support import ACCOUNT, Receiver, install, new_app

from permgate.events import DeliveryWorker, Sealer, add_endpoint
from permgate.events.fixtures import api_version
from permgate.events.outbox import on_install
from permgate.events.trigger import BadApiVersion, sample_event, trigger
from permgate.store import Store


def test_triggered_events_carry_what_stripes_libraries_expect(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(store, ["event_read", "customer_read", "invoice_read"])
    install(store, app, "test")
    first = add_endpoint(store, app, rec.url + "/a", ["*"], "test", by="dev", sealer=sealer)
    add_endpoint(store, app, rec.url + "/b", ["customer.updated"], "test", by="dev",
                 sealer=sealer)
    assert api_version() == _ApiVersion.CURRENT  # the official library's own version
    sent = {t: trigger(store, t, account=ACCOUNT, app_id=app).event
            for t in ("customer.updated", "invoice.upcoming", "customer.created")}
    with DeliveryWorker(store, sealer=sealer, policy=FAST) as w:
        w.drain()
    got = {}
    for r in rec.at("/a"):
        header = r.headers["Stripe-Signature"]
        verified = stripe.Webhook.construct_event(r.body.decode(), header,
                                                  first.secret)
        assert node_verify(r.body, header, first.secret) == verified["id"]
        got[verified["type"]] = json.loads(r.body)
    assert set(got) == set(sent)
    for ev in got.values():
        assert ev["api_version"] == "2026-10-28.endive"
        assert ev["id"].startswith("evt_") and len(ev["id"]) == 28
    updated = got["customer.updated"]
    assert updated["data"]["previous_attributes"] == {"metadata": {"permgate_trigger": None}}
    assert updated["data"]["object"]["metadata"]["permgate_trigger"] == "updated"
    assert updated["pending_webhooks"] == 2  # queued for /a and /b
    assert got["customer.created"]["pending_webhooks"] == 1
    assert "previous_attributes" not in got["customer.created"]["data"]
    upcoming = got["invoice.upcoming"]["data"]["object"]
    assert upcoming["object"] == "invoice" and "id" not in upcoming
    assert got["customer.created"]["data"]["object"]["id"].startswith("cus_")


def test_committed_fixtures_are_what_the_generator_gives() -> None:
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(repo / "tools" / "gen_event_fixtures.py"),
                           "--check"], capture_output=True, text=True, cwd=repo, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_version_is_the_callers_for_a_handler_pinned_to_another(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    # stripe-go and Stripe.net refuse an event of another version than their pinned one
    # (stripe/stripe-go#1495): `trigger --api-version` stamps the handler's version.
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app, "test")
    ep = add_endpoint(store, app, rec.url + "/v", ["customer.created"], "test", by="dev",
                      sealer=sealer)
    done = trigger(store, "customer.created", account=ACCOUNT, app_id=app,
                   api_version="2024-09-30.acacia")
    assert done.event["api_version"] == "2024-09-30.acacia"
    assert done.event["pending_webhooks"] == 1
    with DeliveryWorker(store, sealer=sealer, policy=FAST) as w:
        w.drain()
    [r] = rec.at("/v")
    ev = stripe.Webhook.construct_event(r.body.decode(), r.headers["Stripe-Signature"],
                                        ep.secret)
    assert ev["api_version"] == "2024-09-30.acacia"
    for bad in ("latest", "2024-9-30", "2024-09-30.Acacia", "2024-09-30." + "a" * 40, ""):
        with pytest.raises(BadApiVersion):
            trigger(store, "customer.created", account=ACCOUNT, app_id=app, api_version=bad)


def test_updated_without_metadata_has_no_empty_previous_attributes() -> None:
    # Stripe never sends an empty previous_attributes: an object with no metadata to change
    # (a capability) leaves the key out rather than send {}.
    ev = sample_event("capability.updated", ACCOUNT)
    assert "previous_attributes" not in ev["data"]
    assert sample_event("customer.updated", ACCOUNT)["data"]["previous_attributes"]


def test_install_events_count_their_endpoints(store: Store, sealer: Sealer,
                                              rec: Receiver) -> None:
    # pending_webhooks of permgate's own events is counted where they are queued (one place).
    app = new_app(store, ["event_read"])
    for path in ("/x", "/y"):
        add_endpoint(store, app, rec.url + path, ["account.application.authorized"], "live",
                     by="dev", sealer=sealer)
    on_install(store, install(store, app, "live"))
    with DeliveryWorker(store, sealer=sealer, policy=FAST) as w:
        w.drain()
    bodies = [json.loads(r.body) for r in rec.at("/x") + rec.at("/y")]
    assert len(bodies) == 2
    assert all(b["pending_webhooks"] == 2 for b in bodies)
    assert all(b["api_version"] == api_version() for b in bodies)
