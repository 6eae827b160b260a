"""Issue 25, a key "own" only by its name: `api_key`, `secretKey` are the developer's own
secret only when the scan cannot follow their value. Where the function binds the name
(`x = v`, `a, b = v`, `const { k } = v`, a value a function of the file returns), the values
decide: the environment, configuration or a literal is own; a tenant's record is connected;
any other record or a call the scan cannot read is unknown, so the grants those calls use are
never called unused. Fixtures of our own, Python and JS, each with a control of the same
names whose values are the developer's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.scan.trees import write_tree

from permgate.scan import scan

PY_HEAD = "import os\n\nimport stripe\nfrom django.conf import settings\n\n\n"
JS_HEAD = "const Stripe = require('stripe');\n\n"

# (binding of the key, the account the call is read on): one per file
PY_CASES = {
    "record_tuple": (
        "def _resolve_key(conn):\n    return conn.saved_key, conn.mode\n\n\n"
        "def run(conn):\n    api_key, _ = _resolve_key(conn)\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "unknown"),
    "unread_call": (
        "def run(user):\n    api_key = load_api_key(user)\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "unknown"),
    "tenant": (
        "def run(user):\n    secret_key = user.stripe_secret_key\n"
        "    return stripe.Customer.list(api_key=secret_key)\n", "connected"),
    "env": (
        "def run():\n    api_key = os.environ['STRIPE_KEY']\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "own"),
    "settings": (
        "def run():\n    api_key = settings.STRIPE_KEY\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "own"),
    "env_tuple": (
        "def _own():\n    return os.getenv('STRIPE_SECRET_KEY'), 'live'\n\n\n"
        "def run():\n    api_key, _ = _own()\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "own"),
    "mixed": (
        "def run(user):\n    api_key = user.stripe_secret_key or os.environ['STRIPE_KEY']\n"
        "    return stripe.Customer.list(api_key=api_key)\n", "connected"),
}
JS_CASES = {
    "record_tuple": (
        "function resolveKey(conn) {\n  return { apiKey: conn.savedKey, mode: conn.mode };\n}\n\n"
        "async function run(conn) {\n  const { apiKey } = resolveKey(conn);\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "unknown"),
    "unread_call": (
        "async function run(user) {\n  const apiKey = await loadApiKey(user);\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "unknown"),
    "tenant": (
        "async function run(user) {\n  const secretKey = user.stripeSecretKey;\n"
        "  return new Stripe(secretKey).customers.list();\n}\n", "connected"),
    "env": (
        "async function run() {\n  const apiKey = process.env.STRIPE_KEY;\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "own"),
    "settings": (
        "async function run() {\n  const apiKey = config.stripe.secretKey;\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "own"),
    "env_tuple": (
        "function ownKey() {\n"
        "  return { apiKey: process.env.STRIPE_SECRET_KEY, mode: 'live' };\n}\n\n"
        "async function run() {\n  const { apiKey } = ownKey();\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "own"),
    "mixed": (
        "async function run(user) {\n  const apiKey = user.stripeSecretKey || process.env.K;\n"
        "  return new Stripe(apiKey).customers.list();\n}\n", "connected"),
}


def _tree(root: Path, lang: str, case: str) -> Path:
    if lang == "python":
        return write_tree(root, {"app.py": PY_HEAD + PY_CASES[case][0]})
    return write_tree(root, {"app.js": JS_HEAD + JS_CASES[case][0]})


@pytest.mark.parametrize("lang", ["python", "js"])
@pytest.mark.parametrize("case", sorted(PY_CASES))
def test_a_key_name_is_decided_by_the_values_it_is_bound_to(
        tmp_path: Path, lang: str, case: str) -> None:
    want = (PY_CASES if lang == "python" else JS_CASES)[case][1]
    v = scan(_tree(tmp_path, lang, case))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/customers", want)]


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_grant_used_with_a_key_read_from_a_record_is_not_unused(
        tmp_path: Path, lang: str) -> None:
    v = scan(_tree(tmp_path / "record", lang, "record_tuple"), ["customer_read"], "m")
    assert v.unused == [] and [w.permission for w in v.unverified] == ["customer_read"]
    # control: the same names bound to the environment are the developer's own traffic
    v = scan(_tree(tmp_path / "env", lang, "env"), ["customer_read"], "m")
    assert [u.permission for u in v.unused] == ["customer_read"]


PY_WRAPPED = (
    "import requests\n\nAPI = 'https://api.stripe.com/v1'\n\n\n"
    "def _resolve(ctx):\n    return ctx.connection.api_key, ctx.connection.mode\n\n\n"
    "def stripe_get(path, api_key):\n"
    "    return requests.get(API + path, headers={{'Authorization': f'Bearer {{api_key}}'}})\n\n\n"
    "def handler(ctx):\n    resolved = {value}\n    api_key, _ = resolved\n"
    "    return stripe_get('/customers', api_key)\n"
)
JS_WRAPPED = (
    "const API = 'https://api.stripe.com/v1';\n\n"
    "async function stripeGet(path, apiKey) {{\n"
    "  const headers = {{ Authorization: `Bearer ${{apiKey}}` }};\n"
    "  return fetch(API + path, {{ headers }});\n}}\n\n"
    "function resolve(ctx) {{\n  return {{ key: ctx.connection.apiKey }};\n}}\n\n"
    "async function handler(ctx) {{\n  const {{ key: apiKey }} = {value};\n"
    "  return stripeGet('/customers', apiKey);\n}}\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_wrapper_called_with_a_key_unpacked_from_a_record(tmp_path: Path, lang: str) -> None:
    """A wrapper's call site passing `api_key` unpacked from a connection's record (the case
    that made wrapped calls own traffic); control: the same names from the environment."""
    body, name, env = ((PY_WRAPPED, "app.py", "(os.environ['STRIPE_KEY'], 'live')")
                       if lang == "python" else
                       (JS_WRAPPED, "app.js", "{ key: process.env.STRIPE_KEY }"))
    record = "_resolve(ctx)" if lang == "python" else "resolve(ctx)"
    head = "import os\n" if lang == "python" else ""
    v = scan(write_tree(tmp_path / "r", {name: head + body.format(value=record)}))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/customers", "unknown")]
    v = scan(write_tree(tmp_path / "e", {name: head + body.format(value=env)}))
    assert [(c.call.path, c.call.account) for c in v.calls] == [("/v1/customers", "own")]


@pytest.mark.parametrize(("passed", "want"), [
    ("conn.saved_key", "unknown"), ("user.stripe_secret_key", "connected"),
    ("os.environ['STRIPE_KEY']", "own")])
def test_a_python_key_parameter_is_decided_by_what_callers_pass(
        tmp_path: Path, passed: str, want: str) -> None:
    """`def charge(api_key)`: a parameter named like the own key takes its callers' values
    (a connection's saved key is unknown); control: callers passing the environment's key."""
    write_tree(tmp_path, {"app.py": PY_HEAD + (
        "def charge(api_key):\n    return stripe.Customer.list(api_key=api_key)\n\n\n"
        f"def run(conn, user):\n    return charge({passed})\n")})
    assert [c.call.account for c in scan(tmp_path).calls] == [want]
