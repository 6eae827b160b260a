"""A newcomer's ten most likely mistakes: each gets one clear line and the right exit code.

Run as a user runs them: the venv's `permgate` in a fresh folder, stderr read as text. No
traceback may ever reach the user, and a refused command leaves no database file behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PERMGATE = str(Path(sys.executable).parent / "permgate")
MANIFEST = {"id": "com.example.app", "version": "1.0.0", "name": "Example", "icon": "",
            "permissions": [{"permission": "customer_read", "purpose": "Show the customer"}]}


def pg(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERMGATE_")}
    return subprocess.run([PERMGATE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The run exited `code` and said why in one `permgate: ...` line naming `words`."""
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("usage:")
             and not ln.startswith(" ")]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.slow
def test_typo_in_a_permission(tmp_path: Path) -> None:
    p = pg(tmp_path, "check", "GET", "/v1/customers", "--grant", "custmer_read")
    one_line(p, 2, "unknown permission 'custmer_read'", "did you mean 'customer_read'")
    (tmp_path / "stripe-app.json").write_text(json.dumps(MANIFEST))
    before = (tmp_path / "stripe-app.json").read_bytes()
    p = pg(tmp_path, "apps", "grant", "permission", "invoice_raed", "Show invoices")
    one_line(p, 2, "did you mean 'invoice_read'", "nothing written")
    assert (tmp_path / "stripe-app.json").read_bytes() == before


@pytest.mark.slow
def test_missing_manifest(tmp_path: Path) -> None:
    for command in (["validate"], ["lint"], ["apps", "grant", "permission", "customer_read", "x"]):
        one_line(pg(tmp_path, *command), 2, "no stripe-app.json here")
    one_line(pg(tmp_path, "validate", "nope.json"), 2, "nope.json")


@pytest.mark.slow
def test_malformed_manifest(tmp_path: Path) -> None:
    (tmp_path / "stripe-app.json").write_text('{"id": "com.example.app",\n "version": }')
    one_line(pg(tmp_path, "validate"), 2, "stripe-app.json:2:", "not valid JSON")
    one_line(pg(tmp_path, "apps", "upload", "stripe-app.json"), 2, "not valid JSON")


@pytest.mark.slow
def test_unknown_app(tmp_path: Path) -> None:
    assert pg(tmp_path, "db", "upgrade").returncode == 0
    p = pg(tmp_path, "install", "com.example.nope", "--account", "acct_1", "--mode", "live",
           "--by", "ann", "--role", "admin")
    one_line(p, 1, "com.example.nope")
    p = pg(tmp_path, "apps", "show", "com.example.nope")
    one_line(p, 1, "com.example.nope")


@pytest.mark.slow
def test_wrong_mode(tmp_path: Path) -> None:
    p = pg(tmp_path, "install", "com.example.app", "--account", "acct_1", "--mode", "prod",
           "--by", "ann", "--role", "admin")
    one_line(p, 2, "--mode", "invalid choice: 'prod'", "live")


@pytest.mark.slow
def test_no_db_upgrade_and_no_file_left_behind(tmp_path: Path) -> None:
    one_line(pg(tmp_path, "apps", "list"), 1, "permgate db upgrade")
    assert not (tmp_path / ".permgate").exists()
    (tmp_path / "empty.db").write_bytes(b"")  # an empty file: SQLite, but never set up
    line = one_line(pg(tmp_path, "apps", "list", "--db", "sqlite:///empty.db"), 1)
    assert line == "permgate: this database has not been set up: run `permgate db upgrade`"


@pytest.mark.parametrize(("db", "words"), [
    ("", ["--db", "is empty"]),
    ("sqlite:///README.md", ["README.md is not a permgate database"]),
    ("sqlite:///afile/x.db", ["afile is a file, not a folder"]),
    ("sqlite:////proc/permgate-nope/x.db", ["cannot create the folder /proc/permgate-nope"]),
    ("mysql://localhost/x", ["unsupported database 'mysql'"]),
    ("sqlite:///.", ["is a folder, not a database file"]),
    ("sqlite:///" + "a" * 300 + "/x.db", ["File name too long"]),
    ("postgresql://nobody@127.0.0.1:1/x", ["cannot open the database", "Connection refused"]),
])
@pytest.mark.slow
def test_bad_db(tmp_path: Path, db: str, words: list[str]) -> None:
    (tmp_path / "README.md").write_text("# not a database\n" * 200)
    (tmp_path / "afile").write_text("")
    code = 1 if db.startswith("postgresql") else 2  # unreachable is not bad input
    one_line(pg(tmp_path, "db", "upgrade", "--db", db), code, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "afile"]


@pytest.mark.slow
def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = pg(tmp_path, "serve", "--port", str(port))
    one_line(p, 2, f"cannot listen on 127.0.0.1:{port}", "--port")


@pytest.mark.slow
def test_unreadable_key_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = pg(tmp_path, "serve", "--port", str(port), "--upstream", "https://api.example.com",
           "--upstream-key-file", "missing.key")
    one_line(p, 2, "missing.key")
    p = pg(tmp_path, "events", "poll", "--upstream", "https://api.example.com",
           "--api-key-file", str(tmp_path), "--account", "acct_1", "--once")
    one_line(p, 2, "--api-key-file", "is a folder")


@pytest.mark.slow
def test_path_without_v1(tmp_path: Path) -> None:
    p = pg(tmp_path, "check", "GET", "/customers", "--grant", "customer_read")
    assert p.returncode == 3 and "Traceback" not in p.stderr
    assert "hint: Stripe API paths start with /v1: did you mean /v1/customers?" in p.stdout
    p = pg(tmp_path, "check", "GET", "/customers", "--format", "json")
    assert json.loads(p.stdout)["hint"].endswith("did you mean /v1/customers?")
    p = pg(tmp_path, "check", "GET", "/v1/nothing-here")
    assert p.returncode == 3 and "hint" not in p.stdout  # no hint where /v1 is no help


@pytest.mark.slow
def test_batch_unknown_key_is_an_error_on_its_line(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"method": "GET", "path": "/v1/customers",
                             "grant": ["customer_read"]}) + "\n")
    p = pg(tmp_path, "check", "--batch", str(f))
    assert p.returncode == 2
    assert "unknown key 'grant' (did you mean 'grants'?)" in json.loads(p.stdout)["error"]
    f.write_text(json.dumps({"method": "GET", "path": "/v1/customers",
                             "grants": ["customer_read"]}) + "\n")
    assert pg(tmp_path, "check", "--batch", str(f)).returncode == 0
    f.write_bytes(b"\xd0\xff not utf-8\n" + f.read_bytes())  # that line only is an error
    p = pg(tmp_path, "check", "--batch", str(f))
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 2 and "invalid JSON" in rows[0]["error"] and rows[1]["allowed"]
