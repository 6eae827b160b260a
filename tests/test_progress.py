"""Progress on stderr: shown on a terminal (a real pseudo-terminal here), never otherwise,
and tqdm is not even imported unless a bar is shown."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from permgate import _progress
from permgate.store import migrate


def _under_pty(argv: list[str], cwd: Path, env: dict[str, str] | None = None
               ) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal (stdout a pipe): (exit code, stdout, what
    reached the terminal)."""
    master, slave = pty.openpty()
    seen = bytearray()
    try:
        p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        # The slave stays open here until everything is read: once its last descriptor is
        # closed, Linux may drop what the master has not read yet.
        while True:
            done = p.poll() is not None
            ready, _, _ = select.select([master], [], [], 0 if done else 0.05)
            if ready:
                seen += os.read(master, 65536)
            elif done:
                break
        out, _ = p.communicate(timeout=30)
        return p.returncode, out.decode(), seen.decode("utf-8", "replace")
    finally:
        os.close(slave)
        os.close(master)


def _permgate() -> str:
    return str(Path(sys.executable).parent / "permgate")


@pytest.mark.slow
def test_db_upgrade_shows_each_migration_on_a_terminal(tmp_path: Path) -> None:
    n = migrate._pending(migrate._config(), None, "head")
    assert n >= 1
    db = f"sqlite:///{tmp_path / 'p.db'}"
    rc, out, tty = _under_pty([_permgate(), "db", "upgrade", "--db", db], tmp_path)
    assert rc == 0 and "created at the latest schema" in out
    # tqdm redraws at most every 0.2 s: a quick upgrade shows its start, then the line is
    # cleared (leave=False) so that only the result stays.
    assert "permgate: upgrading the database" in tty and f"0/{n}" in tty
    assert tty.rstrip(" ").endswith("\r"), repr(tty)
    # Already at the latest schema: nothing to show.
    rc, out, tty = _under_pty([_permgate(), "db", "upgrade", "--db", db], tmp_path)
    assert rc == 0 and "upgrading" not in tty
    # Asked not to.
    db2 = f"sqlite:///{tmp_path / 'q.db'}"
    rc, _, tty = _under_pty([_permgate(), "db", "upgrade", "--db", db2], tmp_path,
                            {"PERMGATE_NO_PROGRESS": "1"})
    assert rc == 0 and tty == ""


@pytest.mark.slow
def test_no_progress_and_no_rich_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code = ("import sys; from permgate.cli import main; rc = main(sys.argv[1:]); "
            "print('TQDM', any(m.split('.')[0] in ('tqdm', 'rich') for m in sys.modules)); "
            "raise SystemExit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "db", "upgrade", "--db", db],
                       capture_output=True, text=True, check=False, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and p.stdout.splitlines()[-1] == "TQDM False"


@pytest.mark.slow
def test_scan_bar_on_a_terminal(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i}.js").write_text(f"const x{i} = {i};\n")
    (tmp_path / "main.js").write_text("const stripe = require('stripe')(k);\n"
                                      "stripe.customers.list();\n")
    # A small tree through the CLI: no bar (it would be gone before anyone read it).
    rc, out, tty = _under_pty([_permgate(), "scan", ".", "--format", "json"], tmp_path)
    assert rc in (0, 1) and json.loads(out)["files"] == 31 and tty == ""
    # Asked for: both passes show, and the line is cleared at the end.
    code = ("import sys; from pathlib import Path; from permgate.scan import scan; "
            "v = scan(Path(sys.argv[1]), ['customer_read'], progress=True); "
            "print(v.findings.files)")
    rc, out, tty = _under_pty([sys.executable, "-c", code, str(tmp_path)], tmp_path)
    assert rc == 0 and out.strip() == "31", tty
    assert "permgate: scanning" in tty and "/31" in tty, tty
    assert tty.rstrip(" ").endswith("\r"), repr(tty[-200:])
    rc, out, tty = _under_pty([sys.executable, "-c", code, str(tmp_path)], tmp_path,
                              {"PERMGATE_NO_PROGRESS": "1"})
    assert rc == 0 and out.strip() == "31" and tty == ""


@pytest.mark.slow
def test_nested_bars_and_track_on_a_terminal(tmp_path: Path) -> None:
    code = """
import sys
from permgate import _progress
assert _progress.terminal()
with _progress.progress("outer", 2) as outer:
    with _progress.progress("inner", 3) as inner:
        inner.advance(3)
    outer.advance()
    outer.phase("second", 5)
    outer.advance(5)
assert list(_progress.track([1, 2], "items")) == [1, 2]
print("ok")
"""
    rc, out, tty = _under_pty([sys.executable, "-c", code], tmp_path)
    assert rc == 0 and out.strip() == "ok", tty
    assert "permgate: outer" in tty and "permgate: inner" in tty and "permgate: items" in tty


def test_off_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    assert not _progress.terminal()  # pytest's captured stderr is no terminal
    with _progress.progress("work", 10) as bar:
        bar.advance()
        bar.phase("more", None)
    assert capsys.readouterr().err == ""
