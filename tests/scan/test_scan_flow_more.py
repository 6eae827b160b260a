"""Issue 25, fourth round: a client that is a subclass of the SDK's, request options returned
by a helper, an account id the project reads from its settings through functions. Fixtures of
our own, each rule in two languages, each with a control of the same names."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.scan.trees import write_tree

from permgate.scan import scan


def _calls(root: Path) -> set[tuple[str, str, str, str]]:
    v = scan(root)
    return {(c.call.file, c.call.method, c.call.path, c.call.account) for c in v.calls}


# --- a subclass of the SDK's client (error class 1: `this` / `self` is the client) ---------

SUBCLASS = {
    "js": {
        "src/platform.ts": (
            "import Stripe from 'stripe';\n"
            "class Platform extends Stripe {\n"
            "  constructor() { super(process.env.STRIPE_SECRET_KEY!, {}); }\n"
            "  payOut(acct: string, amount: number) {\n"
            "    return this.payouts.create({ amount }, { stripeAccount: acct });\n"
            "  }\n"
            "  mine() { return this.customers.list(); }\n"
            "}\n"
            "export default new Platform();\n"),
        # control: the same names in a class that is not the SDK's
        "src/ledger.ts": (
            "import { Base } from './base';\n"
            "class Ledger extends Base {\n"
            "  constructor() { super(process.env.STRIPE_SECRET_KEY!, {}); }\n"
            "  move(acct: string, amount: number) {\n"
            "    return this.transfers.create({ amount }, { stripeAccount: acct });\n"
            "  }\n"
            "}\n"
            "export default new Ledger();\n"),
    },
    "php": {
        "src/Platform.php": (
            "<?php\nnamespace App;\n\nuse Stripe\\StripeClient;\n\n"
            "class Platform extends StripeClient\n{\n"
            "    public function __construct() { parent::__construct(env('STRIPE_SECRET')); }\n\n"
            "    public function payOut($acct, $amount)\n    {\n"
            "        return $this->payouts->create(['amount' => $amount],"
            " ['stripe_account' => $acct]);\n    }\n\n"
            "    public function mine() { return $this->customers->all(); }\n}\n"),
        "src/Ledger.php": (
            "<?php\nnamespace App;\n\nclass Ledger extends Base\n{\n"
            "    public function __construct() { parent::__construct(env('STRIPE_SECRET')); }\n\n"
            "    public function move($acct, $amount)\n    {\n"
            "        return $this->transfers->create(['amount' => $amount],"
            " ['stripe_account' => $acct]);\n    }\n}\n"),
    },
    "python": {
        "app/platform.py": (
            "import os\nfrom stripe import StripeClient\n\n\n"
            "class Platform(StripeClient):\n"
            "    def __init__(self):\n"
            "        super().__init__(os.environ['STRIPE_SECRET_KEY'])\n\n"
            "    def pay_out(self, acct, amount):\n"
            "        return self.v1.payouts.create({'amount': amount},"
            " {'stripe_account': acct})\n\n"
            "    def mine(self):\n"
            "        return self.customers.list()\n"),
        "app/ledger.py": (
            "import os\nfrom app.base import Base\n\n\n"
            "class Ledger(Base):\n"
            "    def __init__(self):\n"
            "        super().__init__(os.environ['STRIPE_SECRET_KEY'])\n\n"
            "    def move(self, acct, amount):\n"
            "        return self.v1.transfers.create({'amount': amount},"
            " {'stripe_account': acct})\n"),
    },
}


@pytest.mark.parametrize("lang", ["js", "python", "php"])
def test_a_subclass_of_the_sdk_client_calls_through_this(tmp_path: Path, lang: str) -> None:
    v = scan(write_tree(tmp_path, SUBCLASS[lang]))
    got = {(c.call.method, c.call.path, c.call.account) for c in v.calls}
    assert got == {("POST", "/v1/payouts", "connected"), ("GET", "/v1/customers", "own")}
    assert "subclass" in next(c.call.reason for c in v.calls if c.call.account == "own")
    assert sorted(v.needed) == ["payout_write"]


# --- request options a helper returns (error class 3: the connected account not seen) -----

HELPER_OPTIONS = {
    "ruby": {
        "config/initializers/stripe.rb": "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n",
        "app/creator.rb": (
            "class Creator\n"
            "  def initialize(account)\n    @account = account\n  end\n\n"
            "  def header\n    { stripe_account: @account.stripe_id }\n  end\n\n"
            "  def options\n    { idempotency_key: SecureRandom.uuid }\n  end\n\n"
            "  def balance\n    Stripe::Balance.retrieve(header)\n  end\n\n"
            "  def payout(amount)\n    Stripe::Payout.create({ amount: amount }, self.header)\n"
            "  end\n\n"
            # controls: a parameter of the helper's name; a helper without an account
            "  def refund(header)\n    Stripe::Refund.create({ charge: 'ch_1' }, header)\n"
            "  end\n\n"
            "  def customers\n    Stripe::Customer.list({}, options)\n  end\n"
            "end\n"),
    },
    "python": {
        "app/creator.py": (
            "import os\n\nimport stripe\n\nstripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "def request_options():\n    return {'stripe_account': CURRENT.stripe_id}\n\n\n"
            "class Creator:\n"
            "    def __init__(self, account):\n        self.account = account\n\n"
            "    def header(self):\n        return {'stripe_account': self.account.stripe_id}\n\n"
            "    def options(self):\n        return {'idempotency_key': 'k'}\n\n"
            "    def balance(self):\n        return stripe.Balance.retrieve(**self.header())\n\n"
            "    def payout(self, amount):\n"
            "        return stripe.Payout.create(amount=amount, **request_options())\n\n"
            "    def refund(self, header):\n"
            "        return stripe.Refund.create(charge='ch_1', **header)\n\n"
            "    def customers(self):\n        return stripe.Customer.list(**self.options())\n"),
    },
    "js": {
        "src/creator.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "class Creator {\n"
            "  constructor(account) { this.account = account; }\n"
            "  header() { return { stripeAccount: this.account.stripeId }; }\n"
            "  options() { return { idempotencyKey: 'k' }; }\n"
            "  balance() { return stripe.balance.retrieve(this.header()); }\n"
            "  payout(amount) { return stripe.payouts.create({ amount }, this.header()); }\n"
            "  refund(header) { return stripe.refunds.create({ charge: 'ch_1' }, header); }\n"
            "  customers() { return stripe.customers.list({}, this.options()); }\n"
            "}\n"
            "module.exports = { Creator };\n"),
    },
}


@pytest.mark.parametrize("lang", ["ruby", "js", "python"])
def test_request_options_a_helper_returns_name_the_account(tmp_path: Path, lang: str) -> None:
    got = {(c[2], c[3]) for c in _calls(write_tree(tmp_path, HELPER_OPTIONS[lang]))}
    assert got == {("/v1/balance", "connected"), ("/v1/payouts", "connected"),
                   ("/v1/refunds", "own"), ("/v1/customers", "own")}


# --- an account id the project reads from its settings (error class 2: own traffic) -------

SETTINGS_ACCOUNT = {
    "js": {
        "src/svc.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "function accountFor(tenant) {\n"
            "  const acct = process.env[`ACCOUNT_${tenant}`] || process.env.DEFAULT_ACCOUNT;\n"
            "  if (!acct) throw new Error(tenant);\n"
            "  return acct;\n"
            "}\n"
            "async function context(tenant) {\n"
            "  if (tenant === 'solo') return { mode: 'direct', account: null };\n"
            "  const account = accountFor(tenant);\n"
            "  return { mode: 'connect', account };\n"
            "}\n"
            "async function payouts(tenant) {\n"
            "  const { account } = await context(tenant);\n"
            "  return stripe.payouts.list({}, account ? { stripeAccount: account } : undefined);\n"
            "}\n"
            "function balance(tenant) {\n"
            "  return stripe.balance.retrieve({ stripeAccount: accountFor(tenant) });\n"
            "}\n"
            # controls: the same names filled from a record, or from settings else a session
            "function recordFor(req) {\n"
            "  return req.tenant?.stripeAccountId || process.env.DEFAULT_ACCOUNT;\n"
            "}\n"
            "function invoices(req) {\n"
            "  const account = recordFor(req);\n"
            "  return stripe.invoices.list({}, { stripeAccount: account });\n"
            "}\n"
            "function customers(req, account) {\n"
            "  return stripe.customers.list({}, { stripeAccount: account });\n"
            "}\n"
            "module.exports = { payouts, balance, invoices, customers };\n"),
    },
    "python": {
        "app/svc.py": (
            "import os\n\nimport stripe\nfrom stripe import StripeClient\n\n"
            "client = StripeClient(os.environ['STRIPE_SECRET_KEY'])\n\n\n"
            "def account_for(tenant):\n"
            "    acct = os.environ.get(f'ACCOUNT_{tenant}') or os.getenv('DEFAULT_ACCOUNT')\n"
            "    if not acct:\n        raise RuntimeError(tenant)\n"
            "    return acct\n\n\n"
            "def payouts(tenant):\n"
            "    account = account_for(tenant) if tenant != 'solo' else None\n"
            "    return client.payouts.list({}, {'stripe_account': account})\n\n\n"
            "def balance(tenant):\n"
            "    return stripe.Balance.retrieve(stripe_account=account_for(tenant))\n\n\n"
            "def record_for(req):\n"
            "    return req.tenant.stripe_account_id or os.getenv('DEFAULT_ACCOUNT')\n\n\n"
            "def invoices(req):\n"
            "    account = record_for(req)\n"
            "    return client.invoices.list({}, {'stripe_account': account})\n\n\n"
            "def customers(req, account):\n"
            "    return stripe.Customer.list(stripe_account=account)\n"),
    },
}


@pytest.mark.parametrize("lang", ["js", "python"])
def test_an_account_id_from_the_settings_through_functions_is_the_operators(
    tmp_path: Path, lang: str
) -> None:
    v = scan(write_tree(tmp_path, SETTINGS_ACCOUNT[lang]))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert got == {("/v1/payouts", "own"), ("/v1/balance", "own"),
                   ("/v1/invoices", "connected"), ("/v1/customers", "connected")}
    assert sorted(v.needed) == ["customer_read", "invoice_read"]
    assert all("environment" in c.call.reason for c in v.calls if c.call.account == "own")
