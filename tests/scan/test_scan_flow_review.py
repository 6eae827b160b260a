"""Review of issue 25's fixed-account following and helper options: a name bound in any other
way than `x = v` is not followed, a helper's value is read in the helper, and values or helpers
that fan out cannot make the work grow with their product. Fixtures of our own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.scan.trees import write_tree

from permgate.scan import js, python, scan

# An env default, then the same name bound from data in a way other than `x = v`: the account
# is the install's (connected), not the operator's. The control binds it only from the env.
REBOUND = {
    "python": {
        "app/svc.py": (
            "import os\n\nimport stripe\n\nstripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "def loop(records):\n"
            "    acct = os.environ['PLATFORM_ACCOUNT']\n"
            "    for acct in records:\n"
            "        stripe.Payout.list(stripe_account=acct)\n\n\n"
            "def unpack(req):\n"
            "    acct = os.getenv('PLATFORM_ACCOUNT')\n"
            "    if req.user:\n"
            "        acct, _ = req.user.account_id, 1\n"
            "    return stripe.Invoice.list(stripe_account=acct)\n\n\n"
            "def walrus(req):\n"
            "    acct = os.getenv('PLATFORM_ACCOUNT')\n"
            "    if (acct := req.user.account_id):\n"
            "        pass\n"
            "    return stripe.Customer.list(stripe_account=acct)\n\n\n"
            "def control():\n"
            "    acct = os.getenv('PLATFORM_ACCOUNT')\n"
            "    return stripe.Balance.retrieve(stripe_account=acct)\n"),
    },
    "js": {
        "src/svc.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "function platform() { return process.env.PLATFORM_ACCOUNT; }\n"
            "async function loop(records) {\n"
            "  let acct = platform();\n"
            "  for (acct of records) {\n"
            "    await stripe.payouts.list({}, { stripeAccount: acct });\n"
            "  }\n"
            "}\n"
            "function unpack(req) {\n"
            "  let acct = platform();\n"
            "  if (req.user) [acct] = [req.user.accountId];\n"
            "  return stripe.invoices.list({}, { stripeAccount: acct });\n"
            "}\n"
            "function appended(req) {\n"
            "  let acct = platform();\n"
            "  acct += req.query.suffix;\n"
            "  return stripe.customers.list({}, { stripeAccount: acct });\n"
            "}\n"
            "function control() {\n"
            "  const acct = platform();\n"
            "  return stripe.balance.retrieve({ stripeAccount: acct });\n"
            "}\n"
            "module.exports = { loop, unpack, appended, control };\n"),
    },
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_name_bound_from_data_another_way_is_not_a_fixed_account(
    tmp_path: Path, lang: str
) -> None:
    v = scan(write_tree(tmp_path, REBOUND[lang]))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert got == {("/v1/payouts", "connected"), ("/v1/invoices", "connected"),
                   ("/v1/customers", "connected"), ("/v1/balance", "own")}


# A helper returns options whose account is its own local variable, read from a record; the
# calling function has a local of the same name read from the environment. The helper's name is
# what the account holds (connected); the control's helper reads the environment itself.
HELPER_LOCAL = {
    "python": {
        "app/creator.py": (
            "import os\n\nimport stripe\n\nstripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "class Creator:\n"
            "    def __init__(self, account):\n        self.account = account\n\n"
            "    def header(self):\n"
            "        acct = self.account.stripe_id\n"
            "        return {'stripe_account': acct}\n\n"
            "    def platform(self):\n"
            "        acct = os.environ['PLATFORM_ACCOUNT']\n"
            "        return {'stripe_account': acct}\n\n"
            "    def balance(self):\n"
            "        acct = os.environ['PLATFORM_ACCOUNT']\n"
            "        print(acct)\n"
            "        return stripe.Balance.retrieve(**self.header())\n\n"
            "    def customers(self):\n"
            "        acct = self.account.stripe_id\n"
            "        print(acct)\n"
            "        return stripe.Customer.list(**self.platform())\n"),
    },
    "js": {
        "src/creator.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "class Creator {\n"
            "  constructor(account) { this.account = account; }\n"
            "  header() { const acct = this.account.stripeId; return { stripeAccount: acct }; }\n"
            "  platform() {\n"
            "    const acct = process.env.PLATFORM_ACCOUNT;\n"
            "    return { stripeAccount: acct };\n"
            "  }\n"
            "  balance() {\n"
            "    const acct = process.env.PLATFORM_ACCOUNT;\n"
            "    console.log(acct);\n"
            "    return stripe.balance.retrieve(this.header());\n"
            "  }\n"
            "  customers() {\n"
            "    const acct = this.account.stripeId;\n"
            "    console.log(acct);\n"
            "    return stripe.customers.list({}, this.platform());\n"
            "  }\n"
            "}\n"
            "module.exports = { Creator };\n"),
    },
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_value_a_helper_returns_is_read_in_the_helper(tmp_path: Path, lang: str) -> None:
    v = scan(write_tree(tmp_path, HELPER_LOCAL[lang]))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert got == {("/v1/balance", "connected"), ("/v1/customers", "own")}


# --- bounds: helpers and values that fan out ----------------------------------------------

def _fan(lang: str, fan: int = 6, depth: int = 9) -> dict[str, str]:
    """Helpers h0..h8, each returning the next one from `fan` places; and a name assigned from
    the previous one `fan` times over, 9 names deep."""
    if lang == "js":
        lines = ["const Stripe = require('stripe');",
                 "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);"]
        for d in range(depth):
            nxt = f"h{d + 1}()" if d + 1 < depth else "{ stripeAccount: process.env.A }"
            lines.append(f"function h{d}() {{" + "".join(
                f" if (x{i}) return {nxt};" for i in range(fan)) + f" return {nxt}; }}")
        lines += ["function a() { return stripe.balance.retrieve(h0()); }",
                  "function b() {", "  let v0 = null;"]
        lines += [f"  v{d} = v{d - 1};" for d in range(1, depth) for _ in range(fan)]
        lines += [f"  return stripe.customers.list({{}}, {{ stripeAccount: v{depth - 1} }});",
                  "}"]
        return {"src/fan.js": "\n".join(lines) + "\n"}
    lines = ["import os", "", "import stripe", "", "stripe.api_key = os.environ['K']", ""]
    for d in range(depth):
        nxt = f"h{d + 1}()" if d + 1 < depth else "{'stripe_account': os.environ['A']}"
        lines.append(f"def h{d}():\n" + "".join(
            f"    if x{i}:\n        return {nxt}\n" for i in range(fan)) + f"    return {nxt}\n")
    lines += ["def a():", "    return stripe.Balance.retrieve(**h0())", "", "",
              "def b():", "    v0 = None"]
    lines += [f"    v{d} = v{d - 1}" for d in range(1, depth) for _ in range(fan)]
    lines.append(f"    return stripe.Customer.list(stripe_account=v{depth - 1})")
    return {"app/fan.py": "\n".join(lines) + "\n"}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_helpers_and_values_that_fan_out_are_read_within_a_budget(
    tmp_path: Path, lang: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_class: Any = js._File if lang == "js" else python._File
    seen = {"props": 0, "_origin": 0}  # `_origin`: one value `fixed_origin` reads

    def counted(name: str) -> Callable[..., Any]:
        real = getattr(file_class, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            if seen[name] > 5000:  # 6**9 without a bound: stop rather than run for hours
                raise AssertionError(f"{name} called over 5000 times")
            return real(*args, **kwargs)
        return wrapper

    for name in seen:
        monkeypatch.setattr(file_class, name, counted(name))
    v = scan(write_tree(tmp_path, _fan(lang)))
    got = {(c.call.path, c.call.account) for c in v.calls}
    # the helpers' options are still read (the env account is the operator's); the names
    # chained past the budget are not followed, and stay the install's
    assert got == {("/v1/balance", "own"), ("/v1/customers", "connected")}


# Ruby reads a bare name as a call of the file's method only where no variable has that name:
# a block's, a lambda's or a `for` loop's variable is the value it is given, like a parameter.
# (Python and JS call a helper with `()`: a bare name there is never the helper.)
RUBY_BLOCK_VARIABLE = {
    "config/initializers/stripe.rb": "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n",
    "app/creator.rb": (
        "class Creator\n"
        "  def initialize(account)\n    @account = account\n  end\n\n"
        "  def header\n    { stripe_account: @account.stripe_id }\n  end\n\n"
        "  def balance\n    Stripe::Balance.retrieve(header)\n  end\n\n"
        "  def payouts(list)\n"
        "    list.each do |header|\n      Stripe::Payout.list({}, header)\n    end\n  end\n\n"
        "  def refunds(list)\n    list.map { |header| Stripe::Refund.list({}, header) }\n"
        "  end\n\n"
        "  def invoices(list)\n    for header in list\n"
        "      Stripe::Invoice.list({}, header)\n    end\n  end\n"
        "end\n"),
}


def test_a_ruby_block_variable_named_like_a_helper_is_not_the_helper(tmp_path: Path) -> None:
    v = scan(write_tree(tmp_path, RUBY_BLOCK_VARIABLE))
    got = {(c.call.path, c.call.account) for c in v.calls}
    # the block's options are opaque, as a parameter's are (see test_scan_flow_more)
    assert got == {("/v1/balance", "connected"), ("/v1/payouts", "own"),
                   ("/v1/refunds", "own"), ("/v1/invoices", "own")}


# A bare call is a function of the module (or imported), never a method of the same name: the
# method's env account says nothing of what the imported `account_for()` returns. The control
# calls the method through self. (JS reads `this.f()` and `f()` apart already: its control.)
BARE_CALL = {
    "python": {
        "app/svc.py": (
            "import os\n\nimport stripe\nfrom app.accounts import account_for\n\n"
            "stripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "class Svc:\n"
            "    def account_for(self):\n"
            "        return os.environ['PLATFORM_ACCOUNT']\n\n"
            "    def payouts(self):\n"
            "        return stripe.Payout.list(stripe_account=account_for())\n\n"
            "    def balance(self):\n"
            "        return stripe.Balance.retrieve(stripe_account=self.account_for())\n"),
    },
    "js": {
        "src/svc.js": (
            "const Stripe = require('stripe');\n"
            "const { accountFor } = require('./accounts');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "class Svc {\n"
            "  accountFor() { return process.env.PLATFORM_ACCOUNT; }\n"
            "  payouts() { return stripe.payouts.list({}, { stripeAccount: accountFor() }); }\n"
            "  balance() {\n"
            "    return stripe.balance.retrieve({ stripeAccount: this.accountFor() });\n"
            "  }\n"
            "}\n"
            "module.exports = { Svc };\n"),
    },
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_bare_call_is_not_a_method_of_the_same_name(tmp_path: Path, lang: str) -> None:
    v = scan(write_tree(tmp_path, BARE_CALL[lang]))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert got == {("/v1/payouts", "connected"), ("/v1/balance", "own")}


# A parameter (or a local) named like another function's env-read local is the caller's value:
# the install's account, not the other function's fixed one. The control reads the env itself.
SHADOWED = {
    "python": {
        "app/svc.py": (
            "import os\n\nimport stripe\n\nstripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "def for_tenant(acct):\n"
            "    return stripe.Payout.list(stripe_account=acct)\n\n\n"
            "def platform():\n"
            "    acct = os.environ['PLATFORM_ACCOUNT']\n"
            "    return stripe.Balance.retrieve(stripe_account=acct)\n"),
    },
    "js": {
        "src/svc.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "function forTenant(acct) {\n"
            "  return stripe.payouts.list({}, { stripeAccount: acct });\n"
            "}\n"
            "function platform() {\n"
            "  const acct = process.env.PLATFORM_ACCOUNT;\n"
            "  return stripe.balance.retrieve({ stripeAccount: acct });\n"
            "}\n"
            "module.exports = { forTenant, platform };\n"),
    },
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_parameter_is_not_another_functions_fixed_account(tmp_path: Path, lang: str) -> None:
    v = scan(write_tree(tmp_path, SHADOWED[lang]))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert got == {("/v1/payouts", "connected"), ("/v1/balance", "own")}
    assert sorted(v.needed) == ["payout_read"]
