"""The README, followed literally: its ```sh blocks run in order, as written, in a fresh folder.

Conventions (README and docs/cli.md say so):
- only ```sh blocks run; ```text, ```console and ```python blocks are not run;
- a block whose first line is `# not run: REASON` is skipped;
- each block runs as one bash script with `set -e`: every command must exit 0, except a
  one-line command ending in `# exit N` (N a digit, maybe followed by `:` and a note), which
  must exit exactly N;
- `permgate` is the venv's (its bin folder first on PATH), the database is the default one,
  ./.permgate/permgate.db in the fresh folder (PERMGATE_DB is unset);
- the first block's `scripts/permgate serve` starts the demo (localstripe as upstream) in the
  background on a free port: its banner must show the allowed and the denied call, and each
  printed command must work as printed (the calls are made, the uninstall is run). Its
  `scripts/test` line is not run (it is this test suite).
Key lines of each section's output are checked below: a README that drifts fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
EXPECT_EXIT = re.compile(r"#\s*exit\s+(\d)\b")

# Lines each section's output must contain (a section is the `## ` heading above a block).
KEY_LINES: dict[str, list[str]] = {
    "Check a request": [
        "denied (missing): GET /v1/charges/{charge}",
        "Having the 'customer_read' permission would allow this request to continue.",
        "allowed: GET /v1/customers/{customer}",
        '"allowed": true',
        '"kind": "missing"',
        "allowed: invoice.paid",
    ],
    "Edit and check a manifest": [
        "granted customer_read in stripe-app.json",
        "revoked charge_write in stripe-app.json",
        "granted https://api.example.com/ledger/ (connect-src) in stripe-app.json",
        "stripe-app.json: valid",
    ],
    "Apps, installs and consent": [
        "uploaded com.example.app version 1.0.0",
        "installed com.example.app on acct_123 (live): active",
        "installs must re-approve",
        "uploaded com.example.app version 1.1.0",
        "pending_approval",
        "approved com.example.app on acct_123 (live): active",
    ],
    "Events": [
        "signing secret (shown only now, store it): whsec_",
        "customer.created,invoice.paid",
        "uninstalled com.example.app from acct_123 (live)",
    ],
}


def sh_blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, body) of every ```sh block, in order."""
    out, section, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() == "```sh":
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            out.append((section, "\n".join(body) + "\n"))
        i += 1
    return out


def script(body: str) -> str:
    """The block as a bash script: `set -e`, and `# exit N` lines checked for exactly N."""
    out = ["set -euo pipefail"]
    continued = False
    for line in body.splitlines():
        m = EXPECT_EXIT.search(line)
        if m and not continued and not line.rstrip().endswith("\\"):
            command = line[: line.index("#", line.index(m.group(0)))].rstrip()
            want = m.group(1)
            out.append(f"set +e; {command}; rc=$?; set -e; "
                       f'[ "$rc" -eq {want} ] || {{ echo "README: expected exit {want}, '
                       f'got $rc: {command}" >&2; exit 99; }}')
        else:
            out.append(line)
        continued = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERMGATE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_sh_blocks_follow_the_conventions() -> None:
    blocks = sh_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has no ```sh blocks"
    first = blocks[0][1]
    assert "scripts/permgate serve" in first and "scripts/test" in first
    sections = {s for s, _ in blocks}
    missing = set(KEY_LINES) - sections
    assert not missing, f"sections checked here are gone from the README: {missing}"


def _start_demo(tmp: Path, env: dict[str, str], line: str) -> tuple[subprocess.Popen[str], str]:
    """`scripts/permgate serve ...` from the README, on a free port, in the background."""
    command = line.split("#", 1)[0].split()
    assert command[:2] == ["scripts/permgate", "serve"], line
    argv = [str(BIN / "permgate"), "serve", *command[2:], "--port", str(free_port())]
    proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    banner, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        out = proc.stdout.readline()
        if not out:
            break
        banner.append(out)
        if "Ctrl-C stops" in out:
            return proc, "".join(banner)
    _stop(proc)
    pytest.fail("serve printed no banner:\n" + "".join(banner))


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _call(url: str, key: str, account: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={
        "Authorization": "Basic " + b64encode(f"{key}:".encode()).decode(),
        "Stripe-Account": account})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _check_banner(tmp: Path, env: dict[str, str], banner: str) -> None:
    """The banner's calls give what it says, and its uninstall works as printed."""
    key = re.search(r"Its key: (\S+)", banner)
    calls = re.findall(r"curl (\S+) +-u (\S+): -H \"Stripe-Account: (\S+)\"", banner)
    assert key and len(calls) == 2, banner
    (customers, k1, acct), (charges, _, _) = calls
    assert customers.endswith("/v1/customers") and charges.endswith("/v1/charges")
    assert k1 == key.group(1)
    host, port = customers.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    deadline = time.monotonic() + 60  # the banner comes just before the server listens
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway never listened"
            time.sleep(0.1)
    status, body = _call(customers, k1, acct)
    assert status == 200, body
    status, body = _call(charges, k1, acct)
    assert status == 403 and "more_permissions_required_for_application" in body, body
    then = banner[banner.index("Then: ") + len("Then: "):banner.index("Ctrl-C stops")]
    command = then.split("#", 1)[0].replace("\\\n", " ").strip()
    done = subprocess.run(["bash", "-c", command], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"as printed by serve: {command}\n{done.stderr}"
    assert "uninstalled" in done.stdout
    deadline = time.monotonic() + 10
    while _call(customers, k1, acct)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _call(customers, k1, acct)[0] != 200, "the banner promises a denial after uninstall"


@pytest.mark.e2e
def test_readme_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("localstripe", path=str(BIN)) is None:
        pytest.skip("localstripe (the demo upstream) is not installed in the venv")
    env = env_for(tmp_path)
    blocks = sh_blocks(README.read_text(encoding="utf-8"))
    outputs: dict[str, str] = {}
    for number, (section, body) in enumerate(blocks):
        first = body.lstrip().splitlines()[0] if body.strip() else ""
        if first.startswith("# not run:"):
            assert first[len("# not run:"):].strip(), "say why the block is not run"
            continue
        if number == 0:
            serve = [ln for ln in body.splitlines() if "scripts/permgate serve" in ln]
            assert len(serve) == 1
            proc, banner = _start_demo(tmp_path, env, serve[0])
            try:
                _check_banner(tmp_path, env, banner)
            finally:
                _stop(proc)
            continue
        done = subprocess.run(["bash", "-c", script(body)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (
            f"README block {number} ({section}) failed with exit {done.returncode}:\n{body}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        outputs[section] = outputs.get(section, "") + done.stdout + done.stderr
    for section, lines in KEY_LINES.items():
        for line in lines:
            assert line in outputs.get(section, ""), (
                f"README section {section!r}: {line!r} not in its output:\n"
                f"{outputs.get(section, '')}")
    assert json.loads((tmp_path / "lint.sarif").read_text())["version"] == "2.1.0"
