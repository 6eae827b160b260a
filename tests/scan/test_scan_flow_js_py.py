"""Issue 25, JS/TS and Python: thin HTTP wrappers, request options passed as one value, the key
written into a URL, functions that request the URL they are given, project modules imported by
a bare path. Fixtures of our own, each rule in both languages, each with a control."""

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


# --- thin HTTP wrappers (error class 1: a client reached through a wrapper) ----------------

PY_WRAPPER = {
    "app/stripe_api.py": (
        "import httpx\nimport requests\n\nBASE = 'https://api.stripe.com/v1'\n\n\n"
        "class StripeAPI:\n"
        "    def __init__(self, api_key):\n"
        "        self.api_key = api_key\n"
        "        self.base_url = 'https://api.stripe.com/v1'\n\n"
        "    def _request(self, method, path, params=None):\n"
        "        return requests.request(method, f'{self.base_url}{path}', params=params,\n"
        "                                headers={'Authorization': f'Bearer {self.api_key}'})\n\n"
        "    def get(self, path, params=None):\n"
        "        return self._request('GET', path, params)\n\n"
        "    def post(self, path, data=None):\n"
        "        return self._request('POST', path, data)\n\n"
        "    def charges(self):\n"
        "        return self.get('/charges')\n\n\n"
        "def stripe_get(path, token):\n"
        "    return requests.get(BASE + path, auth=(token, ''))\n\n\n"
        "class Balance:\n"
        "    def __init__(self, oauth_token):\n"
        "        self.http = httpx.Client(base_url='https://api.stripe.com/v1',\n"
        "                                 headers={'Authorization': f'Bearer {oauth_token}'})\n\n"
        "    def read(self):\n"
        "        return self.http.get('/balance')\n"),
    "app/sync.py": (
        "from app.stripe_api import Balance, StripeAPI, stripe_get\n\n\n"
        "def run(user, cache):\n"
        "    api = StripeAPI(user.stripe_access_token)\n"
        "    api.post('/refunds', {'charge': 'ch_1'})\n"
        "    stripe_get('/customers', user.stripe_access_token)\n"
        "    stripe_get('/invoices', 'sk_test_' + 'x' * 24)\n"
        "    Balance(user.oauth_token).read()\n"
        "    cache.get('/disputes')\n"),
}

JS_WRAPPER = {
    "src/api.ts": (
        "import axios from 'axios';\n"
        "export class StripeRest {\n"
        "  private baseUrl = 'https://api.stripe.com/v1';\n"
        "  private http;\n"
        "  constructor(private accessToken: string) {\n"
        "    this.http = axios.create({baseURL: 'https://api.stripe.com/v1',\n"
        "      headers: {Authorization: `Bearer ${accessToken}`}});\n"
        "  }\n"
        "  async get(path: string) {\n"
        "    const r = await fetch(`${this.baseUrl}${path}`,\n"
        "      {headers: {Authorization: `Bearer ${this.accessToken}`}});\n"
        "    return r.json();\n"
        "  }\n"
        "  charges() { return this.get('/charges'); }\n"
        "  balance() { return this.http.get('/balance'); }\n"
        "  cached(m: Map<string, string>) { return m.get('/disputes'); }\n"
        "}\n"),
}


def test_python_wrappers_methods_functions_and_clients_for_the_api_host(tmp_path: Path) -> None:
    got = _calls(_write(tmp_path, PY_WRAPPER))
    assert got == {
        # a method wrapper reached through self, the key from the constructor's callers
        ("app/stripe_api.py", "GET", "/v1/charges", "installing"),
        # a wrapper method on an object of the class: the key given where it was built
        ("app/sync.py", "POST", "/v1/refunds", "installing"),
        # a wrapper function whose key is its argument: each call site's key
        ("app/sync.py", "GET", "/v1/customers", "installing"),
        ("app/sync.py", "GET", "/v1/invoices", "own"),
        # an httpx client made for the API host, on a field
        ("app/stripe_api.py", "GET", "/v1/balance", "installing"),
    }  # `cache.get('/disputes')` is another object's get: nothing


def test_js_wrapper_class_with_a_base_url_field_and_an_http_client_field(tmp_path: Path) -> None:
    got = _calls(_write(tmp_path, JS_WRAPPER))
    assert got == {("src/api.ts", "GET", "/v1/charges", "installing"),
                   ("src/api.ts", "GET", "/v1/balance", "installing")}


# A wrapper called with a path built at run time, or from callers the scan does not see: its
# traffic is unreadable, so nothing is called unused (the "a test per language").
@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_wrapper_with_unreadable_paths_leaves_grants_unverified(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "python": {"api.py": (
            "import requests\n\n\nclass Api:\n"
            "    def __init__(self, access_token):\n        self.t = access_token\n\n"
            "    def get(self, path):\n"
            "        return requests.get('https://api.stripe.com/v1' + path,\n"
            "                            auth=(self.t, ''))\n\n"
            "    def any(self, name):\n        return self.get('/' + name)\n")},
        "js": {"api.ts": (
            "export class Api {\n  constructor(private accessToken: string) {}\n"
            "  get(path: string) { return fetch(`https://api.stripe.com/v1${path}`,\n"
            "    {headers: {Authorization: `Bearer ${this.accessToken}`}}); }\n"
            "  any(name: string) { return this.get(name); }\n}\n")},
    }[lang]
    v = scan(_write(tmp_path, files), ["charge_read"], "m")
    assert v.unused == [] and [u.permission for u in v.unverified] == ["charge_read"]


def test_a_python_wrapper_called_only_from_elsewhere_leaves_grants_unverified(
    tmp_path: Path,
) -> None:
    # its callers live outside the scanned tree: the request stays unreadable traffic
    _write(tmp_path, {"lib.py": "import requests\n\n\ndef stripe_post(path, key):\n"
                                "    return requests.post('https://api.stripe.com/v1' + path,"
                                " auth=(key, ''))\n"})
    v = scan(tmp_path, ["charge_write"], "m")
    assert v.unused == [] and [u.permission for u in v.unverified] == ["charge_write"]
    # called in the tree with a literal path: read, and its grant is needed
    (tmp_path / "use.py").write_text("from lib import stripe_post\n\n\ndef go(u):\n"
                                     "    stripe_post('/refunds', u.stripe_access_token)\n")
    v = scan(tmp_path, ["charge_write"], "m")
    assert v.covered == ["charge_write"] and v.unverified == []


# --- request options passed as one value (error class 3: whose account) -------------------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_request_options_named_stripe_account_are_a_connected_account(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "js": {"src/c.ts": (
            "import Stripe from 'stripe';\nconst stripe = new Stripe(process.env.STRIPE_KEY!);\n"
            "export const a = ({ p, stripeAccount }: any) => stripe.customers.create(p, "
            "stripeAccount);\n"
            "export const b = (id: string, r: string, stripeAccount: any) =>\n"
            "  stripe.applicationFees.updateRefund(id, r, stripeAccount);\n"
            # controls: an account id in the id's place; a fixed account from the environment
            "export const c = (stripeAccount: string) => stripe.accounts.retrieve("
            "stripeAccount);\n"
            "const stripe_account = process.env.PLATFORM_ACCOUNT;\n"
            "export const d = (p: any) => stripe.products.create(p, stripe_account);\n")},
        "python": {"c.py": (
            "import os\nfrom stripe import StripeClient\n\n"
            "client = StripeClient(os.environ['STRIPE_KEY'])\n"
            "stripe_account_opts = {'stripe_account': os.environ['PLATFORM_ACCOUNT']}\n\n\n"
            "def a(p, stripe_account):\n"
            "    return client.customers.create(p, stripe_account)\n\n\n"
            "def b(fee, refund, stripe_account):\n"
            "    return client.application_fees.refunds.update(fee, refund, {},"
            " options=stripe_account)\n\n\n"
            "def c(stripe_account):\n"
            "    return client.accounts.retrieve(stripe_account)\n\n\n"
            "def d(p):\n"
            "    return client.products.create(p, stripe_account_opts)\n")},
    }[lang]
    v = scan(_write(tmp_path, files))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert ("/v1/customers", "connected") in got
    assert ("/v1/application_fees/{fee}/refunds/{id}", "connected") in got
    assert ("/v1/accounts/{account}", "own") in got
    assert ("/v1/products", "own") in got
    assert sorted(v.needed) == ["application_fee_write", "customer_write"]


# --- the key written into the URL (error class 3) and URL-taking helpers (class 1) --------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_the_key_in_the_url_and_a_helper_that_posts_its_url(tmp_path: Path, lang: str) -> None:
    files = {
        "js": {"cloud/main.js": (
            "var post = function(url, body) {\n"
            "  return Parse.Cloud.httpRequest({method: 'POST', url: url, body: body});\n};\n"
            "function charge(vendor, own) {\n"
            "  var accessToken = vendor.get('stripeAccessToken');\n"
            "  var tokenURL = 'https://' + accessToken + ':@api.stripe.com/v1/tokens';\n"
            "  post(tokenURL, {customer: 'cus_1'});\n"
            "  post(`https://${process.env.STRIPE_SECRET_KEY}:@api.stripe.com/v1/refunds`, {});\n"
            "}\n")},
        "python": {"main.py": (
            "import os\nimport requests\n\n\n"
            "def post(url, body):\n    return requests.request('POST', url, data=body)\n\n\n"
            "def charge(vendor):\n"
            "    token = vendor.stripe_access_token\n"
            "    post(f'https://{token}:@api.stripe.com/v1/tokens', {'customer': 'cus_1'})\n"
            "    post('https://' + os.environ['STRIPE_SECRET_KEY'] + ':@api.stripe.com/v1/refunds',"
            " {})\n")},
    }[lang]
    got = {(m, p, a) for _f, m, p, a in _calls(_write(tmp_path, files))}
    assert got == {("POST", "/v1/tokens", "installing"), ("POST", "/v1/refunds", "own")}


# --- the project's own modules are not packages (error class 4) ---------------------------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_token_handed_to_the_projects_own_module_keeps_nothing(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "python": {"app/__init__.py": "", "app/sync.py": "def run(t):\n    return t\n",
                   "app/route.py": "import stripe\nfrom app.sync import run\n"
                                   "from syncer import go\n\n\ndef h(u):\n"
                                   "    run(u.stripe_access_token)\n"
                                   "    go(u.stripe_access_token)\n"},
        "js": {"src/lib/sync.ts": "export const run = (t: string) => t;\n",
               "src/route.ts": "import Stripe from 'stripe';\nimport { run } from 'lib/sync';\n"
                               "import { go } from 'syncer';\n"
                               "export const h = (u: any) => { run(u.stripeAccessToken); "
                               "go(u.stripeAccessToken); };\n"},
    }[lang]
    v = scan(_write(tmp_path, files), ["charge_read"], "m")
    # only the package's function is code outside the project
    assert [e.call for e in v.findings.escapes] == ["go"]
    assert [k.permission for k in v.outside] == ["charge_read"]


# --- factories and module clients by module path (error class 1: matched by name) ----------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_two_modules_factories_and_clients_of_one_name_are_told_apart_by_path(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "js": {
            "src/install/stripe.ts": (
                "import Stripe from 'stripe';\n"
                "export function getStripe(t: {accessToken: string}) {\n"
                "  return new Stripe(t.accessToken);\n}\n"
                "export const client = new Stripe(install.accessToken);\n"),
            "src/own/stripe.ts": (
                "import Stripe from 'stripe';\n"
                "export function getStripe() { return new Stripe(process.env.STRIPE_KEY!); }\n"
                "export const client = new Stripe(process.env.STRIPE_KEY!);\n"),
            "src/a.ts": ("import { getStripe, client } from './install/stripe';\n"
                         "export const a = (t: any) => getStripe(t).customers.list();\n"
                         "export const b = () => client.invoices.list();\n"),
            "src/b.ts": ("import { getStripe, client } from './own/stripe';\n"
                         "export const a = () => getStripe().charges.list();\n"
                         "export const b = () => client.disputes.list();\n"),
        },
        "python": {
            "app/__init__.py": "",
            "app/install/__init__.py": "",
            "app/install/stripe_client.py": (
                "from stripe import StripeClient\n\n\ndef get_stripe(install):\n"
                "    return StripeClient(install.access_token)\n\n\n"
                "client = StripeClient(install.access_token)\n"),
            "app/own/__init__.py": "",
            "app/own/stripe_client.py": (
                "import os\nfrom stripe import StripeClient\n\n\ndef get_stripe():\n"
                "    return StripeClient(os.environ['STRIPE_KEY'])\n\n\n"
                "client = StripeClient(os.environ['STRIPE_KEY'])\n"),
            "app/a.py": ("from app.install.stripe_client import client, get_stripe\n\n\n"
                         "def a(i):\n    s = get_stripe(i)\n    s.customers.list()\n"
                         "    client.invoices.list()\n"),
            "app/b.py": ("from .own.stripe_client import client, get_stripe\n\n\n"
                         "def b():\n    s = get_stripe()\n    s.charges.list()\n"
                         "    client.disputes.list()\n"),
        },
    }[lang]
    got = {(p, a) for _f, _m, p, a in _calls(_write(tmp_path, files))}
    assert got == {("/v1/customers", "installing"), ("/v1/invoices", "installing"),
                   ("/v1/charges", "own"), ("/v1/disputes", "own")}


# --- request options built by assignment (error class 3: whose account) ------------------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_options_built_by_assignment_name_the_connected_account(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "js": {"src/o.ts": (
            "import Stripe from 'stripe';\nconst stripe = new Stripe(process.env.STRIPE_KEY!);\n"
            "export async function a(p: any, acct?: string) {\n"
            "  const opts: any = {};\n  if (acct) opts.stripeAccount = acct;\n"
            "  return stripe.customers.create(p, opts);\n}\n"
            "export async function b(p: any) {\n"
            "  const mine: any = {};\n  mine['stripeAccount'] = process.env.PLATFORM_ACCOUNT;\n"
            "  return stripe.products.create(p, mine);\n}\n"
            "export async function c(p: any) {\n  const plain: any = {};\n"
            "  return stripe.prices.create(p, plain);\n}\n")},
        "python": {"o.py": (
            "import stripe\nfrom django.conf import settings\n\n"
            "stripe.api_key = settings.STRIPE_SECRET_KEY\n\n\n"
            "def a(user, email):\n    kw = {}\n"
            "    kw['stripe_account'] = user.stripe_user_id\n"
            "    return stripe.Customer.create(email=email, **kw)\n\n\n"
            "def b(user):\n    extra = {}\n    extra.update(stripe_account=user.account_id)\n"
            "    return stripe.Payout.create(amount=1, currency='usd', **extra)\n\n\n"
            "def c(name):\n    mine = {}\n"
            "    mine['stripe_account'] = settings.PLATFORM_ACCOUNT\n"
            "    return stripe.Product.create(name=name, **mine)\n\n\n"
            "def d(p):\n    plain = {}\n    return stripe.Price.create(**plain)\n")},
    }[lang]
    v = scan(_write(tmp_path, files))
    got = {(c.call.path, c.call.account) for c in v.calls}
    assert ("/v1/customers", "connected") in got and ("/v1/products", "own") in got
    assert ("/v1/prices", "own") in got
    assert ("/v1/payouts", "connected") in got or lang == "js"


# --- a call on the client a call returns (error class 1: returned from a helper) -----------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_call_on_the_client_a_helper_returns(tmp_path: Path, lang: str) -> None:
    files = {
        "python": {
            "app/__init__.py": "",
            "app/clients.py": ("import stripe\n\n\ndef client_for(user):\n"
                               "    return stripe.StripeClient(user.stripe_access_token)\n"),
            "app/views.py": ("import os\nimport stripe\nfrom app.clients import client_for\n\n\n"
                             "def v(request):\n"
                             "    client_for(request.user).v1.disputes.list()\n"
                             "    stripe.StripeClient(os.environ['STRIPE_KEY']).customers.list()\n"
                             "    other(request).v1.invoices.list()\n")},
        "js": {
            "src/clients.ts": ("import Stripe from 'stripe';\n"
                               "export const clientFor = (u: any) => "
                               "new Stripe(u.stripeAccessToken);\n"),
            "src/views.ts": ("import Stripe from 'stripe';\n"
                             "import { clientFor } from './clients';\n"
                             "export const v = (req: any) => {\n"
                             "  clientFor(req.user).disputes.list();\n"
                             "  new Stripe(process.env.STRIPE_KEY!).customers.list();\n"
                             "  other(req).invoices.list();\n};\n")},
    }[lang]
    got = {(p, a) for _f, _m, p, a in _calls(_write(tmp_path, files))}
    # `other(...)` is no client the scan knows: not a Stripe call at all
    assert {(p, a) for p, a in got if p != "/v1/invoices"} == {
        ("/v1/disputes", "installing"), ("/v1/customers", "own")}
    assert ("/v1/invoices", "installing") not in got and ("/v1/invoices", "own") not in got


# --- an HTTP session or client that carries the key (error class 1: a thin HTTP client) ----

@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_session_or_client_with_headers_decides_its_calls_account(
    tmp_path: Path, lang: str
) -> None:
    files = {
        "python": {"s.py": (
            "import os\nimport requests\n\n\ndef a(user):\n    s = requests.Session()\n"
            "    s.headers.update({'Authorization': f'Bearer {user.stripe_access_token}'})\n"
            "    s.get('https://api.stripe.com/v1/charges')\n\n\n"
            "def b():\n    own = requests.Session()\n"
            "    own.auth = (os.environ['STRIPE_SECRET_KEY'], '')\n"
            "    own.get('https://api.stripe.com/v1/customers')\n\n\n"
            "def c(acct):\n    t = requests.Session()\n    t.headers['Stripe-Account'] = acct\n"
            "    t.post('https://api.stripe.com/v1/refunds')\n\n\n"
            "def d():\n    bare = requests.Session()\n"
            "    bare.get('https://api.stripe.com/v1/disputes')\n")},
        "js": {"a.js": (
            "const axios = require('axios');\n"
            "async function a(user) {\n  const http = axios.create({ headers: "
            "{ Authorization: `Bearer ${user.stripeAccessToken}` } });\n"
            "  return http.get('https://api.stripe.com/v1/charges');\n}\n"
            "axios.defaults.headers.common['Authorization'] = "
            "`Bearer ${process.env.STRIPE_SECRET_KEY}`;\n"
            "async function b() { return axios.get('https://api.stripe.com/v1/customers'); }\n"
            "async function c(acct) {\n  const t = axios.create({ headers: "
            "{ 'Stripe-Account': acct } });\n"
            "  return t.post('https://api.stripe.com/v1/refunds');\n}\n"
            "async function d() {\n  const bare = axios.create({ timeout: 5 });\n"
            "  return bare.get('https://api.stripe.com/v1/disputes');\n}\n")},
    }[lang]
    got = {(p, a) for _f, _m, p, a in _calls(_write(tmp_path, files))}
    assert got == {("/v1/charges", "installing"), ("/v1/customers", "own"),
                   ("/v1/refunds", "connected"), ("/v1/disputes", "unknown")}


# --- a client handed on through two functions (error class 1: passed as a parameter) -------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_client_handed_on_through_two_functions(tmp_path: Path, lang: str) -> None:
    files = {
        "js": {"a.ts": (
            "import Stripe from 'stripe';\n"
            "export async function inner(c: Stripe) { return c.invoices.list(); }\n"
            "export async function outer(client: Stripe) { return inner(client); }\n"
            "export async function route(user: any) {\n"
            "  const s = new Stripe(user.accessToken);\n  return outer(s);\n}\n")},
        "python": {"b.py": (
            "from stripe import StripeClient\n\n\ndef inner(c):\n    return c.invoices.list()\n"
            "\n\ndef outer(client):\n    return inner(client)\n\n\n"
            "def route(user):\n    s = StripeClient(user.access_token)\n    return outer(s)\n")},
    }[lang]
    assert {(p, a) for _f, _m, p, a in _calls(_write(tmp_path / "x", files))} == {
        ("/v1/invoices", "installing")}
    # control: a second route hands the developer's own client down the same path
    own = {"js": ("a.ts", "export const mine = () => outer(new Stripe(process.env.K!));\n"),
           "python": ("b.py", "\n\ndef mine():\n    import os\n"
                              "    return outer(StripeClient(os.environ['STRIPE_SECRET_KEY']))\n")}
    name, extra = own[lang]
    files = {name: files[name] + extra}
    assert {(p, a) for _f, _m, p, a in _calls(_write(tmp_path / "y", files))} == {
        ("/v1/invoices", "unknown")}


def test_python_clients_bound_by_with_carry_their_key(tmp_path: Path) -> None:
    _write(tmp_path, {"w.py": (
        "import httpx\n\n\nasync def a(user):\n"
        "    async with httpx.AsyncClient(headers={'Authorization': "
        "f'Bearer {user.stripe_access_token}'}) as client:\n"
        "        await client.get('https://api.stripe.com/v1/payouts')\n\n\n"
        "async def b(user):\n"
        "    async with httpx.AsyncClient(base_url='https://api.stripe.com/v1',\n"
        "                                 auth=(user.access_token, '')) as api:\n"
        "        await api.get('/balance')\n\n\n"
        "def c():\n    with httpx.Client() as plain:\n"
        "        plain.get('https://api.stripe.com/v1/disputes')\n")})
    assert {(p, a) for _f, _m, p, a in _calls(tmp_path)} == {
        ("/v1/payouts", "installing"), ("/v1/balance", "installing"),
        ("/v1/disputes", "unknown")}


# --- headers kept on the object (error class 1: a class field) -----------------------------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_headers_kept_on_the_object_decide_the_account(tmp_path: Path, lang: str) -> None:
    files = {
        "python": {"h.py": (
            "import os\nimport requests\n\n\nclass Sync:\n    def __init__(self, install):\n"
            "        self.headers = {'Authorization': f'Bearer {install.access_token}'}\n\n"
            "    def run(self):\n        return requests.get("
            "'https://api.stripe.com/v1/subscriptions', headers=self.headers)\n\n\n"
            "class Own:\n    def __init__(self):\n"
            "        self.hdrs = {'Authorization': f\"Bearer {os.environ['STRIPE_KEY']}\"}\n\n"
            "    def run(self):\n        return requests.get("
            "'https://api.stripe.com/v1/customers', headers=self.hdrs)\n")},
        "js": {"h.ts": (
            "export class Sync {\n  private headers: Record<string, string>;\n"
            "  constructor(install: { accessToken: string }) {\n"
            "    this.headers = { Authorization: `Bearer ${install.accessToken}` };\n  }\n"
            "  run() { return fetch('https://api.stripe.com/v1/subscriptions', "
            "{ headers: this.headers }); }\n}\n"
            "export class Own {\n"
            "  private hdrs = { Authorization: `Bearer ${process.env.STRIPE_KEY}` };\n"
            "  run() { return fetch('https://api.stripe.com/v1/customers', "
            "{ headers: this.hdrs }); }\n}\n")},
    }[lang]
    assert {(p, a) for _f, _m, p, a in _calls(_write(tmp_path, files))} == {
        ("/v1/subscriptions", "installing"), ("/v1/customers", "own")}


# --- review (scanjs2): facts kept by name must not leak between functions or classes -------

@pytest.mark.parametrize("lang", ["python", "js"])
def test_options_of_one_name_in_another_function_are_other_options(
    tmp_path: Path, lang: str
) -> None:
    # the same name `opts` in two functions: only the one that sets stripe_account is connected
    files = {
        "js": {"src/o.js": (
            "const Stripe = require('stripe');\n"
            "const stripe = new Stripe(process.env.STRIPE_SECRET_KEY);\n"
            "async function connect(acct) {\n  const opts = {};\n  opts.stripeAccount = acct;\n"
            "  return stripe.customers.list({}, opts);\n}\n"
            "async function own() {\n  const opts = { idempotencyKey: 'x' };\n"
            "  return stripe.charges.create({ amount: 1 }, opts);\n}\n"
            "module.exports = { connect, own };\n")},
        "python": {"o.py": (
            "import os\nimport stripe\n\nstripe.api_key = os.environ['STRIPE_SECRET_KEY']\n\n\n"
            "def connect(acct):\n    opts = {}\n    opts['stripe_account'] = acct\n"
            "    return stripe.Customer.list(**opts)\n\n\n"
            "def own():\n    opts = {'limit': 3}\n    return stripe.Charge.list(**opts)\n")},
    }[lang]
    got = {(p, a) for _f, _m, p, a in _calls(_write(tmp_path, files))}
    assert got == {("/v1/customers", "connected"), ("/v1/charges", "own")}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_field_set_two_ways_is_not_the_api_host(tmp_path: Path, lang: str) -> None:
    # `base` is the API host in one class and a parameter in another: the other class's
    # `get(path)` is not a Stripe wrapper; the control class keeps its host
    files = {
        "js": {"src/w.js": (
            "const axios = require('axios');\n"
            "class Pay {\n  constructor() { this.base = 'https://api.stripe.com/v1'; }\n}\n"
            "class Other {\n  constructor(base) { this.base = base; }\n"
            "  get(path) { return axios.get(`${this.base}${path}`); }\n"
            "  run() { return this.get('/customers'); }\n}\n"
            "class Api {\n  constructor(k) { this.url = 'https://api.stripe.com/v1'; "
            "this.k = k; }\n"
            "  get(path) { return axios.get(`${this.url}${path}`, "
            "{ headers: { Authorization: `Bearer ${process.env.STRIPE_SECRET_KEY}` } }); }\n"
            "  run() { return this.get('/invoices'); }\n}\n"
            "module.exports = { Pay, Other, Api };\n")},
        "python": {"w.py": (
            "import os\nimport requests\n\n\nclass Pay:\n    def __init__(self):\n"
            "        self.base = 'https://api.stripe.com/v1'\n\n\n"
            "class Other:\n    def __init__(self, base):\n        self.base = base\n\n"
            "    def get(self, path):\n        return requests.get(f'{self.base}{path}')\n\n"
            "    def run(self):\n        return self.get('/customers')\n\n\n"
            "class Api:\n    def __init__(self):\n"
            "        self.url = 'https://api.stripe.com/v1'\n\n"
            "    def get(self, path):\n"
            "        return requests.get(f'{self.url}{path}', headers={\n"
            "            'Authorization': f\"Bearer {os.environ['STRIPE_SECRET_KEY']}\"})\n\n"
            "    def run(self):\n        return self.get('/invoices')\n")},
    }[lang]
    got = {(m, p) for _f, m, p, _a in _calls(_write(tmp_path, files))}
    assert got == {("GET", "/v1/invoices")}


def test_python_an_object_of_one_name_in_another_function_is_another_object(
    tmp_path: Path,
) -> None:
    # `api` is the Stripe wrapper's object in one function and another API's in the next: each
    # call goes to its own object's class (JS reaches wrapper methods through `this` only)
    files = {"app/w.py": (
        "import os\nimport requests\n\n\nclass StripeAPI:\n    def __init__(self, key):\n"
        "        self.key = key\n\n"
        "    def get(self, path):\n"
        "        return requests.get('https://api.stripe.com/v1' + path,\n"
        "                            auth=(self.key, ''))\n\n\n"
        "class GitHubAPI:\n    def get(self, path):\n"
        "        return requests.get('https://api.github.com' + path)\n\n\n"
        "def pay():\n    api = StripeAPI(os.environ['STRIPE_SECRET_KEY'])\n"
        "    return api.get('/charges')\n\n\n"
        "def repos():\n    api = GitHubAPI()\n    return api.get('/customers')\n")}
    got = {(m, p, a) for _f, m, p, a in _calls(_write(tmp_path, files))}
    assert got == {("GET", "/v1/charges", "own")}
