"""Real processes for the gateway's end-to-end tests: localstripe, `permgate serve`, apps."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from permgate import manifest as manifest_mod
from permgate.gateway.demo import free_port, start_localstripe
from permgate.store import Store

VENV_BIN = Path(sys.executable).parent
UPSTREAM_KEY = "sk_test_permgate_tests_upstream"


def wait_until(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `predicate()` until true; a generous deadline only guards against hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def record(self, request_id: str) -> dict[str, object]:
        """The log line of one request (written just after its answer, so waited for)."""
        found: list[dict[str, object]] = []

        def logged() -> bool:
            found[:] = [r for r in self.log_records() if r.get("request_id") == request_id]
            return bool(found)

        wait_until(logged, what=f"log line of {request_id}")
        assert len(found) == 1, found
        return found[0]

    def log_records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text("utf-8").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def run_gateway(
    db_url: str, upstream: str, tmp: Path, extra: Sequence[str] = (),
    env: dict[str, str] | None = None, key_text: str = UPSTREAM_KEY + "\n",
) -> Iterator[Gateway]:
    port = free_port()
    key_file = tmp / f"upstream-key-{port}"
    key_file.write_text(key_text)
    log_path = tmp / f"gateway-{port}.log"
    cmd = [str(VENV_BIN / "permgate"), "serve", "--port", str(port), "--db", db_url,
           "--upstream", upstream, "--upstream-key-file", str(key_file), *extra]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    gw = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(gw.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield gw
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process the tests started; kill it if it has not ended in 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class App:
    app_id: str
    account: str
    key: str  # the app's test-mode secret key
    live_key: str


def manifest_text(app_id: str, version: str, permissions: Sequence[str],
                  access_type: str = "platform") -> str:
    return json.dumps({
        "id": app_id, "version": version, "name": app_id, "icon": "",
        "permissions": [{"permission": p, "purpose": f"The tests need {p}."}
                        for p in permissions],
        "stripe_api_access_type": access_type,
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": None, "image-src": None, "purpose": ""}},
    }, indent=2)


def new_app(store: Store, permissions: Sequence[str], install: bool = True) -> App:
    suffix = secrets.token_hex(4)
    app_id = f"com.example.gw{suffix}"
    account = f"acct_gw{suffix}"
    result = store.upload_version(
        manifest_mod.parse(manifest_text(app_id, "1.0.0", permissions)), actor="tests")
    keys = {k.mode: k.secret for k in result.keys}
    if install:
        store.install(app_id, account, "test", by="admin@example.com", role="admin")
    return App(app_id, account, keys["test"], keys["live"])


def upload(store: Store, app: App, version: str, permissions: Sequence[str]) -> None:
    store.upload_version(
        manifest_mod.parse(manifest_text(app.app_id, version, permissions)), actor="tests")


def raw_request(url: str, request_line: str, headers: Sequence[str] = ()) -> bytes:
    """Send bytes exactly as written (HTTP clients normalise paths; attackers don't)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = "\r\n".join([request_line, f"Host: {host}", "Connection: close", *headers])
        s.sendall(head.encode("latin-1") + b"\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


__all__ = ["Gateway", "run_gateway", "start_localstripe"]
