"""`permgate scan` on fixture apps of our own: calls, accounts, events and the verdict."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest

from permgate import manifest as mf
from permgate.cli import main
from permgate.scan import scan

FIXTURES = Path(__file__).parent / "fixtures"


def _verdict(name: str):  # type: ignore[no-untyped-def]
    root = FIXTURES / name
    m = mf.load(root / "stripe-app.json")
    return scan(root, m.permission_names, str(root / "stripe-app.json"))


# name -> (missing, unused, covered); issue 25: a grant nothing seen needs is unverified, not
# unused, where the tree has requests known only at run time (node and python backends)
UNVERIFIED = {"node_backend": {"product_write"}, "python_backend": {"tax_rate_read"}}
EXPECTED = {
    "ui_ts": ({"subscription_read"}, {"charge_write"},
              {"customer_read", "invoice_read", "secret_write"}),
    "node_backend": ({"charge_write", "customer_read"}, set(),
                     {"event_read", "invoice_read", "payment_intent_read"}),
    "python_backend": ({"balance_read"}, set(),
                       {"checkout_session_read", "customer_write", "event_read",
                        "subscription_read"}),
    # default_source: a card is read through the customer; a Source or an Account it may
    # hold needs its own permission (reference: one for each API object you expand)
    "ruby_backend": ({"checkout_session_read", "connected_account_read", "source_read"},
                     {"payout_read"}, {"customer_read"}),
    "go_backend": ({"charge_write"}, set(), {"charge_read", "customer_read", "event_read"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_per_fixture(name: str) -> None:
    v = _verdict(name)
    missing, unused, covered = EXPECTED[name]
    assert {m.permission for m in v.missing} == missing
    assert {u.permission for u in v.unused} == unused
    assert set(v.covered) == covered
    assert {w.permission for w in v.unverified} == UNVERIFIED.get(name, set())


def test_ui_extension_calls_act_for_the_installing_account() -> None:
    v = _verdict("ui_ts")
    calls = {c.call.call: c for c in v.calls}
    assert set(calls) == {"stripe.customers.retrieve", "stripe.invoices.list",
                          "stripe.apps.secrets.find"}  # not the one in a comment
    assert all(c.call.account == "installing" for c in v.calls)
    inv = calls["stripe.invoices.list"]
    assert inv.call.expand == ("data.subscription",)  # through a same-file constant
    assert inv.operation == "GET /v1/invoices"
    assert calls["stripe.apps.secrets.find"].operation == "GET /v1/apps/secrets/find"


def test_backend_accounts_own_connected_and_unresolved() -> None:
    v = _verdict("node_backend")
    by_line = {c.call.line: c.call for c in v.calls}
    assert by_line[9].account == "connected" and by_line[9].expand == ("data.customer",)
    assert by_line[10].call == "stripe.rawRequest" and by_line[10].account == "connected"
    assert by_line[12].account == "own"  # the developer's own billing: not needed
    assert (by_line[20].method, by_line[20].path) == ("POST", "/v1/refunds")
    assert [u.call for u in v.findings.unresolved] == ["stripe[resource].list"]
    assert [e.use.event for e in v.events] == ["invoice.paid"]
    assert "subscription_write" not in v.needed


def test_python_styles() -> None:
    v = _verdict("python_backend")
    calls = {c.call.call: c.call for c in v.calls}
    assert calls["client.v1.customers.update"].account == "connected"  # install's key
    assert calls["client.v1.subscriptions.list"].expand == ("data.customer",)
    assert calls["own.v1.invoices.create"].account == "own"
    legacy = calls["stripe.checkout.Session.retrieve"]
    assert (legacy.path, legacy.account) == ("/v1/checkout/sessions/{session}", "connected")
    assert calls["requests.get"].path == "/v1/balance"
    assert [u.call for u in v.findings.unresolved] == ["getattr(stripe, name).list"]


def test_unknown_account_is_reported_but_shields_nothing(tmp_path: Path) -> None:
    (tmp_path / "lib.ts").write_text(
        "export async function f(stripe: Stripe) { return stripe.customers.list(); }\n"
    )
    v = scan(tmp_path, ["customer_read"], "m")
    assert [c.call.account for c in v.calls] == ["unknown"]
    assert "parameter" in v.calls[0].call.reason
    # Issue 25: a call on an unknown account is not counted (nothing missing), but the grant
    # it would use is not called unused either: unverified, with the call as the reason.
    assert v.missing == [] and v.unused == []
    assert [w.permission for w in v.unverified] == ["customer_read"]
    assert [s.line for s in v.unverified[0].sites] == [1]
    assert scan(tmp_path, [], "m").missing == []


def test_without_manifest_lists_what_is_needed() -> None:
    v = scan(FIXTURES / "ui_ts")
    assert set(v.needed) == {"customer_read", "invoice_read", "subscription_read", "secret_read"}
    assert v.missing == [] and v.unused == []


def test_cli_exit_codes_and_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["scan", str(FIXTURES / "ui_ts")]) == 1
    out = capsys.readouterr().out
    assert "missing  subscription_read" in out and "unused   charge_write" in out
    assert main(["scan", str(tmp_path / "nope")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["scan", str(FIXTURES / "ui_ts"), "--manifest", str(bad)]) == 2
    capsys.readouterr()
    assert main(["scan", str(FIXTURES / "ui_ts"), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [m["permission"] for m in doc["verdict"]["missing"]] == ["subscription_read"]
    assert doc["sdk_table"]["node_sdk"].startswith("stripe ")


def test_clean_app_exits_zero(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(FIXTURES / "ui_ts", app)
    m = mf.load(app / "stripe-app.json")
    mf.revoke(m, "charge_write")
    mf.grant(m, "subscription_read", "Show the subscription of each invoice")
    mf.save(m)
    assert main(["scan", str(app)]) == 0


def test_fix_grants_missing_never_revokes(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(FIXTURES / "ui_ts", app)
    assert main(["scan", str(app), "--fix"]) == 1  # charge_write is still unused
    m = mf.load(app / "stripe-app.json")
    assert "subscription_read" in m.permission_names and "charge_write" in m.permission_names
    doc = json.loads((app / "stripe-app.json").read_text())
    purposes = {p["permission"]: p["purpose"] for p in doc["permissions"]}
    assert purposes["subscription_read"] == mf.PLACEHOLDER_PURPOSE


# The parts of the SARIF 2.1.0 schema (OASIS) that code scanning relies on.
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"enum": ["2.1.0"]},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {
                    "driver": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id"]}},
                    }}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "anyOf": [
                            {"required": ["text"]}, {"required": ["id"]}]},
                        "locations": {"type": "array", "items": {
                            "type": "object", "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation"],
                                "properties": {
                                    "artifactLocation": {"type": "object",
                                                         "required": ["uri"]},
                                    "region": {"type": "object", "properties": {
                                        "startLine": {"type": "integer", "minimum": 1},
                                        "startColumn": {"type": "integer", "minimum": 1},
                                    }},
                                }}}}},
                    },
                }},
            },
        }},
    },
}


def test_sarif_structure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(FIXTURES / "node_backend"), "--format", "sarif"]) == 1
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SARIF_SUBSET)
    results = doc["runs"][0]["results"]
    rules = {r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rules
    missing = [r for r in results if r["ruleId"] == "missing-permission"]
    locs = {(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
             r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in missing}
    assert ("src/server.js", 9) in locs
    unused = [r for r in results if r["ruleId"] == "unverified-permission"]
    assert unused[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "stripe-app.json"
    assert any(r["ruleId"] == "unresolved-call" for r in results)


def test_hostile_trees_are_skipped_not_crashed(tmp_path: Path) -> None:
    (tmp_path / "node_modules" / "stripe").mkdir(parents=True)
    (tmp_path / "node_modules" / "stripe" / "x.js").write_text("stripe.charges.create({})")
    (tmp_path / "bin.js").write_bytes(b"stripe\x00\x01\x02")
    (tmp_path / "huge.ts").write_bytes(b"// stripe\n" + b" " * 2_100_000)
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path, tmp_path / "loop" / "back")
    os.symlink(tmp_path / "gone.ts", tmp_path / "dangling.ts")
    (tmp_path / "broken.py").write_text("import stripe\ndef f(:\n")
    (tmp_path / "latin.ts").write_bytes(b"const s = '\xe9'; stripe.customers.list();\n")
    (tmp_path / "ok.ts").write_text("const stripe = new Stripe(k);\nstripe.customers.list();\n")
    v = scan(tmp_path)
    reasons = {s.file: s.reason for s in v.findings.skipped}
    assert reasons["bin.js"] == "binary"
    assert "larger" in reasons["huge.ts"]
    # read in part: what parses (the import) is kept, the broken block is reported
    assert next(p.reason for p in v.findings.partial if p.file == "broken.py").startswith(
        "syntax error")
    assert "unreadable" in reasons["dangling.ts"] or "regular" in reasons["dangling.ts"]
    assert sorted(c.call.file for c in v.calls) == ["latin.ts", "ok.ts"]
