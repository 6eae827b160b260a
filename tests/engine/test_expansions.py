"""Expansions as apps send them: includable fields, paths through embedded objects and lists.

Each example says where the fact comes from. "API reference" is Stripe's API reference page of
the object (docs.stripe.com/api/<object>/object); "expand guide" is docs.stripe.com/expand
("properties that aren't included by default in a response"); the depth limit is
docs.stripe.com/api/expanding_objects ("a maximum depth of four levels", `data` counting: the
deepest on a charge list is data.invoice.subscription.default_source) and the message Stripe
answers to a 5-step path quoted in stripe/stripe-java#2011
(data.payments.data.payment.charge: "You cannot expand more than 4 levels of a property").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import permgate
from permgate.api.params import MAX_EXPANSIONS
from permgate.cli.engine import expansion_steps

engine = permgate.engine
cat = engine.catalog
DATA = Path(permgate.__file__).parent / "api" / "data"


def decide(method: str, target: str, grants: set[str], body: bytes | None = None
           ) -> permgate.Decision:
    return engine.decide(method, target, body, grants)


def needs(method: str, target: str) -> set[str]:
    """The most specific permission of each requirement group."""
    d = engine.requirements(method, target)
    assert d.kind in ("allowed", "missing"), d.message
    return {g[0] for g in d.required}


# -- includable fields ------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "want"), [
    # API reference, Checkout Session: line_items "This field is not included by default. To
    # include it in the response, expand the line_items field."
    ("/v1/checkout/sessions/cs_1?expand[]=line_items", {"checkout_session_read"}),
    # API reference, Quote and Payment Link: line_items likewise.
    ("/v1/quotes/qt_1?expand[]=line_items", {"quote_read"}),
    ("/v1/payment_links/plink_1?expand[]=line_items", {"payment_links_read"}),
    # API reference, Quote: computed.upfront.line_items is included only when expanded.
    ("/v1/quotes/qt_1?expand[]=computed.upfront.line_items", {"quote_read"}),
    # API reference, Customer: sources, subscriptions, tax_ids, cash_balance are includable;
    # each needs what its sub-resource request needs (subscriptions are Subscription objects).
    ("/v1/customers/cus_1?expand[]=sources", {"customer_read"}),
    ("/v1/customers/cus_1?expand[]=tax_ids", {"customer_read"}),
    ("/v1/customers/cus_1?expand[]=cash_balance", {"customer_read"}),
    ("/v1/customers/cus_1?expand[]=subscriptions", {"customer_read", "subscription_read"}),
    # API reference, Charge: refunds is included only when expanded.
    ("/v1/charges/ch_1?expand[]=refunds", {"charge_read"}),
    # Stripe Apps "Store secrets" guide: stripe.apps.secrets.find({..., expand: ['payload']}).
    ("/v1/apps/secrets/find?scope[type]=account&name=k&expand[]=payload", {"secret_read"}),
])
def test_includable_fields(target: str, want: set[str]) -> None:
    assert needs("GET", target) == want


def test_includable_needs_what_its_equivalent_request_needs() -> None:
    """For every includable field of the model, the step needs exactly what the operation
    table says its equivalent request needs: the two cannot disagree."""
    doc = json.loads((DATA / "stripe_expansions.json").read_text())["expansions"]
    seen = 0
    for node, fields in doc.items():
        for name, entry in fields.items():
            if not isinstance(entry, dict) or "includable" not in entry:
                continue
            method, _, path = entry["includable"].partition(" ")
            op = engine.route(method, path)
            assert op is not None, entry
            exp = engine.graph.resolve((node,), False, name)
            if op.permission is None:
                assert exp.error == "unavailable", (node, name)
            else:
                assert exp.error is None and exp.steps[0].kind == "includable", (node, name)
                assert exp.steps[0].needs == (op.permission,), (node, name)
            seen += 1
    assert seen >= 15


# -- paths through embedded objects and lists ------------------------------------------------

@pytest.mark.parametrize(("target", "want"), [
    # expand guide ("additional properties on all objects in a list") and the Subscription
    # reference: items is an always-present list; price is embedded in each item, product an id.
    ("/v1/subscriptions/sub_1?expand[]=items.data.price.product",
     {"subscription_read", "product_read"}),
    # Invoice reference: lines is always present; each line's price is embedded.
    ("/v1/invoices/in_1?expand[]=lines.data.price.product", {"invoice_read", "product_read"}),
    # expand guide: line_items.data.price.product on a Checkout Session (checkout_session_read
    # implies product_read in the permission reference, so it alone suffices).
    ("/v1/checkout/sessions/cs_1?expand[]=line_items.data.price.product",
     {"checkout_session_read", "product_read"}),
    # Customer reference: invoice_settings is an embedded object; default_payment_method an id.
    ("/v1/customers/cus_1?expand[]=invoice_settings.default_payment_method",
     {"customer_read", "payment_method_read"}),
    # Charge reference: refunds (includable list) -> each refund's balance_transaction id.
    ("/v1/charges/ch_1?expand[]=refunds.data.balance_transaction",
     {"charge_read", "balance_read"}),
    # List responses expand under data. (expanding_objects).
    # default_source may hold a card or bank account (the customer's), a Source or an Account.
    ("/v1/charges?expand[]=data.invoice.subscription.default_source",
     {"charge_read", "invoice_read", "subscription_read", "customer_read", "source_read",
      "connected_account_read"}),
])
def test_paths_through_embedded_objects_and_lists(target: str, want: set[str]) -> None:
    assert needs("GET", target) == want


def test_walks_need_nothing_of_their_own() -> None:
    g = {"customer_read"}
    assert decide("GET", "/v1/customers/cus_1?expand[]=invoice_settings", g).allowed
    assert decide("GET", "/v1/customers/cus_1?expand[]=address", g).allowed
    d = decide("GET", "/v1/subscriptions/sub_1?expand[]=items.data.price", {"subscription_read"})
    assert d.allowed


def test_documented_examples_allow_with_exactly_their_permissions() -> None:
    assert decide("GET", "/v1/apps/secrets/find?expand[]=payload", {"secret_read"}).allowed
    assert decide("GET", "/v1/checkout/sessions/cs_1?expand[]=line_items",
                  {"checkout_session_read"}).allowed
    d = decide("GET", "/v1/subscriptions/sub_1?expand[]=items.data.price.product",
               {"subscription_read"})
    assert d.kind == "missing" and "'product_read'" in d.message
    assert decide("GET", "/v1/subscriptions/sub_1?expand[]=items.data.price.product",
                  {"subscription_read", "product_read"}).allowed


def test_a_list_is_expanded_through_data() -> None:
    d = decide("GET", "/v1/subscriptions/sub_1?expand[]=items.price", {"subscription_read"})
    assert d.kind == "bad_request" and d.param == "expand"
    assert "items.data." in d.message


def test_depth_limit_counts_every_step() -> None:
    # stripe/stripe-java#2011: a 5-step path (data.payments.data.payment.charge) is refused.
    d = decide("GET", "/v1/subscriptions?expand[]=data.items.data.price.product",
               set(cat.permissions))
    assert d.kind == "bad_request" and d.param == "expand"
    assert "more than 4 levels" in d.message
    assert decide("GET", "/v1/subscriptions?expand[]=data.items.data.price",
                  set(cat.permissions)).allowed


def test_unknown_field_is_still_a_400_on_expand() -> None:
    for target in ("/v1/customers/cus_1?expand[]=nonsense",
                   "/v1/customers/cus_1?expand[]=email",  # a property, but not expandable
                   "/v1/customers/cus_1?expand[]=invoice_settings.nonsense"):
        d = decide("GET", target, {"customer_read"})
        assert d.kind == "bad_request" and d.status == 400 and d.param == "expand", target
        assert "cannot be expanded" in d.message


def test_issuing_card_number_is_refused_with_a_reason() -> None:
    # Stripe's expanding_objects page names number and cvc of Issuing Cards as includable; no
    # Stripe Apps permission mentions them: deny by default, and say why.
    d = decide("GET", "/v1/issuing/cards/ic_1?expand[]=number", set(cat.permissions))
    assert d.kind == "unavailable" and "card numbers" in d.message


# -- cards and bank accounts: the same permission however they are reached ------------------

def test_customer_card_needs_what_reading_it_directly_needs() -> None:
    direct = engine.route("GET", "/v1/customers/cus_1/sources/card_1")
    assert direct is not None and direct.permission == "customer_read"
    step = engine.expansion(engine.route("GET", "/v1/customers/cus_1"),  # type: ignore[arg-type]
                            "default_source").steps[0]
    reads = {t: p for t, p, _ in step.reads}
    assert reads["card"] == reads["bank_account"] == direct.permission
    # A Source object (src_) or an Account is its own API object, with its own permission
    # (reference: "a permission for each API object you expand"): default_source needs them.
    assert reads["source"] == "source_read"
    assert reads["account"] == "connected_account_read"
    assert needs("GET", "/v1/customers/cus_1?expand[]=default_source") == {
        "customer_read", "source_read", "connected_account_read"}
    for target in ("/v1/invoices/in_1?expand[]=default_source",
                   "/v1/subscriptions/sub_1?expand[]=default_source"):
        d = engine.requirements("GET", target)
        assert {g[0] for g in d.required} - {"invoice_read", "subscription_read"} == {
            "customer_read", "source_read", "connected_account_read"}, target
    # The one exception, documented: the customer's sources list (expand[]=sources, or
    # GET /v1/customers/{c}/sources) is decided before its items are known.
    assert needs("GET", "/v1/customers/cus_1?expand[]=sources") == {"customer_read"}


@pytest.mark.parametrize(("method", "path", "want"), [
    ("GET", "/v1/customers/cus_1/sources/src_1", "source_read"),
    ("POST", "/v1/customers/cus_1/sources/src_1", "source_write"),
    ("DELETE", "/v1/customers/cus_1/sources/src_1", "source_write"),
    ("GET", "/v1/customers/cus_1/sources/card_1", "customer_read"),
    ("GET", "/v1/customers/cus_1/sources/ba_1", "customer_read"),
    ("POST", "/v1/customers/cus_1/sources/card_1", "customer_write"),
    ("DELETE", "/v1/customers/cus_1/sources/ba_1", "customer_write"),
])
def test_customer_source_by_id_prefix(method: str, path: str, want: str) -> None:
    # A customer's src_ is a Source (source_read); its card_/ba_ are the customer's own.
    assert needs(method, path) == {want}
    op = engine.route(method, path)
    assert op is not None and op.permission == want
    d = decide(method, path, {"customer_read", "customer_write"})
    assert d.allowed is (want.startswith("customer")), (method, path)


def test_external_account_is_read_through_the_connected_account() -> None:
    direct = engine.route("GET", "/v1/accounts/acct_1/external_accounts/ba_1")
    assert direct is not None and direct.permission == "connected_account_read"
    assert needs("GET", "/v1/payouts/po_1?expand[]=destination") == {
        "payout_read", "connected_account_read"}
    assert needs("GET", "/v1/accounts/acct_1?expand[]=external_accounts") == {
        "connected_account_read"}


# -- messages name the smallest set -------------------------------------------------------------

def test_message_names_the_smallest_set() -> None:
    # The reference: balance_transaction_source_read implies balance_read, so it alone allows
    # a body expansion of balance_transaction.source on a charge update.
    d = decide("POST", "/v1/charges/ch_1", {"charge_write"},
               body=b"expand[]=balance_transaction.source")
    assert d.kind == "missing"
    assert "'balance_transaction_source_read' permission would allow" in d.message
    assert "'balance_read'" not in d.message
    # Both groups are still listed in `missing` (every alternative).
    assert len(d.missing) == 2
    # Two unrelated permissions are both named.
    d = decide("GET", "/v1/charges/ch_1?expand[]=customer&expand[]=invoice", {"charge_read"})
    assert "'customer_read' and 'invoice_read' permissions" in d.message


# -- every field of every object type is decided ----------------------------------------------

def _paths(node: str, depth: int) -> list[str]:
    out: list[str] = []
    for name, kind in engine.graph.kinds(node).items():
        targets = engine.graph.fields(node)[name]
        entry = _doc()[node][name]
        is_list = isinstance(entry, dict) and "list" in entry
        out.append(name)
        if depth > 1 and kind != "unavailable":
            prefix = name + (".data" if is_list else "")
            for t in targets:
                for sub in engine.graph.kinds(t):
                    out.append(f"{prefix}.{sub}")
    return out


_DOC: dict[str, dict[str, object]] = {}


def _doc() -> dict[str, dict[str, object]]:
    if not _DOC:
        _DOC.update(json.loads((DATA / "stripe_expansions.json").read_text())["expansions"])
    return _DOC


def test_every_expandable_field_to_depth_two_is_decided() -> None:
    """Each object type an operation returns, each path of its model to depth 2: allowed,
    missing, or refused with a reason; never a crash, never "unknown", never "cannot be
    expanded" for a path the model itself lists."""
    roots = sorted({t for op in engine.operations for t in op.objects if op.permission})
    checked = 0
    for root in roots:
        for path in _paths(root, 2):
            exp = engine.graph.resolve((root,), False, path)
            if exp.error is None:
                assert exp.steps and all(s.kind in ("expanded", "walked", "includable")
                                         for s in exp.steps), (root, path)
                for s in exp.steps:
                    assert all(n in cat.permissions for n in s.needs), (root, path)
            else:
                assert exp.error == "unavailable" and exp.message, (root, path, exp.message)
            checked += 1
    assert checked > 2000
    # And through the engine, as a request: one operation per root type.
    for op in engine.operations:
        if op.method != "GET" or op.is_list or op.permission is None or "{" not in op.path:
            continue
        path = op.path.replace("{", "x").replace("}", "")
        for root in op.objects:
            for field in list(engine.graph.kinds(root))[:3]:
                d = engine.requirements("GET", f"{path}?expand[]={field}")
                assert d.kind in ("allowed", "missing", "unavailable"), (op, field, d.message)


def test_explain_shows_each_step() -> None:
    op = engine.route("GET", "/v1/checkout/sessions/cs_1")
    assert op is not None
    lines = expansion_steps(engine.expansion(op, "line_items.data.price.product"))
    assert lines[0].startswith("line_items: includable list, needs what GET "
                               "/v1/checkout/sessions/{session}/line_items needs")
    assert lines[1].startswith("data: walked")
    assert lines[2].startswith("price: walked")
    assert lines[3] == "product: expanded to product (needs product_read)"


# -- bounds ------------------------------------------------------------------------------------

def test_duplicate_expansions_count_once() -> None:
    d1 = decide("GET", "/v1/charges/ch_1?expand[]=customer", {"charge_read"})
    d2 = decide("GET", "/v1/charges/ch_1?expand[]=customer&expand[]=customer&expand[0]=customer",
                {"charge_read"})
    assert d1 is d2  # one plan: the duplicates were dropped before the cache key was made


def test_too_many_expansions_are_refused() -> None:
    many = "&".join(f"expand[]=customer{i}" for i in range(MAX_EXPANSIONS + 1))
    d = decide("GET", "/v1/charges/ch_1?" + many, {"charge_read"})
    assert d.kind == "bad_request" and d.param == "expand" and "at most" in d.message
    d = engine.decide("GET", "/v1/charges/ch_1", None, {"charge_read"},
                      expand=[f"f{i}" for i in range(MAX_EXPANSIONS + 1)])
    assert d.kind == "bad_request"
    d = decide("GET", "/v1/charges/ch_1?expand[]=" + "a" * 600, {"charge_read"})
    assert d.kind == "bad_request" and d.param == "expand"
