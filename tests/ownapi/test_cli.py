"""`--api DIR` and PERMGATE_API on the commands that decide: the DIR's catalog, tables and
edge instead of Stripe's (the CLI's main, in this process; the API is reset after each)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ownapi.acme import write_dir
from tests.ownapi.test_gateway import manifest_text

import permgate
from permgate.cli import main


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERMGATE_API", raising=False)
    yield write_dir(tmp_path / "acme")
    permgate.use_api(None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    permgate.use_api(None)  # each command is its own process in real life
    return code, out, err


def test_check_and_explain(acme: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--api", str(acme), "GET",
                       "/v1/orders/ord_1?expand=customer", "--grant", "order_read")
    assert code == 3 and "denied (missing): GET /v1/orders/{order}" in out
    assert "Having the 'customer_read' permission would allow" in out
    code, out, _ = run(capsys, "check", "--api", str(acme), "POST", "/v1/orders/search",
                       "--grant", "order_write")
    assert code == 0 and "allowed: POST /v1/orders/search" in out
    code, out, err = run(capsys, "check", "--api", str(acme), "GET", "/v1/x", "--grant",
                         "customer_read_typo")
    assert code == 2 and "customer_read_typo" in err
    code, out, _ = run(capsys, "check", "--api", str(acme), "GET", "/orders/ord_1")
    assert code == 3 and "hint: Acme Orders API paths start with /v1" in out
    code, out, _ = run(capsys, "explain", "--api", str(acme), "GET",
                       "/v1/orders?expand=data.customer")
    assert code == 0 and "customer: expanded to customer (needs customer_read)" in out
    assert "[Acme / Customers]" in out
    # Stripe stays the default.
    code, out, _ = run(capsys, "check", "GET", "/v1/customers/cus_1", "--grant",
                       "customer_read")
    assert code == 0 and "allowed: GET /v1/customers/{customer}" in out


def test_the_environment_names_the_api(acme: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERMGATE_API", str(acme))
    code, out, _ = run(capsys, "permissions", "--format", "json")
    names = {p["name"] for p in json.loads(out)}
    assert code == 0 and names == {"event_read", "customer_read", "customer_write",
                                   "order_read", "order_write", "product_read",
                                   "product_write"}
    code, out, _ = run(capsys, "events", "check", "order.created", "--grant", "event_read",
                       "--grant", "customer_read")
    assert code == 3 and "Having the 'order_read' permission would allow it." in out
    code, out, _ = run(capsys, "events", "check", "order.created", "--grant", "event_read",
                       "--grant", "order_write")
    assert code == 0
    # The flag wins over the environment.
    monkeypatch.setenv("PERMGATE_API", str(acme / "missing"))
    code, _, err = run(capsys, "check", "GET", "/v1/customers")
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err
    code, _, _ = run(capsys, "check", "--api", str(acme), "GET", "/v1/customers",
                     "--grant", "customer_read")
    assert code == 0


def test_manifests_are_checked_against_the_apis_catalog(
        acme: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "stripe-app.json"
    m.write_text(manifest_text("com.example.orders", ["order_read", "event_read"]))
    code, out, _ = run(capsys, "validate", "--api", str(acme), str(m))
    assert code == 0, out
    m2 = tmp_path / "stripe-app2.json"
    m2.write_text(manifest_text("com.example.orders", ["charge_read"]))  # Stripe's name
    code, out, _ = run(capsys, "validate", "--api", str(acme), str(m2))
    assert code == 1 and "unknown permission 'charge_read'" in out
    assert run(capsys, "validate", str(m2))[0] == 0  # Stripe's catalog knows it
    m.write_text(manifest_text("com.example.orders", ["ordr_read"]))
    code, out, _ = run(capsys, "validate", "--api", str(acme), str(m))
    assert code == 1 and "did you mean 'order_read'" in out
    m.write_text(manifest_text("com.example.orders", ["order_read"]))
    code, out, _ = run(capsys, "grant", "permission", "customer_read", "Show the buyer",
                       "--manifest", str(m), "--api", str(acme))
    assert code == 0, out
    assert "customer_read" in m.read_text()


def test_apps_install_and_trigger(acme: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert run(capsys, "db", "upgrade", "--db", db)[0] == 0  # claimed for Stripe: no app yet
    for app, perms in (("com.example.orders", ["order_read", "event_read"]),
                       ("com.example.crm", ["customer_read", "event_read"])):
        m = tmp_path / f"{app}.json"
        m.write_text(manifest_text(app, perms))
        code, out, err = run(capsys, "apps", "upload", str(m), "--db", db, "--api", str(acme))
        assert code == 0, err
        code, out, err = run(capsys, "install", app, "--account", "acct_1", "--mode", "test",
                             "--by", "ann", "--role", "admin", "--db", db, "--api", str(acme))
        assert code == 0, err
    # A Stripe permission means nothing to this API: the upload is refused.
    m = tmp_path / "stripe.json"
    m.write_text(manifest_text("com.example.stripe", ["charge_read"]))
    code, _, err = run(capsys, "apps", "upload", str(m), "--db", db, "--api", str(acme))
    assert code != 0 and "charge_read" in err, err
    code, out, err = run(capsys, "trigger", "order.created", "--account", "acct_1",
                         "--db", db, "--api", str(acme), "--format", "json")
    assert code == 0, err
    verdicts = {a["app_id"]: a for a in json.loads(out)["apps"]}
    assert verdicts["com.example.orders"]["allowed"]
    assert not verdicts["com.example.crm"]["allowed"]
    assert "'order_read'" in verdicts["com.example.crm"]["message"]


def test_consent_pages_use_the_apis_names(acme: Path, tmp_path: Path) -> None:
    from permgate import manifest
    from permgate.store import Store
    from permgate.store.describe import describe_version

    permgate.use_api(acme)
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", upgrade=True) as store:
        store.upload_version(manifest.parse(manifest_text("com.example.orders",
                                                          ["order_write"])), actor="t")
        view = describe_version(store, "com.example.orders", "1.0.0")
    (perm,) = view.permissions
    assert (perm.name, perm.title, perm.description) == (
        "order_write", "Orders", "Create and change orders.")
    assert perm.implies == (("order_read", "Orders"),)


def test_scan_reads_raw_calls_to_the_apis_base_url(acme: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.js").write_text(
        'const h = {headers: {"Acme-Account": account, Authorization: "Bearer " + installKey}};\n'
        'export const order = (id) => fetch("http://127.0.0.1:8000/v1/orders/" + id, h);\n'
        'export const find = () => fetch("http://127.0.0.1:8000/v1/orders/search", '
        '{method: "POST", ...h});\n'
        'export const other = () => fetch("https://api.stripe.com/v1/charges", h);\n')
    (app / "stripe-app.json").write_text(manifest_text("com.example.scan", ["customer_read"]))
    _, out, _ = run(capsys, "scan", "--api", str(acme), str(app), "--format", "json")
    data = json.loads(out)
    ops = {c["operation"] for c in data["calls"]}
    assert ops == {"GET /v1/orders/{order}", "POST /v1/orders/search"}, out
    _, out, _ = run(capsys, "scan", str(app), "--format", "json")  # Stripe's: the charge
    assert {c["operation"] for c in json.loads(out)["calls"]} == {"GET /v1/charges"}


def test_authz_reads_the_api(
        acme: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # authz takes PERMGATE_API (and --api) as serve does: a DIR that cannot be used is
    # refused in one line (tests/ownapi/test_edge_review.py runs it on a good one).
    monkeypatch.setenv("PERMGATE_API", str(tmp_path / "missing"))
    code, _, err = run(capsys, "authz")
    assert code == 2 and "not a folder" in err and err.count("\n") == 1, err
