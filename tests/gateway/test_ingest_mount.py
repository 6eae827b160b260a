"""The gateway receives the upstream's webhooks at /webhooks/upstream when configured."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from tests.gateway.procs import new_app, run_gateway
from tests.gateway.recorder import recording_upstream

from permgate.events import add_endpoint, list_deliveries, sign
from permgate.store import Store

pytestmark = pytest.mark.e2e
SECRET = "whsec_upstream_test_secret"


def test_signed_upstream_events_are_accepted_and_fanned_out(
    db_url: str, store: Store, workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = secrets.token_hex(32)
    monkeypatch.setenv("PERMGATE_WEBHOOK_KEY", key)
    monkeypatch.setenv("PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS", "test")  # a 127.0.0.1 endpoint
    app = new_app(store, ["event_read", "customer_read"])
    add_endpoint(store, app.app_id, "http://127.0.0.1:9/hook", ["customer.created"], "test",
                 by="dev")
    event = {"id": "evt_ingest_mount_1", "object": "event", "type": "customer.created",
             "created": int(time.time()), "livemode": False,
             "data": {"object": {"id": "cus_1", "object": "customer"}}}
    body = json.dumps(event).encode()
    env = {"PERMGATE_WEBHOOK_SECRET": SECRET, "PERMGATE_WEBHOOK_ACCOUNT": app.account,
           "PERMGATE_WEBHOOK_KEY": key}
    with recording_upstream() as up, run_gateway(db_url, up.url, workdir, env=env) as gw:
        bad = httpx.post(gw.url + "/webhooks/upstream", content=body,
                         headers={"Stripe-Signature": sign(body, ["whsec_wrong"])})
        assert bad.status_code == 400
        ok = httpx.post(gw.url + "/webhooks/upstream", content=body,
                        headers={"Stripe-Signature": sign(body, [SECRET])})
        assert ok.status_code == 200, ok.text
        assert ok.json()["deliveries"] == 1
        assert not up.requests  # the upstream never hears of it
    [delivery] = list_deliveries(store, app_id=app.app_id)
    assert delivery.event_id == "evt_ingest_mount_1"


def test_without_a_secret_the_path_is_just_unknown(
    db_url: str, workdir: Path,
) -> None:
    with recording_upstream() as up, run_gateway(db_url, up.url, workdir) as gw:
        r = httpx.post(gw.url + "/webhooks/upstream", content=b"{}")
        assert r.status_code in (401, 404)
