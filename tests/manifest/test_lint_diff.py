from __future__ import annotations

import json
from typing import Any

import pytest

from permgate import manifest
from permgate.manifest.lint import sarif

GOOD = "Shows the customer's details in the drawer"


def _m(*entries: tuple[str, str]) -> manifest.Manifest:
    perms = [{"permission": n, "purpose": p} for n, p in entries]
    return manifest.parse(json.dumps({"permissions": perms}, indent=2), "stripe-app.json")


def _codes(m: manifest.Manifest) -> list[tuple[str, str]]:
    return [(a.pointer, a.code) for a in manifest.lint(m)]


def test_clean_manifest_has_no_advice() -> None:
    assert _codes(_m(("customer_read", GOOD), ("secret_write", GOOD))) == []


def test_redundant_and_mutual() -> None:
    assert _codes(_m(("customer_read", GOOD), ("customer_write", GOOD))) == [
        ("/permissions/0/permission", "redundant-permission")]
    [a] = manifest.lint(_m(("credit_note_read", GOOD), ("invoice_read", GOOD),
                           ("elements_write", GOOD)))
    assert a.code == "redundant-permission" and "each other" in a.message


def test_must_also_request() -> None:
    [a] = manifest.lint(_m(("invoice_read", GOOD)))
    assert a.code == "also-request" and "elements_write" in a.message
    assert manifest.lint(_m(("invoice_read", GOOD), ("elements_write", GOOD))) == []


def test_duplicates() -> None:
    assert _codes(_m(("customer_read", GOOD), ("secret_write", GOOD),
                     ("customer_read", GOOD))) == [("/permissions/2", "duplicate-permission")]


@pytest.mark.parametrize(("purpose", "code"), [
    (manifest.PLACEHOLDER_PURPOSE, "placeholder-purpose"),
    ("TODO", "placeholder-purpose"),
    ("  ", "placeholder-purpose"),
    ("lorem ipsum dolor sit amet", "placeholder-purpose"),
    ("Customers", "short-purpose"),
    ("Read customers", "short-purpose"),
])
def test_weak_purposes(purpose: str, code: str) -> None:
    assert _codes(_m(("customer_read", purpose))) == [("/permissions/0/purpose", code)]


def test_event_only_permission_without_event_read() -> None:
    assert _codes(_m(("funding_instruction_read", GOOD))) == [
        ("/permissions/0/permission", "event-permission-without-event-read")]
    assert _codes(_m(("funding_instruction_read", GOOD), ("event_read", GOOD))) == []


def test_advice_has_source_positions() -> None:
    [a] = manifest.lint(_m(("customer_read", GOOD), ("customer_read", GOOD)))
    assert (a.line, a.column) == (7, 5)


def _check_sarif(log: dict[str, Any]) -> None:
    """The parts of the SARIF 2.1.0 schema that code-scanning tools rely on."""
    assert log["version"] == "2.1.0" and isinstance(log["runs"], list)
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str)
        ids = [r["id"] for r in driver.get("rules", [])]
        assert len(ids) == len(set(ids))
        for rule in driver["rules"]:
            assert set(rule) <= {"id", "name", "shortDescription", "fullDescription",
                                 "defaultConfiguration", "helpUri", "help", "properties"}
            assert rule["defaultConfiguration"]["level"] in ("none", "note", "warning", "error")
        for r in run["results"]:
            assert isinstance(r["message"]["text"], str)
            assert r["level"] in ("none", "note", "warning", "error")
            assert ids[r["ruleIndex"]] == r["ruleId"]
            for loc in r["locations"]:
                phys = loc["physicalLocation"]
                assert isinstance(phys["artifactLocation"]["uri"], str)
                assert phys["region"]["startLine"] >= 1 and phys["region"]["startColumn"] >= 1


def test_sarif_shape() -> None:
    m = _m(("customer_read", "TODO"), ("customer_write", GOOD), ("invoice_read", GOOD))
    log = sarif([(m, manifest.lint(m))], "0.1.0")
    _check_sarif(json.loads(json.dumps(log)))
    assert len(log["runs"][0]["results"]) == 3


def test_diff_superset_needs_approval_subset_does_not() -> None:
    old = _m(("customer_read", GOOD), ("invoice_read", GOOD))
    new = _m(("customer_read", "changed purpose here"), ("charge_read", GOOD))
    d = manifest.diff(old, new)
    assert d.added == ("charge_read",) and d.removed == ("invoice_read",)
    assert d.purpose_changed == ("customer_read",)
    assert d.needs_approval and d.widens_access == ("charge_read",)
    d = manifest.diff(old, _m(("customer_read", GOOD)))
    assert not d.needs_approval and d.removed == ("invoice_read",)


def test_diff_implied_name_needs_approval_but_widens_nothing() -> None:
    d = manifest.diff(_m(("customer_write", GOOD)), _m(("customer_write", GOOD),
                                                       ("customer_read", GOOD)))
    assert d.needs_approval and d.widens_access == ()
    assert d.as_json()["added"] == ["customer_read"]
