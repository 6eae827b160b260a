"""The benchmark's enforcement-off gateway (bench/gateway/variants.py `NoEnforce`) is built
from the product's own parts, none subclassed: the call path's classes are compiled (a
compiled class takes no interpreted subclass), and the product has no switch for it.

Through the real native server and a recording upstream, beside the enforcing gateway the
same launcher builds: the call enforcement refuses is forwarded by `NoEnforce`, on the full
path (the first call) and the fast path (the repeat) alike.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import uvloop
from tests.gateway.listening import listening
from tests.gateway.procs import UPSTREAM_KEY, App, new_app
from tests.gateway.recorder import Recorder
from tests.gateway.test_fast_path import Client, auth

from permgate.gateway.app import Gateway
from permgate.gateway.calls import Calls
from permgate.gateway.config import Settings
from permgate.store import Store

VARIANTS = Path(__file__).resolve().parents[2] / "bench" / "gateway" / "variants.py"


def _variants() -> Any:
    """The bench's module, by its path (`bench` is no package the tests import)."""
    spec = importlib.util.spec_from_file_location("bench_gateway_variants", VARIANTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _statuses(gw: Gateway, app: App, target: str) -> list[int]:
    """The call twice over one connection: the first misses the caches (the full path), the
    repeat is the fast path's."""
    await gw.startup()
    try:
        async with listening(gw, backlog=8) as (_, url):
            client = await Client.open(url)
            try:
                return [(await client.get(target, auth(app))).status for _ in range(2)]
            finally:
                client.close()
    finally:
        await gw.shutdown()


def test_no_enforce_forwards_what_enforcement_refuses_with_the_products_calls(
        db_url: str, store: Store, recorder: Recorder) -> None:
    app = new_app(store, ["customer_read"])
    settings = Settings(db=db_url, upstream=recorder.url, upstream_key=UPSTREAM_KEY,
                        access_log=False)
    build_variant = _variants().build_variant
    enforcing = build_variant(settings, True)
    off = build_variant(settings, False)

    async def scenario() -> None:
        before = len(recorder.requests)
        assert await _statuses(enforcing, app, "/v1/charges") == [403, 403]
        assert len(recorder.requests) == before  # refused: nothing went upstream
        assert await _statuses(off, app, "/v1/charges") == [200, 200]

    uvloop.run(asyncio.wait_for(scenario(), 60))
    sent = recorder.requests[-2:]
    assert [r["target"] for r in sent] == ["/v1/charges", "/v1/charges"]
    assert {r["headers"]["authorization"] for r in sent} == {f"Bearer {UPSTREAM_KEY}"}
    assert {r["headers"]["stripe-account"] for r in sent} == {app.account}
    # The product's own Calls, nothing of the call path subclassed by the bench.
    assert type(off.calls) is Calls and type(enforcing.calls) is Calls
