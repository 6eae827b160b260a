"""The generated API surface: every operation mapped once, to a real permission or a reason.

Reads the committed tables in the package and, to cross-check them, the public sources
vendored in data/vendor (tests may; the package never does).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests.vendored import read_json

from permgate.catalog import load_catalog

REPO = Path(__file__).parents[2]
DATA = REPO / "src" / "permgate" / "api" / "data"
PARAM = re.compile(r"\{[^}/]*\}")


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def rows() -> dict[tuple[str, str], dict[str, Any]]:
    doc = read(DATA / "stripe_operations.json")
    return {(r["method"], r["path"]): r for r in doc["operations"]}


@cache
def objects() -> dict[str, dict[str, str]]:
    doc: dict[str, dict[str, str]] = read(DATA / "stripe_objects.json")["objects"]
    return doc


@cache
def gen_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", REPO / "tools" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_api"] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def source_keys() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    spec = {(o["method"], o["path"]) for o in read_json("stripe-operations.json")}
    sdk = {(o["method"], o["path"])
           for o in read_json("stripe-operations.python-sdk-16.1.0.json")}
    return spec, sdk


# --- the committed outputs are what the generator gives -------------------------------------

@pytest.mark.slow
def test_generator_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_api.py"), "--check"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stderr


def test_coverage_report_is_committed_and_counts_every_operation() -> None:
    text = (REPO / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert f"operations: {len(rows())} " in text
    unavailable = sum(1 for r in rows().values() if r["unavailable"])
    assert f"not available: {unavailable} " in text


# --- invariants over every row --------------------------------------------------------------

def test_every_source_operation_appears_exactly_once() -> None:
    spec, sdk = source_keys()
    listed = [(r["method"], r["path"]) for r in read(DATA / "stripe_operations.json")["operations"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == spec | sdk


def test_rows_are_sorted_by_path_then_method() -> None:
    listed = [(r["path"], r["method"]) for r in read(DATA / "stripe_operations.json")["operations"]]
    assert listed == sorted(listed)


def test_sources_name_where_each_operation_comes_from() -> None:
    spec, sdk = source_keys()
    for key, r in rows().items():
        expected = [s for s, present in (("spec-2024-04-10", key in spec),
                                         ("python-sdk-16.1.0", key in sdk)) if present]
        assert r["sources"] == expected, key


def test_every_permission_exists_in_the_catalog() -> None:
    catalog = load_catalog()
    for key, r in rows().items():
        if r["permission"] is not None:
            assert r["permission"] in catalog.permissions, key


def test_exactly_one_of_permission_and_unavailable() -> None:
    for key, r in rows().items():
        assert (r["permission"] is None) != (r["unavailable"] is None), key
        if r["unavailable"] is not None:
            assert r["unavailable"].strip(), key
        assert r["rule"], key


def test_get_never_needs_a_write_permission() -> None:
    for key, r in rows().items():
        if key[0] == "GET" and r["permission"]:
            assert r["permission"].endswith("_read"), key


def test_writes_need_write_except_report_runs() -> None:
    # The reference's one read permission that allows a write: creating Report Runs.
    for key, r in rows().items():
        if key[0] != "GET" and r["permission"] and r["permission"].endswith("_read"):
            assert key == ("POST", "/v1/reporting/report_runs"), key


def test_object_fields_agree() -> None:
    for key, r in rows().items():
        assert r["object"] == (r["objects"][0] if len(r["objects"]) == 1 else None), key
        if key[1].startswith("/v2/"):
            assert r["objects"] == [], key


def test_no_two_rows_differ_only_by_parameter_names() -> None:
    # The router treats parameters as wildcards; two such rows would be one route twice.
    seen: dict[tuple[str, str], str] = {}
    for method, path in rows():
        shape = (method, PARAM.sub("{}", path))
        assert shape not in seen, (path, seen[shape])
        seen[shape] = path


# --- object read permissions and the expansion graph ----------------------------------------

def _id_types(entry: object) -> list[str]:
    if isinstance(entry, list):
        return entry
    assert isinstance(entry, dict)
    return list(entry.get("id", []))


def test_every_object_type_has_an_entry() -> None:
    graph = read(DATA / "stripe_expansions.json")["expansions"]
    used = {t for r in rows().values() for t in r["objects"]}
    used |= {t for fields in graph.values() for e in fields.values() for t in _id_types(e)}
    assert used <= set(objects())


def test_object_entries_name_a_read_permission_or_a_reason() -> None:
    catalog = load_catalog()
    for obj, info in objects().items():
        assert len(info) == 1, obj
        if "permission" in info:
            assert info["permission"] in catalog.permissions, obj
            assert catalog.permissions[info["permission"]].level == "read", obj
        else:
            assert info["unavailable"].strip(), obj


@pytest.mark.parametrize(("obj", "expected"), [
    ("customer", "customer_read"),
    ("charge", "charge_read"),
    ("refund", "charge_read"),
    ("price", "plan_read"),
    ("balance_transaction", "balance_read"),
    ("line_item", "invoice_read"),
    ("item", "checkout_session_read"),
    ("test_helpers.test_clock", "billing_clock_read"),
    ("apps.secret", "secret_read"),
    ("topup", "top_up_read"),
    ("payment_link", "payment_links_read"),
    ("account", "connected_account_read"),
    ("billing.meter_event", "billing_meter_event_read"),
    ("account_link", None),  # write-only: account_link_write
    ("login_link", None),  # write-only: edit_link_write
    ("terminal.connection_token", None),  # write-only
    ("tax_code", None),
    ("radar.value_list", None),
    ("treasury.outbound_payment", None),
    ("application", None),
])
def test_object_read_permission(obj: str, expected: str | None) -> None:
    info = objects()[obj]
    assert info.get("permission") == expected
    if expected is None:
        assert info["unavailable"]


def test_write_only_objects_say_so() -> None:
    assert "account_link_write" in objects()["account_link"]["unavailable"]
    assert "edit_link_write" in objects()["login_link"]["unavailable"]


WIDENED = {(o, "default_source"): {"account"} for o in ("customer", "invoice", "subscription")}


def test_expansion_model_reaches_every_id_field_of_the_source_list() -> None:
    """The id-only list in data/vendor (derived from the same spec) is a subset of the model:
    each of its dotted paths walks embedded objects to an id field holding the same types."""
    graph = read(DATA / "stripe_expansions.json")["expansions"]
    source = read_json("stripe-expansions.json")
    for obj, fields in source.items():
        for path, types in fields.items():
            nodes = [obj]
            parts = path.split(".")
            for i, part in enumerate(parts):
                entries = [graph.get(n, {}).get(part) for n in nodes]
                entries = [e for e in entries if e is not None]
                assert entries, (obj, path, part)
                if i == len(parts) - 1:
                    got = {t for e in entries for t in _id_types(e)}
                    want = {"rule" if t == "schema:rule" else t for t in types}
                    # Other API versions may add types (issue 24 review: the 2020-08-27
                    # spec and stripe-python say a default_source may hold an Account)
                    assert got == want | WIDENED.get((obj, path), set()), (obj, path)
                else:
                    nodes = [n for e in entries if isinstance(e, dict)
                             for n in e.get("walk", [])]
    assert graph["charge"]["customer"] == ["customer"]
    assert "charge" in graph["balance_transaction"]["source"]


# --- list detection -------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "is_list", "obj"), [
    ("GET", "/v1/customers", True, "customer"),
    ("GET", "/v1/customers/search", True, "customer"),
    ("GET", "/v1/customers/{customer}", False, "customer"),
    ("POST", "/v1/customers", False, "customer"),
    ("GET", "/v1/charges/search", True, "charge"),
    ("GET", "/v1/invoices/{invoice}/lines", True, "line_item"),
    ("GET", "/v1/invoices/upcoming", False, "invoice"),
    ("GET", "/v1/invoices/upcoming/lines", True, "line_item"),
    ("GET", "/v1/checkout/sessions/{session}/line_items", True, "item"),
    ("GET", "/v1/balance", False, "balance"),
    ("GET", "/v1/balance_transactions", True, "balance_transaction"),
    ("GET", "/v1/apps/secrets", True, "apps.secret"),
    ("GET", "/v1/apps/secrets/find", False, "apps.secret"),
    ("GET", "/v1/events", True, "event"),
    ("GET", "/v1/quotes/{quote}/pdf", False, None),
    ("GET", "/v1/tax/settings", False, "tax.settings"),
    ("GET", "/v1/customers/{customer}/cash_balance", False, "cash_balance"),
    ("GET", "/v1/subscriptions/search", True, "subscription"),
    # SDK-only operations (no spec): guessed from the paths, checked here.
    ("GET", "/v1/billing/alerts", True, "billing.alert"),
    ("GET", "/v1/billing/alerts/{id}", False, "billing.alert"),
    ("GET", "/v1/billing/credit_balance_summary", False, "billing.credit_balance_summary"),
    ("GET", "/v1/invoice_payments", True, "invoice_payment"),
    ("GET", "/v1/payment_intents/{intent}/amount_details_line_items", True,
     "payment_intent_amount_details_line_item"),
    ("GET", "/v1/tax/associations/find", False, "tax.association"),
    ("GET", "/v1/tax/calculations/{calculation}", False, "tax.calculation"),
    ("POST", "/v1/checkout/sessions/{session}", False, "checkout.session"),
    ("POST", "/v1/invoices/{invoice}/attach_payment", False, "invoice"),
    ("GET", "/v2/core/events", True, None),
    ("GET", "/v2/core/events/{id}", False, None),
])
def test_list_flag_and_object(method: str, path: str, is_list: bool, obj: str | None) -> None:
    r = rows()[(method, path)]
    assert r["list"] is is_list
    assert r["object"] == obj


def test_sdk_list_guess_never_claims_a_list_the_spec_denies() -> None:
    # The path rule used for SDK-only operations, tried on every operation the spec describes:
    # it may miss lists (search, sub-collections) but must never call a single object a list.
    g = gen_api()
    surface = g.Surface(fresh_inputs())
    for key in inputs().spec_ops:
        if surface.guess_list(key):
            assert g.spec_is_list(inputs().spec, *key), key


@cache
def inputs() -> Any:
    return gen_api().load_inputs()


def fresh_inputs(**changes: Any) -> Any:
    """The real inputs with some parts replaced (the big spec is shared, never mutated)."""
    return dataclasses.replace(inputs(), used=set(), **changes)


def test_generator_refuses_an_override_that_matches_nothing() -> None:
    overrides = copy.deepcopy(inputs().overrides)
    overrides["subpaths"].append({"prefix": "/v1/nowhere", "resource": "customer", "why": "x"})
    with pytest.raises(SystemExit, match="match no operation"):
        gen_api().build(fresh_inputs(overrides=overrides))


def test_generator_refuses_an_object_type_it_cannot_map() -> None:
    objects_map = dict(inputs().objects)
    del objects_map["customer"]
    with pytest.raises(SystemExit, match="'customer'"):
        gen_api().build(fresh_inputs(objects=objects_map))


def test_v2_path_without_a_rule_is_denied() -> None:
    overrides = copy.deepcopy(inputs().overrides)
    overrides["v2"] = [s for s in overrides["v2"] if s["prefix"] != "/v2/core/vault"]
    surface = gen_api().Surface(fresh_inputs(overrides=overrides))
    row = surface.row(("GET", "/v2/core/vault/us_bank_accounts"))
    assert row["permission"] is None
    assert "v2" in row["unavailable"]


def test_spec_list_flags_match_the_spec() -> None:
    spec, _ = source_keys()
    oas = read_json(gen_api().SPEC_FILE)
    for method, path in spec:
        content = oas["paths"][path][method.lower()]["responses"]["200"]["content"]
        schema = content.get("application/json", {}).get("schema", {})  # the quote PDF is not
        while "$ref" in schema:
            schema = oas["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        has_data = schema.get("properties", {}).get("data", {}).get("type") == "array"
        assert rows()[(method, path)]["list"] is has_data, (method, path)


# --- every operation's mapping: a hand-written table ----------------------------------------

U = "unavailable"
EXPECTED: list[tuple[str, str, str, str]] = [
    # (method, path, permission or U, for U: a phrase the reason must contain)
    # Core
    ("GET", "/v1/customers", "customer_read", ""),
    ("POST", "/v1/customers", "customer_write", ""),
    ("DELETE", "/v1/customers/{customer}", "customer_write", ""),
    ("GET", "/v1/customers/search", "customer_read", ""),
    ("GET", "/v1/customers/{customer}/sources", "customer_read", ""),
    ("POST", "/v1/customers/{customer}/cards", "customer_write", ""),
    ("GET", "/v1/customers/{customer}/bank_accounts/{id}", "customer_read", ""),
    ("POST", "/v1/customers/{customer}/tax_ids", "customer_write", ""),
    ("GET", "/v1/customers/{customer}/balance_transactions", "customer_read", ""),
    ("POST", "/v1/customers/{customer}/cash_balance", "customer_write", ""),
    ("DELETE", "/v1/customers/{customer}/discount", "customer_write", ""),
    ("GET", "/v1/customers/{customer}/payment_methods", "payment_method_read", ""),
    ("GET", "/v1/customers/{customer}/subscriptions", "subscription_read", ""),
    ("GET", "/v1/charges", "charge_read", ""),
    ("POST", "/v1/charges/{charge}/capture", "charge_write", ""),
    ("GET", "/v1/charges/search", "charge_read", ""),
    ("POST", "/v1/charges/{charge}/refunds", "charge_write", ""),
    ("GET", "/v1/charges/{charge}/refunds/{refund}", "charge_read", ""),
    ("GET", "/v1/charges/{charge}/dispute", "dispute_read", ""),
    ("POST", "/v1/refunds", "charge_write", ""),
    ("GET", "/v1/refunds/{refund}", "charge_read", ""),
    ("POST", "/v1/refunds/{refund}/cancel", "charge_write", ""),
    ("POST", "/v1/payment_intents/{intent}/confirm", "payment_intent_write", ""),
    ("GET", "/v1/payment_intents/search", "payment_intent_read", ""),
    ("POST", "/v1/setup_intents/{intent}/confirm", "setup_intent_write", ""),
    ("GET", "/v1/setup_attempts", "setup_intent_read", ""),
    ("POST", "/v1/payment_methods/{payment_method}/attach", "payment_method_write", ""),
    ("GET", "/v1/balance", "balance_read", ""),
    ("GET", "/v1/balance/history", "balance_read", ""),
    ("GET", "/v1/balance_transactions/{id}", "balance_read", ""),
    ("GET", "/v1/events", "event_read", ""),
    ("GET", "/v1/events/{id}", "event_read", ""),
    ("GET", "/v1/files", "file_read", ""),
    ("POST", "/v1/files", "file_write", ""),
    ("POST", "/v1/file_links", "file_write", ""),
    ("GET", "/v1/mandates/{mandate}", "mandate_read", ""),
    ("POST", "/v1/tokens", "token_write", ""),
    ("POST", "/v1/sources", "source_write", ""),
    ("GET", "/v1/confirmation_tokens/{confirmation_token}", "confirmation_token_read", ""),
    ("POST", "/v1/customer_sessions", "customer_session_write", ""),
    ("POST", "/v1/payment_method_domains/{payment_method_domain}/validate",
     "payment_method_domain_write", ""),
    ("GET", "/v1/payment_records/{id}", "payment_records_read", ""),
    ("POST", "/v1/payment_records/report_payment", "payment_records_write", ""),
    ("GET", "/v1/disputes", "dispute_read", ""),
    ("POST", "/v1/disputes/{dispute}/close", "dispute_write", ""),
    ("GET", "/v1/tax_ids", "customer_read", ""),
    ("DELETE", "/v1/tax_ids/{id}", "customer_write", ""),
    ("GET", "/v1/payment_attempt_records", "payment_records_read", ""),
    ("GET", "/v1/balance_settings", "balance_read", ""),
    ("POST", "/v1/balance_settings", U, "no write permission"),
    ("POST", "/v1/payment_method_configurations", U, "Payment Method Configurations"),
    ("POST", "/v1/ephemeral_keys", U, "Ephemeral Keys"),
    # Billing
    ("GET", "/v1/invoices/{invoice}/lines", "invoice_read", ""),
    ("POST", "/v1/invoices/{invoice}/pay", "invoice_write", ""),
    ("POST", "/v1/invoices/{invoice}/finalize", "invoice_write", ""),
    ("POST", "/v1/invoices/{invoice}/add_lines", "invoice_write", ""),
    ("GET", "/v1/invoices/upcoming", "invoice_read", ""),
    ("POST", "/v1/invoiceitems", "invoice_write", ""),
    ("GET", "/v1/prices", "plan_read", ""),
    ("POST", "/v1/prices/{price}", "plan_write", ""),
    ("GET", "/v1/prices/search", "plan_read", ""),
    ("DELETE", "/v1/plans/{plan}", "plan_write", ""),
    ("POST", "/v1/subscriptions/{subscription}/resume", "subscription_write", ""),
    ("DELETE", "/v1/subscriptions/{subscription_exposed_id}/discount", "subscription_write", ""),
    ("POST", "/v1/subscription_schedules/{schedule}/release", "subscription_write", ""),
    ("GET", "/v1/subscription_items", "subscription_read", ""),
    ("POST", "/v1/subscription_items/{subscription_item}/usage_records", "usage_record_write", ""),
    ("GET", "/v1/subscription_items/{subscription_item}/usage_record_summaries",
     "usage_record_read", ""),
    ("GET", "/v1/credit_notes/{credit_note}/lines", "credit_note_read", ""),
    ("POST", "/v1/coupons", "coupon_write", ""),
    ("GET", "/v1/promotion_codes", "promotion_code_read", ""),
    ("GET", "/v1/quotes/{quote}/pdf", "quote_read", ""),
    ("GET", "/v1/quotes/{quote}/line_items", "quote_read", ""),
    ("POST", "/v1/quotes/{quote}/accept", "quote_write", ""),
    ("GET", "/v1/tax_rates", "tax_rate_read", ""),
    ("POST", "/v1/billing_portal/sessions", "customer_portal_write", ""),
    ("GET", "/v1/billing_portal/configurations", "customer_portal_read", ""),
    ("GET", "/v1/billing/meters", "billing_meter_read", ""),
    ("GET", "/v1/billing/meters/{id}/event_summaries", "billing_meter_read", ""),
    ("POST", "/v1/billing/meter_events", "billing_meter_event_write", ""),
    ("POST", "/v1/billing/meter_event_adjustments", "billing_meter_event_write", ""),
    ("POST", "/v2/billing/meter_events", "billing_meter_event_write", ""),
    ("POST", "/v2/billing/meter_event_adjustments", "billing_meter_event_write", ""),
    ("POST", "/v2/billing/meter_event_stream", "billing_meter_event_write", ""),
    ("POST", "/v2/billing/meter_event_session", "billing_meter_event_write", ""),
    ("GET", "/v1/entitlements/active_entitlements", "entitlement_read", ""),
    ("POST", "/v1/entitlements/features", U, "entitlement_read"),
    ("GET", "/v1/test_helpers/test_clocks", "billing_clock_read", ""),
    ("POST", "/v1/test_helpers/test_clocks/{test_clock}/advance", "billing_clock_write", ""),
    ("GET", "/v1/billing/alerts", U, "Billing Alerts"),
    ("POST", "/v1/billing/credit_grants", U, "Billing Credits"),
    ("GET", "/v1/invoice_payments", "invoice_read", ""),
    ("POST", "/v1/invoice_rendering_templates/{template}/archive", "invoice_write", ""),
    # Checkout and payment links
    ("GET", "/v1/checkout/sessions/{session}/line_items", "checkout_session_read", ""),
    ("POST", "/v1/checkout/sessions/{session}/expire", "checkout_session_write", ""),
    ("POST", "/v1/checkout/sessions/{session}", "checkout_session_write", ""),
    ("GET", "/v1/payment_links/{payment_link}/line_items", "payment_links_read", ""),
    ("POST", "/v1/payment_links", "payment_links_write", ""),
    # Connect
    ("GET", "/v1/account", "connected_account_read", ""),
    ("GET", "/v1/accounts/{account}", "connected_account_read", ""),
    ("POST", "/v1/accounts", U, "Accounts can only be read by apps (connected_account_read)"),
    ("POST", "/v1/accounts/{account}", U, "no write permission exists"),
    ("DELETE", "/v1/accounts/{account}", U, "connected_account_read"),
    ("GET", "/v1/accounts/{account}/external_accounts", "connected_account_read", ""),
    ("POST", "/v1/accounts/{account}/external_accounts", U, "connected_account_read"),
    ("GET", "/v1/accounts/{account}/persons/{person}", "connected_account_read", ""),
    ("GET", "/v1/accounts/{account}/people", "connected_account_read", ""),
    ("GET", "/v1/accounts/{account}/capabilities", "connected_account_read", ""),
    ("POST", "/v1/account_links", "account_link_write", ""),
    ("POST", "/v1/accounts/{account}/login_links", "edit_link_write", ""),
    ("POST", "/v1/account_sessions", U, "Account Sessions"),
    ("GET", "/v1/application_fees/{id}/refunds", "application_fee_read", ""),
    ("POST", "/v1/application_fees/{id}/refund", "application_fee_write", ""),
    ("POST", "/v1/transfers/{id}/reversals", "transfer_write", ""),
    ("GET", "/v1/transfers/{transfer}/reversals/{id}", "transfer_read", ""),
    ("GET", "/v1/topups", "top_up_read", ""),
    ("POST", "/v1/topups/{topup}/cancel", "top_up_write", ""),
    ("POST", "/v1/payouts/{payout}/cancel", "payout_write", ""),
    ("GET", "/v1/country_specs", U, "Country Specs"),
    # Reporting
    ("POST", "/v1/reporting/report_runs", "report_runs_and_report_types_read", ""),
    ("GET", "/v1/reporting/report_runs/{report_run}", "report_runs_and_report_types_read", ""),
    ("GET", "/v1/reporting/report_types", "report_runs_and_report_types_read", ""),
    ("GET", "/v1/sigma/scheduled_query_runs", U, "Sigma"),
    # Terminal
    ("POST", "/v1/terminal/connection_tokens", "terminal_connection_token_write", ""),
    ("POST", "/v1/terminal/readers/{reader}/process_payment_intent", "terminal_reader_write", ""),
    ("POST", "/v1/terminal/readers/{reader}/collect_inputs", "terminal_reader_write", ""),
    ("GET", "/v1/terminal/locations", "terminal_location_read", ""),
    ("DELETE", "/v1/terminal/configurations/{configuration}", "terminal_configuration_write", ""),
    ("POST", "/v1/terminal/onboarding_links", U, "Terminal Onboarding Links"),
    # Test helpers act on their object
    ("POST", "/v1/test_helpers/terminal/readers/{reader}/present_payment_method",
     "terminal_reader_write", ""),
    ("POST", "/v1/test_helpers/issuing/cards/{card}/shipping/ship", "issuing_card_write", ""),
    ("POST", "/v1/test_helpers/issuing/authorizations/{authorization}/finalize_amount",
     "issuing_authorization_write", ""),
    ("POST", "/v1/test_helpers/refunds/{refund}/expire", "charge_write", ""),
    ("POST", "/v1/test_helpers/customers/{customer}/fund_cash_balance", "customer_write", ""),
    ("POST", "/v1/test_helpers/confirmation_tokens", "confirmation_token_client_write", ""),
    ("POST", "/v1/test_helpers/treasury/outbound_payments/{id}/fail", U,
     "Treasury Outbound Payments"),
    ("POST", "/v1/test_helpers/treasury/received_credits", U, "Treasury Received Credits"),
    # Issuing
    ("POST", "/v1/issuing/authorizations/{authorization}/approve",
     "issuing_authorization_write", ""),
    ("GET", "/v1/issuing/cardholders", "issuing_cardholder_read", ""),
    ("POST", "/v1/issuing/disputes/{dispute}/submit", "issuing_dispute_write", ""),
    ("GET", "/v1/issuing/tokens/{token}", "issuing_token_read", ""),
    ("GET", "/v1/issuing/transactions", "issuing_transaction_read", ""),
    ("GET", "/v1/issuing/physical_bundles", "issuing_card_read", ""),
    ("GET", "/v1/issuing/settlements/{settlement}", U, "Issuing Settlements"),
    # Treasury
    ("GET", "/v1/treasury/transactions", "treasury_transaction_read", ""),
    ("GET", "/v1/treasury/transaction_entries/{id}", "treasury_transaction_read", ""),
    ("POST", "/v1/treasury/outbound_payments", U, "Treasury Outbound Payments"),
    ("GET", "/v1/treasury/outbound_payments/{id}", U, "Treasury Outbound Payments"),
    ("GET", "/v1/treasury/financial_accounts", U, "Treasury Financial Accounts"),
    # Radar
    ("GET", "/v1/reviews", "review_read", ""),
    ("POST", "/v1/reviews/{review}/approve", "review_write", ""),
    ("GET", "/v1/radar/early_fraud_warnings", "charge_read", ""),
    ("GET", "/v1/radar/value_lists", U, "Radar Value Lists"),
    ("POST", "/v1/radar/value_list_items", U, "Radar Value Lists"),
    ("POST", "/v1/radar/payment_evaluations", U, "Radar Payment Evaluations"),
    # Tax
    ("POST", "/v1/tax/calculations", "tax_calculations_and_transactions_write", ""),
    ("GET", "/v1/tax/transactions/{transaction}/line_items",
     "tax_calculations_and_transactions_read", ""),
    ("POST", "/v1/tax/settings", "tax_settings_write", ""),
    ("GET", "/v1/tax/registrations", "tax_settings_read", ""),
    ("GET", "/v1/tax_codes", U, "Tax Codes"),
    # Stripe Apps
    ("GET", "/v1/apps/secrets", "secret_read", ""),
    ("POST", "/v1/apps/secrets", "secret_write", ""),
    ("POST", "/v1/apps/secrets/delete", "secret_write", ""),
    ("GET", "/v1/apps/secrets/find", "secret_read", ""),
    ("GET", "/v1/apps/installs", U, "App Installs"),
    # Webhooks, Apple Pay
    ("GET", "/v1/webhook_endpoints", "webhook_read", ""),
    ("POST", "/v1/webhook_endpoints", "webhook_write", ""),
    ("DELETE", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_write", ""),
    ("POST", "/v1/apple_pay/domains", "apple_pay_domain_write", ""),
    # Products and products' features
    ("GET", "/v1/products/search", "product_read", ""),
    ("POST", "/v1/products/{product}/features", "product_write", ""),
    ("GET", "/v1/shipping_rates", "shipping_rate_read", ""),
    # Not available products
    ("GET", "/v1/identity/verification_sessions", U, "Identity"),
    ("POST", "/v1/climate/orders", U, "Climate"),
    ("GET", "/v1/financial_connections/accounts", U, "Financial Connections"),
    ("GET", "/v1/linked_accounts", U, "Financial Connections"),
    ("POST", "/v1/forwarding/requests", U, "Forwarding Requests"),
    ("GET", "/v1/exchange_rates", U, "Exchange Rates"),
    ("POST", "/v1/three_d_secure/authentications", U, "3D Secure"),
    # v2
    ("GET", "/v2/core/accounts/{id}", U, "v2 Core Accounts"),
    ("POST", "/v2/core/accounts", U, "v2 Core Accounts"),
    ("POST", "/v2/core/event_destinations", U, "Event Destinations"),
    ("GET", "/v2/core/events", U, "v2 Core Events"),
    ("POST", "/v2/core/account_links", U, "v2 Core Account Links"),
    ("GET", "/v2/core/vault/us_bank_accounts", U, "Vault"),
    ("POST", "/v2/money_management/outbound_payments", U, "Money Management"),
    ("GET", "/v2/money_management/transactions", U, "Money Management"),
    ("GET", "/v2/money_management/recipient_verifications/{id}",
     "recipient_verification_read", ""),
    ("POST", "/v2/money_management/recipient_verifications", U,
     "recipient_verification_read"),
    ("GET", "/v2/commerce/product_catalog/imports", U, "Product Catalog"),
]


@pytest.mark.parametrize(("method", "path", "expected", "phrase"), EXPECTED,
                         ids=[f"{m} {p}" for m, p, _, _ in EXPECTED])
def test_operation_mapping(method: str, path: str, expected: str, phrase: str) -> None:
    r = rows()[(method, path)]
    if expected == U:
        assert r["permission"] is None, r["rule"]
        assert phrase in r["unavailable"]
    else:
        assert r["permission"] == expected, r["rule"]


def test_expectation_table_covers_every_product_area() -> None:
    areas = {p.split("/")[2] for _, p, _, _ in EXPECTED}
    tops = {p.split("/")[2] for _, p in rows()}
    # Every top-level path segment of the API with an available operation is exercised.
    available_tops = {p.split("/")[2] for (_, p), r in rows().items() if r["permission"]}
    assert available_tops <= areas, sorted(available_tops - areas)
    assert len(EXPECTED) >= 60
    assert areas <= tops


def test_unavailable_object_reasons_come_from_the_object_map() -> None:
    # An operation on an object no permission covers carries that object's own reason.
    for key, r in rows().items():
        if r["unavailable"] and r["object"] and key[1].startswith("/v1/"):
            info = objects().get(r["object"], {})
            if "unavailable" in info and "can only be" not in info["unavailable"]:
                assert r["unavailable"] == info["unavailable"], key
