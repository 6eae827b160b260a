from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.realworld import DATA, REAL_WORLD, SKIP_IF_ABSENT

from permgate.cli import main

EXAMPLES = DATA / "example-manifests"
PERMGATE = Path(sys.executable).parent / "permgate"


@pytest.fixture
def app(workdir: Path) -> Path:
    shutil.copy(EXAMPLES / "messaging.json", workdir / "stripe-app.json")
    return workdir / "stripe-app.json"


def test_grant_and_revoke(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grant", "permission", "invoice_read", "Shows invoices of a customer"]) == 0
    assert "granted invoice_read" in capsys.readouterr().out
    assert main(["grant", "permission", "invoice_read", "Shows all invoices of a customer"]) == 0
    assert "purpose was updated" in capsys.readouterr().out
    data = json.loads(app.read_text())
    assert data["permissions"][-1] == {
        "permission": "invoice_read", "purpose": "Shows all invoices of a customer"}
    assert main(["revoke", "permission", "invoice_read"]) == 0
    assert app.read_bytes() == (EXAMPLES / "messaging.json").read_bytes()


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["grant", "permission", "customer_raed", "Reads customers"], 2,
     "did you mean 'customer_read'"),
    (["grant", "permission", "invoice_read", "   "], 2, "explanation is empty"),
    (["grant", "permission", "webhook_write", "Registers webhooks"], 2, "webhook_write"),
    (["grant", "permission", "financing_transaction_read", "Reads it"], 2, "implied"),
    (["revoke", "permission", "invoice_read"], 1, "not granted"),
])
def test_refusals_write_nothing(
    app: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    before = app.read_bytes()
    assert main(argv) == code
    assert says in capsys.readouterr().err
    assert app.read_bytes() == before


def test_missing_and_malformed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grant", "permission", "invoice_read", "Shows invoices"]) == 2
    assert str(workdir / "stripe-app.json") in capsys.readouterr().err
    (workdir / "bad.json").write_text('{\n  "id": "x",\n  "name" "y"\n}\n')
    assert main(["validate", "bad.json"]) == 2
    assert "bad.json:3:10" in capsys.readouterr().err
    assert main(["revoke", "permission", "x", "--manifest", "bad.json"]) == 2
    assert main(["validate", "bad.json", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is False and out["error"]["line"] == 3


def test_validate(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(EXAMPLES / "full-page.json", workdir / "stripe-app.json")
    assert main(["validate"]) == 1
    out = capsys.readouterr().out
    assert "/permissions: 'permissions' is required" in out and "[pattern]" in out
    assert main(["validate", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["problems"]) == 3 and report["valid"] is False
    assert main(["validate", str(EXAMPLES / "messaging.json")]) == 0
    assert main(["validate", str(workdir)]) == 1  # a folder: its stripe-app.json


def test_lint_formats(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint"]) == 0
    main(["grant", "permission", "customer_write", "Updates customer notes from the app"])
    capsys.readouterr()
    assert main(["lint"]) == 0  # a note (customer_read could go): listed, not a failure
    assert "note: " in capsys.readouterr().out
    main(["grant", "permission", "invoice_read", "TODO"])  # a placeholder: a warning
    capsys.readouterr()
    assert main(["lint"]) == 1
    assert "redundant-permission" in capsys.readouterr().out
    assert main(["lint", "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["advice"][0]["code"] == "redundant-permission"
    assert main(["lint", "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    assert log["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
        "artifactLocation"]["uri"] == "stripe-app.json"


def test_lint_ignore_and_exit_codes(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Warnings exit 1; notes (advice that depends on intent) are listed and exit 0;
    --ignore RULE (repeatable) leaves a rule out; an unknown rule is bad input."""
    main(["grant", "permission", "invoice_read", "TODO"])  # placeholder-purpose (warning)
    main(["grant", "permission", "customer_write", "Updates customer notes from the app"])
    capsys.readouterr()
    assert main(["lint"]) == 1
    out = capsys.readouterr().out
    for code in ("placeholder-purpose", "redundant-permission", "also-request"):
        assert f"[{code}]" in out, code
    assert main(["lint", "--ignore", "placeholder-purpose"]) == 0  # notes only left
    out = capsys.readouterr().out
    assert "placeholder-purpose" not in out and "[also-request]" in out
    assert main(["lint", "--ignore", "placeholder-purpose", "--ignore", "also-request",
                 "--ignore", "redundant-permission", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["advice"] == []
    assert main(["lint", "--ignore", "placeholder-purpos"]) == 2
    err = capsys.readouterr().err
    assert "did you mean placeholder-purpose?" in err and err.count("\n") == 1


def test_validate_several_manifests(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = EXAMPLES / "messaging.json", EXAMPLES / "full-page.json"
    assert main(["validate", str(good), str(good)]) == 0
    assert capsys.readouterr().out.count(": valid") == 2
    assert main(["validate", str(good), str(bad)]) == 1  # the worst of the two
    out = capsys.readouterr().out
    assert "messaging.json: valid" in out and "[pattern]" in out
    assert main(["validate", str(good), str(bad), "--json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [r["valid"] for r in reports] == [True, False]
    (workdir / "bad.json").write_text("{")
    assert main(["validate", str(good), "bad.json", str(bad)]) == 2  # checked all three
    captured = capsys.readouterr()
    assert "bad.json:1" in captured.err and "[pattern]" in captured.out
    assert main(["validate", "bad.json", str(bad), "--format", "sarif"]) == 2
    rules = [r["ruleId"] for r in json.loads(capsys.readouterr().out)["runs"][0]["results"]]
    assert "unreadable" in rules and "pattern" in rules


def test_diff(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = EXAMPLES / "send-mail.json", EXAMPLES / "messaging.json"
    assert main(["diff", str(old), str(new)]) == 1
    assert "+ customer_read" in capsys.readouterr().out
    assert main(["diff", str(new), str(old), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == ["customer_read"] and out["needs_approval"] is False


@SKIP_IF_ABSENT
@pytest.mark.parametrize("path", REAL_WORLD, ids=lambda p: p.name)
def test_every_command_on_real_manifests(
    path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = workdir / "stripe-app.json"
    shutil.copy(path, target)
    assert main(["validate", str(target)]) in (0, 1)
    capsys.readouterr()
    code = main(["validate", str(target), "--json"])
    assert code in (0, 1) and json.loads(capsys.readouterr().out)["valid"] is (code == 0)
    for fmt in ("text", "json", "sarif"):
        assert main(["lint", str(target), "--format", fmt]) in (0, 1)
    assert main(["diff", str(path), str(target)]) == 0
    code = main(["grant", "permission", "customer_read", "Shows the customer in the drawer"])
    assert code in (0, 2)
    if code == 0:
        assert json.loads(target.read_text())["permissions"]
        assert main(["revoke", "permission", "customer_read"]) == 0


@pytest.mark.slow
def test_real_executable(app: Path) -> None:
    run = subprocess.run(
        [str(PERMGATE), "grant", "permission", "invoice_raed", "Shows invoices"],
        capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "invoice_read" in run.stderr
    run = subprocess.run([str(PERMGATE), "validate", str(app)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0 and "valid" in run.stdout
    run = subprocess.run([str(PERMGATE), "revoke", "permission", "customer_read"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0
    assert "customer_read" not in app.read_text()
