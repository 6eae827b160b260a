"""Issue 25, fifth round merged: one walk (`common.fixed_origin`) follows a Ruby account value
to its origin, with the configuration rule (`filled_with_configuration`) at its leaves and a
method's value read once (`helper_value`). Error class 2 (own traffic counted as the app's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from permgate.scan import scan

HEAD = "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
CALL = "def pay\n  Stripe::Payout.create({amount: 1}, {stripe_account: acct})\nend\n"

# a method of the file returning a read of a local named config: the walk reaches the
# method's value, and the leaf counts only when the local was filled with configuration
CONFIG_IN_A_METHOD = {
    "own": "def acct\n  config = YAML.load_file('stripe.yml')\n  config['account_id']\nend\n",
    "data": "def acct\n  config = Shop.find(1).settings\n  config['account_id']\nend\n",
}
# a method that returns early has no one value: not read (the last line alone is fixed)
EARLY_RETURN = {
    "own": "def acct\n  ENV['PLATFORM_ACCOUNT']\nend\n",
    "data": "def acct\n  return current_seller.stripe_account_id if current_seller\n"
            "  ENV['PLATFORM_ACCOUNT']\nend\n",
}


@pytest.mark.parametrize("cases", [CONFIG_IN_A_METHOD, EARLY_RETURN],
                         ids=["config-local-in-a-method", "early-return"])
def test_a_ruby_account_through_a_method_is_judged_at_its_leaf(tmp_path: Path,
                                                               cases: dict[str, str]) -> None:
    for kind, helper in cases.items():
        root = tmp_path / kind
        root.mkdir()
        (root / "pay.rb").write_text(HEAD + helper + CALL)
        needed = scan(root, progress=False).needed
        assert ("payout_write" in needed) is (kind == "data"), (kind, needed)
