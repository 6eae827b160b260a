"""The gateway's settings are declared once (fields of `Settings` with their metadata): the
loader, `permgate serve`'s flags and the docs table all agree with that declaration."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from permgate.cli import build_parser
from permgate.gateway.config import (
    FIELDS,
    SPECS,
    ConfigError,
    Settings,
    Spec,
    load_env,
    load_file,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
# A value of each type that differs from every default, and its text (flags and env);
# where a setting's own check wants a particular shape, that shape.
SAMPLE: dict[type, tuple[Any, str]] = {str: ("sample", "sample"), int: (4242, "4242"),
                                       float: (1.5, "1.5")}
SHAPED = {"db": "sqlite:///sample.db", "upstream": "http://127.0.0.1:9",
          "metrics_token": "m" * 32}


def sample(spec: Spec) -> tuple[Any, str]:
    if spec.type is bool:
        return (not spec.default, "false" if spec.default else "true")
    if spec.choices:
        value = next(c for c in spec.choices if c != spec.default)
        return value, value
    if spec.name in SHAPED:
        return SHAPED[spec.name], SHAPED[spec.name]
    return SAMPLE[spec.type]


def serve_parser() -> argparse.ArgumentParser:
    for action in build_parser("gateway")._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["serve"]
    raise AssertionError("no serve command")


def test_specs_are_the_dataclass_fields() -> None:
    fields = dataclasses.fields(Settings)
    assert FIELDS == tuple(f.name for f in fields) == tuple(s.name for s in SPECS)
    defaults = Settings()
    for spec in SPECS:
        assert getattr(defaults, spec.name) == spec.default
        assert spec.help and not spec.help.endswith(".")  # the docs add the full stop
        assert spec.flag is not None or spec.no_flag, spec.name


def test_every_setting_loads_from_its_env_name_and_its_file_key(tmp_path: Path) -> None:
    lines = ["[gateway]"]
    for spec in SPECS:
        value, text = sample(spec)
        assert load_env({spec.env: text}) == {spec.name: value}, spec.name
        toml = repr(text) if spec.type is str else text  # TOML: quoted strings, bare others
        lines.append(f"{spec.name.replace('_', '-')} = {toml}")
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    assert load_file(path) == {s.name: sample(s)[0] for s in SPECS}
    with pytest.raises(ConfigError, match="port must be int"):
        load_env({"PERMGATE_PORT": "eighty"})


def test_flags_are_exactly_the_settings_with_a_flag() -> None:
    p = serve_parser()
    by_dest = {a.dest: a for a in p._actions if a.option_strings and a.dest != "help"}
    by_dest.pop("config")  # the file itself, not a setting
    with_flag = {s.name: s for s in SPECS if s.flag}
    assert set(by_dest) == set(with_flag)
    for name, action in by_dest.items():
        spec = with_flag[name]
        assert action.option_strings == [spec.flag]
        assert action.default is None  # an absent flag keeps the env's or file's value
        assert action.help is not None and action.help.startswith(spec.help)
        assert f"default {spec.default_text}; env {spec.env}" in action.help
        assert tuple(action.choices or ()) == spec.choices
    # each flag sets its own setting (and only it), through to the resolved Settings
    for spec in with_flag.values():
        value, text = sample(spec)
        args = p.parse_args([spec.flag] if spec.type is bool else [spec.flag, text])
        given = {n: getattr(args, n) for n in with_flag if getattr(args, n) is not None}
        assert given == {spec.name: value}, spec.name
        assert getattr(resolve(given, {}), spec.name) == value


@pytest.mark.slow
def test_docs_table_is_generated_from_the_declaration() -> None:
    text = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    for spec in SPECS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
        assert f"`{spec.env}`" in row and spec.help in row
        assert (f"`{spec.flag}`" if spec.flag else f"(none: {spec.no_flag})") in row
    p = subprocess.run([sys.executable, "tools/gen_cli_docs.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_an_optional_server_not_installed_is_refused_with_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """granian is the `servers` extra, not a runtime dependency: asking for it without it
    installed fails before anything starts, saying what to install; with it, it resolves."""
    from permgate.gateway import config

    assert resolve({"server": "granian"}, environ={}).server == "granian"  # dev set has it
    monkeypatch.setattr(config.importlib.util, "find_spec",
                        lambda name, *a: None if name == "granian" else object())
    with pytest.raises(ConfigError) as e:
        resolve({"server": "granian"}, environ={})
    assert "permgate[servers]" in str(e.value) and "--server native" in str(e.value)
    assert resolve({"server": "uvicorn"}, environ={}).server == "uvicorn"
