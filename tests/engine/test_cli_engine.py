"""`permgate check|explain|permissions|events` exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from permgate.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_allowed_denied_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check", "GET", "/v1/customers/cus_1", "--grant", "customer_read")[0] == 0
    code, out, _ = run(capsys, "check", "GET", "/v1/customers/cus_1", "--grant", "charge_read")
    assert code == 3 and "customer_read" in out
    code, _, err = run(capsys, "check", "GET", "/v1/customers/cus_1",
                       "--grant", "apply_pay_domain_read")
    assert code == 2 and "did you mean 'apple_pay_domain_read'" in err
    assert run(capsys, "check", "GET", "customers")[0] == 2
    assert run(capsys, "check", "G3T", "/v1/customers")[0] == 2
    assert run(capsys, "check", "GET")[0] == 2


def test_check_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "GET", "/v1/charges?expand[]=data.customer",
                       "--grant", "charge_read", "--json")
    assert code == 3
    doc = json.loads(out)
    assert set(doc) >= {"allowed", "operation", "required", "missing", "message"}
    assert doc["operation"] == {"method": "GET", "path": "/v1/charges"}
    assert doc["missing"][0][0] == "customer_read"
    code, out, _ = run(capsys, "check", "GET", "/v1/../x", "--json")
    assert code == 3 and json.loads(out)["operation"] is None
    code, out, _ = run(capsys, "check", "GET", "/v1/charges/ch_1", "--expand", "customer",
                       "--grant", "charge_read", "--grant", "customer_read", "--json")
    assert code == 0 and json.loads(out)["allowed"] is True


def test_batch_keeps_order_and_survives_bad_lines(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        {"method": "GET", "path": "/v1/customers/cus_1", "grants": ["customer_read"]},
        "not json",
        {"method": "GET", "path": "/v1/charges/ch_1", "expand": ["customer"],
         "grants": ["charge_read"]},
        {"method": "GET", "path": "/v1/customers", "grants": ["nope_read"]},
        [1, 2],
    ]
    f = tmp_path / "batch.jsonl"
    f.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    code, out, _ = run(capsys, "check", "--batch", str(f))
    assert code == 2  # some line is invalid (that wins over a denied line)
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 5
    assert rows[0]["allowed"] is True
    assert "line 2" in rows[1]["error"]
    assert rows[2]["allowed"] is False and rows[2]["missing"][0][0] == "customer_read"
    assert "unknown permission 'nope_read'" in rows[3]["error"]
    assert "line 5" in rows[4]["error"]
    assert run(capsys, "check", "--batch", str(tmp_path / "missing.jsonl"))[0] == 2


@pytest.mark.slow
def test_batch_from_stdin_subprocess() -> None:
    req = json.dumps({"method": "GET", "path": "/v1/customers/cus_1", "grants": []})
    p = subprocess.run([sys.executable, "-m", "permgate", "check", "--batch", "-"], input=req,
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert p.returncode == 3, p.stderr  # the line is denied
    assert json.loads(p.stdout)["allowed"] is False


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "GET",
                       "/v1/charges/ch_1?expand[]=payment_intent.customer")
    assert code == 0
    assert "GET /v1/charges/{charge}" in out and "payment_intent" in out
    assert "customer_read" in out
    code, out, _ = run(capsys, "explain", "POST", "/v1/treasury/outbound_payments")
    assert code == 3 and "not available" in out


def test_permissions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "permissions", "--product", "billing", "--json")
    rows = json.loads(out)
    assert code == 0 and {"invoice_read", "plan_write"} <= {r["name"] for r in rows}
    assert run(capsys, "permissions", "--product", "nothing")[0] == 2
    code, out, _ = run(capsys, "permissions")
    assert "customer_read" in out and "financing_transaction_read" in out


def test_events_check_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "events", "check", "invoice.paid", "--grant", "event_read",
               "--grant", "invoice_read")[0] == 0
    code, out, _ = run(capsys, "events", "check", "invoice.paid", "--grant", "invoice_read",
                       "--json")
    assert code == 3 and json.loads(out)["missing"][0][0] == "event_read"
    assert run(capsys, "events", "check", "x.y", "--grant", "bogus_read")[0] == 2
    code, out, _ = run(capsys, "events", "list", "--grant", "event_read", "--grant",
                       "customer_read", "--json")
    types = {r["type"] for r in json.loads(out)}
    assert "customer.created" in types and "invoice.paid" not in types
    assert "account.application.authorized" in types
