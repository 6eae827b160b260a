"""The expansion model spans API versions (issue 24).

Cases are public code's expansion requests (tests/data/expansions_across_versions.json, each
citing where it comes from), written down before the engine was run: older fields Stripe
still serves to apps pinned to older versions (`plan` of subscriptions, their items, invoice
lines and invoice items; `payment_intent.charges`), newer ones (invoice `payments`,
`parent.subscription_details`, `confirmation_secret`, InvoicePayment) and the base spec's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

import permgate

engine = permgate.engine
CASES = json.loads((Path(__file__).parent.parent / "data" / "expansions_across_versions.json")
                   .read_text(encoding="utf-8"))["cases"]
DATA = Path(permgate.__file__).parent / "api" / "data"


def _decide(case: dict[str, Any], grants: set[str]) -> permgate.Decision:
    method, _, target = case["request"].partition(" ")
    body = case.get("body")
    return engine.decide(method, target, body.encode() if body else None, grants)


def _distinct(case: dict[str, Any]) -> tuple[str, str, frozenset[str]]:
    """A request as Stripe decides it: the operation and the set of its expansions (the
    same call repeated in several files, or with other filters, is one request)."""
    method, _, target = case["request"].partition(" ")
    path, _, query = target.partition("?")
    op = engine.route(method, path)
    assert op is not None, case["request"]
    pairs = parse_qsl(query) + parse_qsl(case.get("body") or "")
    return method, op.path, frozenset(v for k, v in pairs if k.startswith("expand"))


def test_at_least_sixty_distinct_cited_requests() -> None:
    for c in CASES:
        src = c["source"]
        assert ("repo" in src and "path" in src) or ("find_string_id" in src and src["quote"])
    assert len({_distinct(c) for c in CASES}) >= 60
    # those citing repo + path (the search tool's named results), counted apart
    assert len({_distinct(c) for c in CASES if "repo" in c["source"]}) >= 15


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c['request'][:70]}"
                                             for i, c in enumerate(CASES)])
def test_decided_as_stripe_would(case: dict[str, Any]) -> None:
    if "error" in case:
        d = _decide(case, set(engine.catalog.permissions))
        assert d.kind == case["error"], d.message
        return
    want = set(case["needs"])
    d = _decide(case, set())
    assert d.kind == "missing", d.message
    assert {g[0] for g in d.required} == want
    assert _decide(case, want).allowed  # these are enough


def test_fields_record_their_versions() -> None:
    exp = json.loads((DATA / "stripe_expansions.json").read_text())
    nodes = exp["expansions"]
    # added from the 2020-08-27 spec and still in stripe-python 16.1.0 (SubscriptionItem.plan,
    # Charge.source, Charge.level3): the opensdks 2024 base just leaves deprecated fields out
    assert nodes["subscription_item"]["plan"]["v"] == ["2020-08-27", "2026-10-28"]
    assert nodes["charge"]["source"]["v"] == ["2020-08-27", "2026-10-28"]
    assert nodes["charge"]["level3"]["v"] == ["2020-08-27", "2026-10-28"]
    assert nodes["payment_intent"]["charges"]["v"] == ["2020-08-27"]
    assert nodes["subscription"]["plan"]["v"] == ["<2020-08-27"]
    assert nodes["invoice"]["payments"]["v"] == ["2026-10-28"]
    # a field the newest version dropped keeps the versions that have it
    assert nodes["invoice"]["subscription"]["v"] == ["2020-08-27", "2024-04-10"]
    assert "v" not in nodes["invoice"]["customer"] if isinstance(
        nodes["invoice"]["customer"], dict) else True
    assert set(exp["_meta"]["versions"]) >= {"2020-08-27", "2024-04-10", "2026-10-28"}


def test_a_path_no_version_has_is_refused() -> None:
    for target in ("/v1/invoices/in_1?expand[]=payments.data.payment.nonsense",
                   "/v1/subscriptions/sub_1?expand[]=plan.nonsense",
                   "/v1/invoice_payments/inpay_1?expand[]=payment.subscription"):
        d = engine.decide("GET", target, None, set(engine.catalog.permissions))
        assert d.kind == "bad_request", target


def test_list_without_data_gets_stripes_hint() -> None:
    # Stripe's words, e.g. stripe/stripe-python#316: "This property cannot be expanded
    # (application). You may want to try expanding 'data.application' instead."
    d = engine.decide("GET", "/v1/charges?expand[]=application", None, {"charge_read"})
    assert d.kind == "bad_request"
    assert d.message == ("This property cannot be expanded (application). You may want to try "
                         "expanding 'data.application' instead.")
    d = engine.decide("GET", "/v1/subscriptions/sub_1?expand[]=items.price", None, set())
    assert d.message.endswith("You may want to try expanding 'items.data.price' instead.")
