"""Control characters in names are printed escaped, never raw (terminal injection, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from permgate.cli import main

HOSTILE = "cust\x1b]0;owned\x07omer\u202e_read\x9b2J"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "stripe-app.json"
    path.write_text(json.dumps({"id": "com.example.\x1b[2Jx", "version": "1.0.0",
                                "permissions": [{"permission": HOSTILE,
                                                 "purpose": "Shows \x1b[31mred\x1b[0m"}]}))
    return path


def test_validate_and_lint_print_control_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = _manifest(tmp_path)
    main(["validate", str(path)])
    main(["lint", str(path)])
    main(["grant", "permission", HOSTILE, "Because \x07", "--manifest", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert not any(c in text for c in RAW), text
    assert "cust\\x1b]0;owned\\x07omer\\u202e_read\\x9b2J" in text


def test_json_output_is_unchanged_and_still_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = _manifest(tmp_path)
    main(["validate", "--json", str(path)])
    data = json.loads(capsys.readouterr().out)
    assert any(HOSTILE in p["message"] for p in data["problems"])


@pytest.mark.slow
def test_the_installed_command_escapes_too(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    cmd = [str(Path(sys.executable).parent / "permgate"), "validate", str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "\\x1b" in run.stdout and not any(c in run.stdout + run.stderr for c in RAW)
