"""Real processes for the end-to-end test: localstripe, `permgate events ingest`, node."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.needs import npm_ci

VENV_BIN = Path(sys.executable).parent
NODE_DIR = Path(__file__).parent / "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited at start:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}:\n{log.read_text()}")


@contextlib.contextmanager
def serve(cmd: Sequence[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; it is stopped by its own pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def localstripe(port: int, log: Path) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    # GPL: only ever run as its own process.
    return serve([str(VENV_BIN / "localstripe"), "--port", str(port), "--from-scratch"],
                 port, log)


def ingest(db_url: str, port: int, secret_file: Path, account: str,
           log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return serve([str(VENV_BIN / "permgate"), "events", "ingest", "--db", db_url,
                  "--port", str(port), "--secret-file", str(secret_file),
                  "--account", account], port, log)


def node_ready() -> Path:
    """tests/events/node with the locked `stripe` package installed (npm ci if missing)."""
    npm_ci(NODE_DIR, NODE_DIR / "node_modules" / "stripe")
    return NODE_DIR


def node_verify(payload: bytes, header: str, secret: str) -> str:
    """The event id stripe-node's `webhooks.constructEvent` verified; raises if it refused."""
    node = shutil.which("node")
    assert node is not None, "node is needed"
    done = subprocess.run(
        [node, str(node_ready() / "verify.js")], capture_output=True, timeout=60,
        input=json.dumps({"payload": payload.decode("utf-8"), "header": header,
                          "secret": secret}).encode())
    if done.returncode != 0:
        raise AssertionError(f"stripe-node refused the signature: {done.stderr.decode()}")
    return done.stdout.decode()
