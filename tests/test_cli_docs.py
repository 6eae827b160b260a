"""The CLI's shape: help for every option, exit codes in every help, docs/cli.md current,
one output flag, the app named one way, and start-up that loads only what a command needs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from permgate.cli import build_parser, main, walk

ROOT = Path(__file__).resolve().parent.parent


def leaves() -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for name, p in walk(build_parser()):
        if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            out.append((name, p))
    return out


@pytest.mark.slow
def test_docs_cli_md_is_generated_from_the_parser() -> None:
    p = subprocess.run([sys.executable, "tools/gen_cli_docs.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_every_option_has_help_and_every_command_its_exit_codes() -> None:
    assert len(leaves()) > 30
    for name, p in walk(build_parser()):
        assert p.epilog and "exit codes" in p.epilog, name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"


def test_one_output_flag_everywhere() -> None:
    for name, p in leaves():
        flags = {s for a in p._actions for s in a.option_strings}
        if "--json" in flags:
            assert "--format" in flags, name


def test_the_app_is_positional_everywhere() -> None:
    for name, p in leaves():
        for action in p._actions:
            if action.metavar in ("APP", "APP_ID") and action.option_strings:
                assert action.option_strings == ["--app"], name
                assert any(a.metavar == "APP" and not a.option_strings for a in p._actions), name


def test_json_is_the_same_as_format_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "GET", "/v1/customers", "--grant", "customer_read", "--json"]) == 0
    a = capsys.readouterr().out
    assert main(["check", "GET", "/v1/customers", "--grant", "customer_read",
                 "--format", "json"]) == 0
    assert capsys.readouterr().out == a and json.loads(a)["allowed"] is True


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import permgate

    assert main(["--version"]) == 0  # the fast path
    fast = capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == fast == f"permgate {permgate.__version__}\n"


def test_modes_match_the_store() -> None:
    from permgate.cli._common import MODES
    from permgate.store import MODES as STORE_MODES

    assert MODES == STORE_MODES


HEAVY = ("sqlalchemy", "alembic", "starlette", "uvicorn", "granian", "httpx", "tree_sitter",
         "jsonschema", "permgate.store", "permgate.events", "permgate.scan", "permgate.gateway",
         "permgate.admin", "tqdm")


@pytest.mark.parametrize("argv", [
    ["check", "GET", "/v1/customers", "--grant", "customer_read"],
    ["explain", "GET", "/v1/charges?expand[]=customer"],
    ["permissions", "--product", "Billing"],
    ["events", "check", "invoice.paid", "--grant", "event_read"],
])
@pytest.mark.slow
def test_light_commands_load_nothing_heavy(argv: list[str]) -> None:
    """The reason `check` takes a tenth of what it did: it never imports the store, the
    gateway or the scanner (timing is measured by bench/bench_cli.py, not asserted here)."""
    code = ("import sys; from permgate.cli import main; rc = main(sys.argv[1:]); "
            f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or "
            f"any(m == h or m.startswith(h + '.') for h in {HEAVY!r})]; "
            "print('HEAVY', sorted(heavy)); raise SystemExit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       check=False, cwd=ROOT)
    assert p.returncode in (0, 3), p.stderr
    assert p.stdout.strip().splitlines()[-1] == "HEAVY []"


@pytest.mark.slow
def test_validate_and_lint_load_no_store(tmp_path: Path) -> None:
    (tmp_path / "stripe-app.json").write_text(json.dumps({
        "id": "com.example.app", "version": "1", "name": "x", "icon": "", "permissions": []}))
    for argv in (["validate"], ["lint"]):
        code = ("import sys; from permgate.cli import main; rc = main(sys.argv[1:]); "
                "print('HEAVY', sorted(m for m in sys.modules if m.startswith(('sqlalchemy', "
                "'alembic', 'permgate.store', 'permgate.gateway', 'permgate.scan', 'tqdm')))); "
                "raise SystemExit(rc)")
        p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                           check=False, cwd=tmp_path)
        assert p.stdout.strip().splitlines()[-1] == "HEAVY []", p.stdout + p.stderr


def test_internal_errors_are_one_line(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import permgate.cli.engine as eng

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("kaput")

    monkeypatch.delenv("PERMGATE_DEBUG", raising=False)
    monkeypatch.setattr(eng, "cmd_permissions", boom)
    assert main(["permissions"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: kaput" in err


def test_command_table_names_the_module_that_registers_each_command() -> None:
    from permgate.cli import COMMANDS

    for command, module in COMMANDS.items():
        p = build_parser(module)
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        assert command in sub.choices, (command, module)
