"""Demo mode: localstripe as the upstream, a sample app installed on a demo account.

localstripe is GPL software: it only ever runs here as a separate process, never imported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path

from permgate import manifest as manifest_mod
from permgate.errors import PermgateError
from permgate.store import Conflict, Store

DEMO_UPSTREAM_KEY = "sk_test_permgate_demo_upstream"
ADMIN = "permgate-demo"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _ExitedAtStart(PermgateError, RuntimeError):
    """localstripe ended before it listened (e.g. its port was taken meanwhile)."""


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _ExitedAtStart(f"localstripe exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"localstripe did not listen on {host}:{port} within {timeout:g} s")


def localstripe_command() -> str:
    beside = Path(sys.executable).parent / "localstripe"
    found = str(beside) if beside.exists() else shutil.which("localstripe")
    if found is None:
        raise RuntimeError(
            "demo mode runs localstripe as the upstream, and it is not installed: "
            "pip install 'permgate[demo]' (or give --upstream URL and --upstream-key-file)")
    return found


@dataclass
class Upstream:
    """A localstripe process; `stop()` ends it (and only it)."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_localstripe(log_path: Path | None = None, port: int | None = None) -> Upstream:
    """localstripe on `port`, or on a free port: a port found free can be taken by another
    process before localstripe binds it, so a chosen port is tried up to three times."""
    if port is not None:
        return _start_localstripe(log_path, port)
    for attempt in range(3):
        try:
            return _start_localstripe(log_path, free_port())
        except _ExitedAtStart:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_localstripe(log_path: Path | None, port: int) -> Upstream:
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="permgate-localstripe-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [localstripe_command(), "--port", str(port), "--from-scratch"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    upstream = Upstream(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_for_port("127.0.0.1", port, 30.0, proc)
    except BaseException:
        upstream.stop()
        raise
    return upstream


@dataclass(frozen=True)
class DemoApp:
    app_id: str
    account: str
    key: str


def sample_manifest() -> manifest_mod.Manifest:
    text = resources.files(__package__).joinpath("stripe-app.json").read_text("utf-8")
    return manifest_mod.parse(text, "demo/stripe-app.json")


def install_demo_app(store: Store, account: str) -> DemoApp:
    """Upload and install the sample app; safe to repeat on the same database.

    Keys are shown only when minted, so a repeat mints a fresh test key (the old one is
    revoked at once: nobody else should hold a demo key).
    """
    result = None
    with contextlib.suppress(Conflict):  # uploaded by an earlier demo run
        result = store.upload_version(sample_manifest(), actor=ADMIN)
    app_id = str(sample_manifest().data["id"])
    with contextlib.suppress(Conflict):
        store.install(app_id, account, "test", by=ADMIN, role="admin")
    keys = [k for k in (result.keys if result else ()) if k.mode == "test"]
    key = keys[0] if keys else store.rotate_key(
        app_id, "test", grace=timedelta(0), actor=ADMIN)
    return DemoApp(app_id, account, key.secret)


def banner(gateway_url: str, upstream: Upstream, demo: DemoApp, db_url: str,
           cli: str = "permgate") -> str:
    """`cli` is how this shell can run permgate (the CLI passes the command that started it,
    so that the printed uninstall works when pasted as is). `db_url` is absolute (the store
    makes a SQLite path so): every printed command names it, so each works from any folder."""
    import shlex

    k, a, u, db = demo.key, demo.account, gateway_url, shlex.quote(db_url)
    return f"""
permgate demo: a gateway on {u}, enforcing for localstripe at {upstream.url}
database: {db_url}
(localstripe log: {upstream.log_path})

The app '{demo.app_id}' is installed on {a} (test mode) with customer_read and
event_read only.
Its key: {k}

Python (pip install stripe):

    import stripe
    client = stripe.StripeClient("{k}", stripe_account="{a}",
                                 base_addresses={{"api": "{u}"}})
    print(client.v1.customers.list())     # allowed: customer_read
    client.v1.charges.list()              # denied: raises stripe.PermissionError

curl:

    curl {u}/v1/customers -u {k}: -H "Stripe-Account: {a}"
    curl {u}/v1/charges   -u {k}: -H "Stripe-Account: {a}"

Consent pages ({u}/console/): this prints a sign-in link for {a}'s administrator
(it works once, for 5 minutes):

    {cli} console link --account {a} --user admin --name "Demo Admin" --role admin \\
        --url {u} --db {db}

Then: {cli} uninstall {demo.app_id} --account {a} --mode test --by you --role admin \\
        --db {db}   # and the first call is denied within a second.
Events: {cli} listen --app {demo.app_id} --forward-to localhost:3000/webhooks --db {db}
and in another terminal: {cli} trigger customer.created --db {db}   (received)
                         {cli} trigger charge.succeeded --db {db}   (not: charge_read)
Ctrl-C stops the gateway and localstripe.
"""
