"""`permgate serve --api DIR` in front of the example API (examples/own-api/acme.py), real
processes both: the edge is the DIR's api.toml (Acme-Account, Bearer only, JSON bodies,
`expand=a,b`, RFC 9457 errors), the decisions its tables'."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.gateway.procs import UPSTREAM_KEY, Gateway, run_gateway
from tests.ownapi.acme import EXAMPLE, SPEC, write_dir

import permgate
from permgate import manifest as manifest_mod
from permgate.gateway.demo import free_port
from permgate.store import Store

# Starts the example API and `permgate serve`: real processes.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACCOUNT = "acct_acme1"


def manifest_text(app_id: str, permissions: list[str]) -> str:
    return json.dumps({
        "id": app_id, "version": "1.0.0", "name": app_id, "icon": "",
        "permissions": [{"permission": p, "purpose": f"The tests need {p}."}
                        for p in permissions],
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": None, "image-src": None, "purpose": ""}},
    })


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ownapi")


@pytest.fixture(scope="module")
def acme_url(work: Path) -> Iterator[str]:
    port = free_port()
    key_file = work / "acme-key"
    key_file.write_text(UPSTREAM_KEY + "\n")
    with open(work / "acme.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(EXAMPLE / "acme.py"), "--port",
                                 str(port), "--key-file", str(key_file)], stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/products", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "acme.log").read_text()) from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def acme_dir(work: Path, acme_url: str) -> Path:
    return write_dir(work / "acme-dir", upstream=acme_url)


@pytest.fixture(scope="module")
def keys(work: Path, acme_dir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The database, with two apps installed on ACCOUNT: one that may read and write orders
    (and read customers), one that may read customers only."""
    url = f"sqlite:///{work / 'permgate.db'}"
    permgate.use_api(acme_dir)  # uploads are validated against the API's catalog
    try:
        out = {}
        with Store.open(url, upgrade=True) as store:
            for app, perms in (("com.example.orders", ["order_write", "customer_read",
                                                       "event_read"]),
                               ("com.example.crm", ["customer_read", "event_read"])):
                result = store.upload_version(manifest_mod.parse(manifest_text(app, perms)),
                                              actor="tests")
                store.install(app, ACCOUNT, "test", by="ann", role="admin")
                out[app] = next(k.secret for k in result.keys if k.mode == "test")
        yield url, out
    finally:
        permgate.use_api(None)


@pytest.fixture(scope="module")
def gateway(work: Path, acme_dir: Path, acme_url: str,
            keys: tuple[str, dict[str, str]]) -> Iterator[Gateway]:
    # No --upstream: api.toml's [upstream] url is the default.
    with run_gateway(keys[0], acme_url, work, extra=["--api", str(acme_dir)]) as gw:
        yield gw


def call(gw: Gateway, key: str, method: str, path: str, *, account: str | None = ACCOUNT,
         header: str = "Acme-Account", **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if account is not None:
        headers[header] = account
    return httpx.request(method, gw.url + path, headers=headers, timeout=10,
                         **kw)  # type: ignore[arg-type]


def test_allowed_calls_reach_the_api_with_its_own_headers(
        gateway: Gateway, keys: tuple[str, dict[str, str]]) -> None:
    orders = keys[1]["com.example.orders"]
    r = call(gateway, orders, "POST", "/v1/orders",
             json={"customer": "cus_1", "product": "prod_1", "quantity": 2})
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["object"] == "order" and order["customer"] == "cus_1"
    # The upstream saw the account (its Acme-Account header) and the gateway's key: it
    # answers per account and refuses any other credential.
    r = call(gateway, orders, "GET", f"/v1/orders/{order['id']}?expand=customer")
    assert r.status_code == 200 and r.json()["customer"]["name"] == "Wile E. Coyote"
    r = call(gateway, orders, "POST", "/v1/orders/search", json={"customer": "cus_1"})
    assert r.status_code == 200 and [o["id"] for o in r.json()["data"]] == [order["id"]]
    r = call(gateway, orders, "GET", "/v1/orders?expand=data.customer")
    assert r.status_code == 200 and r.json()["data"][0]["customer"]["id"] == "cus_1"


def _problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc: dict[str, object] = r.json()
    assert doc["status"] == status and isinstance(doc["detail"], str)
    assert str(doc["type"]).startswith("urn:permgate:error:")
    return doc


def test_denied_calls_name_the_permission_as_problem_json(
        gateway: Gateway, keys: tuple[str, dict[str, str]]) -> None:
    crm, orders = keys[1]["com.example.crm"], keys[1]["com.example.orders"]
    doc = _problem(call(gateway, crm, "GET", "/v1/orders/ord_1"), 403)
    assert "'order_read'" in str(doc["detail"])
    assert doc["code"] == "more_permissions_required_for_application"
    assert doc["title"] == "Forbidden"
    doc = _problem(call(gateway, crm, "POST", "/v1/orders/search", json={}), 403)
    assert "'order_read'" in str(doc["detail"])
    doc = _problem(call(gateway, orders, "GET", "/v1/products"), 403)
    assert "'product_read'" in str(doc["detail"])
    # crm may read customers, not orders. (An expansion refused end to end, never
    # forwarded: tests/ownapi/test_edge_review.py, against a recording upstream.)
    assert call(gateway, crm, "GET", "/v1/customers/cus_1").status_code == 200


def test_the_edge_is_the_profiles(gateway: Gateway, keys: tuple[str, dict[str, str]]) -> None:
    orders = keys[1]["com.example.orders"]
    # Stripe's spelling of an expansion is not this API's: refused, never forwarded.
    doc = _problem(call(gateway, orders, "GET", "/v1/orders/ord_1?expand[]=customer"), 400)
    assert doc["param"] == "expand" and "expand=a,b" in str(doc["detail"])
    # Bearer only: HTTP basic with a good key is not a key here.
    basic = base64.b64encode(f"{orders}:".encode()).decode()
    r = httpx.get(gateway.url + "/v1/customers", timeout=10,
                  headers={"Authorization": f"Basic {basic}", "Acme-Account": ACCOUNT})
    _problem(r, 401)
    # JSON bodies only; no expansion inside one.
    doc = _problem(call(gateway, orders, "POST", "/v1/orders", data={"customer": "cus_1"}), 400)
    assert "application/json" in str(doc["detail"])
    doc = _problem(call(gateway, orders, "POST", "/v1/orders",
                        json={"customer": "cus_1", "expand": ["customer"]}), 400)
    assert "query string only" in str(doc["detail"])
    # The account header is Acme-Account: Stripe-Account names nothing here.
    doc = _problem(call(gateway, orders, "GET", "/v1/customers", header="Stripe-Account"), 400)
    assert "Acme-Account header" in str(doc["detail"])
    doc = _problem(call(gateway, orders, "GET", "/v1/customers", account="nope"), 400)
    assert "Acme-Account header must be an account id" in str(doc["detail"])
    # Unknown paths are refused (Stripe's routes mean nothing here).
    _problem(call(gateway, orders, "GET", "/v1/charges"), 404)


def test_serve_refuses_a_dir_whose_spec_changed(work: Path, keys: tuple[str, dict[str, str]]
                                                ) -> None:
    spec = work / "changed.yaml"
    spec.write_bytes(SPEC.read_bytes())
    d = write_dir(work / "changed-dir", spec=spec)
    spec.write_bytes(SPEC.read_bytes() + b"\n# edited\n")
    bin_dir = Path(sys.executable).parent
    r = subprocess.run([str(bin_dir / "permgate"), "serve", "--api", str(d), "--db", keys[0],
                        "--port", str(free_port())], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PERMGATE_UPSTREAM_KEY": UPSTREAM_KEY})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "changed since its tables were made" in lines[0]
    assert f"permgate init --from-openapi {spec} --out {d}" in lines[0]


def test_another_edge_basic_in_and_out_forms_include_stripe_errors(
        work: Path, keys: tuple[str, dict[str, str]]) -> None:
    """The same tables behind another edge: HTTP basic from apps and to the upstream, form
    bodies, JSON:API `include=`, Stripe-shaped errors, and an account header of its own."""
    from tests.gateway.recorder import recording_upstream

    orders = keys[1]["com.example.orders"]
    with recording_upstream() as rec:
        d = write_dir(work / "basic-dir", upstream=rec.url, auth_schemes='["basic"]',
                      body_encodings='["form"]', expand_style='"include"',
                      expand_param='"include"', error_style='"stripe"',
                      account_header='"X-Tenant"')
        d.joinpath("api.toml").write_text(d.joinpath("api.toml").read_text().replace(
            'auth_scheme = "bearer"', 'auth_scheme = "basic"'))
        with run_gateway(keys[0], rec.url, work, extra=["--api", str(d)]) as gw:
            basic = {"Authorization": "Basic " + base64.b64encode(f"{orders}:".encode()
                                                                   ).decode(),
                     "X-Tenant": ACCOUNT}
            r = httpx.post(gw.url + "/v1/orders?include=customer", headers=basic,
                           data={"customer": "cus_1"}, timeout=10)
            assert r.status_code == 201, r.text  # the recorder's answer to a POST
            seen = rec.requests[-1]
            assert seen["target"] == "/v1/orders?include=customer"
            assert seen["body"] == "customer=cus_1"
            assert seen["headers"]["x-tenant"] == ACCOUNT
            assert seen["headers"]["authorization"] == "Basic " + base64.b64encode(
                f"{UPSTREAM_KEY}:".encode()).decode()
            assert "acme-account" not in seen["headers"]
            n = len(rec.requests)
            r = httpx.get(gw.url + "/v1/orders/ord_1?expand=customer", headers=basic,
                          timeout=10)
            assert r.status_code == 400 and r.headers["content-type"] == "application/json"
            err = r.json()["error"]
            assert err["param"] == "include" and "include=a,b" in err["message"]
            r = httpx.get(gw.url + "/v1/orders", timeout=10, headers={
                "Authorization": f"Bearer {orders}", "X-Tenant": ACCOUNT})
            assert r.status_code == 401
            assert "does not hold a key" in r.json()["error"]["message"]
            r = httpx.post(gw.url + "/v1/orders", headers=basic, json={"customer": "c"},
                           timeout=10)
            assert r.status_code == 400 and "x-www-form-urlencoded" in r.text
            assert len(rec.requests) == n  # none of the refused reached the upstream


def test_an_api_without_an_account_header(work: Path, keys: tuple[str, dict[str, str]]
                                          ) -> None:
    from tests.gateway.recorder import recording_upstream

    orders = keys[1]["com.example.orders"]
    bin_dir = Path(sys.executable).parent
    with recording_upstream() as rec:
        # No account header: every install would reach the same upstream data. serve
        # refuses it unless api.toml says single_tenant = true.
        d = write_dir(work / "noaccount-refused", upstream=rec.url, account_header='""')
        r = subprocess.run([str(bin_dir / "permgate"), "serve", "--api", str(d), "--db",
                            keys[0], "--port", str(free_port())], capture_output=True,
                           text=True, timeout=60,
                           env={**os.environ, "PERMGATE_UPSTREAM_KEY": UPSTREAM_KEY})
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "single_tenant = true" in lines[0], lines
        d = write_dir(work / "noaccount-dir", upstream=rec.url, account_header='""',
                      single_tenant="true")
        # single_tenant on a store whose installs span two accounts is refused (a copy of
        # the database, with the orders app also on another account).
        two = work / "two-accounts.db"
        shutil.copyfile(keys[0].removeprefix("sqlite:///"), two)
        permgate.use_api(d)
        try:
            with Store.open(f"sqlite:///{two}") as store:
                store.install("com.example.orders", "acct_other", "test", by="ann",
                              role="admin")
        finally:
            permgate.use_api(None)
        r = subprocess.run([str(bin_dir / "permgate"), "serve", "--api", str(d), "--db",
                            f"sqlite:///{two}", "--port", str(free_port())],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PERMGATE_UPSTREAM_KEY": UPSTREAM_KEY})
        assert r.returncode == 2, r.stderr
        assert "installs on 2 accounts" in r.stderr.strip().splitlines()[-1], r.stderr
        with run_gateway(keys[0], rec.url, work, extra=["--api", str(d)]) as gw:
            for header in ("Acme-Account", "Stripe-Account"):
                r = call(gw, orders, "GET", "/v1/customers", header=header)
                doc = _problem(r, 400)
                assert "names no account in a header" in str(doc["detail"])
            assert rec.requests == []
