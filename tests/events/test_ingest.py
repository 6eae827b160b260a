"""The ingest handler on its own real uvicorn server: signatures, replays, durability."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from tests.events.procs import free_port
from tests.events.support import event, install, new_app, wait_until

from permgate.events import add_endpoint, list_deliveries, sign
from permgate.events.ingest import MAX_BODY, ingest_app
from permgate.events.sealing import Sealer
from permgate.store import Store

SECRET = "whsec_upstream_test"


@pytest.fixture
def ingest_url(store: Store) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        ingest_app(store, [SECRET], account="acct_default"), host="127.0.0.1", port=port,
        log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn start")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join()


def _post(url: str, body: bytes, header: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return httpx.post(url, content=body, headers=headers)


def test_signed_event_is_stored_with_its_deliveries_before_2xx(
    store: Store, sealer: Sealer, ingest_url: str,
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="dev", sealer=sealer)
    ev = event("customer.created")
    body = json.dumps(ev).encode()
    r = _post(ingest_url, body, sign(body, [SECRET]))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "id": ev["id"], "duplicate": False, "deliveries": 1}
    [d] = list_deliveries(store, app_id=app)  # already durable when the 2xx arrived
    assert (d.event_id, d.status) == (ev["id"], "pending")
    again = _post(ingest_url, body, sign(body, [SECRET]))
    assert again.json()["duplicate"] is True
    assert len(list_deliveries(store, app_id=app)) == 1


def test_events_without_an_account_take_the_configured_one(
    store: Store, ingest_url: str,
) -> None:
    ev = event("customer.created", account=None)
    body = json.dumps(ev).encode()
    assert _post(ingest_url, body, sign(body, [SECRET])).status_code == 200
    with store.engine.connect() as conn:
        account = conn.exec_driver_sql(
            "SELECT account FROM events WHERE event_id = ?", (ev["id"],)).scalar()
    assert account == "acct_default"


@pytest.mark.parametrize("header", [
    None,
    "t=123",
    "garbage",
    "v1=" + "0" * 64,
])
def test_bad_signatures_are_refused(store: Store, ingest_url: str, header: str | None) -> None:
    body = json.dumps(event("customer.created")).encode()
    r = _post(ingest_url, body, header)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "signature_invalid"


def test_wrong_secret_tampered_body_and_replay_are_refused(
    store: Store, ingest_url: str,
) -> None:
    ev = event("customer.created")
    body = json.dumps(ev).encode()
    assert _post(ingest_url, body, sign(body, ["whsec_other"])).status_code == 400
    tampered = body.replace(b"customer.created", b"customer.deleted")
    assert _post(ingest_url, tampered, sign(body, [SECRET])).status_code == 400
    stale = sign(body, [SECRET], timestamp=int(time.time()) - 301)
    r = _post(ingest_url, body, stale)
    assert r.status_code == 400 and "tolerance" in r.json()["error"]["message"]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 0


def test_not_an_event(store: Store, ingest_url: str) -> None:
    for body in (b"[1]", b"{not json", json.dumps({"type": "x"}).encode()):
        r = _post(ingest_url, body, sign(body, [SECRET]))
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "event_invalid"
    assert httpx.get(ingest_url).status_code == 405


def test_oversized_bodies_are_refused_before_being_read_whole(ingest_url: str) -> None:
    big = b"x" * (MAX_BODY + 1)
    r = _post(ingest_url, big, sign(big, [SECRET]))
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        for _ in range(3):
            yield b"y" * (MAX_BODY // 2)

    r = httpx.post(ingest_url, content=chunks(), headers={"Stripe-Signature": "t=1,v1=0"})
    assert r.status_code == 413


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(ingest_url: str, body: bytes) -> None:
    # Before the depth bound, json.loads raised RecursionError: a 500 and a traceback.
    r = _post(ingest_url, body, sign(body, [SECRET]))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "event_invalid"
    assert "nested deeper than" in r.json()["error"]["message"]
