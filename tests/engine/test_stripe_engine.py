"""Decisions against Stripe's catalog and operations table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.vendored import REFERENCE_FACTS, read_json

import permgate
from permgate.catalog import UnknownPermission

engine = permgate.engine
cat = engine.catalog


def read_op(permission: str) -> tuple[str, str]:
    """A concrete request path for some GET operation that needs exactly `permission`."""
    for op in engine.operations:
        if op.permission == permission and op.method == "GET":
            return "GET", op.path.replace("{", "x_").replace("}", "")
    for op in engine.operations:
        if op.permission == permission:
            return op.method, op.path.replace("{", "x_").replace("}", "")
    raise LookupError(permission)


def has_op(permission: str) -> bool:
    return any(op.permission == permission for op in engine.operations)


# -- the catalog against the reference ------------------------------------------------------

def test_catalog_rows_match_the_reference() -> None:
    # The facts extracted from the reference's object table (committed; checked against the
    # reference's text by tests/test_vendored.py).
    rows = json.loads(REFERENCE_FACTS.read_text(encoding="utf-8"))
    names = {n for row in rows for n in row["names"]}
    from_reference = {p.name for p in cat.permissions.values() if "reference" in p.sources}
    assert from_reference == names
    assert len(names) == 118


@pytest.mark.parametrize("name,implied", [
    ("credit_note_read", "invoice_read"), ("credit_note_write", "invoice_read"),
    ("invoice_read", "credit_note_read"), ("quote_read", "sku_read"),
    ("quote_read", "product_read"),
    ("checkout_session_read", "mandate_read"), ("checkout_session_read", "payment_intent_read"),
    ("checkout_session_read", "payment_links_read"), ("checkout_session_read", "product_read"),
    ("checkout_session_read", "setup_intent_read"), ("checkout_session_read", "sku_read"),
    ("transfer_read", "payout_read"), ("transfer_write", "payout_read"),
    ("balance_transaction_source_read", "application_fee_read"),
    ("balance_transaction_source_read", "balance_read"),
    ("balance_transaction_source_read", "financing_transaction_read"),
    ("balance_transaction_source_read", "payout_read"),
    ("balance_transaction_source_read", "transfer_read"),
    ("balance_transaction_source_read", "balance_transfer_read"),
    ("customer_read", "billing_clock_read"), ("customer_write", "billing_clock_read"),
    ("payment_intent_read", "product_read"), ("payment_intent_read", "sku_read"),
    ("payment_links_read", "mandate_read"), ("payment_links_read", "product_read"),
    ("payment_links_read", "sku_read"), ("payment_method_read", "source_read"),
    ("setup_intent_read", "mandate_read"), ("setup_intent_write", "mandate_read"),
])
def test_every_implication_of_the_reference(name: str, implied: str) -> None:
    assert implied in cat.implied_by(name)
    assert name in cat.satisfiers(implied)
    if has_op(implied):
        method, path = read_op(implied)
        assert engine.decide(method, path, grants={name}).allowed, (name, implied)


def test_implications_are_exactly_those_stated() -> None:
    stated = {(p.name, t) for p in cat.permissions.values() for t in p.implies}
    assert len(stated) == len({(n, t) for n, t in stated})
    # nothing implies a write permission, and "must also request" is not an implication
    assert all(t.endswith("_read") for _, t in stated)
    assert "elements_write" not in cat.implied_by("invoice_write")
    assert "elements_write" not in cat.closure({"payment_intent_write", "setup_intent_write"})


def test_implied_only_permissions_exist_and_are_marked() -> None:
    for name in ("mandate_read", "financing_transaction_read", "balance_transfer_read"):
        assert "implied" in cat.permissions[name].sources
    assert not cat.permissions["financing_transaction_read"].requestable
    assert cat.permissions["mandate_read"].requestable  # the schema lists it
    assert cat.permissions["mandate_write"].sources == ("schema",)
    assert not cat.permissions["webhook_write"].requestable


def test_write_covers_read_for_every_resource() -> None:
    for p in cat.permissions.values():
        twin = f"{p.resource}_read"
        if p.level == "write" and twin in cat.permissions:
            assert twin in cat.closure({p.name})
            if has_op(twin):
                m, path = read_op(twin)
                assert engine.decide(m, path, grants={p.name}).allowed
        if p.level == "read" and has_op(f"{p.resource}_write"):
            m, path = read_op(f"{p.resource}_write")
            d = engine.decide(m, path, grants={p.name})
            assert not d.allowed and d.kind == "missing"


def test_read_never_covers_write() -> None:
    d = engine.decide("POST", "/v1/customers/cus_1", grants={"customer_read"})
    assert d.status == 403 and d.missing == (("customer_write",),)


def test_satisfiers_most_specific_first() -> None:
    assert cat.satisfiers("invoice_read")[:4] == (
        "invoice_read", "invoice_write", "credit_note_read", "credit_note_write")
    assert cat.satisfiers("customer_write") == ("customer_write",)


def test_typo_suggestions() -> None:
    assert cat.suggest("apply_pay_domain_read") == "apple_pay_domain_read"
    assert cat.suggest("shpping_rate_write") == "shipping_rate_write"
    with pytest.raises(UnknownPermission, match="did you mean 'customer_read'"):
        engine.grant(["customer_reed"])


# -- operations ------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,permission", [
    ("GET", "/v1/customers/cus_123", "customer_read"),
    ("POST", "/v1/customers/cus_123", "customer_write"),
    ("DELETE", "/v1/customers/cus_123", "customer_write"),
    ("GET", "/v1/customers/search?query=email:'a@b.c'", "customer_read"),
    ("GET", "/v1/invoices/in_1/lines", "invoice_read"),
    ("GET", "/v1/checkout/sessions/cs_1/line_items", "checkout_session_read"),
    ("POST", "/v1/refunds", "charge_write"),
    ("GET", "/v1/refunds/re_1", "charge_read"),
    ("GET", "/v1/prices/price_1", "plan_read"),
    ("POST", "/v1/reporting/report_runs", "report_runs_and_report_types_read"),
    ("POST", "/v1/account_links", "account_link_write"),
    ("POST", "/v1/accounts/acct_1/login_links", "edit_link_write"),
    ("POST", "/v1/terminal/connection_tokens", "terminal_connection_token_write"),
    ("POST", "/v1/billing/meter_events", "billing_meter_event_write"),
    ("GET", "/v1/events/evt_1", "event_read"),
    ("GET", "/v1/apps/secrets/find", "secret_read"),
])
def test_operation_requirements(method: str, path: str, permission: str) -> None:
    d = engine.requirements(method, path)
    assert d.kind == "missing"
    assert d.required[0][0] == permission
    assert engine.decide(method, path, grants={permission}).allowed


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/treasury/outbound_payments"),
    ("GET", "/v1/radar/value_lists"),
    ("POST", "/v1/accounts"),
])
def test_not_available_to_apps(method: str, path: str) -> None:
    d = engine.decide(method, path, grants=set(cat.permissions))
    assert d.kind == "unavailable" and d.status == 403
    assert "not available to Stripe Apps" in d.message


def test_unknown_path_and_wrong_method() -> None:
    every = set(cat.permissions)
    assert engine.decide("GET", "/v1/nothing_here", grants=every).status == 404
    assert engine.decide("PUT", "/v1/customers/cus_1", grants=every).kind == "unknown"
    assert engine.decide("GET", "/V1/CUSTOMERS", grants=every).kind == "unknown"


def test_search_is_not_an_id() -> None:
    op = engine.route("GET", "/v1/customers/search")
    assert op is not None and op.path == "/v1/customers/search" and op.is_list
    op = engine.route("GET", "/v1/customers/cus_search")
    assert op is not None and op.path == "/v1/customers/{customer}"


@pytest.mark.parametrize("path", [
    "/v1/customers/../charges", "/v1/customers/./cus_1", "/v1//customers", "/v1/customers/",
    "/v1/customers/cus%2F1", "/v1/customers/%2e%2e", "/v1/customers/cus%00", "/v1/customers/a\\b",
    "/v1/customers/" + "a" * 2100, "/v1/customers/c\u00e9", "v1/customers",
    "/v1/customers/%2E", "/v1/customers/cus 1",
    # Forms that other servers decode twice or split (issue 11, item 6):
    "/v1/customers/cus%20x", "/v1/customers/%252e%252e", "/v1/customers/%252e%252e%252fcharges",
    "/v1/customers/..;/charges", "/v1/customers/cus_1;x=y", "/v1/customers;/cus_1",
    "/v1/customers/.cus", "/v1/customers/cus.", "/v1/customers/a..b", "/v1/customers/a:b",
    "/v1/customers/a@b", "/v1/customers/%63us_1",
])
def test_hostile_paths_are_refused(path: str) -> None:
    d = engine.decide("GET", path, grants=set(cat.permissions))
    assert d.kind == "bad_request" and d.status == 400, path


def test_ids_are_opaque() -> None:
    every = set(cat.permissions)
    for cid in ("cus_123", "gold-plan", "SUMMER25", "123", "a.b", "balance.summary.1"):
        assert engine.decide("GET", f"/v1/coupons/{cid}", grants=every).allowed, cid


# -- expansion -------------------------------------------------------------------------

def test_expand_nested_and_spellings() -> None:
    g = {"charge_read", "customer_read"}
    assert engine.decide("GET", "/v1/charges/ch_1?expand[]=customer", grants=g).allowed
    assert engine.decide("GET", "/v1/charges/ch_1?expand[0]=customer", grants=g).allowed
    assert engine.decide("GET", "/v1/charges/ch_1?expand%5B%5D=customer", grants=g).allowed
    d = engine.decide("GET", "/v1/charges/ch_1?expand[]=invoice", grants=g)
    assert d.missing == (cat.satisfiers("invoice_read"),)
    d = engine.decide("GET", "/v1/charges/ch_1?expand[]=payment_intent.customer",
                      grants={"charge_read"})
    assert [m[0] for m in d.missing] == ["payment_intent_read", "customer_read"]
    assert engine.decide("GET", "/v1/charges/ch_1", grants={"charge_read"},
                         expand=["payment_intent.customer"]).kind == "missing"


def test_encoded_expand_key_cannot_hide() -> None:
    d = engine.decide("GET", "/v1/charges/ch_1?%65xpand[]=customer", grants={"charge_read"})
    assert d.kind == "missing"


def test_expand_in_post_body() -> None:
    d = engine.decide("POST", "/v1/customers",
                      body=b"email=a%40b.c&expand[]=invoice_settings.default_payment_method",
                      grants={"customer_write"})
    assert d.kind == "missing"
    assert "payment_method_read" in {p for g in d.missing for p in g}


def test_expand_list_needs_data_prefix() -> None:
    g = {"charge_read", "customer_read"}
    assert engine.decide("GET", "/v1/charges?expand[]=data.customer", grants=g).allowed
    d = engine.decide("GET", "/v1/charges?expand[]=customer", grants=g)
    assert d.kind == "bad_request" and d.param == "expand"


def test_expand_depth_limit() -> None:
    d = engine.decide(
        "GET", "/v1/charges?expand[]=data.invoice.subscription.default_payment_method.customer",
        grants=set(cat.permissions))
    assert d.kind == "bad_request" and "4 levels" in d.message


def test_expand_unknown_field() -> None:
    d = engine.decide("GET", "/v1/charges/ch_1?expand[]=nonsense", grants={"charge_read"})
    assert d.kind == "bad_request" and "cannot be expanded" in d.message


def test_polymorphic_field_needs_every_type() -> None:
    # Stripe's own polymorphic fields are all read through one owner or one permission now
    # (a customer's default source: issue 24); the rule itself, on a graph of our own.
    from permgate.api.expand import ExpansionGraph

    graph = ExpansionGraph({"root": {"either": ["a", "b"]}},
                           {"a": {"permission": "a_read"}, "b": {"permission": "b_read"}})
    exp = graph.resolve(("root",), False, "either")
    assert exp.error is None and exp.needs == ("a_read", "b_read")
    assert len(exp.steps[0].types) == 2


def test_balance_transaction_source_is_its_own_permission() -> None:
    d = engine.decide("GET", "/v1/balance_transactions/txn_1?expand[]=source",
                      grants={"balance_read"})
    assert d.kind == "missing"
    assert d.missing == (cat.satisfiers("balance_transaction_source_read"),)
    assert engine.decide("GET", "/v1/balance_transactions/txn_1?expand[]=source",
                         grants={"balance_transaction_source_read"}).allowed


# -- events ----------------------------------------------------------------------------

def _documented_events() -> dict[str, list[str]]:
    doc = read_json("event-permissions.json")
    doc.pop("_meta")
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize("event_type,perms", sorted(_documented_events().items()))
def test_documented_event_rules(event_type: str, perms: list[str]) -> None:
    if event_type.startswith("account.application."):
        assert permgate.decide_event(event_type, {"event_read"}).allowed
        return
    if not perms:
        assert not permgate.decide_event(event_type, set(cat.permissions)).allowed
        return
    for p in perms:
        assert permgate.decide_event(event_type, {"event_read", p}).allowed
        assert not permgate.decide_event(event_type, {p}).allowed  # event_read missing
    assert not permgate.decide_event(event_type, {"event_read"}).allowed


def test_event_write_covers_read_and_implied() -> None:
    assert permgate.decide_event("customer.created", {"event_read", "customer_write"}).allowed
    # credit_note_read implies invoice_read: either allows invoice events
    assert permgate.decide_event("invoice.paid", {"event_read", "credit_note_write"}).allowed
    d = permgate.decide_event("invoice.paid", {"event_read"})
    assert d.missing[0][:3] == ("credit_note_read", "credit_note_write", "invoice_read")
    # Any-of groups read as one permission, whichever is granted (issue 24: "Having the one
    # of ..." was no English).
    assert ("Having the 'credit_note_read', 'invoice_read' or 'quote_read' permission would "
            "allow it.") in d.message
    d = permgate.decide_event("invoice.paid", set())
    assert ("Having the 'event_read' permission and the 'credit_note_read', 'invoice_read' or "
            "'quote_read' permission would allow it.") in d.message


def test_derived_events_are_marked() -> None:
    rule = cat.events["billing.meter.created"]
    assert rule.source == "derived" and rule.permissions == ("billing_meter_read",)
    grant = {"event_read", "billing_meter_read"}
    assert permgate.decide_event("billing.meter.created", grant).allowed
    sdk = read_json("stripe-event-types.python-sdk-16.1.0.json")
    assert set(sdk) <= set(cat.events)
    assert sum(1 for e in cat.events.values() if e.source == "documented") == 162


def test_polymorphic_result_expands_from_every_type() -> None:
    op = engine.route("GET", "/v1/customers/cus_1/sources")
    assert op is not None and op.object is None and len(op.objects) > 1
    d = engine.decide("GET", "/v1/customers/cus_1/sources?expand[]=data.customer",
                      grants={"customer_read"})
    assert d.kind != "bad_request", d.message


def test_decisions_are_shared_and_name_the_account_on_request() -> None:
    g = engine.grant(["charge_read"])
    a = engine.decide("GET", "/v1/charges/ch_1?expand[]=customer", grants=g)
    b = engine.decide("GET", "/v1/charges/ch_2?expand[]=customer", grants=g)
    assert a is b  # cached per (operation, expansions, grant): ids do not matter
    assert "account" not in a.message
    msg = a.message_for("acct_7")
    assert msg.startswith("This application does not have the required permissions for this "
                          "endpoint on account 'acct_7'.")
    assert msg == engine.decide("GET", "/v1/charges/ch_1?expand[]=customer", grants=g,
                                account="acct_7").message
    assert a.message_for(None) == a.message


@pytest.mark.slow
def test_catalog_generator_check_passes() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "tools" / "gen_catalog.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
