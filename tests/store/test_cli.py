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
    """One rule (store/engine.py `default_database`): the nearest `.permgate/` from the
    current folder up, as git finds `.git`; else the user data folder. Every command
    follows it, so one run from a subfolder or from elsewhere reaches the same file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERMGATE_DB", raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert main(["db", "upgrade"]) == 0
    user_db = data / "permgate" / "permgate.db"
    assert user_db.is_file() and not (tmp_path / ".permgate").exists()
    assert f"sqlite:///{user_db} created at the latest schema" in capsys.readouterr().out
    project = tmp_path / "project"
    (project / ".permgate").mkdir(parents=True)
    (project / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(project / "src" / "deep")
    assert main(["apps", "list"]) == EXIT_FINDINGS  # the project's, not the user's database
    assert str(project / ".permgate" / "permgate.db") in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert (project / ".permgate" / "permgate.db").is_file()
    assert "created at the latest schema" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.endswith("is already at the latest schema\n")
    monkeypatch.chdir(tmp_path)  # outside the project again: the user's database
    assert main(["db", "check"]) == 0 and str(user_db) in capsys.readouterr().out
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("PERMGATE_DB", f"sqlite:///{other}")
    assert main(["apps", "list"]) == EXIT_FINDINGS  # not migrated yet
    assert "permgate db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0 and other.is_file()


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_a_permgate_entry_that_is_not_a_folder_is_refused_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """Skipping it would silently reach another database (a parent's, or the user's)."""
    monkeypatch.delenv("PERMGATE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    if kind == "file":
        (project / ".permgate").write_text("")
    else:
        (project / ".permgate").symlink_to(tmp_path / "gone")
    monkeypatch.chdir(project / "sub")
    assert main(["db", "upgrade"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{project / '.permgate'} is not a folder" in err and err.count("\n") == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "gone").exists()
    (tmp_path / "elsewhere").mkdir()
    if kind == "file":
        (project / ".permgate").unlink()
        (project / ".permgate").symlink_to(tmp_path / "elsewhere")
    else:
        (tmp_path / "gone").symlink_to(tmp_path / "elsewhere")
    assert main(["db", "upgrade"]) == EXIT_OK  # a link to a folder is a chosen place
    assert (tmp_path / "elsewhere" / "permgate.db").is_file()


def test_a_default_database_path_with_url_characters_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`?`, `#`, `%` and `'` in the folder's name are part of the file's name, not a query,
    a fragment or an escape; the printed URL names the same file when pasted back."""
    folder = tmp_path / "it's #1 ?mode=ro %41"
    (folder / ".permgate").mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("PERMGATE_DB", raising=False)
    assert main(["db", "upgrade"]) == EXIT_OK
    db = folder / ".permgate" / "permgate.db"
    assert db.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
    out = capsys.readouterr().out
    printed = out.removeprefix("database ").removesuffix(" created at the latest schema\n")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "check", "--db", printed]) == EXIT_OK
    assert db.name in capsys.readouterr().out


def test_a_relative_sqlite_url_with_a_query_is_made_absolute_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from permgate.store.engine import resolve_url

    monkeypatch.chdir(tmp_path)
    url = resolve_url("sqlite:///rel.db?timeout=5")
    assert url.database == str(tmp_path / "rel.db") and url.query == {"timeout": "5"}
    kept = resolve_url("sqlite:///file:rel.db?mode=ro&uri=true")
    assert kept.database == "file:rel.db"  # SQLite's own URI: not a path of ours


def test_db_upgrade_says_whether_it_created_upgraded_or_found_the_database_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from permgate.store import Store, migrate

    url = f"sqlite:///{tmp_path / 'u.db'}"
    assert main(["db", "upgrade", "--db", url]) == EXIT_OK
    assert capsys.readouterr().out == f"database {url} created at the latest schema\n"
    with Store.open(url) as store:
        migrate.downgrade(store.engine, "-1")
        older = migrate.current(store.engine)
    assert older is not None and older != migrate.head()
    assert main(["db", "upgrade", "--db", url]) == EXIT_OK
    assert capsys.readouterr().out == (f"database {url} upgraded from {older} to the latest "
                                       f"schema ({migrate.head()})\n")
    assert main(["db", "upgrade", "--db", url]) == EXIT_OK
    assert capsys.readouterr().out == f"database {url} is already at the latest schema\n"


def test_explain_for_an_install_says_an_upgrade_awaits_approval(cli: Cli) -> None:
    """`explain --app --account` decides on the install's approved grant, as the gateway
    does, and says when the version awaiting approval asks for what is missing."""
    cli("apps", "upload", cli.manifest("1.0.0", ["customer_read"]))
    assert cli("install", APP, *ADMIN) == EXIT_OK
    install = [APP, "--account", ACCT, "--mode", "live"]
    assert cli("explain", "GET", "/v1/invoices", *install) == EXIT_OK
    assert "active: denied" in cli.out and "pending approval" not in cli.out
    cli("apps", "upload", cli.manifest("1.1.0", ["customer_read", "invoice_read"]))
    assert cli("explain", "GET", "/v1/invoices", *install) == EXIT_OK
    assert "pending_approval: denied" in cli.out
    assert (f"pending approval: Version 1.1.0 of '{APP}' asks for 'invoice_read'"
            in cli.out), cli.out
    assert "once approved, this request will be allowed" in cli.out
    out = cli.json("explain", "GET", "/v1/payouts", *install)["install"]
    assert out["allowed"] is False and out["pending_hint"] is None  # v2 does not ask for it
    out = cli.json("explain", "GET", "/v1/customers", *install)["install"]
    assert out["allowed"] is True and out["status"] == "pending_approval"
    assert cli("explain", "GET", "/v1/invoices", "--app", APP) == EXIT_USAGE
    assert cli("explain", "GET", "/v1/invoices", "--app", "com.nope", "--account",
               ACCT) == EXIT_DENIED
