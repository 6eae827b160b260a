"""A throwaway PostgreSQL cluster for the tests, started from the installed server binaries.

`initdb` + `pg_ctl` in a temporary folder: trust authentication, a free port on 127.0.0.1, the
unix socket in that folder, durability off (a test cluster is thrown away). No database, port
or password has to exist beforehand. Setting PERMGATE_TEST_PG uses that server instead.
The fixtures that start it live in tests/conftest.py; each test gets a fresh schema.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from permgate import envvars

HOW = (f"apt-get install postgresql (or set {envvars.TEST_PG.name} to a server's URL)")
_server: str | None = None  # the URL of the running server, set by the session fixture


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then Debian's versioned folders."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0,
                    reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """One cluster in a temporary folder; `stop()` removes every trace of it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="permgate-pg-"))
        self.data = self.root / "data"
        self.user: int | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root: run the server unprivileged
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                entry = pwd.getpwnam("nobody")
            self.user = entry.pw_uid
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.url = ""

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.root,
                              user=self.user, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}\n{tail}")

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # a port found free may be taken before the server binds it
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"),
                          "-w", "-t", "60", "-o", opts, "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        base = f"postgresql://postgres@127.0.0.1:{port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=10) as c:
            c.execute("CREATE DATABASE test")
        self.url = f"{base}/test"
        return self.url

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def set_server(url: str | None) -> None:
    global _server
    _server = url


def server() -> str:
    if _server is None:
        raise RuntimeError("no PostgreSQL server: mark the test `postgres` (tests/conftest.py "
                           "starts one for it)")
    return _server


@contextmanager
def pg_schema(prefix: str = "permgate_test") -> Iterator[str]:
    """A database URL whose search_path is a fresh schema of its own, dropped afterwards, so
    tests sharing a server never see each other's rows."""
    base = server()
    schema = f"{prefix}_{secrets.token_hex(6)}"
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
