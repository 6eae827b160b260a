"""Issue 25, keys a user pastes in or saves per tenant: a key that comes from the request
(a form field, a body or query value, a header), a field on the signed-in user, one record of
a list of records, or a row loaded by id is the account of the person or tenant it belongs to,
so its calls are the app's traffic; a row of a settings table is the operator's own; a record
the scan cannot place stays unknown (unverified, never unused). Fixtures of our own, several
languages, each rule with a near miss it must not fire on."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.scan.trees import write_tree

from permgate.scan import scan

PY = "import stripe\n\n\ndef run(request, rid, connections, stripe_keys):\n{body}"
JS = ("const Stripe = require('stripe');\n\n"
      "async function run(req, rid, connections, stripeKeys) {{\n{body}}}\n")
PHP = "<?php\nfunction run($request, $id) {{\n{body}}}\n"
RB = "class PaymentsController < ApplicationController\n  def create\n{body}  end\nend\n"

# (language, case) -> (the function's body, the account its one call is read on)
CASES: dict[tuple[str, str], tuple[str, str]] = {
    # a key the request carries
    ("python", "request"): (
        "    return stripe.Customer.list(api_key=request.data.get('api_key'))\n", "connected"),
    ("js", "request"): (
        "  return new Stripe(req.body.apiKey).customers.list();\n", "connected"),
    ("php", "request"): (
        "  $s = new \\Stripe\\StripeClient($request->input('stripe_key'));\n"
        "  return $s->customers->all();\n", "connected"),
    ("ruby", "request"): (
        "    Stripe::Customer.list({}, {api_key: params[:stripe_key]})\n", "connected"),
    ("js", "request_json"): (
        "  const { apiKey } = await req.json();\n"
        "  return new Stripe(apiKey).customers.list();\n", "connected"),
    # near miss: the application's settings hung on the request are not its input
    ("python", "request_settings"): (
        "    return stripe.Customer.list(api_key=request.registry.settings['stripe_key'])\n",
        "unknown"),
    ("js", "request_settings"): (
        "  return new Stripe(req.app.locals.stripeKey).customers.list();\n", "unknown"),
    ("php", "request_settings"): (
        "  $s = new \\Stripe\\StripeClient(config('services.stripe.secret'));\n"
        "  return $s->customers->all();\n", "own"),
    ("ruby", "request_settings"): (
        "    Stripe::Customer.list({}, {api_key: ENV.fetch('STRIPE_KEY')})\n", "own"),
    # a field on the signed-in user
    ("python", "current_user"): (
        "    secret_key = request.user.profile.stripe_key\n"
        "    return stripe.Customer.list(api_key=secret_key)\n", "connected"),
    ("js", "current_user"): (
        "  const { secretKey } = req.user;\n"
        "  return new Stripe(secretKey).customers.list();\n", "connected"),
    ("php", "current_user"): (
        "  $s = new \\Stripe\\StripeClient(Auth::user()->stripe_secret);\n"
        "  return $s->customers->all();\n", "connected"),
    # one record of a list of records
    ("python", "list_item"): (
        "    for c in connections:\n"
        "        stripe.Customer.list(api_key=c.get('api_key'))\n", "connected"),
    ("js", "list_item"): (
        "  for (const c of connections) {\n"
        "    await new Stripe(c.apiKey).customers.list();\n  }\n", "connected"),
    ("python", "first_row"): (
        "    return stripe.Customer.list(api_key=connections[0]['api_key'])\n", "connected"),
    # near miss: a list of the operator's keys (by mode), and an object's keys, are no records
    ("python", "list_of_keys"): (
        "    for k in stripe_keys:\n"
        "        stripe.Customer.list(api_key=k.get('secret'))\n", "unknown"),
    ("js", "list_of_keys"): (
        "  for (const k in connections) {\n"
        "    await new Stripe(k.apiKey).customers.list();\n  }\n", "unknown"),
    # a row loaded by id (a tenant's), a settings row (the operator's)
    ("python", "row_by_id"): (
        "    restaurant = Restaurant.objects.get(pk=rid)\n"
        "    return stripe.Customer.list(api_key=restaurant.stripe_secret)\n", "connected"),
    ("js", "row_by_id"): (
        "  const restaurant = await Restaurant.findById(rid);\n"
        "  return new Stripe(restaurant.stripeSecret).customers.list();\n", "connected"),
    ("python", "settings_row"): (
        "    row = SiteSetting.objects.first()\n"
        "    return stripe.Customer.list(api_key=row.secret)\n", "own"),
    ("js", "settings_row"): (
        "  const row = await Setting.findOne({ where: { name: 'stripe' } });\n"
        "  return new Stripe(row.secret).customers.list();\n", "own"),
    # near miss: a row read without a value the code holds says nothing of whose it is
    ("python", "row_no_id"): (
        "    restaurant = Restaurant.objects.first()\n"
        "    return stripe.Customer.list(api_key=restaurant.stripe_secret)\n", "unknown"),
    ("python", "row_by_constant"): (
        "    restaurant = Restaurant.objects.get(pk=DEFAULT_ID)\n"
        "    return stripe.Customer.list(api_key=restaurant.stripe_secret)\n", "unknown"),
    ("js", "tenant_config"): (
        "  return new Stripe(store.config.apiKey).customers.list();\n", "unknown"),
    ("js", "row_no_id"): (
        "  const restaurant = await Restaurant.findOne({ where: { id: 1 } });\n"
        "  return new Stripe(restaurant.stripeSecret).customers.list();\n", "unknown"),
}


def _tree(root: Path, lang: str, body: str) -> Path:
    name, head = {"python": ("app.py", PY), "js": ("app.js", JS), "php": ("app.php", PHP),
                  "ruby": ("app/controllers/payments_controller.rb", RB)}[lang]
    return write_tree(root, {name: head.format(body=body)})


@pytest.mark.parametrize(("lang", "case"), sorted(CASES))
def test_whose_key_by_where_it_comes_from(tmp_path: Path, lang: str, case: str) -> None:
    body, want = CASES[lang, case]
    v = scan(_tree(tmp_path, lang, body))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/customers", want)]


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_tenants_key_needs_its_grant_and_an_unplaced_record_is_unverified(
        tmp_path: Path, lang: str) -> None:
    """The grant a tenant's key uses is needed (covered); control: a record the scan cannot
    place leaves the same grant unverified, never unused."""
    v = scan(_tree(tmp_path / "a", lang, CASES[lang, "row_by_id"][0]), ["customer_read"], "m")
    assert v.covered == ["customer_read"] and v.unverified == []
    v = scan(_tree(tmp_path / "b", lang, CASES[lang, "row_no_id"][0]), ["customer_read"], "m")
    assert v.unused == [] and [w.permission for w in v.unverified] == ["customer_read"]


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_key_pasted_into_a_stripe_app_is_not_the_apps_traffic(
        tmp_path: Path, lang: str) -> None:
    """In a Stripe App's tree a key the user sends is their own full secret key, gated by none
    of the app's permissions: unknown (its grant unverified, never unused). Control: a tenant's
    row in the same app tree is still the app's traffic."""
    manifest = {"stripe-app.json": '{"id": "com.example.app", "version": "1.0.0"}'}
    tree = _tree(tmp_path / "a", lang, CASES[lang, "request"][0])
    write_tree(tree, manifest)
    v = scan(tree, ["customer_read"], "m")
    assert [c.call.account for c in v.calls] == ["unknown"]
    assert v.unused == [] and [w.permission for w in v.unverified] == ["customer_read"]
    tree = _tree(tmp_path / "b", lang, CASES[lang, "row_by_id"][0])
    write_tree(tree, manifest)
    assert [c.call.account for c in scan(tree).calls] == ["connected"]
