"""Issue 25, second corpus (Connect and OAuth platforms): which account a platform's traffic
acts for, decided by the value that names it. Fixtures of our own, each rule in at least two
languages, each with a control that shows the test can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from permgate.scan import scan


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


def _needed(root: Path) -> set[str]:
    return set(scan(root, progress=False).needed)


def _accounts(root: Path) -> dict[str, str]:
    return {c.call.call: c.call.account for c in scan(root, progress=False).calls}


# --- class 2: a connected account written in the code or its settings is one fixed account --

FIXED = {
    "js": ("server.js", "const Stripe = require('stripe');\n"
                        "const stripe = Stripe(process.env.STRIPE_SECRET_KEY);\n"
                        "const ACCT = 'acct_1Fixed';\n"
                        "async function a() { return stripe.balance.retrieve({ stripeAccount: "
                        "{v} }); }\n"),
    "python": ("app.py", "import os\nimport stripe\n"
                         "stripe.api_key = os.environ['STRIPE_SECRET_KEY']\n"
                         "MASTER = os.getenv('MASTER_ACCOUNT')\n"
                         "def a(seller):\n"
                         "    return stripe.Balance.retrieve(stripe_account={v})\n"),
    "php": ("pay.php", "<?php\n\\Stripe\\Stripe::setApiKey(getenv('STRIPE_SECRET'));\n"
                       "function a($seller) {\n"
                       "  return \\Stripe\\Balance::retrieve([], ['stripe_account' => {v}]);\n}\n"),
    "ruby": ("pay.rb", "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
                       "def a(seller)\n"
                       "  Stripe::Balance.retrieve({ stripe_account: {v} })\n"
                       "end\n"),
}
FIXED_VALUES = {
    "js": ("ACCT", "'acct_1Fixed'", "process.env.CONNECTED_ACCOUNT", "seller.stripeAccountId"),
    "python": ("MASTER", "'acct_1Fixed'", "os.environ['ACCT']", "seller.stripe_account_id"),
    "php": ("'acct_1Fixed'", "getenv('ACCT')", "config('stripe.account')",
            "$seller->stripe_account_id"),
    "ruby": ("'acct_1Fixed'", "ENV['ACCT']", "MASTER_ACCOUNT", "seller.stripe_account_id"),
}


@pytest.mark.parametrize("lang", sorted(FIXED))
def test_a_fixed_connected_account_is_the_operators_own(tmp_path: Path, lang: str) -> None:
    name, body = FIXED[lang]
    *fixed, install = FIXED_VALUES[lang]
    for i, v in enumerate(fixed):
        root = _tree(tmp_path / f"f{i}", {name: body.replace("{v}", v)})
        assert _needed(root) == set(), v
    # control: an account id read from a record is an install's, and needs the permission
    root = _tree(tmp_path / "install", {name: body.replace("{v}", install)})
    assert _needed(root) == {"balance_read"}


# --- class 3: a key stored on a tenant's record is per-install, not the developer's own ----

TENANT = {
    "js": ("server.js", "const Stripe = require('stripe');\n"
                        "async function a(user) {\n"
                        "  const stripe = new Stripe({k});\n"
                        "  return stripe.customers.create({ email: 'a@b.c' });\n}\n",
           "user.stripeApiKey", "process.env.STRIPE_SECRET_KEY"),
    "python": ("app.py", "import stripe\n"
                         "def a(user):\n"
                         "    return stripe.Customer.create(email='a@b.c', api_key={k})\n",
               "user.secret_key", "settings.STRIPE_SECRET_KEY"),
    "ruby": ("pay.rb", "def a(user)\n"
                       "  Stripe::Customer.create({ email: 'a@b.c' }, {k})\n"
                       "end\n",
             "user.secret_key", "Rails.configuration.stripe[:secret_key]"),
    "php": ("pay.php", "<?php\nfunction a($shop) {\n"
                       "  return \\Stripe\\Customer::create(['email' => 'a'], ['api_key' => {k}]);"
                       "\n}\n",
            "$shop->stripe_key", "getenv('STRIPE_SECRET')"),
}


@pytest.mark.parametrize("lang", sorted(TENANT))
def test_a_key_stored_on_a_tenant_record_acts_for_that_tenant(tmp_path: Path, lang: str) -> None:
    name, body, tenant, own = TENANT[lang]
    root = _tree(tmp_path / "tenant", {name: body.replace("{k}", tenant)})
    assert _needed(root) == {"customer_write"}
    # control: the developer's key from the environment or configuration needs nothing
    root = _tree(tmp_path / "own", {name: body.replace("{k}", own)})
    assert _needed(root) == set()


def test_ruby_api_key_passed_as_the_last_argument(tmp_path: Path) -> None:
    # stripe-ruby: a String as the request options is the API key
    body = ("Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
            "def a(account, attrs, params)\n"
            "  Stripe::Charge.create(attrs, {k})\n"
            "  Stripe::Customer.update('cus_1', params)\n"
            "end\n")
    root = _tree(tmp_path / "token", {"pay.rb": body.replace("{k}", "account.access_token")})
    acc = _accounts(root)
    assert acc["Stripe::Charge.create"] == "installing"
    assert acc["Stripe::Customer.update"] == "own"  # `params` says nothing about a key
    assert _needed(root) == {"charge_write"}
    root = _tree(tmp_path / "plain", {"pay.rb": body.replace("{k}", "opts")})
    assert _needed(root) == set()


# --- class 1: PHP classes resolved by the path they were imported from --------------------

def test_php_classes_resolved_by_their_use_import(tmp_path: Path) -> None:
    body = ("<?php\nuse Stripe\\PaymentMethod;\nuse Stripe\\Checkout\\Session as CS;\n"
            "use Stripe\\{Payout, Balance as B};\n"
            "function a($acct) {\n"
            "  PaymentMethod::create(['type' => 'card'], ['stripe_account' => $acct]);\n"
            "  CS::create(['mode' => 'payment'], ['stripe_account' => $acct]);\n"
            "  Payout::all([], ['stripe_account' => $acct]);\n"
            "  B::retrieve([], ['stripe_account' => $acct]);\n"
            "  Session::create(['x' => 1], ['stripe_account' => $acct]);\n}\n")
    root = _tree(tmp_path, {"pay.php": body})
    calls = {c.call.call for c in scan(root, progress=False).calls}
    assert calls == {"\\Stripe\\PaymentMethod::create", "\\Stripe\\Checkout\\Session::create",
                     "\\Stripe\\Payout::all", "\\Stripe\\Balance::retrieve"}
    # `Session` was never imported here: not taken for Stripe's (no match by short name)
    assert _needed(root) == {"payment_method_write", "checkout_session_write", "payout_read",
                             "balance_read"}


def test_python_classes_imported_from_stripe(tmp_path: Path) -> None:
    # the same rule in Python: a class is Stripe's by its import, not by its name alone
    body = ("from stripe import PaymentMethod\n"
            "def a(acct):\n"
            "    PaymentMethod.create(type='card', stripe_account=acct)\n")
    root = _tree(tmp_path / "imported", {"app.py": body})
    assert _needed(root) == {"payment_method_write"}
    root = _tree(tmp_path / "local", {"app.py": body.replace("from stripe import PaymentMethod",
                                                             "from .models import PaymentMethod")})
    assert _needed(root) == set()


def test_php_key_variable_followed_to_what_the_file_assigns(tmp_path: Path) -> None:
    body = ("<?php\nuse Stripe\\Plan;\n"
            "function a($id) {\n  $k = get_user_meta($id, '{meta}', true);\n"
            "  return Plan::create(['amount' => 1], ['api_key' => $k]);\n}\n")
    root = _tree(tmp_path / "token", {"p.php": body.replace("{meta}", "stripe_access_token")})
    assert _needed(root) == {"plan_write"}
    # control: the same variable holding the site's own secret from its settings
    root = _tree(tmp_path / "own", {"p.php": body.replace(
        "get_user_meta($id, '{meta}', true)", "getenv('STRIPE_SECRET')")})
    assert _needed(root) == set()


# --- class 2: a platform that is not a Stripe App: events need no app permission ---------

CONNECT_HANDLER = {
    "js": ("server.js", "const stripe = require('stripe')(process.env.STRIPE_SECRET_KEY);\n"
                        "app.post('/hook', (req, res) => {\n"
                        "  const event = stripe.webhooks.constructEvent(req.body, s, w);\n"
                        "  switch (event.type) {\n"
                        "    case 'payout.failed':\n"
                        "      notify(event.account);\n"
                        "      stripe.payouts.list({}, { stripeAccount: event.account });\n"
                        "      break;\n"
                        "  }\n});\n"),
    "python": ("app.py", "import os\nimport stripe\n"
                         "stripe.api_key = os.environ['STRIPE_SECRET_KEY']\n"
                         "def hook(payload, sig):\n"
                         "    event = stripe.Webhook.construct_event(payload, sig, 'w')\n"
                         "    if event['type'] == 'payout.failed':\n"
                         "        notify(event.account)\n"
                         "        stripe.Payout.list(stripe_account=event.account)\n"),
}


@pytest.mark.parametrize("lang", sorted(CONNECT_HANDLER))
def test_events_of_a_platform_that_is_not_an_app_need_no_permission(
    tmp_path: Path, lang: str
) -> None:
    name, body = CONNECT_HANDLER[lang]
    root = _tree(tmp_path / "platform", {name: body})
    v = scan(root, progress=False)
    assert [e.use.account for e in v.events] == ["own"]
    assert set(v.needed) == {"payout_read"}  # the call on the connected account still counts
    # control: the same handler in a Stripe App's tree needs the event's permissions
    root = _tree(tmp_path / "app", {name: body, "stripe-app.json":
                                    '{"id": "com.example.t", "version": "0.0.1", "name": "t", '
                                    '"permissions": []}'})
    needed = set(scan(root, progress=False).needed)
    assert "event_read" in needed and "payout_read" in needed


# A key read from a record the name list above does not know (a restaurant, a clinic, a
# request) is no evidence of the developer's own key: its calls are of unknown account, so the
# grants they would use are unverified, never "unused" (found in review: `unused` was claimed
# for `restaurant.stripeSecretKey`, and a reviewer deletes what we call unused).
RECORD = {"js": "restaurant.stripeSecretKey", "python": "clinic.stripe_secret_key",
          "ruby": "clinic.secret_key", "php": "$restaurant->stripe_secret_key"}


@pytest.mark.parametrize("lang", sorted(RECORD))
def test_a_key_on_an_unknown_record_is_never_called_the_developers_own(
    tmp_path: Path, lang: str
) -> None:
    name, body, _tenant, own = TENANT[lang]
    record = RECORD[lang]
    if lang == "php":
        body = body.replace("$shop", "$restaurant")
    # control: the developer's configured key leaves the grant unused (the check can fail)
    clear = scan(_tree(tmp_path / "own", {name: body.replace("{k}", own)}),
                 ["customer_write"], "m")
    assert [u.permission for u in clear.unused] == ["customer_write"], lang
    unsure = scan(_tree(tmp_path / "record", {name: body.replace("{k}", record)}),
                  ["customer_write"], "m")
    assert [c.call.account for c in unsure.calls] == ["unknown"], lang
    assert unsure.unused == [] and [w.permission for w in unsure.unverified] == ["customer_write"]


# A key with a fallback (`token || process.env.KEY`): the configured key is only the default;
# whose account the calls act on is the first value's, unknown here. Not the developer's own
# (found in review: the fallback's `process.env` made the calls "own", the grant "unused").
FALLBACK = {"js": "token || process.env.STRIPE_SECRET_KEY",
            "python": "token or settings.STRIPE_SECRET_KEY",
            "ruby": "token || Rails.configuration.stripe[:secret_key]",
            "php": "$token ?: getenv('STRIPE_SECRET')"}


@pytest.mark.parametrize("lang", sorted(FALLBACK))
def test_a_key_with_a_configured_fallback_is_not_the_developers_own(
    tmp_path: Path, lang: str
) -> None:
    name, body, _tenant, own = TENANT[lang]
    clear = scan(_tree(tmp_path / "own", {name: body.replace("{k}", own)}),
                 ["customer_write"], "m")
    assert [u.permission for u in clear.unused] == ["customer_write"], lang  # the control
    unsure = scan(_tree(tmp_path / "fallback", {name: body.replace("{k}", FALLBACK[lang])}),
                  ["customer_write"], "m")
    assert [c.call.account for c in unsure.calls] == ["unknown"], lang
    assert unsure.unused == [] and [w.permission for w in unsure.unverified] == ["customer_write"]
