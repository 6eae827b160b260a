"""Hostile manifests: unbounded files, deep nesting, and lint's cost (issue 11, item 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from permgate import manifest
from permgate.cli import main
from permgate.manifest import jsontext
from permgate.manifest.model import MAX_MANIFEST_BYTES


@pytest.mark.parametrize("command", [["validate"], ["lint"], ["diff", "stripe-app.json"],
                                     ["grant", "permission", "customer_read", "Shows names"]])
def test_a_device_is_refused_without_reading_it(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before the fix `validate /dev/zero` read until the OOM killer came.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stripe-app.json").write_text('{"id": "com.example.x", "permissions": []}')
    argv = [*command, "/dev/zero"] if command[0] != "grant" else [*command, "--manifest",
                                                                     "/dev/zero"]
    assert main(argv) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_fifo_is_refused_without_blocking(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert main(["validate", str(fifo)]) == 2  # opening it for reading must not wait
    assert "not a regular file" in capsys.readouterr().err


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "stripe-app.json"
    big.write_bytes(b'{"id": "' + b"a" * MAX_MANIFEST_BYTES + b'"}')
    with pytest.raises(manifest.ManifestError, match="larger than"):
        manifest.load(big)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(
    opener: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "stripe-app.json"
    path.write_text('{"permissions": ' + opener * 100_000)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nested deeper than" in err and "Traceback" not in err
    with pytest.raises(jsontext.JsonSyntaxError, match="nested deeper"):
        jsontext.read("[" * (jsontext.MAX_DEPTH + 1) + "]" * (jsontext.MAX_DEPTH + 1))
    jsontext.read("[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH)  # the limit itself is fine


def _many(n: int) -> str:
    perms = [{"permission": "customer_read", "purpose": "x"} for _ in range(n)]
    return json.dumps({"id": "com.example.big", "version": "1.0.0", "permissions": perms},
                      indent=2)


@pytest.mark.slow
def test_lint_cost_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the fix every finding counted newlines from the start of the file (O(offset)),
    # so 20k entries took 12 s. Count work, not time: after one index of line starts, no
    # finding may scan the text again.
    m = manifest.parse(_many(20_000))
    expected_last = m.text.count("\n", 0, m.text.rfind("{")) + 1  # the last entry

    def scan(text: str, offset: int) -> tuple[int, int]:
        raise AssertionError("a per-finding scan of the text from its start")

    monkeypatch.setattr(jsontext, "line_column", scan)
    advice = manifest.lint(m)
    assert len(advice) == 20_000  # 19,999 duplicates + the first entry's short purpose
    assert advice[-1].line == expected_last
    monkeypatch.undo()
    index = jsontext.LineIndex(m.text)
    for off in range(0, len(m.text), max(1, len(m.text) // 1000)):
        assert index.line_column(off) == jsontext.line_column(m.text, off)


def test_check_batch_bounds_lines_and_nesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # /dev/zero has no newline: a line read without bound never ends.
    assert main(["check", "--batch", "/dev/zero"]) == 2
    assert "longer than" in capsys.readouterr().err
    batch = tmp_path / "requests.jsonl"
    batch.write_text("[" * 60_000 + "\n" + json.dumps({"method": "GET",
                                                         "path": "/v1/customers"}) + "\n")
    assert main(["check", "--batch", str(batch)]) == 2  # a line is invalid; the rest decided
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert "nested deeper than" in first["error"] and "allowed" in second


def test_a_huge_number_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Python refuses to convert integers of more than 4,300 digits: that ValueError escaped.
    path = tmp_path / "stripe-app.json"
    path.write_text('{"id": "com.example.x", "version": ' + "1" * 5000 + "}")
    assert main(["validate", str(path)]) == 2
    assert "the number is too long" in capsys.readouterr().err
