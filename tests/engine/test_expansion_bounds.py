"""Caches keyed on request data stay bounded (issue 11, item 4): an installed app sending huge
or unique `expand[]` lists costs the engine recomputation, never memory. Measured by the
caches' own entry and byte counts and by the memory Python still holds afterwards (tracemalloc),
never by time."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import permgate
from permgate import decision
from permgate.api import expand

GRANT = {"charge_read", "charge_write", "customer_read"}


def _within_budgets(engine: permgate.Engine) -> None:
    sizes = engine.cache_sizes()
    assert sizes["queries"][1] <= decision._QUERY_BYTES
    assert sizes["queries"][0] <= decision._QUERY_ENTRIES
    assert sizes["plans+denials"][1] <= decision._PLAN_BYTES
    assert sizes["plans+denials"][0] <= decision._PLAN_ENTRIES
    assert sizes["expansions"][1] <= expand._CACHE_BYTES
    assert sizes["expansions"][0] <= expand._CACHE_ENTRIES


@pytest.mark.slow
def test_huge_unique_expand_lists_are_refused_and_not_kept() -> None:
    engine = permgate.load()
    template = "&".join(f"expand[]=r@f{j}.customer" for j in range(20_000))
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(120):  # 120 requests, 20k unique entries each (~0.5 MB of query)
            query = template.replace("@", str(i))
            d = engine.decide("GET", f"/v1/charges/ch_1?{query}", None, GRANT)
            assert d.kind == "bad_request" and d.param == "expand"
            body = query.encode()
            d = engine.decide("POST", "/v1/charges/ch_1", body, GRANT)
            assert d.kind == "bad_request" and d.param == "expand"
            del query, body, d
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 2 << 20, f"{held} bytes held after the flood"
    sizes = engine.cache_sizes()
    assert sizes["plans+denials"][0] == 0  # refused at parsing: nothing reached a plan
    assert sizes["queries"][0] == 0  # too long to keep
    _within_budgets(engine)


def test_many_unique_valid_size_lists_stay_within_the_budgets() -> None:
    """The most an app can send per request (64 paths of 400 bytes, all unique) fills the
    caches up to their byte budgets and no further."""
    engine = permgate.load()
    peak = 0
    for i in range(600):
        paths = [f"customer.x{i}_{j}_" + "a" * 380 for j in range(64)]
        query = "&".join(f"expand[]={p}" for p in paths)
        d = engine.decide("GET", f"/v1/charges/ch_1?{query}", None, GRANT)
        assert d.kind == "bad_request"  # no such field
        d = engine.decide("GET", "/v1/charges/ch_1", None, GRANT, expand=paths)
        assert d.kind == "bad_request"
        _within_budgets(engine)
        peak = max(peak, engine.cache_sizes()["plans+denials"][1])
    assert peak > decision._PLAN_BYTES // 2  # the budget was reached, so it was exercised


def test_unique_allowed_and_denied_plans_are_bounded_too() -> None:
    engine = permgate.load()
    fields = ["customer", "invoice", "payment_intent", "balance_transaction", "review",
              "refunds", "application_fee", "transfer"]
    grants = [engine.grant(g) for g in (["charge_read"], ["charge_read", "customer_read"])]
    for i in range(3000):
        chosen = [fields[(i >> k) % len(fields)] for k in range(6)]
        query = "&".join(f"expand[]={f}" for f in chosen) + f"&limit={i}"
        for g in grants:
            engine.decide("GET", f"/v1/charges/ch_1?{query}", None, g)
    _within_budgets(engine)
