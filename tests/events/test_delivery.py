"""Subscribe, accept, deliver signed, retry, stop: through a real store and a real receiver."""

from __future__ import annotations

import json

import pytest
import stripe
from tests.events.conftest import FAST
from tests.events.support import ACCOUNT, ADMIN, Receiver, event, install, manifest_for, new_app

from permgate.events import (
    DeliveryWorker,
    Sealer,
    SubscriptionRefused,
    accept,
    add_endpoint,
    list_deliveries,
    list_endpoints,
    on_install,
    on_uninstall,
    remove_endpoint,
    rotate_secret,
)
from permgate.store import Store


def worker(store: Store, sealer: Sealer) -> DeliveryWorker:
    return DeliveryWorker(store, sealer=sealer, policy=FAST, timeout=5.0)


def test_delivered_event_verifies_with_the_python_sdk(
    any_store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(any_store, ["event_read", "customer_read"])
    install(any_store, app)
    ep = add_endpoint(any_store, app, rec.url + "/hook", ["customer.created"], "live",
                      by="dev", sealer=sealer)
    assert ep.secret.startswith("whsec_")
    ev = event("customer.created")
    assert accept(any_store, ev).deliveries == 1
    with worker(any_store, sealer) as w:
        assert w.drain() == 1
    [got] = rec.at("/hook")
    verified = stripe.Webhook.construct_event(
        got.body.decode(), got.headers["Stripe-Signature"], ep.secret)
    assert verified["id"] == ev["id"] and verified["account"] == ACCOUNT
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got.body.decode(), got.headers["Stripe-Signature"],
                                       "whsec_wrong")
    [d] = list_deliveries(any_store, app_id=app)
    assert (d.status, d.attempts, d.last_http_status) == ("delivered", 1, 200)


def test_the_secret_is_stored_sealed_not_in_clear(store: Store, sealer: Sealer) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    ep = add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="dev",
                      sealer=sealer)
    with store.engine.connect() as conn:
        dump = "\n".join(str(r) for r in conn.exec_driver_sql(
            "SELECT * FROM webhook_endpoints"))
    assert ep.secret not in dump
    assert ep.secret[-4:] in dump  # the hint, as listings show it
    assert [e.endpoint_id for e in list_endpoints(store, app)] == [ep.endpoint.endpoint_id]


def test_subscription_refused_names_the_permission_to_add(store: Store, sealer: Sealer) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    with pytest.raises(SubscriptionRefused) as e:
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["customer.created", "invoice.paid"],
                     "live", by="dev", sealer=sealer)
    assert "'credit_note_read', 'invoice_read' or 'quote_read'" in e.value.message
    assert "customer.created" not in e.value.message
    no_event_read = new_app(store, ["customer_read"])
    with pytest.raises(SubscriptionRefused, match="'event_read' permission"):
        add_endpoint(store, no_event_read, "http://127.0.0.1:9/h", ["customer.created"],
                     "live", by="dev", sealer=sealer)
    with pytest.raises(SubscriptionRefused, match="not in the event catalog"):
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["customer.creatd"], "live",
                     by="dev", sealer=sealer)
    assert list_endpoints(store, app) == []


def test_wildcard_gets_exactly_what_the_grant_allows(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(store, ["event_read", "customer_write"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/all", ["*"], "live", by="dev", sealer=sealer)
    allowed = event("customer.updated")  # write covers read
    denied = [event("invoice.paid"), event("charge.succeeded"),
              event("sigma.scheduled_query_run.created"), event("no.such_event")]
    for ev in [allowed, *denied]:
        accept(store, ev)
    with worker(store, sealer) as w:
        w.drain()
    assert rec.event_ids("/all") == [allowed["id"]]


def test_pending_upgrade_does_not_widen_delivery_until_approved(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    store.upload_version(manifest_for(app, "2.0.0", ["event_read", "customer_read",
                                                     "invoice_read"]), actor="dev")
    # The current manifest asks for invoice_read, so subscribing is accepted...
    add_endpoint(store, app, rec.url + "/h", ["customer.created", "invoice.paid"], "live",
                 by="dev", sealer=sealer)
    before = event("invoice.paid")
    accept(store, before)
    with worker(store, sealer) as w:
        w.drain()
        assert rec.event_ids("/h") == []  # ...but the approved set cannot receive it yet
        store.approve(app, ACCOUNT, "live", **ADMIN)
        after = event("invoice.paid")
        accept(store, after)
        w.drain()
    assert rec.event_ids("/h") == [after["id"]]


def test_uninstall_stops_delivery_at_once(store: Store, sealer: Sealer, rec: Receiver) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/h", ["*"], "live", by="dev", sealer=sealer)
    queued = event("customer.created")
    assert accept(store, queued).deliveries == 1
    # The store's own uninstall, without our hook: the worker's check must stop it.
    store.uninstall(app, ACCOUNT, "live", **ADMIN)
    later = event("customer.created")
    assert accept(store, later).deliveries == 0
    with worker(store, sealer) as w:
        w.drain()
    assert rec.at("/h") == []
    [d] = list_deliveries(store, app_id=app)
    assert (d.event_id, d.status, d.last_error) == (queued["id"], "cancelled", "app uninstalled")


def test_authorized_and_deauthorized_go_to_that_app_only(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    other = new_app(store, ["event_read"])
    install(store, other)
    add_endpoint(store, app, rec.url + "/app", ["*"], "live", by="dev", sealer=sealer)
    add_endpoint(store, other, rec.url + "/other", ["*"], "live", by="dev", sealer=sealer)
    on_install(store, install(store, app))
    with worker(store, sealer) as w:
        w.drain()
        queued = event("customer.created")
        accept(store, queued)
        on_uninstall(store, store.uninstall(app, ACCOUNT, "live", **ADMIN))
        w.drain()
    assert [r.event["type"] for r in rec.at("/app")] == [
        "account.application.authorized", "account.application.deauthorized"]
    assert rec.at("/app")[0].event["data"]["object"]["id"] == app
    assert rec.at("/other") == []
    assert queued["id"] not in rec.event_ids("/app")


def test_receiver_that_fails_then_recovers_gets_the_event(
    any_store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    rec.answer = lambda path, n: 500 if n <= 3 else 200
    app = new_app(any_store, ["event_read", "charge_read"])
    install(any_store, app)
    ep = add_endpoint(any_store, app, rec.url + "/flaky", ["charge.succeeded"], "live",
                      by="dev", sealer=sealer)
    ev = event("charge.succeeded")
    accept(any_store, ev)
    with worker(any_store, sealer) as w:
        from tests.events.support import wait_until

        def delivered() -> bool:
            w.run_once()
            return bool(rec.at("/flaky"))

        wait_until(delivered, what="delivery after the receiver recovered")
    assert rec.event_ids("/flaky") == [ev["id"]]
    [d] = list_deliveries(any_store, app_id=app)
    assert (d.status, d.attempts) == ("delivered", 4)
    stripe.Webhook.construct_event(rec.at("/flaky")[0].body.decode(),
                                   rec.at("/flaky")[0].headers["Stripe-Signature"], ep.secret)


def test_gives_up_after_the_horizon(store: Store, sealer: Sealer, rec: Receiver) -> None:
    from permgate.events import RetryPolicy

    rec.answer = lambda path, n: 503
    app = new_app(store, ["event_read", "charge_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/down", ["*"], "live", by="dev", sealer=sealer)
    accept(store, event("charge.failed"))
    with DeliveryWorker(store, sealer=sealer, timeout=5.0,
                        policy=RetryPolicy(first_delay=0, horizon=0, jitter=0)) as w:
        w.drain()
    [d] = list_deliveries(store, app_id=app)
    assert (d.status, d.attempts, d.last_http_status) == ("failed", 1, 503)


def test_modes_route_as_stripe_does(store: Store, sealer: Sealer, rec: Receiver) -> None:
    both = new_app(store, ["event_read", "customer_read"])
    test_only = new_app(store, ["event_read", "customer_read"])
    install(store, both, "live")
    install(store, both, "test")
    install(store, test_only, "test")
    for app in (both, test_only):
        for mode in ("live", "test"):
            add_endpoint(store, app, f"{rec.url}/{app}/{mode}", ["*"], mode, by="dev",
                         sealer=sealer)
    live_ev, test_ev = event("customer.created"), event("customer.created", livemode=False)
    accept(store, live_ev)
    accept(store, test_ev)
    with worker(store, sealer) as w:
        w.drain()
    assert rec.event_ids(f"/{both}/live") in ([live_ev["id"], test_ev["id"]],
                                              [test_ev["id"], live_ev["id"]])
    assert rec.event_ids(f"/{both}/test") == [test_ev["id"]]
    assert rec.event_ids(f"/{test_only}/test") == [test_ev["id"]]
    assert rec.event_ids(f"/{test_only}/live") == []  # not installed live


def test_removed_endpoint_and_rotated_secret(store: Store, sealer: Sealer, rec: Receiver) -> None:
    from datetime import timedelta

    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    ep = add_endpoint(store, app, rec.url + "/h", ["*"], "live", by="dev", sealer=sealer)
    rotated = rotate_secret(store, ep.endpoint.endpoint_id, by="dev", grace=timedelta(hours=1),
                            sealer=sealer)
    accept(store, event("customer.created"))
    with worker(store, sealer) as w:
        w.drain()
        [got] = rec.at("/h")
        header = got.headers["Stripe-Signature"]
        for secret in (ep.secret, rotated.secret):  # both verify during the grace period
            stripe.Webhook.construct_event(got.body.decode(), header, secret)
        accept(store, event("customer.updated"))
        remove_endpoint(store, ep.endpoint.endpoint_id, by="dev")
        w.drain()
    assert len(rec.at("/h")) == 1
    actions = [a.action for a in store.audit(app=app)]
    assert {"webhook.added", "webhook.secret_rotated", "webhook.removed"} <= set(actions)
    statuses = sorted(d.status for d in list_deliveries(store, app_id=app))
    assert statuses == ["cancelled", "delivered"]


def test_duplicate_event_ids_are_accepted_once(store: Store, sealer: Sealer) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="dev", sealer=sealer)
    ev = event("customer.created")
    first, again = accept(store, ev), accept(store, json.loads(json.dumps(ev)))
    assert (first.duplicate, first.deliveries) == (False, 1)
    assert (again.duplicate, again.deliveries) == (True, 0)
