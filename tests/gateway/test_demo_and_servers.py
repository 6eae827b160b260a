"""The README's main command (`permgate serve` with no upstream), and both servers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import stripe
from tests.gateway.procs import VENV_BIN, new_app, run_gateway, wait_until

from permgate.cli import main
from permgate.gateway.demo import Upstream, free_port
from permgate.store import Store

pytestmark = pytest.mark.e2e


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), 0.5):
            return True
    except OSError:
        return False


def test_demo_mode_shows_one_allowed_and_one_denied_call(tmp_path: Path) -> None:
    port = free_port()
    out_path = tmp_path / "demo.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "permgate"), "serve", "--port", str(port)], cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: listening(url), timeout=60, what="demo gateway listening")
        text = out_path.read_text()
        key = re.search(r"Its key: (sk_test_\w+)", text)
        upstream = re.search(r"enforcing for localstripe at (http://127\.0\.0\.1:\d+)", text)
        assert key and upstream, text
        assert 'stripe.StripeClient("' + key.group(1) in text
        assert f"curl {url}/v1/customers -u {key.group(1)}:" in text
        client = stripe.StripeClient(key.group(1), stripe_account="acct_demo",
                                     base_addresses={"api": url}, max_network_retries=0)
        assert isinstance(client.v1.customers.list().data, list)
        with pytest.raises(stripe.PermissionError, match="charge_read"):
            client.v1.charges.list()
        # No .permgate/ up the tree: the user data folder's database, printed absolute.
        db = Path(os.environ["XDG_DATA_HOME"]) / "permgate" / "permgate.db"
        assert db.exists() and not (tmp_path / ".permgate").exists()
        assert f"database: sqlite:///{db}\n" in text
        # The printed sign-in command works as pasted, from any other folder: its link
        # opens a session on this gateway (it names the same database).
        link = re.search(r"\n    (\S+ console link .*?\\\n.*?)\n", text)
        assert link, text
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        command = link.group(1).replace("\\\n", " ")
        done = subprocess.run(["bash", "-c", command], cwd=elsewhere, capture_output=True,
                              text=True, timeout=60, check=False, env={
                                  **os.environ, "XDG_DATA_HOME": str(tmp_path / "other"),
                                  "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
        assert done.returncode == 0, done.stderr
        signin = httpx.get(done.stdout.splitlines()[0], follow_redirects=False)
        assert signin.status_code == 303, signin.text
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(30)
    # Ctrl-C stops localstripe too.
    wait_until(lambda: not listening(upstream.group(1)), what="localstripe stopped")


def test_demo_mode_can_be_run_again_on_the_same_database(tmp_path: Path) -> None:
    from permgate.gateway import demo

    url = f"sqlite:///{tmp_path / 'again.db'}"
    with Store.open(url, upgrade=True) as store:
        first = demo.install_demo_app(store, "acct_demo")
        second = demo.install_demo_app(store, "acct_demo")
        assert first.key != second.key
        assert store.authenticate(first.key) is None  # the old demo key is revoked
        assert store.authenticate(second.key) is not None


@pytest.mark.parametrize("server", ["native", "uvicorn", "granian"])
def test_every_server_enforces(
    server: str, db_url: str, store: Store, localstripe: Upstream, workdir: Path
) -> None:
    if server == "granian":
        pytest.importorskip("granian")
    app = new_app(store, ["customer_read"])
    with run_gateway(db_url, localstripe.url, workdir, ["--server", server]) as gw:
        h = {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account}
        r = httpx.get(gw.url + "/v1/customers", headers=h)
        assert r.status_code == 200 and r.headers["request-id"].startswith("req_")
        r = httpx.get(gw.url + "/v1/charges", headers=h)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "more_permissions_required_for_application"


def test_serve_refuses_to_start_without_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process (the refusals start nothing), on a free port: never the default one, which
    # the README's own demo may hold.
    monkeypatch.chdir(tmp_path)
    port = str(free_port())

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(["serve", "--port", port, *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["serve", *args], code, out.out, out.err)

    done = serve("--upstream", "http://127.0.0.1:9")
    assert done.returncode == 2 and "upstream-key-file" in done.stderr
    keys = tmp_path / "keys"
    keys.write_text("sk_test_x\n")
    done = serve("--upstream", "http://127.0.0.1:9", "--upstream-key-file", str(keys),
                 "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert done.returncode == 2 and "permgate db upgrade" in done.stderr
    done = serve("--workers", "0")
    assert done.returncode == 2 and "workers" in done.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        done = serve("--port", str(taken.getsockname()[1]))  # demo mode, port in use
    assert done.returncode == 2 and "cannot listen" in done.stderr
    assert "localstripe" not in done.stdout  # nothing was started


def test_every_command_the_banner_prints_runs_this_permgate_on_its_database() -> None:
    """Pasted as printed from any shell: each command starts with the permgate that served
    (scripts/permgate's venv copy is not on PATH) and names the database as one word, even
    when its path has spaces and quotes."""
    import shlex
    from types import SimpleNamespace

    from permgate.gateway import demo

    cli = shlex.quote("/home/o'brien/my clone/.venv/bin/permgate")
    db_url = "sqlite:////home/o'brien/my clone/.permgate/permgate.db"
    upstream = SimpleNamespace(url="http://127.0.0.1:1", log_path=Path("/l"))
    app = demo.DemoApp("com.example.permgate-demo", "acct_demo", "sk_test_x")
    text = demo.banner("http://127.0.0.1:2", upstream, app, db_url, cli)  # type: ignore[arg-type]
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if " --db " in ln]
    assert len(lines) == 5, text
    for line in lines:  # from where the command starts, without the remark after it
        command = re.sub(r"\s{3}\(.*\)$", "", line[max(line.find(cli), 0):])
        words = shlex.split(command, comments=True)
        assert words[0] == "/home/o'brien/my clone/.venv/bin/permgate", command
        assert words[words.index("--db") + 1] == db_url, command


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8420"), ("0.0.0.0", "http://127.0.0.1:8420"),
    ("::", "http://[::1]:8420"), ("::1", "http://[::1]:8420"),
    ("gw.example", "http://gw.example:8420")])
def test_the_banner_prints_an_address_a_browser_can_open(host: str, url: str) -> None:
    from permgate.cli.gateway import reachable_url

    assert reachable_url(host, 8420) == url
