"""`permgate trigger` events as Stripe sends them, accepted by the official libraries (issue 24).

stripe-go's and Stripe.net's webhook helpers refuse an event whose `api_version` is missing
by default, so test events carry a real one; `*.updated` events carry
`data.previous_attributes`; an upcoming invoice has no id; `pending_webhooks` counts the
endpoints the event is queued for. Each event is delivered through the real pipeline and
verified by stripe-python's and stripe-node's `construct_event`.
"""

from __future__ import annotations

import json

import stripe
from stripe._api_version import _ApiVersion
from tests.events.conftest import FAST
from tests.events.procs import node_verify
from tests.events.support import ACCOUNT, Receiver, install, new_app

from permgate.events import DeliveryWorker, Sealer, add_endpoint
from permgate.events.fixtures import api_version
from permgate.events.trigger import trigger
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
