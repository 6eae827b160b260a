"""Every environment variable is declared once (permgate/envvars.py): modules read through
that declaration, docs/settings.md is generated from it, an unknown PERMGATE_* variable gets
one warning with a suggestion, and a malformed value an error that names it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from permgate import envvars
from permgate.cli import main
from permgate.console.settings import ConsoleConfigError, ConsoleSettings
from permgate.envvars import BY_NAME, GATEWAY_SETTINGS, KINDS, PREFIX, VARS, EnvVarError
from permgate.errors import PermgateError
from permgate.events.targets import TargetPolicy, TargetRefused
from permgate.gateway.config import FIELDS, SPECS
from permgate.gateway.server import settings_from_env
from permgate.store import people

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "permgate"

# Modules that may touch os.environ or getenv themselves, each with its reason.
ALLOWED: dict[str, str] = {
    "permgate/envvars.py": "the declaration: the one reader of the environment",
}
_ENV_ATTRS = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_reads(source: str) -> list[int]:
    """Lines that read or write the environment other than through envvars: `os.environ`,
    `os.getenv` and the like, and `from os import environ/getenv/...`."""
    def reads(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return (node.attr in _ENV_ATTRS and isinstance(node.value, ast.Name)
                    and node.value.id == "os")
        return (isinstance(node, ast.ImportFrom) and node.module in ("os", "posix")
                and any(a.name in _ENV_ATTRS for a in node.names))

    return [getattr(n, "lineno", 0) for n in ast.walk(ast.parse(source)) if reads(n)]


def test_no_module_reads_the_environment_but_the_declaration() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 80  # the walk found the package
    found = []
    for path in modules:
        name = path.relative_to(SRC.parent).as_posix()
        if name not in ALLOWED:
            found += [f"{name}:{line}" for line in environment_reads(path.read_text("utf-8"))]
    assert found == []
    assert all((SRC.parent / name).exists() for name in ALLOWED)


@pytest.mark.parametrize("source", [
    "import os\nx = os.environ.get('PERMGATE_DB')\n",
    "import os\nx = os.getenv('PERMGATE_DB')\n",
    "import os\ndef f():\n    os.environ['PERMGATE_X'] = '1'\n",
    "from os import environ\n",
    "from os import getenv as g\n",
])
def test_an_environment_read_is_found(source: str) -> None:
    assert len(environment_reads(source)) == 1


def test_every_name_the_package_and_the_docs_mention_is_declared() -> None:
    """A PERMGATE_ name in a message, a docstring or a page is a declared one (a name ending
    in `_`, such as `PERMGATE_CONSOLE_*`, is a family; `PERMGATE_X` and the names on a line
    showing the unknown-variable warning are examples)."""
    named = re.compile(r"(?<![A-Za-z0-9_])PERMGATE_[A-Z0-9_]+")
    files = [*SRC.rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md",
             *(ROOT / "bench").glob("*.py"), *(ROOT / "tools").glob("*.py"),
             *(ROOT / "scripts").iterdir()]
    stray = set()
    for path in files:
        lines = path.read_text("utf-8").splitlines()
        text = "\n".join(ln for ln in lines if "unknown environment variable" not in ln)
        for name in named.findall(text):
            if not name.endswith("_") and name != "PERMGATE_X" and name not in BY_NAME:
                stray.add(f"{path.relative_to(ROOT)}: {name}")
    assert sorted(stray) == []


def test_each_declaration_is_whole() -> None:
    assert len(BY_NAME) == len(VARS)  # no name declared twice
    for var in VARS:
        assert var.name.startswith(PREFIX) and var.name == var.name.upper(), var.name
        assert var.kind in KINDS and var.reader and var.help, var.name
        assert not var.help.endswith("."), var.name


def test_the_gateway_settings_are_in_the_table() -> None:
    """Listed by name in envvars (so every command knows them without importing the
    gateway), they are exactly the gateway's declared settings, under their env names."""
    assert GATEWAY_SETTINGS == FIELDS, (
        "list the gateway's settings, in their order, in permgate/envvars.py GATEWAY_SETTINGS "
        "and run tools/gen_cli_docs.py")
    for spec in SPECS:
        assert BY_NAME[spec.env].setting == spec.name
    assert {v.setting for v in VARS if v.setting} == set(FIELDS)
    # the two also read by other layers are declared in full, with the gateway's defaults
    assert envvars.DB.form and envvars.ADMIN_TOKEN.form
    defaults = {s.name: s for s in SPECS}
    assert envvars.DB.shown == defaults["db"].shown
    assert envvars.ADMIN_TOKEN.default is defaults["admin_token"].default is None


def test_the_console_defaults_are_the_store_s() -> None:
    assert envvars.CONSOLE_SESSION_LIFETIME.default == people.DEFAULT_LIFETIME.total_seconds()
    assert envvars.CONSOLE_IDLE_TIMEOUT.default == people.DEFAULT_IDLE.total_seconds()
    assert ConsoleSettings.from_env({}) == ConsoleSettings()


@pytest.mark.slow
def test_docs_settings_md_is_generated_from_the_declaration() -> None:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `PERMGATE_")]
    assert [r.split("`")[1] for r in rows] == sorted(
        (v.name for v in VARS), key=lambda n: KINDS.index(BY_NAME[n].kind))
    for row in rows:
        var = BY_NAME[row.split("`")[1]]
        assert f"| {var.kind} | {var.reader} |" in row
        assert (var.help if var.form else next(s.help for s in SPECS if s.env == var.name)) in row
    p = subprocess.run([sys.executable, "tools/gen_cli_docs.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    gateway = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    assert "(docs/settings.md)" in readme and "(settings.md)" in gateway


# -- unknown variables --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "message"), [
    ("PERMGATE_PORTT", "unknown environment variable PERMGATE_PORTT (did you mean "
                       "PERMGATE_PORT?)"),
    ("PERMGATE_CONSOLE_SESION_LIFETIME", "unknown environment variable "
     "PERMGATE_CONSOLE_SESION_LIFETIME (did you mean PERMGATE_CONSOLE_SESSION_LIFETIME?)"),
    ("permgate_db", "unknown environment variable permgate_db (did you mean PERMGATE_DB?)"),
    ("PERMGATE_ZEBRA", "unknown environment variable PERMGATE_ZEBRA"),
])
def test_an_unknown_variable_is_named_with_the_closest_known_name(
        name: str, message: str) -> None:
    env = {name: "1", "PERMGATE_PORT": "1", "HOME": "/", "PERMGATEWAY": "x"}
    assert envvars.unknown(env) == [message]


def test_declared_variables_draw_no_warning() -> None:
    assert envvars.unknown({v.name: "x" for v in VARS}) == []


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(PREFIX)}
    return {**env, **extra}


def run_cli(*argv: str, env: Mapping[str, str], code: str = "") -> subprocess.CompletedProcess[str]:
    script = code or "import sys; from permgate.cli import main; raise SystemExit(main())"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                          text=True, check=False, cwd=ROOT, env=dict(env), timeout=120)


@pytest.mark.slow
def test_a_command_warns_once_on_stderr_and_runs() -> None:
    p = run_cli("check", "GET", "/v1/customers", "--grant", "customer_read",
                env=clean_env(PERMGATE_PORTT="9", PERMGATE_ZEBRA="1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("allowed")
    assert p.stderr.splitlines() == [
        "permgate: unknown environment variable PERMGATE_PORTT (did you mean PERMGATE_PORT?)",
        "permgate: unknown environment variable PERMGATE_ZEBRA",
    ]


@pytest.mark.slow
def test_known_variables_warn_nothing_and_load_no_gateway() -> None:
    """The gateway's names are known without importing it (a light command stays light)."""
    code = ("import sys; from permgate.cli import main; rc = main(sys.argv[1:]); "
            "print('GATEWAY', 'permgate.gateway' in sys.modules); raise SystemExit(rc)")
    p = run_cli("check", "GET", "/v1/customers", "--grant", "customer_read", code=code,
                env=clean_env(PERMGATE_PORT="9", PERMGATE_UPSTREAM="http://x",
                              PERMGATE_NO_PROGRESS="1"))
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.splitlines()[-1] == "GATEWAY False"


@pytest.mark.slow
def test_serve_warns_before_it_refuses_a_malformed_setting() -> None:
    p = run_cli("serve", env=clean_env(PERMGATE_WORKRES="2", PERMGATE_PORT="http"))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        "permgate: unknown environment variable PERMGATE_WORKRES (did you mean "
        "PERMGATE_WORKERS?)",
        "permgate: environment PERMGATE_PORT: port must be int, not 'http'",
    ]


def test_the_warning_is_given_once_per_process(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(envvars, "_warned", False)
    monkeypatch.setenv("PERMGATE_REPORTONLY", "1")
    assert main(["permissions", "--product", "Billing"]) == 0
    assert main(["permissions", "--product", "Billing"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "permgate: unknown environment variable PERMGATE_REPORTONLY (did you mean "
        "PERMGATE_REPORT_ONLY?)"]


# -- malformed values ---------------------------------------------------------------------

def _console(env: Mapping[str, str]) -> object:
    return ConsoleSettings.from_env(env)


def _targets(env: Mapping[str, str]) -> object:
    return TargetPolicy.from_env(env)


@pytest.mark.parametrize(("read", "env", "error", "message"), [
    (_console, {"PERMGATE_CONSOLE_SESSION_LIFETIME": "soon"}, ConsoleConfigError,
     "PERMGATE_CONSOLE_SESSION_LIFETIME must be a number of seconds"),
    (_console, {"PERMGATE_CONSOLE_IDLE_TIMEOUT": "5"}, ConsoleConfigError,
     "PERMGATE_CONSOLE_IDLE_TIMEOUT must be between 60 s and 30 days"),
    (_console, {"PERMGATE_CONSOLE_SECURE_COOKIE": "sometimes"}, ConsoleConfigError,
     "PERMGATE_CONSOLE_SECURE_COOKIE must be 'auto', 'always' or 'never', not 'sometimes'"),
    (_targets, {"PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS": "yes please"}, TargetRefused,
     "PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS must be 'test' or 'all' (or unset), not "
     "'yes please'"),
    (envvars.FUZZ_SEED.get, {"PERMGATE_FUZZ_SEED": "0x1"}, EnvVarError,
     "PERMGATE_FUZZ_SEED must be a whole number, not '0x1'"),
])
def test_a_malformed_value_is_an_error_that_names_the_variable(
        read: Callable[[Mapping[str, str]], Any], env: dict[str, str],
        error: type[Exception], message: str) -> None:
    with pytest.raises(error) as e:
        read(env)
    assert str(e.value) == message
    assert isinstance(e.value, PermgateError)
    if isinstance(e.value, TargetRefused):
        assert e.value.code == "bad_setting"  # as before: a refusal of the setting


def test_values_read_as_before() -> None:
    assert envvars.DEV_PRIVATE_WEBHOOKS.get({"PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS": " Off "}) == ""
    assert TargetPolicy.from_env({"PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS": "TEST"}).private_modes \
        == {"test", "sandbox"}
    assert envvars.NO_PROGRESS.get({"PERMGATE_NO_PROGRESS": "0"}) is False
    assert envvars.NO_PROGRESS.get({"PERMGATE_NO_PROGRESS": "yes"}) is True
    assert envvars.DEBUG.get({"PERMGATE_DEBUG": ""}) is False
    assert envvars.DB.get({"PERMGATE_DB": ""}) is None  # empty: the default store
    s = ConsoleSettings.from_env({"PERMGATE_CONSOLE_SESSION_LIFETIME": " 7200 ",
                                  "PERMGATE_CONSOLE_SECURE_COOKIE": " Never"})
    assert s.session_lifetime.total_seconds() == 7200 and s.secure_cookie == "never"


@pytest.mark.parametrize(("value", "message"), [
    (None, "PERMGATE_GATEWAY_RESOLVED is not set"),
    ("{not json", "PERMGATE_GATEWAY_RESOLVED must be a JSON object"),
    ("[1]", "PERMGATE_GATEWAY_RESOLVED must be a JSON object"),
])
def test_a_worker_without_its_resolved_settings_says_so(
        monkeypatch: pytest.MonkeyPatch, value: str | None, message: str) -> None:
    """Regression: the base code raised KeyError or JSONDecodeError here."""
    if value is None:
        monkeypatch.delenv("PERMGATE_GATEWAY_RESOLVED", raising=False)
    else:
        monkeypatch.setenv("PERMGATE_GATEWAY_RESOLVED", value)
    with pytest.raises(PermgateError, match=re.escape(message)):
        settings_from_env()
