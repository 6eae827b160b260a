"""Issue 25: a file named like a test is left out only when it holds test code; an app saved
under such a name (`stripe_connect_test.py`) is the app. Fixtures of our own in Python, Ruby
and JS/TS, each with a control: the same name holding tests stays out."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.scan.trees import write_tree

from permgate.scan import scan

APPS = {
    "python": ("stripe_connect_test.py",
               "import stripe\nfrom flask import Flask, session\napp = Flask(__name__)\n\n"
               "@app.route('/charge')\ndef charge():\n"
               "    return stripe.Charge.create(amount=1, stripe_account=session['acct'])\n",
               "import pytest\n"),
    "ruby": ("charge_test.rb",
             "def charge(seller)\n"
             "  Stripe::Charge.create({ amount: 1 }, { stripe_account: seller.stripe_id })\n"
             "end\n",
             "require 'test_helper'\n"),
    "js": ("charge.test.js",
           "const stripe = require('stripe')(process.env.STRIPE_SECRET_KEY);\n"
           "async function charge(seller) {\n"
           "  return stripe.charges.create({ amount: 1 }, { stripeAccount: seller.acct });\n}\n",
           "const { describe, it } = require('mocha');\n"),
}


@pytest.mark.parametrize("lang", sorted(APPS))
def test_a_file_named_like_a_test_that_holds_no_test_is_read(tmp_path: Path, lang: str) -> None:
    name, body, test_head = APPS[lang]
    root = write_tree(tmp_path / "app", {name: body})
    found = scan(root, progress=False)
    assert set(found.needed) == {"charge_write"} and found.findings.tests_excluded == 0
    # control: the same file that imports a test framework is a test, left out
    root = write_tree(tmp_path / "test", {name: test_head + body})
    found = scan(root, progress=False)
    assert set(found.needed) == set() and found.findings.tests_excluded == 1


@pytest.mark.parametrize("name", ["tests/charge.py", "charge_test.go", "conftest.py"])
def test_test_folders_go_tests_and_set_up_files_stay_out(tmp_path: Path, name: str) -> None:
    # control: a test folder, Go's `_test.go` (never built into the program) and set-up files
    # are left out whatever they hold
    body = ("package main\nfunc f() {}\n" if name.endswith(".go") else
            "import stripe\ndef f(s):\n    stripe.Charge.create(amount=1, stripe_account=s.a)\n")
    root = write_tree(tmp_path / "t", {name: body})
    found = scan(root, progress=False)
    assert found.findings.tests_excluded == 1 and not found.findings.calls
