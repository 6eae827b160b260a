"""The worker's claims: signing with fixed parts, claiming ahead (attempts waiting for a slot
are bounded per endpoint and checked again if the store changed), and PostgreSQL's recording
of results staying on the primary key."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest
from tests.events.conftest import FAST
from tests.events.support import (
    ACCOUNT,
    ADMIN,
    Receiver,
    event,
    install,
    new_app,
    pg_schema,
    wait_until,
)

from permgate.events import DeliveryWorker, Sealer, accept_many, add_endpoint, list_deliveries
from permgate.events import worker as worker_module
from permgate.events.signing import sign, signer, verify
from permgate.store import Store


@pytest.mark.parametrize("secrets_", [["whsec_one"], ["whsec_new", "whsec_old"]])
def test_signer_builds_the_same_header_as_sign(secrets_: list[str]) -> None:
    body = b'{"id": "evt_1", "object": "event"}'
    header = signer(secrets_, 1_700_000_000)(body)
    assert header == sign(body, secrets_, 1_700_000_000)
    for secret in secrets_:  # every secret's v1 verifies on its own
        assert verify(body, header, [secret], now=1_700_000_000) == 1_700_000_000


def _held(rec: Receiver, path: str) -> threading.Event:
    """The receiver holds every request to `path` until the returned gate is set."""
    gate = threading.Event()

    def answer(p: str, n: int) -> int:
        if p == path:
            gate.wait(60)
        return 200

    rec.answer = answer
    return gate


def _leased(store: Store, app_id: str) -> int:
    return sum(1 for d in list_deliveries(store, app_id=app_id)
               if d.status == "pending" and d.attempts == 1)


def test_claimed_ahead_attempts_wait_for_a_slot_within_the_endpoints_bound(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    gate = _held(rec, "/held")
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/held", ["*"], "live", by="dev", sealer=sealer)
    accept_many(store, [(event("customer.updated"), None) for _ in range(10)])
    stop = threading.Event()
    # The default lease (2 x timeout + 30 s) lets a worker claim twice its per-endpoint bound.
    with DeliveryWorker(store, sealer=sealer, policy=FAST, batch=10, per_endpoint=2,
                        timeout=30.0) as w:
        thread = threading.Thread(target=w.run, args=(stop, 0.02))
        thread.start()
        try:
            wait_until(lambda: _leased(store, app) == 4, what="four attempts claimed")
            wait_until(lambda: rec.tries.get("/held", 0) == 2, what="two attempts sent")
            assert _leased(store, app) == 4  # claimed ahead: two wait for a slot...
            assert rec.tries["/held"] == 2  # ...and are not sent while two are in flight
        finally:
            gate.set()
            wait_until(lambda: len(rec.at("/held")) == 10, what="every delivery, after")
            stop.set()
            thread.join()
    assert sorted(rec.event_ids("/held")) == sorted(
        d.event_id for d in list_deliveries(store, app_id=app))  # each once
    assert {d.status for d in list_deliveries(store, app_id=app)} == {"delivered"}


def test_an_attempt_waiting_for_a_slot_is_checked_again_after_an_uninstall(
    store: Store, sealer: Sealer, rec: Receiver,
) -> None:
    gate = _held(rec, "/held")
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, rec.url + "/held", ["*"], "live", by="dev", sealer=sealer)
    accept_many(store, [(event("customer.updated"), None) for _ in range(2)])
    stop = threading.Event()
    with DeliveryWorker(store, sealer=sealer, policy=FAST, batch=10, per_endpoint=1,
                        timeout=30.0) as w:
        thread = threading.Thread(target=w.run, args=(stop, 0.02))
        thread.start()
        try:
            # One attempt in flight (held), the other claimed and checked, waiting for it.
            wait_until(lambda: _leased(store, app) == 2 and rec.tries.get("/held", 0) == 1,
                       what="one attempt sent, one waiting")
            # The store's own uninstall (no cancelling hook): only the worker can stop it.
            store.uninstall(app, ACCOUNT, "live", **ADMIN)
        finally:
            gate.set()
        wait_until(lambda: all(d.status != "pending" for d in list_deliveries(store, app_id=app)),
                   what="both deliveries settled")
        stop.set()
        thread.join()
    assert rec.tries["/held"] == 1  # the waiting one was never sent
    statuses = sorted((d.status, d.last_error) for d in list_deliveries(store, app_id=app))
    assert statuses == [("cancelled", "app uninstalled"), ("delivered", None)]


@pytest.mark.postgres
def test_postgres_recording_reads_only_the_rows_it_records(sealer: Sealer) -> None:
    """Regression: with statistics older than a backlog, PostgreSQL planned the results'
    update as a read of every pending row (through the claim index) hash-joined to the
    results, so recording cost as much as the backlog was long."""
    with pg_schema() as url, Store.open(url, upgrade=True) as store:
        app = new_app(store, ["event_read", "customer_read"])
        install(store, app)
        add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="dev",
                     sealer=sealer)
        for _ in range(12):  # a backlog the table's statistics have not seen
            accept_many(store, [(event("customer.updated"), None) for _ in range(500)])
        ids = [d.delivery_id for d in list_deliveries(store, app_id=app, limit=20)]
        now = datetime.now(UTC)
        params = {"ids": ids, "att": [0] * len(ids), "st": ["delivered"] * len(ids),
                  "http": [200] * len(ids), "err": [None] * len(ids),
                  "next": [now] * len(ids), "fin": [now] * len(ids)}
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            # As the worker runs it: its planner setting first, in the same transaction.
            keyed = getattr(worker_module, "_PG_KEYED", None)
            if keyed is not None:
                conn.execute(keyed)
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN " + worker_module._PG_RECORD, params))
            conn.rollback()
        assert "Index Scan using event_deliveries_pkey" in plan, plan
        assert "ix_event_deliveries_claim" not in plan, plan  # before ev0004
        assert "ix_event_deliveries_fresh" not in plan, plan
        assert "ix_event_deliveries_retry" not in plan, plan
        assert "Seq Scan on event_deliveries" not in plan, plan
