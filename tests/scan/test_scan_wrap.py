"""Issue 25, wrappers whose URL is a local variable and whose method is dispatched: the URL
built in the wrapper's own locals (f-strings, `+`, `format`, `urljoin`, template literals), the
request sent on any object's `.get`/`.post` or by `getattr(session, method.lower())` /
`client.request(method, url)` / `axios({method, url})` / `fetch(url, {method})`, the method a
parameter the wrapper branches on; and a bare API base followed by a run-time part, which is a
path unknown at scan time (unresolved), never a query. Fixtures of our own, Python and JS/TS,
each with a control using the same names."""

from __future__ import annotations

from pathlib import Path

import pytest

from permgate.scan import scan


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


def _calls(root: Path) -> set[tuple[str, str, str]]:
    v = scan(root)
    return {(c.call.method, c.call.path, c.call.account) for c in v.calls}


# --- the URL through the wrapper's locals, the method from a parameter ---------------------

PY_DISPATCH = (
    "from urllib.parse import urljoin\n\nimport requests\n\n"
    "API_BASE = '{host}/v1'\n\n\n"
    "async def stripe_request(ctx, method, path, params=None):\n"
    "    url = f'{{API_BASE}}{{path}}'\n"
    "    headers = {{'Authorization': f'Bearer {{ctx.access_token}}'}}\n"
    "    if method == 'GET':\n"
    "        return await ctx.http.get(url, params=params, headers=headers)\n"
    "    return await ctx.http.post(url, data=params, headers=headers)\n\n\n"
    "def send(session, method, path, token):\n"
    "    url = urljoin(API_BASE + '/', path.lstrip('/'))\n"
    "    return getattr(session, method.lower())(\n"
    "        url, headers={{'Authorization': f'Bearer {{token}}'}})\n\n\n"
    "def call(client, verb, path, key):\n"
    "    target = '{{}}{{}}'.format(API_BASE, path)\n"
    "    return client.request(verb.upper(), target, auth=(key, ''))\n\n\n"
    "def other(path):\n"
    "    url = 'https://example.com' + path\n"
    "    return requests.get(url)\n\n\n"
    "async def work(ctx, session, user):\n"
    "    await stripe_request(ctx, 'GET', f'/customers/{{user.cid}}')\n"
    "    await stripe_request(ctx, 'POST', '/refunds', {{'charge': 'ch_1'}})\n"
    "    send(session, 'GET', '/balance', user.stripe_access_token)\n"
    "    call(session, 'post', '/payouts', user.stripe_access_token)\n"
    "    other('/disputes')\n"
)

JS_DISPATCH = (
    "import axios from 'axios';\n"
    "const API_BASE = '{host}/v1';\n"
    "export async function stripeRequest(ctx, method, path, params) {{\n"
    "  const url = `${{API_BASE}}${{path}}`;\n"
    "  const headers = {{Authorization: `Bearer ${{ctx.accessToken}}`}};\n"
    "  if (method === 'GET') {{\n"
    "    return ctx.http.get(url, {{params, headers}});\n"
    "  }}\n"
    "  return ctx.http.post(url, params, {{headers}});\n"
    "}}\n"
    "function send(method, path, accessToken) {{\n"
    "  const url = API_BASE + path;\n"
    "  return axios({{method, url, headers: {{Authorization: `Bearer ${{accessToken}}`}}}});\n"
    "}}\n"
    "function call(path, verb, accessToken) {{\n"
    "  const url = new URL(path, API_BASE + '/').toString();\n"
    "  return fetch(`${{API_BASE}}${{path}}`, {{method: verb,\n"
    "    headers: {{Authorization: `Bearer ${{accessToken}}`}}}});\n"
    "}}\n"
    "function other(path) {{\n"
    "  const url = 'https://example.com' + path;\n"
    "  return fetch(url);\n"
    "}}\n"
    "export async function work(ctx, user) {{\n"
    "  await stripeRequest(ctx, 'GET', `/customers/${{user.cid}}`);\n"
    "  await stripeRequest(ctx, 'POST', '/refunds', {{charge: 'ch_1'}});\n"
    "  await send('GET', '/balance', user.stripeAccessToken);\n"
    "  await call('/payouts', 'POST', user.stripeAccessToken);\n"
    "  await other('/disputes');\n"
    "}}\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_wrapper_with_a_local_url_and_a_dispatched_method(tmp_path: Path, lang: str) -> None:
    name, text = ("app.py", PY_DISPATCH) if lang == "python" else ("app.js", JS_DISPATCH)
    _write(tmp_path, {name: text.format(host="https://api.stripe.com")})
    assert _calls(tmp_path) == {
        ("GET", "/v1/customers/{param}", "installing"),
        ("POST", "/v1/refunds", "installing"),
        ("GET", "/v1/balance", "installing"),
        ("POST", "/v1/payouts", "installing"),
    }  # `other` requests another host: not a wrapper


@pytest.mark.parametrize("lang", ["python", "js"])
def test_the_same_wrappers_on_another_host_are_not_the_api(tmp_path: Path, lang: str) -> None:
    # control: the same names and shapes, the base on another host
    name, text = ("app.py", PY_DISPATCH) if lang == "python" else ("app.js", JS_DISPATCH)
    _write(tmp_path, {name: text.format(host="https://api.example.com")})
    v = scan(tmp_path)
    assert v.calls == [] and v.findings.unresolved == []


PY_FIXED = (
    "API_BASE = 'https://api.stripe.com/v1'\n\n\n"
    "async def stripe_request(ctx, method, path):\n"
    "    url = f'{API_BASE}{path}'\n"
    "    return await ctx.http.post(url, headers={'Authorization': f'Bearer {ctx.access_token}'})"
    "\n\n\nasync def work(ctx):\n"
    "    await stripe_request(ctx, 'GET', '/refunds')\n"
)
JS_FIXED = (
    "const API_BASE = 'https://api.stripe.com/v1';\n"
    "async function stripeRequest(ctx, method, path) {\n"
    "  const url = `${API_BASE}${path}`;\n"
    "  return ctx.http.post(url, {}, {headers: {Authorization: `Bearer ${ctx.accessToken}`}});\n"
    "}\n"
    "async function work(ctx) { await stripeRequest(ctx, 'GET', '/refunds'); }\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_method_parameter_the_wrapper_never_uses_does_not_choose_the_method(
    tmp_path: Path, lang: str
) -> None:
    # control: `method` is a parameter, but the wrapper always posts
    name, text = ("app.py", PY_FIXED) if lang == "python" else ("app.js", JS_FIXED)
    _write(tmp_path, {name: text})
    assert _calls(tmp_path) == {("POST", "/v1/refunds", "installing")}


# --- a bare API base followed by a run-time part: a path unknown at scan time --------------

PY_BARE = (
    "import requests\n\nAPI = 'https://api.stripe.com/v1'\n"
    "ENDPOINTS = ['/customers', '/charges']\n\n\n"
    "def dump(access_token, qs):\n"
    "    headers = {'Authorization': f'Bearer {access_token}'}\n"
    "    for endpoint in ENDPOINTS:\n"
    "        requests.get(API + endpoint, headers=headers)\n"
    "    requests.get(API + '/invoices' + qs, headers=headers)\n"
)
JS_BARE = (
    "const API = 'https://api.stripe.com/v1';\n"
    "const ENDPOINTS = ['/customers', '/charges'];\n"
    "export async function dump(accessToken, qs) {\n"
    "  const headers = {Authorization: `Bearer ${accessToken}`};\n"
    "  for (const endpoint of ENDPOINTS) {\n"
    "    await fetch(API + endpoint, {headers});\n"
    "  }\n"
    "  await fetch(API + '/invoices' + qs, {headers});\n"
    "}\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_bare_base_and_a_run_time_part_is_unresolved_not_a_query(
    tmp_path: Path, lang: str
) -> None:
    name, text = ("app.py", PY_BARE) if lang == "python" else ("app.js", JS_BARE)
    _write(tmp_path, {name: text})
    v = scan(tmp_path, ["customer_read", "invoice_read"], "m")
    # the base and a run-time part: some path (never `GET /v1` with a query string); the
    # literal resource path glued to `qs` is a query on it (the control)
    got = {(c.call.method, c.call.path, c.call.notes) for c in v.calls}
    assert got == {("GET", "/v1/{param}", ()),
                   ("GET", "/v1/invoices", ("query string built at run time",))}
    # that path could be any: the grant nothing seen needs is unverified, not unused
    assert v.covered == ["invoice_read"] and v.unused == []
    assert [u.permission for u in v.unverified] == ["customer_read"]


# --- paths in several parameters, wrappers of wrappers, a module imported whole -----------

PY_CRUD = {
    "lib/stripe_http.py": (
        "import uuid\n\nBASE = '{host}/v1'\n\n\n"
        "def _auth(token, idem=None):\n"
        "    h = {{'Authorization': f'Bearer {{token}}'}}\n"
        "    if idem:\n        h['Idempotency-Key'] = idem\n"
        "    return h\n\n\n"
        "async def _call(ctx, verb, token, path, body=None):\n"
        "    url = BASE + path\n"
        "    match verb:\n"
        "        case 'GET':\n"
        "            return await ctx.client.get(url, params=body, headers=_auth(token))\n"
        "        case 'DELETE':\n"
        "            return await ctx.client.delete(url, headers=_auth(token))\n"
        "    return await ctx.client.post(url, data=body, headers=_auth(token, str(uuid.uuid4())))"
        "\n\n\nasync def fetch_one(ctx, token, kind, ident):\n"
        "    return await _call(ctx, 'GET', token, f'/{{kind}}/{{ident}}')\n\n\n"
        "async def remove(ctx, token, kind, ident):\n"
        "    return await _call(ctx, 'DELETE', token, f'/{{kind}}/{{ident}}')\n\n\n"
        "async def customer(ctx, token, cid):\n"
        "    return await _call(ctx, 'GET', token, f'/customers/{{cid}}')\n"),
    "app/jobs.py": (
        "import lib.stripe_http as api\nimport stripe_http_pkg as other\n\n\n"
        "async def run(ctx, user, cid):\n"
        "    kind = 'coupons'\n"
        "    await api.fetch_one(ctx, user.stripe_access_token, 'products', cid)\n"
        "    await api.remove(ctx, user.stripe_access_token, kind, cid)\n"
        "    await api.customer(ctx, user.stripe_access_token, cid)\n"
        "    await other.fetch_one(ctx, user.stripe_access_token, 'disputes', cid)\n"),
}
JS_CRUD = {
    "src/http.js": (
        "const BASE = '{host}/v1';\n"
        "export function fetchOne(kind, ident, accessToken) {{\n"
        "  return fetch(`${{BASE}}/${{kind}}/${{ident}}`,\n"
        "    {{headers: {{Authorization: `Bearer ${{accessToken}}`}}}});\n"
        "}}\n"
        "export function customer(cid, accessToken) {{\n"
        "  return fetch(`${{BASE}}/customers/${{cid}}`,\n"
        "    {{headers: {{Authorization: `Bearer ${{accessToken}}`}}}});\n"
        "}}\n"
        "export async function run(user, cid) {{\n"
        "  const kind = 'coupons';\n"
        "  await fetchOne('products', cid, user.stripeAccessToken);\n"
        "  await fetchOne(kind, cid, user.stripeAccessToken);\n"
        "  await customer(cid, user.stripeAccessToken);\n"
        "}}\n"),
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_paths_in_several_parameters_and_a_resource_path_first(
    tmp_path: Path, lang: str
) -> None:
    files = PY_CRUD if lang == "python" else JS_CRUD
    _write(tmp_path, {k: v.format(host="https://api.stripe.com") for k, v in files.items()})
    v = scan(tmp_path)
    got = {(c.call.method, c.call.path, c.call.account) for c in v.calls}
    # each call site fills each parameter of the path; `customer(cid)` sends its own request
    # (a literal resource path comes first), never a run-time path; a package's function of
    # the same name (`other.fetch_one`) is not the tree's wrapper
    want = {("GET", "/v1/products/{param}", "installing"),
            ("GET", "/v1/customers/{param}", "installing"),
            ("DELETE" if lang == "python" else "GET", "/v1/coupons/{param}", "installing")}
    assert got == want
    # (a Python wrapper called only from other files also keeps its request as unreadable
    # traffic: callers outside the tree may pass any path)
    assert not [u for u in v.findings.unresolved if "run time" in u.reason]


@pytest.mark.parametrize("lang", ["python", "js"])
def test_the_same_helpers_on_another_host_send_nothing(tmp_path: Path, lang: str) -> None:
    files = PY_CRUD if lang == "python" else JS_CRUD
    _write(tmp_path, {k: v.format(host="https://api.example.com") for k, v in files.items()})
    v = scan(tmp_path)
    assert v.calls == [] and v.findings.unresolved == []


# --- the key a call site gives a wrapper that takes it as an argument ----------------------

PY_KEY_ARG = (
    "import os\n\nAPI = 'https://api.stripe.com/v1'\n\n\n"
    "def call(session, verb, path, token):\n"
    "    url = API + path\n"
    "    headers = {'Authorization': f'Bearer {token}'}\n"
    "    return session.request(verb, url, headers=headers)\n\n\n"
    "def run(session, user):\n"
    "    token = user.stripe_access_token\n"
    "    call(session, 'GET', '/balance', token)\n\n\n"
    "def mine(session):\n"
    "    token = os.environ['STRIPE_SECRET_KEY']\n"
    "    call(session, 'POST', '/refunds', token)\n"
)
JS_KEY_ARG = (
    "const API = 'https://api.stripe.com/v1';\n"
    "function call(verb, path, token) {\n"
    "  const url = API + path;\n"
    "  return fetch(url, {method: verb, headers: {Authorization: `Bearer ${token}`}});\n"
    "}\n"
    "export function run(user) { return call('GET', '/balance', user.stripeAccessToken); }\n"
    "export function mine() { return call('POST', '/refunds', process.env.STRIPE_SECRET_KEY); }\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_the_key_a_call_site_gives_a_wrapper_decides_its_account(
    tmp_path: Path, lang: str
) -> None:
    name, text = ("app.py", PY_KEY_ARG) if lang == "python" else ("app.js", JS_KEY_ARG)
    _write(tmp_path, {name: text})
    # the install's token at one call site; the developer's own key at the other (control)
    assert _calls(tmp_path) == {("GET", "/v1/balance", "installing"),
                                ("POST", "/v1/refunds", "own")}


# --- wrappers of wrappers (JS/TS as Python) -------------------------------------------------

JS_LAYERS = (
    "const BASE = '{host}/v1';\n"
    "async function request(method, path, accessToken, body) {{\n"
    "  const url = `${{BASE}}${{path}}`;\n"
    "  const res = await fetch(url, {{method, body,\n"
    "    headers: {{Authorization: `Bearer ${{accessToken}}`}}}});\n"
    "  return res.json();\n"
    "}}\n"
    "const get = (path, token) => request('GET', path, token);\n"
    "const post = (path, token, body) => request('POST', path, token, body);\n"
    "function send(verb, path, token) {{\n"
    "  if (verb === 'GET') return get(path, token);\n"
    "  return post(path, token, {{}});\n"
    "}}\n"
    "export async function run(user, id) {{\n"
    "  await get(`/customers/${{id}}`, user.stripeAccessToken);\n"
    "  await post('/refunds', user.stripeAccessToken, {{charge: id}});\n"
    "  await send('POST', '/payouts', process.env.STRIPE_SECRET_KEY);\n"
    "  await send('GET', '/balance', user.stripeAccessToken);\n"
    "}}\n"
)
PY_LAYERS = (
    "import requests\n\nBASE = '{host}/v1'\n\n\n"
    "def request(method, path, access_token, body=None):\n"
    "    url = f'{{BASE}}{{path}}'\n"
    "    return requests.request(method, url, data=body,\n"
    "                            headers={{'Authorization': f'Bearer {{access_token}}'}})\n\n\n"
    "def get(path, token):\n    return request('GET', path, token)\n\n\n"
    "def post(path, token, body):\n    return request('POST', path, token, body)\n\n\n"
    "def send(verb, path, token):\n"
    "    if verb == 'GET':\n        return get(path, token)\n"
    "    return post(path, token, {{}})\n\n\n"
    "def run(user, id):\n"
    "    get(f'/customers/{{id}}', user.stripe_access_token)\n"
    "    post('/refunds', user.stripe_access_token, {{'charge': id}})\n"
    "    send('POST', '/payouts', os.environ['STRIPE_SECRET_KEY'])\n"
    "    send('GET', '/balance', user.stripe_access_token)\n"
)


@pytest.mark.parametrize("lang", ["python", "js"])
def test_wrappers_of_wrappers_take_path_method_and_key_from_their_call_sites(
    tmp_path: Path, lang: str
) -> None:
    name, text = ("app.py", PY_LAYERS) if lang == "python" else ("app.js", JS_LAYERS)
    _write(tmp_path, {name: text.format(host="https://api.stripe.com")})
    v = scan(tmp_path)
    assert {(c.call.method, c.call.path, c.call.account) for c in v.calls} == {
        ("GET", "/v1/customers/{param}", "installing"),
        ("POST", "/v1/refunds", "installing"),
        ("POST", "/v1/payouts", "own"),
        ("GET", "/v1/balance", "installing"),
    }
    assert not [u for u in v.findings.unresolved if "run time" in u.reason]
    # control: the same layers on another host send nothing
    _write(tmp_path, {name: text.format(host="https://api.example.com")})
    v = scan(tmp_path)
    assert v.calls == [] and v.findings.unresolved == []


# --- a module of the tree imported whole reaches its wrappers -------------------------------

WHOLE = {
    "python": {
        "app/stripe_api.py": (
            "import requests\n\nBASE = 'https://api.stripe.com/v1'\n\n\n"
            "def request(method, path, access_token):\n"
            "    return requests.request(method, BASE + path,\n"
            "                            headers={'Authorization': f'Bearer {access_token}'})\n"),
        "app/jobs.py": (
            "import app.stripe_api as api\nimport stripe_tools as tools\n\n\n"
            "def run(user):\n"
            "    api.request('GET', '/customers', user.stripe_access_token)\n"
            "    tools.request('POST', '/refunds', user.stripe_access_token)\n"),
    },
    "js": {
        "src/stripeApi.js": (
            "const BASE = 'https://api.stripe.com/v1';\n"
            "export function request(method, path, accessToken) {\n"
            "  return fetch(BASE + path, {method,\n"
            "    headers: {Authorization: `Bearer ${accessToken}`}});\n"
            "}\n"),
        "src/jobs.js": (
            "import * as api from './stripeApi';\nimport * as tools from 'stripe-tools';\n"
            "export async function run(user) {\n"
            "  await api.request('GET', '/customers', user.stripeAccessToken);\n"
            "  await tools.request('POST', '/refunds', user.stripeAccessToken);\n"
            "}\n"),
    },
}


@pytest.mark.parametrize("lang", ["python", "js"])
def test_a_module_imported_whole_reaches_its_wrappers(tmp_path: Path, lang: str) -> None:
    _write(tmp_path, WHOLE[lang])
    # a package's function of the same name (`tools.request`) is not the tree's wrapper
    assert _calls(tmp_path) == {("GET", "/v1/customers", "installing")}


# --- bounds -------------------------------------------------------------------------------

def test_a_url_through_locals_that_each_use_the_next_many_times_is_inlined_within_a_budget(
) -> None:
    """`v0 = v1 + v1 + ...`, `v1 = v2 + v2 + ...`: written in whole, the URL grows as a power
    of the depth (12 uses, 4 deep: ~20,000 names); the copy stops at a node budget."""
    import ast

    from permgate.scan.python import _INLINE_NODES, _fn_locals, _Inline

    body = "\n".join(f"    v{i} = " + " + ".join([f"v{i + 1}"] * 12) for i in range(5))
    fn = ast.parse(f"def f(v5):\n{body}\n    url = API + v0\n").body[0]
    assert isinstance(fn, ast.FunctionDef)
    out = _Inline(_fn_locals(fn)).visit(ast.parse("url", mode="eval").body)
    assert sum(1 for _ in ast.walk(out)) <= 2 * _INLINE_NODES
    # control: a URL of a few locals is still written in whole
    fn = ast.parse("def f(p):\n    base = API + '/v1'\n    url = base + p\n").body[0]
    assert isinstance(fn, ast.FunctionDef)
    out = _Inline(_fn_locals(fn)).visit(ast.parse("url", mode="eval").body)
    assert ast.unparse(out) == "API + '/v1' + p"
