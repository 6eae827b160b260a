"""The CLI, through `permgate.cli.main`: the README walkthrough, exit codes, --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.store.conftest import APP, manifest_text

from permgate.cli import EXIT_DENIED, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, main

ACCT = "acct_1Cli"


class Cli:
    def __init__(self, db: str, capsys: pytest.CaptureFixture[str], tmp: Path) -> None:
        self.db, self.capsys, self.tmp = db, capsys, tmp
        self.out = self.err = ""

    def __call__(self, *argv: str) -> int:
        code = main([*argv, "--db", self.db])
        self.out, self.err = self.capsys.readouterr()
        return code

    def json(self, *argv: str) -> Any:
        assert self(*argv, "--json") == EXIT_OK, self.err
        return json.loads(self.out)

    def manifest(self, version: str, permissions: list[str], **kw: Any) -> str:
        path = self.tmp / f"stripe-app-{version}.json"
        path.write_text(manifest_text(version, permissions, **kw))
        return str(path)


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    c = Cli(db_url, capsys, tmp_path)
    assert c("db", "upgrade") == EXIT_OK
    return c


ADMIN = ["--account", ACCT, "--mode", "live", "--by", "ann", "--role", "admin"]


def test_walkthrough(cli: Cli) -> None:
    up = cli.json("apps", "upload", cli.manifest("1.0.0", ["customer_read"]))
    assert (up["app_id"], up["version"], up["created_app"]) == (APP, "1.0.0", True)
    assert [k["secret"][:8] for k in up["keys"]] == ["sk_test_", "sk_live_"]

    assert cli("install", APP, *ADMIN) == EXIT_OK
    assert "active" in cli.out
    assert cli("apps", "upload", cli.manifest("1.1.0", ["customer_read", "charge_read"])) == 0
    assert "uploaded com.example.consent version 1.1.0" in cli.out
    assert "sk_" not in cli.out  # keys are printed on the first upload only

    shown = cli.json("installs", "show", APP, "--account", ACCT, "--mode", "live")
    assert shown["status"] == "pending_approval"
    assert (shown["approved"], shown["pending"]) == (["customer_read"], ["charge_read"])
    assert (shown["installed_version"], shown["approved_version"]) == ("1.1.0", "1.0.0")
    assert cli("installs", "show", APP, "--account", ACCT, "--mode", "live") == 0
    assert "pending approval:  charge_read" in cli.out

    approved = cli.json("approve", APP, *ADMIN, "--version", "1.1.0")
    assert (approved["status"], approved["approved"]) == (
        "active", ["charge_read", "customer_read"])
    listed = cli.json("installs", "list", "--account", ACCT)
    assert [i["install_id"] for i in listed] == [approved["install_id"]]

    assert cli("uninstall", APP, *ADMIN) == EXIT_OK
    assert cli.json("installs", "list") == []
    actions = [e["action"] for e in cli.json("audit", "--app", APP)]
    assert actions == ["app.created", "version.uploaded", "key.created", "key.created",
                       "install.created", "version.uploaded", "install.approved",
                       "install.removed"]
    assert cli.json("audit", "--since", "1h", "--account", ACCT)[-1]["actor"] == "ann"
    assert cli.json("audit", "--since", "2999-01-01") == []


def test_apps_and_keys_listings(cli: Cli) -> None:
    assert cli("apps", "list") == 0 and cli.out.strip() == "no apps"
    cli("apps", "upload", cli.manifest("1.0.0", ["customer_read"]), "--by", "dev")
    (app,) = cli.json("apps", "list")
    assert (app["app_id"], app["latest_version"], app["permissions"]) == (
        APP, "1.0.0", ["customer_read"])
    assert cli.json("apps", "show", APP)["versions"][0]["uploaded_by"] == "dev"
    rotated = cli.json("keys", "rotate", APP, "--mode", "live", "--grace", "0")
    assert rotated["secret"].startswith("sk_live_")
    keys = cli.json("keys", "list", APP)
    assert [(k["mode"], k["usable"]) for k in keys].count(("live", True)) == 1
    assert all("secret" not in k for k in keys)
    assert cli("keys", "list", APP) == 0 and "revoked" in cli.out


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["install", APP, "--account", ACCT, "--mode", "live", "--by", "dev", "--role", "developer"],
     EXIT_DENIED, "only an account administrator (role=admin) may install"),
    (["approve", APP, *ADMIN], EXIT_FINDINGS, "not installed"),
    (["uninstall", APP, *ADMIN], EXIT_FINDINGS, "not installed"),
    (["apps", "show", "com.example.none"], EXIT_FINDINGS, "no app"),
    (["install", APP, *ADMIN[:1], "cus_1", *ADMIN[2:]], EXIT_FINDINGS, "acct_"),
    (["keys", "rotate", APP, "--mode", "live", "--grace", "30d"], EXIT_FINDINGS, "grace"),
])
def test_errors_are_one_line_and_non_zero(
    cli: Cli, argv: list[str], code: int, message: str
) -> None:
    cli("apps", "upload", cli.manifest("1.0.0", ["customer_read"]))
    assert cli(*argv) == code
    assert message in cli.err
    assert cli.err.count("\n") == 1 and cli.err.startswith("permgate: ")


def test_stale_approval_and_invalid_manifest(cli: Cli) -> None:
    cli("apps", "upload", cli.manifest("1.0.0", ["customer_read"]))
    cli("install", APP, *ADMIN)
    cli("apps", "upload", cli.manifest("1.1.0", ["customer_read", "charge_read"]))
    cli("apps", "upload", cli.manifest("1.2.0", ["customer_read", "invoice_read"]))
    assert cli("approve", APP, *ADMIN, "--version", "1.1.0") == EXIT_FINDINGS
    assert "1.2.0 was uploaded since" in cli.err
    assert cli("apps", "upload", cli.manifest("2.0.0", ["customer_reed"])) == EXIT_FINDINGS
    assert "customer_reed" in cli.err and cli.err.count("\n") == 1
    assert [a["latest_version"] for a in cli.json("apps", "list")] == ["1.2.0"]
    missing = str(cli.tmp / "nope.json")
    assert cli("apps", "upload", missing) == EXIT_USAGE and "nope.json" in cli.err


def test_default_database_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERMGATE_DB", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / ".permgate" / "permgate.db").is_file()
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("PERMGATE_DB", f"sqlite:///{other}")
    assert main(["apps", "list"]) == EXIT_FINDINGS  # not migrated yet
    assert "permgate db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0 and other.is_file()
