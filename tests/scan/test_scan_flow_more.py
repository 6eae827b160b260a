"""Issue 25, fourth round: a client that is a subclass of the SDK's, request options returned
by a helper, an account id the project reads from its settings through functions. Fixtures of
our own, each rule in two languages, each with a control of the same names."""

from __future__ import annotations

from pathlib import Path

import pytest

from permgate.scan import scan


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


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
            "    return this.payouts.create({ amount, currency: 'usd' }, { stripeAccount: acct });\n"
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
    "python": {
        "app/platform.py": (
            "import os\nfrom stripe import StripeClient\n\n\n"
            "class Platform(StripeClient):\n"
            "    def __init__(self):\n"
            "        super().__init__(os.environ['STRIPE_SECRET_KEY'])\n\n"
            "    def pay_out(self, acct, amount):\n"
            "        return self.v1.payouts.create({'amount': amount}, {'stripe_account': acct})\n\n"
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


@pytest.mark.parametrize("lang", ["js", "python"])
def test_a_subclass_of_the_sdk_client_calls_through_this(tmp_path: Path, lang: str) -> None:
    v = scan(_write(tmp_path, SUBCLASS[lang]))
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


@pytest.mark.parametrize("lang", ["ruby", "js"])
def test_request_options_a_helper_returns_name_the_account(tmp_path: Path, lang: str) -> None:
    got = {(c[2], c[3]) for c in _calls(_write(tmp_path, HELPER_OPTIONS[lang]))}
    assert got == {("/v1/balance", "connected"), ("/v1/payouts", "connected"),
                   ("/v1/refunds", "own"), ("/v1/customers", "own")}
