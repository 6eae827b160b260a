"""Issue 25: secrets never printed, "unverified" instead of "unused" when the scan cannot see
all of the app's traffic, the outside-credential rule on real credentials only, constant
expansion lists. Fixtures of our own, written per test, in each language the rule covers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permgate.cli import main
from permgate.scan import scan
from permgate.scan.redact import redact

# Assembled so that this file itself holds no key-like literal.
SK = "sk_" + "test_" + "51Habcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV"
RK = "rk_" + "live_" + "51Hzyxwvutsrqponmlkjihgfedcba9876543210"
WH = "whsec_" + "0123456789abcdefghijABCDEFGHIJ"
MANIFEST = ('{"id": "com.example.t", "version": "0.0.1", "name": "t", "permissions": ['
            '{"permission": "customer_read", "purpose": "p"},'
            '{"permission": "charge_read", "purpose": "p"}]}')


def _write(root: Path, files: dict[str, str], manifest: str | None = MANIFEST) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    if manifest is not None:
        (root / "stripe-app.json").write_text(manifest)
    return root


# --- 1. secrets in output --------------------------------------------------------------

SECRET_TREES = {
    "js": {"src/sync.ts": "import Stripe from 'stripe';\n"
                          f"const s = new Stripe('{SK}');\n"
                          "export const a = () => s.customers.retrieve('cus_1');\n"
                          f"const t = new Stripe(accessToken || '{SK}');\n"
                          "export const c = () => t.customers.retrieve('cus_1');\n"
                          f"const r = new Stripe('{RK}');\n"
                          "export const b = () => r.charges.list();\n"
                          f"const w = '{WH}';\n"
                          "fetch(`https://api.stripe.com/v1/${p}`, "
                          "{headers: {Authorization: 'Bearer abcdefghijklmnopqrstuv123'}});\n"},
    "python": {"app.py": f"import stripe\nstripe.api_key = '{SK}'\n"
                         f"c = stripe.StripeClient(access_token or '{RK}')\n"
                         "c.customers.retrieve('cus_1')\n"
                         f"stripe.Customer.retrieve('cus_1', api_key='{SK}')\n"
                         f"getattr(stripe.StripeClient('{RK}'), name).list()\n"},
}


@pytest.mark.parametrize("lang", sorted(SECRET_TREES))
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_no_key_value_in_any_output_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lang: str, fmt: str
) -> None:
    # customer_read not granted: the missing-permission lines quote the clients' keys
    _write(tmp_path, SECRET_TREES[lang], MANIFEST.replace("customer_read", "charge_write"))
    main(["scan", str(tmp_path), "--format", fmt, "--no-progress"])
    out = capsys.readouterr().out
    if fmt != "text":
        json.loads(out)  # masking keeps the document valid
    # the tree's calls were found (the masking did not hide the finding itself) ...
    assert "charges" in out or "customers" in out
    # ... and no part of a key's value is printed, only its kind
    for secret in (SK, RK, WH, "abcdefghijklmnopqrstuv123"):
        assert secret[8:20] not in out
    assert "[REDACTED]" in out


# Keys the code splits or wraps: the scan quotes the source text of a key argument, so the
# value must be masked however it is spelt (issue 25, found in review).
TAIL = "51HqLyjWDarjtT1zdp7dcXYZabcdEFGH12345678"
SPLIT_TREES = {
    "js": {"src/a.ts": "import Stripe from 'stripe';\n"
                       f"const t = new Stripe('sk_' + 'live_' + '{TAIL}');\n"
                       "export const b = () => t.charges.list();\n"
                       f"const u = new Stripe(\"sk_live_\" + \"{TAIL}\");\n"
                       "export const c = () => u.customers.list();\n"
                       f"const pk = new Stripe(`sk_test_${{'{TAIL}'}}`);\n"
                       "export const e = () => pk.refunds.list();\n"
                       f"const o = new Stripe('KEY_sk_live_{TAIL}');\n"
                       "export const f = () => o.disputes.list();\n"
                       f"const g = new Stripe(token || 'sk_' + 'live_' + '{TAIL}');\n"
                       "export const h = () => g.charges.list();\n"},
    "python": {"app.py": "import stripe\n"
                         f"stripe.Invoice.list(api_key=f\"sk_live_{{'{TAIL}'}}\")\n"
                         f"stripe.Charge.list(api_key='sk_test_' + '{TAIL}')\n"
                         f"stripe.Refund.list(api_key='KEY_rk_live_{TAIL}')\n"
                         f"c = stripe.StripeClient('\\nsk_live_{TAIL}')\n"
                         "c.customers.list()\n"
                         f"g = stripe.StripeClient(access_token or 'sk_test_' '{TAIL}')\n"
                         "g.customers.list()\n"},
}


@pytest.mark.parametrize("lang", sorted(SPLIT_TREES))
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_no_split_or_wrapped_key_in_any_output_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lang: str, fmt: str
) -> None:
    # SARIF quotes a client's key as the reason of a finding: charge_read unverified by the
    # charges call on a client of unknown account (JS), customer_read missing (Python)
    _write(tmp_path, SPLIT_TREES[lang], MANIFEST.replace("customer_read", "event_read"))
    main(["scan", str(tmp_path), "--format", fmt, "--no-progress"])
    out = capsys.readouterr().out
    if fmt != "text":
        json.loads(out)
    assert "[REDACTED]" in out and ("charge" in out or "customer" in out)  # calls found
    assert TAIL[:10] not in out and TAIL[-10:] not in out


def test_redact_masks_split_wrapped_and_escaped_keys() -> None:
    for spelt in (f"'sk_' + 'live_' + '{TAIL}'", f'"sk_live_" + "{TAIL}"',
                  f"`sk_test_${{'{TAIL}'}}`", f"f\"sk_live_{{'{TAIL}'}}\"",
                  f"'sk_test_' '{TAIL}'", f"'sk_test_' . '{TAIL}'",
                  f"KEY_sk_live_{TAIL}", f"'\\nsk_live_{TAIL}'", f"\\u000awhsec_{TAIL}",
                  f"?k=%3Dsk_live_{TAIL}", f"https://rk_live_{TAIL}:@api.stripe.com/v1/x",
                  f"Authorization: Basic {TAIL}", f"ac_{TAIL}", f"x_ac_{TAIL}"):
        masked = redact(spelt)
        assert TAIL[:6] not in masked and TAIL[-6:] not in masked, (spelt, masked)
        assert "[REDACTED]" in masked
    # a key built from a variable: the variable's name is no secret and stays
    assert redact("'sk_live_' + rest") == "'sk_live_' + rest"


# A literal in the key's place is a key whatever its format (another provider's, a Stripe-
# compatible API's): the scan knows it is one, so its value is never quoted.
PLAIN = "Zq7" + "Xv2Lp9Rk4Tn8Wm3"
PLAIN_TREES = {
    "js": {"src/a.ts": "import Stripe from 'stripe';\n"
                       f"const s = new Stripe('{PLAIN}');\n"
                       "export const a = () => s.customers.list();\n"
                       f"const t = new Stripe(token || '{PLAIN}');\n"
                       "export const b = () => t.charges.list();\n"},
    "python": {"app.py": "import stripe\n"
                         f"stripe.Customer.list(api_key='{PLAIN}')\n"
                         f"stripe.Charge.list(api_key=token or '{PLAIN}')\n"},
}


@pytest.mark.parametrize("lang", sorted(PLAIN_TREES))
def test_a_literal_in_the_keys_place_is_never_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lang: str
) -> None:
    _write(tmp_path, PLAIN_TREES[lang])
    for fmt in ("text", "json", "sarif"):
        main(["scan", str(tmp_path), "--format", fmt, "--no-progress"])
        out = capsys.readouterr().out
        assert "charge" in out and PLAIN not in out, fmt
    main(["scan", str(tmp_path), "--no-progress"])
    assert "key written in the code ('[REDACTED]')" in capsys.readouterr().out


def test_redact_keeps_prefixes_and_ordinary_words() -> None:
    assert redact(f"new Stripe('{SK}')") == "new Stripe('sk_test_[REDACTED]')"
    assert redact(f"{RK[:30]}...") == "rk_live_[REDACTED]..."
    assert redact("Authorization: Bearer ${token}") == "Authorization: Bearer ${token}"
    assert redact("ac_" + "123456789012345678ab") == "ac_[REDACTED]"
    # identifiers that merely start like a token stay
    assert redact("rt_cache ac_count sk_test_ pk_live") == "rt_cache ac_count sk_test_ pk_live"


# --- 2. "unverified", not "unused", when some traffic cannot be read -------------------

# language -> (file, code with a counted customers call, the line that makes the scan unsure)
DOUBT = {
    "js": ("src/sync.ts",
           "import Stripe from 'stripe';\n"
           "export async function f(accessToken: string) {\n"
           "  const s = new Stripe(accessToken);\n"
           "  await s.customers.retrieve('cus_1');\n"
           "{doubt}}\n",
           "  await fetch(`https://api.stripe.com/v1/${await nextPath()}`, "
           "{headers: {Authorization: `Bearer ${accessToken}`}});\n"),
    "python": ("app/sync.py",
               "import stripe\n\n\ndef f(access_token, name):\n"
               "    stripe.Customer.retrieve('cus_1', api_key=access_token)\n{doubt}",
               "    getattr(stripe, name).list(api_key=access_token)\n"),
    "php": ("sync.php",
            "<?php\nfunction f($accessToken, $path) {\n"
            "  $stripe = new \\Stripe\\StripeClient($accessToken);\n"
            "  $stripe->customers->retrieve('cus_1');\n{doubt}}\n",
            "  wp_remote_get('https://api.stripe.com/v1/' . $path, "
            "['headers' => ['Authorization' => 'Bearer ' . $accessToken]]);\n"),
    "ruby": ("sync.rb",
             "def f(access_token)\n"
             "  Stripe::Customer.retrieve('cus_1', {api_key: access_token})\n{doubt}end\n",
             "  Stripe::Charge.frobnicate({api_key: access_token})\n"),
    "go": ("sync.go",
           'package main\n\nimport (\n\t"github.com/stripe/stripe-go/v82/charge"\n'
           '\t"github.com/stripe/stripe-go/v82/client"\n)\n\n'
           "func f(accessToken string) {\n\tsc := client.New(accessToken, nil)\n"
           '\tsc.Customers.Get("cus_1", nil)\n{doubt}}\n',
           '\tcharge.Get("ch_1", nil)\n'),
}


@pytest.mark.parametrize("lang", sorted(DOUBT))
def test_unused_is_never_claimed_where_unverified_traffic_exists(
    tmp_path: Path, lang: str
) -> None:
    name, code, doubt = DOUBT[lang]
    # without the unreadable call: charge_read is unused (the check below can fail)
    clear = scan(_write(tmp_path / "clear", {name: code.replace("{doubt}", "")}),
                 ["customer_read", "charge_read"], "m")
    assert "customer_read" in clear.covered, lang
    assert [u.permission for u in clear.unused] == ["charge_read"] and not clear.unverified
    # with it: nothing is called unused; the grant is unverified, with the site that did it
    unsure = scan(_write(tmp_path / "unsure", {name: code.replace("{doubt}", doubt)}),
                  ["customer_read", "charge_read"], "m")
    assert unsure.unused == []
    assert [w.permission for w in unsure.unverified] == ["charge_read"]
    assert {(s.file, s.line) for s in unsure.unverified[0].sites} == {
        (name, code.split("{doubt}")[0].count("\n") + 1)}
    assert "customer_read" in unsure.covered and not unsure.missing


# A file the scan could not read whole: its traffic was not seen either (found in review:
# a file skipped as too large, or read only in part, left grants "unused").
UNREAD = {
    "js-too-large": ("src/bundle.js", "import Stripe from 'stripe';\n"
                     + "// padding\n" * 200_000 + "new Stripe(k).charges.list();\n"),
    "js-too-deep": ("src/deep.js", "import Stripe from 'stripe';\n"
                    "const s = new Stripe(process.env.K);\n"
                    "const x = " + "f(" * 3000 + "s.charges.list()" + ")" * 3000 + ";\n"),
    "php-too-deep": ("deep.php", "<?php\n$x = " + "[" * 300 + "\\Stripe\\Charge::all()"
                     + "]" * 300 + ";\n"),
    "ruby-too-deep": ("deep.rb", "x = " + "[" * 300 + "Stripe::Charge.list" + "]" * 300 + "\n"),
    "go-too-deep": ("deep.go", 'package main\n\nimport "github.com/stripe/stripe-go/v82/charge"'
                    "\n\nvar x = " + "(" * 300 + "charge.List(nil)" + ")" * 300 + "\n"),
    "python-in-part": ("app/deep.py", "import stripe\n\n\ndef g(access_token):\n"
                       "    stripe.Charge.list(api_key=access_token)\n"
                       "    return " + "-" * 50_000 + "1\n"),
}


@pytest.mark.parametrize("case", sorted(UNREAD))
def test_unused_is_never_claimed_when_a_file_was_not_read_whole(tmp_path: Path, case: str) -> None:
    name, code, _doubt = DOUBT[case.split("-")[0]]
    base = {name: code.replace("{doubt}", "")}
    clear = scan(_write(tmp_path / "clear", base), ["customer_read", "charge_read"], "m")
    assert [u.permission for u in clear.unused] == ["charge_read"]  # the control
    unread_name, unread = UNREAD[case]
    unsure = scan(_write(tmp_path / "unsure", {**base, unread_name: unread}),
                  ["customer_read", "charge_read"], "m")
    assert unsure.findings.skipped or unsure.findings.partial, case
    assert unsure.unused == [] and [w.permission for w in unsure.unverified] == ["charge_read"]
    assert unread_name in {s.file for s in unsure.unverified[0].sites}


# The API host spelt with credentials in the URL (curl style) or without a scheme: still a
# request to the API, its computed path still unreadable (found in review: not seen at all).
HOST_FORMS = {
    "js-userinfo": ("src/raw.ts", "export const r = (accessToken: string, p: string) =>\n"
                    "  fetch('https://' + accessToken + ':@api.stripe.com/v1/' + p);\n"),
    "js-no-scheme": ("src/raw.ts", "export const r = (accessToken: string, p: string) =>\n"
                     "  fetch('//api.stripe.com/v1/' + p, "
                     "{headers: {Authorization: `Bearer ${accessToken}`}});\n"),
    "python-userinfo": ("app/raw.py", "import requests\n\n\ndef r(access_token, p):\n"
                        "    requests.get(f'https://{access_token}:@api.stripe.com/v1/{p}')\n"),
}


@pytest.mark.parametrize("case", sorted(HOST_FORMS))
def test_a_request_to_the_api_host_in_any_spelling_is_traffic(tmp_path: Path, case: str) -> None:
    name, code, _doubt = DOUBT["js" if case.startswith("js") else "python"]
    base = {name: code.replace("{doubt}", "")}
    raw_name, raw = HOST_FORMS[case]
    unsure = scan(_write(tmp_path, {**base, raw_name: raw}), ["customer_read", "charge_read"],
                  "m")
    assert unsure.unused == [] and [w.permission for w in unsure.unverified] == ["charge_read"]
    assert raw_name in {s.file for s in unsure.unverified[0].sites}


def test_unverified_in_every_output_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, code, doubt = DOUBT["python"]
    _write(tmp_path, {name: code.replace("{doubt}", doubt)})
    assert main(["scan", str(tmp_path), "--no-progress"]) == 0  # a note, not a finding
    out = capsys.readouterr().out
    assert "unverified  charge_read" in out and "unused" not in out.split("Verdict")[1]
    main(["scan", str(tmp_path), "--format", "json", "--no-progress"])
    doc = json.loads(capsys.readouterr().out)["verdict"]
    assert doc["unused"] == [] and doc["unverified"][0]["permission"] == "charge_read"
    assert doc["unverified"][0]["sites"][0]["file"] == name
    main(["scan", str(tmp_path), "--format", "sarif", "--no-progress"])
    results = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    rules = [r["ruleId"] for r in results]
    assert "unverified-permission" in rules and "unused-permission" not in rules


# --- 3. the outside-credential rule only on real credentials ---------------------------

# language -> (file, a credential value handed to a package, lines that only mention one)
ESCAPE = {
    "js": ("src/sync.ts",
           "import {Syncer} from 'some-sync-package';\nimport pino from 'pino';\n"
           "import {Router} from 'express';\nconst log = pino();\nconst router = Router();\n"
           "export async function go(stripeAccessToken: string) {\n{body}}\n",
           "  await new Syncer({}).run(stripeAccessToken);\n",
           "  log.info('stripeAccessToken refreshed');\n  log.info(stripeAccessToken);\n"
           "  router.get('/stripe/oauth/access_token', go);\n"
           "  pino().warn(`no stripe access token for ${id}`);\n"),
    "python": ("app/sync.py",
               "import logging\nfrom sync_pkg import Syncer\nfrom flask import Blueprint\n"
               "bp = Blueprint('x', __name__)\nlog = logging.getLogger(__name__)\n\n\n"
               "def go(stripe_access_token):\n{body}    return None\n",
               "    Syncer('db').run(stripe_access_token)\n",
               "    logging.info('stripe_access_token refreshed')\n"
               "    log.info(stripe_access_token)\n"
               "    bp.route('/stripe/oauth/access_token')\n"
               "    Syncer('db').run('stripe_access_token')\n"),
}


@pytest.mark.parametrize("lang", sorted(ESCAPE))
def test_outside_credential_rule_needs_a_credential_value(tmp_path: Path, lang: str) -> None:
    name, code, real, mentions = ESCAPE[lang]
    granted = ["customer_read", "charge_read"]
    # strings and loggers that mention a token: the grants are unused, not kept
    v = scan(_write(tmp_path / "mentions", {name: code.replace("{body}", mentions)}),
             granted, "m")
    assert v.findings.escapes == [] and v.outside == []
    assert {u.permission for u in v.unused} == set(granted)
    # the token's value handed to a package's code: kept, with where
    v = scan(_write(tmp_path / "real", {name: code.replace("{body}", mentions + real)}),
             granted, "m")
    assert [e.credential for e in v.findings.escapes] == [
        "stripeAccessToken" if lang == "js" else "stripe_access_token"]
    assert v.unused == [] and {k.permission for k in v.outside} == set(granted)
    assert f"{name}:" in v.outside[0].reason


@pytest.mark.parametrize("lang", sorted(ESCAPE))
def test_own_key_handed_to_a_package_keeps_nothing(tmp_path: Path, lang: str) -> None:
    name, code, real, _ = ESCAPE[lang]
    own = real.replace("stripeAccessToken", "stripeSecretKey").replace(
        "stripe_access_token", "stripe_secret_key")
    v = scan(_write(tmp_path, {name: code.replace("{body}", own)}), ["customer_read"], "m")
    assert v.outside == [] and [u.permission for u in v.unused] == ["customer_read"]


# The token sent to another service by an HTTP client (`axios.post`, `requests.post`): that
# service acts with it, so the grants are kept; the same verb on a router is no consumer
# (found in review: `post` was read as a route for any receiver, and the grants "unused").
SENT = {
    "js": ("src/sync.ts", "import axios from 'axios';\nimport {Router} from 'express';\n"
                          "const router = Router();\n"
                          "export async function go(stripeAccessToken: string) {\n{body}}\n",
           "  await axios.post('https://sync.example.com/import', stripeAccessToken);\n",
           "  router.post('/import', stripeAccessToken);\n"),
    "python": ("app/sync.py", "import requests\nfrom flask import Blueprint\n"
                              "bp = Blueprint('x', __name__)\n\n\n"
                              "def go(stripe_access_token):\n{body}    return None\n",
               "    requests.post('https://sync.example.com/import', stripe_access_token)\n",
               "    bp.post('/import', stripe_access_token)\n"),
}


@pytest.mark.parametrize("lang", sorted(SENT))
def test_a_token_sent_by_an_http_client_keeps_the_grants(tmp_path: Path, lang: str) -> None:
    name, code, sent, routed = SENT[lang]
    v = scan(_write(tmp_path / "routed", {name: code.replace("{body}", routed)}),
             ["customer_read"], "m")
    assert v.outside == [] and [u.permission for u in v.unused] == ["customer_read"]
    v = scan(_write(tmp_path / "sent", {name: code.replace("{body}", sent)}),
             ["customer_read"], "m")
    assert v.unused == [] and [k.permission for k in v.outside] == ["customer_read"]


# --- 4. constant expansion lists, imports resolved by path ------------------------------

EXPAND_TREES = {
    "js": {
        "src/consts.ts": "export const EXPAND = ['customer', 'invoice'];\n",
        # the same name in another module: the import's path decides, not the name
        "src/other/consts.ts": "export const EXPAND = ['payment_method'];\n",
        "src/a.ts": "import Stripe from 'stripe';\nimport {EXPAND} from './consts';\n"
                    "import {EXPAND as E2} from '@/other/consts';\n"
                    "const LOCAL = ['latest_charge'];\n"
                    "class Svc {\n  static FIELDS = ['review'];\n"
                    "  a(accessToken: string) {\n    const s = new Stripe(accessToken);\n"
                    "    s.paymentIntents.retrieve('pi_1', {expand: EXPAND});\n"
                    "    s.paymentIntents.retrieve('pi_1', {expand: [...LOCAL, ...E2]});\n"
                    "    s.paymentIntents.retrieve('pi_1', {expand: Svc.FIELDS});\n  }\n}\n",
    },
    "python": {
        "app/consts.py": "EXPAND = ['customer', 'invoice']\n",
        "app/other/consts.py": "EXPAND = ['payment_method']\n",
        "app/a.py": "import stripe\nfrom app.consts import EXPAND\n"
                    "from .other.consts import EXPAND as E2\nLOCAL = ['latest_charge']\n\n\n"
                    "class Svc:\n    FIELDS = ['review']\n\n"
                    "    def a(self, access_token):\n"
                    "        stripe.PaymentIntent.retrieve('pi_1', expand=EXPAND, "
                    "api_key=access_token)\n"
                    "        stripe.PaymentIntent.retrieve('pi_1', expand=[*LOCAL, *E2], "
                    "api_key=access_token)\n"
                    "        stripe.PaymentIntent.retrieve('pi_1', expand=self.FIELDS, "
                    "api_key=access_token)\n",
    },
}


@pytest.mark.parametrize("lang", sorted(EXPAND_TREES))
def test_constant_expansion_lists_resolved_by_path(tmp_path: Path, lang: str) -> None:
    v = scan(_write(tmp_path, EXPAND_TREES[lang], None))
    assert [c.call.expand for c in v.calls] == [
        ("customer", "invoice"), ("latest_charge", "payment_method"), ("review",)]
    assert all(not c.call.notes for c in v.calls)
    assert {"customer_read", "invoice_read", "charge_read", "payment_method_read",
            "review_read"} <= set(v.needed)


RUNTIME_EXPAND = {
    "js": ("src/a.ts", "import Stripe from 'stripe';\n"
                       "export function f(accessToken: string, fields: string[]) {\n"
                       "  const s = new Stripe(accessToken);\n"
                       "  return s.customers.retrieve('cus_1', {expand: fields});\n}\n"),
    "python": ("app/a.py", "import stripe\n\n\ndef f(access_token, fields):\n"
                           "    return stripe.Customer.retrieve('cus_1', expand=fields, "
                           "api_key=access_token)\n"),
}


@pytest.mark.parametrize("lang", sorted(RUNTIME_EXPAND))
def test_expand_built_at_run_time_makes_grants_unverified(tmp_path: Path, lang: str) -> None:
    name, code = RUNTIME_EXPAND[lang]
    v = scan(_write(tmp_path, {name: code}), ["customer_read", "charge_read"], "m")
    assert v.covered == ["customer_read"] and v.unused == []
    assert [w.permission for w in v.unverified] == ["charge_read"]
    assert [(s.file, s.line) for s in v.unverified[0].sites] == [(name, code.count("\n") - (
        1 if lang == "js" else 0))]


# --- 5. value flow: parameters, class fields, imports by path ---------------------------

FLOW_TREES = {
    "js": {
        # two modules define `sync`; each caller imports one by path, with another account
        "src/a/sync.ts": "export async function sync(client: Stripe) {\n"
                         "  return client.customers.list();\n}\n",
        "src/b/sync.ts": "export async function sync(client: Stripe) {\n"
                         "  return client.charges.list();\n}\n",
        "src/svc.ts": "export class Billing {\n  constructor(private readonly api: Stripe) {}\n"
                      "  run() { return this.api.invoices.list(); }\n}\n"
                      "export class Plans {\n  private c: Stripe;\n"
                      "  constructor(c: Stripe) { this.c = c; }\n"
                      "  run() { return this.c.prices.list(); }\n}\n",
        "src/route.ts": "import Stripe from 'stripe';\nimport {sync} from './a/sync';\n"
                        "import {sync as own} from './b/sync';\n"
                        "import {Billing, Plans} from './svc';\n"
                        "export async function go(accessToken: string) {\n"
                        "  const app = new Stripe(accessToken);\n"
                        "  const mine = new Stripe(process.env.STRIPE_SECRET_KEY!);\n"
                        "  await sync(app);\n  await own(mine);\n"
                        "  await new Billing(app).run();\n  const p = new Plans(mine);\n"
                        "  return p.run();\n}\n",
    },
    "python": {
        "app/a/sync.py": "def sync(client):\n    return client.customers.list()\n",
        "app/b/sync.py": "def sync(client):\n    return client.charges.list()\n",
        "app/svc.py": "class Billing:\n    def __init__(self, api):\n        self.api = api\n\n"
                      "    def run(self):\n        return self.api.invoices.list()\n\n\n"
                      "class Plans:\n    def __init__(self, c):\n        self.c = c\n\n"
                      "    def run(self):\n        return self.c.prices.list()\n",
        "app/route.py": "import os\nfrom stripe import StripeClient\n"
                        "from app.a.sync import sync\nfrom .b.sync import sync as own\n"
                        "from .svc import Billing, Plans\n\n\n"
                        "def go(access_token):\n    app = StripeClient(access_token)\n"
                        "    mine = StripeClient(os.environ['STRIPE_SECRET_KEY'])\n"
                        "    sync(app)\n    own(mine)\n    Billing(app).run()\n"
                        "    Plans(mine).run()\n",
    },
}


@pytest.mark.parametrize("lang", sorted(FLOW_TREES))
def test_clients_followed_through_parameters_fields_and_imports_by_path(
    tmp_path: Path, lang: str
) -> None:
    v = scan(_write(tmp_path, FLOW_TREES[lang], None))
    got = {c.call.path: c.call.account for c in v.calls}
    assert got == {"/v1/customers": "installing", "/v1/charges": "own",
                   "/v1/invoices": "installing", "/v1/prices": "own"}, lang
    assert sorted(v.needed) == ["customer_read", "invoice_read"]
    reasons = {c.call.path: c.call.reason for c in v.calls}
    assert "argument 1" in reasons["/v1/invoices"] and "route." in reasons["/v1/invoices"]


FIXPOINT_TREES = {
    # the factory is read after its user ("z" sorts last): the client it returns reaches the
    # class only once the project knows the factory, so what the user passes is learnt late
    "js": {"src/a.ts": "import {getStripe} from './z';\n"
                       "export class Svc {\n  constructor(private readonly api: any) {}\n"
                       "  run() { return this.api.invoices.list(); }\n}\n"
                       "export function go(t: string) {\n  const s = getStripe(t);\n"
                       "  return new Svc(s).run();\n}\n",
           "src/z.ts": "import Stripe from 'stripe';\n"
                       "export function getStripe(accessToken: string) {\n"
                       "  return new Stripe(accessToken);\n}\n"},
    "python": {"app/a.py": "from app.z import get_stripe\n\n\nclass Svc:\n"
                           "    def __init__(self, api):\n        self.api = api\n\n"
                           "    def run(self):\n        return self.api.invoices.list()\n\n\n"
                           "def go(t):\n    return Svc(get_stripe(t)).run()\n",
               "app/z.py": "from stripe import StripeClient\n\n\n"
                           "def get_stripe(access_token):\n"
                           "    return StripeClient(access_token)\n"},
}


@pytest.mark.parametrize("lang", sorted(FIXPOINT_TREES))
def test_what_is_learnt_late_is_passed_on(tmp_path: Path, lang: str) -> None:
    v = scan(_write(tmp_path, FIXPOINT_TREES[lang], None))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/invoices", "installing")]
    assert v.needed == ["invoice_read"]


# --- own versus app traffic: which endpoint a handler serves ----------------------------

HOOKS = {
    "js": ("src/hooks.ts", "export function onEvent(event: {type: string}) {\n"
                           "  switch (event.type) {\n    case 'invoice.paid': return 1;\n"
                           "    case 'setup_intent.succeeded': return 2;\n  }\n}\n"),
    "python": ("app/hooks.py", "def on_event(event):\n    if event.type == 'invoice.paid':\n"
                               "        return 1\n    if event.type == 'setup_intent.succeeded':\n"
                               "        return 2\n"),
}


@pytest.mark.parametrize("lang", sorted(HOOKS))
def test_handlers_of_a_backend_that_is_not_an_app_are_its_own(tmp_path: Path, lang: str) -> None:
    name, code = HOOKS[lang]
    # no manifest, no UI extension: the developer's own webhook endpoint
    v = scan(_write(tmp_path / "backend", {name: code}, None))
    assert {e.use.account for e in v.events} == {"own"} and v.needed == []
    assert "not a Stripe App" in v.events[0].use.reason
    # the same handlers in a Stripe App's tree serve the installing accounts
    v = scan(_write(tmp_path / "app", {name: code}))
    assert {e.use.account for e in v.events} == {"installing"}
    assert {"event_read", "invoice_read", "setup_intent_read"} <= set(v.needed)


# --- wrong account: a parameter named like an API key that holds an OAuth token --------

KEY_PARAM = {
    "js": ("src/lib.ts", "import Stripe from 'stripe';\n"
                         "export async function syncCharges(apiKey: string) {\n"
                         "  const s = new Stripe(apiKey);\n  return s.charges.list();\n}\n",
           "src/route.ts", "import {syncCharges} from './lib';\n"
                           "export const go = (t: {access_token: string}) => "
                           "syncCharges(t.access_token);\n",
           "export const mine = () => syncCharges(process.env.STRIPE_SECRET_KEY!);\n"),
    "python": ("app/lib.py", "from stripe import StripeClient\n\n\ndef sync_charges(api_key):\n"
                             "    client = StripeClient(api_key)\n"
                             "    return client.charges.list()\n",
               "app/route.py", "import os\nfrom app.lib import sync_charges\n\n\n"
                               "def go(token):\n    sync_charges(token.access_token)\n",
               "\n\ndef mine():\n    sync_charges(os.environ['X_KEY'])\n"),
}


@pytest.mark.parametrize("lang", sorted(KEY_PARAM))
def test_a_key_parameter_takes_the_account_its_callers_pass(tmp_path: Path, lang: str) -> None:
    lib, lib_code, route, route_code, own_caller = KEY_PARAM[lang]
    # the caller never says "stripe"; it passes an OAuth access token to `apiKey`/`api_key`
    v = scan(_write(tmp_path / "a", {lib: lib_code, route: route_code}, None))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/charges", "installing")]
    assert "parameter" in v.calls[0].call.reason or "argument 1" in v.calls[0].call.reason
    # another caller passes the developer's own key: the scan cannot tell, so it says so
    v = scan(_write(tmp_path / "b", {lib: lib_code, route: route_code + own_caller}, None))
    assert [c.call.account for c in v.calls] == ["unknown"] and v.needed == []


def test_wrapper_methods_and_http_clients_for_the_api_host(tmp_path: Path) -> None:
    # a class whose methods call this.get('/charges') with the API host as its base; another
    # object's `get` is not that wrapper; an axios-style client created for the API host is
    _write(tmp_path, {"api.ts": (
        "import axios from 'axios';\nconst BASE = 'https://api.stripe.com/v1';\n"
        "export class StripeApi {\n  constructor(private accessToken: string) {}\n"
        "  private async get(path: string) {\n"
        "    const r = await fetch(`${BASE}${path}`, "
        "{headers: {Authorization: `Bearer ${this.accessToken}`}});\n    return r.json();\n  }\n"
        "  charges() { return this.get('/charges'); }\n}\n"
        "export const http = axios.create({baseURL: 'https://api.stripe.com/v1', "
        "headers: {Authorization: `Bearer ${process.env.STRIPE_SECRET_KEY}`}});\n"
        "export const listCustomers = () => http.get('/customers');\n"
        "export const cache = new Map();\nexport const hit = () => cache.get('/disputes');\n")},
        None)
    v = scan(tmp_path)
    got = {(c.call.line, c.call.path, c.call.account) for c in v.calls}
    assert got == {(9, "/v1/charges", "installing"), (12, "/v1/customers", "own")}
    assert v.needed == ["charge_read"]


def test_a_request_to_the_bare_version_path_is_unreadable_traffic(tmp_path: Path) -> None:
    # `f"https://api.stripe.com/v1{path}"`: the path is computed, so nothing is called unused
    _write(tmp_path, {"api.py": "import requests\n\n\ndef get(path, access_token):\n"
                                "    return requests.get(f'https://api.stripe.com/v1{path}', "
                                "auth=(access_token, ''))\n"})
    v = scan(tmp_path, ["charge_read"], "m")
    assert v.unused == [] and [w.permission for w in v.unverified] == ["charge_read"]
