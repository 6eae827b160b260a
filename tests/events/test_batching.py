"""Batches: concurrent batched ingest stores each event once; concurrent requests to the
ingest endpoint share transactions and are each acknowledged; a dead endpoint's retries do
not starve new events."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import httpx
from tests.events.conftest import FAST
from tests.events.procs import free_port
from tests.events.support import Receiver, event, install, new_app, wait_until

from permgate.events import (
    Accepted,
    DeliveryWorker,
    Sealer,
    add_endpoint,
    list_deliveries,
    sign,
)
from permgate.events.ingest import ingest_app
from permgate.events.outbox import Router, accept_many
from permgate.store import Store


def test_concurrent_overlapping_batches_store_each_event_once(
    any_store: Store, sealer: Sealer,
) -> None:
    a = new_app(any_store, ["event_read", "customer_read"])
    b = new_app(any_store, ["event_read", "charge_read"])
    for app in (a, b):
        install(any_store, app)
        add_endpoint(any_store, app, f"http://127.0.0.1:9/{app}", ["*"], "live", by="dev",
                     sealer=sealer)
    evs = [event(random.choice(["customer.created", "charge.succeeded", "invoice.paid"]))
           for _ in range(120)]
    results: list[Accepted] = []
    lock = threading.Lock()

    def ingest(seed: int) -> None:
        mine = list(evs)
        random.Random(seed).shuffle(mine)
        router = Router(any_store)
        for k in range(0, len(mine), 25):
            got = accept_many(any_store, [(e, None) for e in mine[k:k + 25]], router=router)
            with lock:
                results.extend(r for r in got if isinstance(r, Accepted))

    threads = [threading.Thread(target=ingest, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = Counter(r.event_id for r in results if not r.duplicate)
    assert set(fresh) == {e["id"] for e in evs} and max(fresh.values()) == 1
    want = Counter({"customer.created": 1, "charge.succeeded": 1, "invoice.paid": 0})
    per_event = Counter(d.event_id for d in list_deliveries(any_store))
    for e in evs:
        assert per_event[e["id"]] == want[e["type"]], e["type"]


def test_bad_items_are_refused_alone(store: Store, sealer: Sealer) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    good = event("customer.created")
    results = accept_many(store, [({"type": "customer.created"}, None), (good, None),
                                  (good, None)])
    assert [type(r).__name__ for r in results] == ["BadEvent", "Accepted", "Accepted"]
    first, again = results[1], results[2]
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert (first.duplicate, again.duplicate) == (False, True)


def test_concurrent_requests_to_the_ingest_endpoint_share_transactions(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    import uvicorn

    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/h", ["*"], "live", by="dev", sealer=sealer)
    secret = "whsec_upstream"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(ingest_app(store, [secret]), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn start")
    evs = [event("customer.updated") for _ in range(80)]
    try:
        import asyncio
        import json

        async def post_all() -> list[httpx.Response]:
            async with httpx.AsyncClient() as client:
                async def one(ev: dict[str, object]) -> httpx.Response:
                    body = json.dumps(ev).encode()
                    return await client.post(f"http://127.0.0.1:{port}/", content=body,
                                             headers={"Stripe-Signature": sign(body, [secret])})
                return list(await asyncio.gather(*(one(e) for e in evs)))

        answers = asyncio.run(post_all())
    finally:
        server.should_exit = True
        thread.join()
    assert [r.status_code for r in answers] == [200] * len(evs)
    # Acknowledged means stored, with its delivery.
    assert {r.json()["id"] for r in answers} == {e["id"] for e in evs}
    assert {d.event_id for d in list_deliveries(store)} == {e["id"] for e in evs}


def test_retries_of_a_dead_endpoint_do_not_starve_new_events(
    any_store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    dead_app = new_app(any_store, ["event_read", "customer_read"])
    live_app = new_app(any_store, ["event_read", "customer_read"])
    install(any_store, dead_app)
    install(any_store, live_app)
    add_endpoint(any_store, dead_app, "http://127.0.0.1:9/refused", ["customer.updated"], "live",
                 by="dev", sealer=sealer)
    for _ in range(40):
        accept_many(any_store, [(event("customer.updated"), None)])
    with DeliveryWorker(any_store, sealer=sealer, policy=FAST, batch=40, per_endpoint=40) as w:
        assert w.drain(max_rounds=1) == 40  # 40 first attempts fail: now 40 retries
    assert {d.status for d in list_deliveries(any_store)} == {"pending"}
    add_endpoint(any_store, live_app, rec.url + "/fresh", ["*"], "live", by="dev", sealer=sealer)
    fresh = [event("customer.created") for _ in range(6)]
    accept_many(any_store, [(e, None) for e in fresh])
    time.sleep(0.3)  # every retry is due again, older than the new events
    with DeliveryWorker(any_store, sealer=sealer, policy=FAST, batch=8, per_endpoint=6,
                        disable_after=timedelta(days=3)) as w:
        assert w.run_once() == 8
    # One claim of 8 with 40 older retries due: the new events still got 6 of the slots.
    assert len(rec.at("/fresh")) == 6
    retried = [d for d in list_deliveries(any_store) if d.endpoint_id != "" and d.attempts == 2]
    assert len(retried) == 2


def test_a_stalled_endpoint_does_not_hold_up_the_others(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    gate = threading.Event()

    def answer(path: str, n: int) -> int:
        if path == "/stalled":
            gate.wait(60)  # the receiver hangs until the test has seen the others delivered
        return 200

    rec.answer = answer
    stalled = new_app(store, ["event_read", "customer_read"])
    healthy = new_app(store, ["event_read", "customer_read"])
    for app, path in ((stalled, "/stalled"), (healthy, "/healthy")):
        install(store, app)
        add_endpoint(store, app, rec.url + path, ["*"], "live", by="dev", sealer=sealer)
    # The stalled endpoint's deliveries come first in the outbox.
    accept_many(store, [(event("customer.updated"), None) for _ in range(20)])
    stop = threading.Event()
    with DeliveryWorker(store, sealer=sealer, policy=FAST, batch=10, per_endpoint=2,
                        timeout=90.0) as w:
        thread = threading.Thread(target=w.run, args=(stop, 0.02))
        thread.start()
        try:
            wait_until(lambda: rec.tries.get("/stalled", 0) == 2, what="two stalled attempts")
            wait_until(lambda: len(rec.at("/healthy")) == 20,
                       what="the healthy endpoint's deliveries, while the other hangs")
            assert rec.tries.get("/stalled", 0) == 2  # never more than its own two slots
        finally:
            gate.set()
            wait_until(lambda: len(rec.at("/stalled")) == 20, what="the stalled ones, after")
            stop.set()
            thread.join()
