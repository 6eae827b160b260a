"""Issue 12: whose account each call and handler acts for, clients however they are built,
PHP, unused logic and least-privilege advice, on fixture apps of our own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permgate import manifest as mf
from permgate.cli import main
from permgate.scan import narrowest, scan

FIXTURES = Path(__file__).parent / "fixtures"


def _verdict(name: str, **kw: bool):  # type: ignore[no-untyped-def]
    root = FIXTURES / name
    m = mf.load(root / "stripe-app.json")
    return scan(root, m.permission_names, str(root / "stripe-app.json"), **kw)


def _calls(v) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {f"{c.call.file}:{c.call.line}": c.call for c in v.calls}


def _events(v) -> dict[tuple[str, str], object]:  # type: ignore[no-untyped-def]
    return {(e.use.file, e.use.event): e.use for e in v.events}


# name -> (missing, unused, covered): the verdict a careful reading of the fixture gives.
EXPECTED = {
    # charge_read: only a client of unknown account (a parameter) lists charges: unverified
    "js_project": ({"webhook_read"}, {"quote_read"},
                   {"dispute_read", "event_read", "invoice_read", "subscription_read"}),
    "py_oauth": ({"connected_account_read", "webhook_write"}, {"subscription_read"},
                 {"event_read", "invoice_read"}),
    "php_backend": ({"checkout_session_read", "invoice_read", "subscription_read"},
                    {"product_read"}, {"customer_write"}),
    "escape_js": (set(), set(), set()),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_per_fixture(name: str) -> None:
    v = _verdict(name)
    missing, unused, covered = EXPECTED[name]
    assert {m.permission for m in v.missing} == missing
    assert {u.permission for u in v.unused} == unused
    assert set(v.covered) == covered
    assert v.findings.partial == [] and [s for s in v.findings.skipped if s.dropped] == []


def test_clients_from_factories_imports_this_and_wrappers() -> None:
    calls = _calls(_verdict("js_project"))
    # getStripe(live).disputes.list(): a factory imported from another file
    assert calls["src/routes/disputes.ts:5"].account == "installing"  # type: ignore[attr-defined]
    assert "getStripe()" in calls["src/routes/disputes.ts:5"].reason  # type: ignore[attr-defined]
    # const {client} = await getStripeClient(...)
    inv = calls["src/routes/disputes.ts:10"]
    assert (inv.account, inv.expand) == ("installing", ("data.subscription",))  # type: ignore[attr-defined]
    # a client passed in as a parameter: unknown, said so
    assert calls["src/routes/disputes.ts:15"].account == "unknown"  # type: ignore[attr-defined]
    # an exported client of the developer's own key, imported
    assert calls["src/routes/webhooks.ts:28"].account == "own"  # type: ignore[attr-defined]
    # this.get('/webhook_endpoints') through the app's own wrapper around fetch
    hook = calls["src/lib/api.ts:13"]
    assert (hook.method, hook.path, hook.account) == (  # type: ignore[attr-defined]
        "GET", "/v1/webhook_endpoints", "installing")
    assert "wrapper get" in hook.reason  # type: ignore[attr-defined]
    # the wrapper's own fetch is not a call site; .gitignore'd generated/ is not read
    assert not any(c.call.file.startswith("generated/") for c in _verdict("js_project").calls)
    assert "src/lib/api.ts:6" not in calls


def test_handlers_decided_per_branch_with_reasons() -> None:
    v = _verdict("js_project")
    ev = _events(v)
    paid = ev[("src/routes/webhooks.ts", "invoice.paid")]
    assert paid.account == "installing" and "event's account" in paid.reason  # type: ignore[attr-defined]
    done = ev[("src/routes/webhooks.ts", "checkout.session.completed")]
    assert done.account == "own" and "own key" in done.reason  # type: ignore[attr-defined]
    gone = ev[("src/routes/webhooks.ts", "customer.subscription.deleted")]
    assert gone.account == "own"  # type: ignore[attr-defined]
    # an event named only in a test file is not the app's
    assert not any(e.use.file.startswith("test/") for e in v.events)
    assert v.findings.tests_excluded == 1


def test_include_tests_brings_test_files_in() -> None:
    v = _verdict("js_project", include_tests=True)
    assert ("test/webhooks.test.ts", "charge.refunded") in _events(v)
    assert "charge_read" in v.covered


def test_python_oauth_token_and_own_billing_branches() -> None:
    v = _verdict("py_oauth")
    calls = _calls(v)
    acct = calls["app/oauth.py:9"]
    assert (acct.path, acct.account) == ("/v1/account", "installing")  # type: ignore[attr-defined]
    assert "OAuth access token" in acct.reason  # type: ignore[attr-defined]
    hook = calls["app/oauth.py:10"]
    assert (hook.path, hook.account) == ("/v1/webhook_endpoints", "installing")  # type: ignore[attr-defined]
    # the module key set in billing.py holds for `import stripe` in hooks.py too
    assert calls["app/hooks.py:24"].account == "own"  # type: ignore[attr-defined]
    # `...CreateParams(...)` builds a TypedDict: neither a call nor unresolved
    assert v.findings.unresolved == []
    ev = _events(v)
    assert ev[("app/hooks.py", "invoice.payment_failed")].account == "installing"  # type: ignore[attr-defined]
    assert ev[("app/hooks.py", "checkout.session.completed")].account == "own"  # type: ignore[attr-defined]
    deleted = ev[("app/hooks.py", "customer.subscription.deleted")]
    assert deleted.account == "own" and "own billing" in deleted.reason  # type: ignore[attr-defined]


def test_php_sdk_static_and_http() -> None:
    calls = _calls(_verdict("php_backend"))
    wp = calls["plugin.php:6"]
    assert (wp.method, wp.path, wp.account) == ("POST", "/v1/customers", "installing")  # type: ignore[attr-defined]
    inv = calls["plugin.php:14"]
    assert (inv.path, inv.expand, inv.account) == (  # type: ignore[attr-defined]
        "/v1/invoices", ("data.subscription",), "connected")
    assert calls["plugin.php:20"].account == "own"  # type: ignore[attr-defined]
    assert calls["plugin.php:24"].path == "/v1/checkout/sessions/{session}"  # type: ignore[attr-defined]


def test_credential_handed_to_a_package_keeps_grants() -> None:
    v = _verdict("escape_js")
    assert v.unused == []
    assert {k.permission for k in v.outside} == {"charge_read", "customer_read"}
    assert "syncer.run" in v.outside[0].reason


def test_narrower_grant_makes_the_broad_one_unused(tmp_path: Path) -> None:
    (tmp_path / "src" / "views").mkdir(parents=True)
    (tmp_path / "src" / "views" / "A.tsx").write_text(
        "const s = stripe.subscriptions.list();\nconst c = stripe.customers.retrieve(id);\n")
    v = scan(tmp_path, ["subscription_read", "subscription_write", "customer_write"], "m")
    unused = {u.permission: u for u in v.unused}
    assert set(unused) == {"subscription_write"}  # read is narrower and granted
    assert unused["subscription_write"].narrower == ("subscription_read",)
    assert v.covered == ["customer_write", "subscription_read"]  # the only way to customers


def test_advice_is_the_narrowest_permission_per_need() -> None:
    group_sub = ("quote_read", "quote_write", "subscription_read", "subscription_write")
    group_inv = ("credit_note_read", "credit_note_write", "invoice_read", "invoice_write",
                 "quote_read", "quote_write")
    assert narrowest(group_sub, "customer.subscription.updated") == "subscription_read"
    assert narrowest(group_inv, "invoice.paid") == "invoice_read"


def test_missing_advice_is_not_the_broad_cover_of_two_groups(tmp_path: Path) -> None:
    (tmp_path / "hook.ts").write_text(
        "export function h(event: any) {\n"
        "  if (event.type === 'invoice.paid') { return event.account; }\n"
        "  if (event.type === 'customer.subscription.updated') { return event.account; }\n"
        "}\n")
    v = scan(tmp_path, ["event_read"], "m")
    assert {m.permission for m in v.missing} == {"invoice_read", "subscription_read"}


def test_spread_reassignment_does_not_recurse(tmp_path: Path) -> None:
    (tmp_path / "a.ts").write_text(
        "import Stripe from 'stripe';\nconst stripe = new Stripe(process.env.INSTALL_TOKEN!);\n"
        "export function f({ctx}: any) {\n  ctx = { ...ctx, a: 1 };\n"
        "  ctx = { ...ctx, b: 2 };\n  return stripe.customers.list(ctx);\n}\n")
    v = scan(tmp_path)
    assert [c.call.path for c in v.calls] == ["/v1/customers"]
    assert v.findings.skipped == [] and v.findings.partial == []


def test_deep_nesting_yields_what_it_can(tmp_path: Path) -> None:
    deep = "(" * 3000 + "1" + ")" * 3000
    (tmp_path / "a.ts").write_text(
        "const stripe = new Stripe(process.env.INSTALL_TOKEN!);\n"
        f"stripe.customers.list();\nconst x = {deep};\nstripe.invoices.list();\n")
    v = scan(tmp_path)
    assert {c.call.path for c in v.calls} == {"/v1/customers", "/v1/invoices"}


def test_gitignore_is_honoured(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("ignored/\n*.gen.ts\n!keep.gen.ts\n")
    (tmp_path / "ignored").mkdir()
    body = "const stripe = new Stripe(process.env.INSTALL_TOKEN!);\nstripe.customers.list();\n"
    for name in ("ignored/a.ts", "b.gen.ts", "keep.gen.ts", "c.ts"):
        (tmp_path / name).write_text(body)
    v = scan(tmp_path)
    assert sorted({c.call.file for c in v.calls}) == ["c.ts", "keep.gen.ts"]


def test_every_verdict_line_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    root = str(FIXTURES / "py_oauth")
    assert main(["scan", root]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "app/oauth.py:10" in ln and "->" in ln)
    assert "installing" in line and "OAuth access token" in line
    assert main(["scan", root, "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    site = doc["verdict"]["missing"][0]["sites"][0]
    assert {"file", "line", "call", "account", "reason"} <= set(site)
    assert site["reason"]
    assert doc["verdict"]["unused"][0]["reason"]
    assert main(["scan", root, "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    missing = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "missing-permission"]
    assert missing and all("Whose account: installing" in r["message"]["text"] for r in missing)
    assert all(r["properties"]["accountReason"] for r in missing)


def test_ruby_and_go_keys(tmp_path: Path) -> None:
    (tmp_path / "config.rb").write_text("Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n")
    (tmp_path / "jobs.rb").write_text(
        "def sync(token)\n"
        "  Stripe::Invoice.list({limit: 3}, {api_key: token.oauth_access_token})\n"
        "  Stripe::Product.create({name: 'ours'})\n"
        "end\n")
    (tmp_path / "main.go").write_text(
        'package main\n\nimport "github.com/stripe/stripe-go/v76/client"\n\n'
        "func run(accessToken string) {\n"
        "\tsc := client.New(accessToken, nil)\n"
        '\tsc.Customers.Get("cus_1", nil)\n}\n')
    v = scan(tmp_path)
    calls = {(c.call.file, c.call.line): c.call for c in v.calls}
    assert calls[("jobs.rb", 2)].account == "installing"  # per-call OAuth key
    own = calls[("jobs.rb", 3)]
    assert own.account == "own" and "config.rb:1" in own.reason  # the project's global key
    go = calls[("main.go", 7)]
    assert (go.path, go.account) == ("/v1/customers/{customer}", "installing")


def test_refused_expansion_still_counts_the_operation(tmp_path: Path) -> None:
    (tmp_path / "src" / "views").mkdir(parents=True)
    (tmp_path / "src" / "views" / "A.tsx").write_text(
        "stripe.customers.retrieve(id, {expand: ['no_such_field']});\n")
    v = scan(tmp_path, ["customer_read"], "m")
    assert len(v.invalid) == 1 and v.invalid[0].call.line == 1
    assert v.unused == [] and v.covered == ["customer_read"]


def test_python_factory_and_imported_client(tmp_path: Path) -> None:
    (tmp_path / "clients.py").write_text(
        "import os\nfrom stripe import StripeClient\n\n"
        "platform = StripeClient(os.environ['STRIPE_SECRET_KEY'])\n\n"
        "def for_install(install):\n    return StripeClient(install.access_token)\n")
    (tmp_path / "jobs.py").write_text(
        "from clients import for_install, platform\n\n"
        "def run(install):\n    client = for_install(install)\n"
        "    client.v1.customers.list()\n    platform.v1.products.create({'name': 'x'})\n")
    v = scan(tmp_path)
    calls = {c.call.call: c.call for c in v.calls}
    assert calls["client.v1.customers.list"].account == "installing"
    assert "for_install()" in calls["client.v1.customers.list"].reason
    assert calls["platform.v1.products.create"].account == "own"


def test_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Even when asked: a bar only ever goes to a terminal (tests/test_progress.py runs one
    # under a pseudo-terminal).
    for i in range(3):
        (tmp_path / f"m{i}.ts").write_text("export const x = 1;\n")
    for progress in (True, None, False):
        scan(tmp_path, progress=progress)
        assert capsys.readouterr().err == ""


def test_cli_default_manifest_name_matches_the_manifest_layer() -> None:
    from permgate.cli import scan as cli_scan

    assert cli_scan.DEFAULT_MANIFEST == mf.DEFAULT_NAME


def test_python_file_that_cannot_be_parsed_whole_yields_what_it_can(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os\nimport stripe\n\nstripe.api_key = os.environ['INSTALL_ACCESS_TOKEN']\n\n"
        "def good():\n    return stripe.Customer.list()\n\n"
        "def broken(:\n    pass\n\n"
        "def deep():\n    return " + "(" * 400 + "1" + ")" * 400 + "\n\n"
        "def later():\n    return stripe.Invoice.list()\n")
    v = scan(tmp_path)
    assert sorted(c.call.path for c in v.calls) == ["/v1/customers", "/v1/invoices"]
    assert {c.call.line for c in v.calls} == {7, 16}
    assert [p.file for p in v.findings.partial] == ["app.py"]
    assert not [s for s in v.findings.skipped if s.file == "app.py"]


def test_text_output_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src" / "views").mkdir(parents=True)
    (tmp_path / "src" / "views" / "A.tsx").write_text(
        "stripe.customers.retrieve('\x1b[2J', {expand: ['x\x1b[31m']});\n")
    main(["scan", str(tmp_path)])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\u001b" in out


def test_client_passed_as_a_parameter_follows_its_callers(tmp_path: Path) -> None:
    (tmp_path / "lib.ts").write_text(
        "import Stripe from 'stripe';\n"
        "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY!);\n"
        "export async function sync(stripe: Stripe, id: string) {\n"
        "  return stripe.customers.retrieve(id);\n}\n"
        "export async function audit(stripe: Stripe) {\n  return stripe.charges.list();\n}\n")
    (tmp_path / "route.ts").write_text(
        "import Stripe from 'stripe';\nimport {sync} from './lib';\n"
        "export async function handle(token: {oauthAccessToken: string}) {\n"
        "  const installClient = new Stripe(token.oauthAccessToken);\n"
        "  return sync(installClient, 'cus_1');\n}\n")
    v = scan(tmp_path)
    calls = {c.call.line: c.call for c in v.calls if c.call.file == "lib.ts"}
    # the parameter shadows the module's own-key client, and its caller passes the install's
    assert calls[4].account == "installing" and "parameter 1 of sync()" in calls[4].reason
    # no call site passes a known client: unknown, not the module-level own client
    assert calls[7].account == "unknown"
