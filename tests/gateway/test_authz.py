"""`permgate authz` without Envoy: its listeners, its answers' headers, its CLI checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from tests.gateway.envoyproc import VENV_BIN, run_authz
from tests.gateway.procs import new_app

from permgate.gateway.authz import REMOVE, removals
from permgate.gateway.demo import free_port
from permgate.store import Store

pytestmark = pytest.mark.e2e


def test_nothing_but_a_decided_call_answers_2xx_on_the_check_port(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_read"])
    auth = {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account}
    with run_authz(db_url, tmp_path) as authz:
        check = f"http://127.0.0.1:{authz.port}"
        control = f"http://127.0.0.1:{authz.control_port}"
        # The control paths are API calls on the check port: refused, never "allowed".
        assert httpx.get(check + "/healthz").status_code == 401
        for path in ("/healthz", "/readyz", "/metrics", "/admin/v1/apps", "/console/"):
            r = httpx.get(check + path, headers=auth)
            assert r.status_code == 404, (path, r.status_code, r.text)
        # A decided call: 200 and the headers Envoy sets upstream.
        r = httpx.get(check + "/v1/charges", headers={
            **auth, "Stripe-Context": "acct_other", "Cookie": "a=b",
            "Stripe-Version": "2024-06-20"})
        assert r.status_code == 200, r.text
        assert r.headers["authorization"] == "Bearer sk_test_permgate_tests_upstream"
        assert r.headers["stripe-account"] == app.account
        removed = set(r.headers[REMOVE.decode()].split(","))
        assert {"stripe-context", "cookie"} <= removed
        assert not removed & {"stripe-version", "authorization", "stripe-account"}
        r = httpx.post(check + "/v1/charges/ch_1", headers=auth,
                       content=b"description=x&expand[]=customer")
        assert r.status_code == 400  # no Content-Type: serve's refusal, as serve words it
        r = httpx.get(check + "/v1/customers", headers=auth)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "more_permissions_required_for_application"
        assert "authorization" not in r.headers
        # The control listener: health, readiness (the store only), nothing else.
        assert httpx.get(control + "/healthz").status_code == 200
        ready = httpx.get(control + "/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
        assert httpx.get(control + "/v1/charges", headers=auth).status_code == 404


def test_removals_name_what_serve_would_not_forward() -> None:
    client = [(b"host", b"x"), (b"authorization", b"Bearer k"), (b"stripe-account", b"a"),
              (b"content-type", b"application/x-www-form-urlencoded; charset=utf-8"),
              (b"content-length", b"3"), (b"idempotency-key", b"i"), (b"x-forwarded-proto",
                                                                       b"http"),
              (b"stripe-context", b"acct_2"), (b"cookie", b"c"), (b"cookie", b"d"),
              (b"content-encoding", b"identity"), (b"x-envoy-internal", b"true")]
    assert removals(client, account=True, content_type=True) == \
        b"stripe-context,cookie,content-encoding"
    assert removals(client, account=False, content_type=False) == \
        b"stripe-account,content-type,stripe-context,cookie,content-encoding"


def test_the_cli_refuses_what_cannot_work(tmp_path: Path, db_url: str) -> None:
    def authz(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "permgate"), "authz", "--db", db_url, *args],
                              capture_output=True, text=True, timeout=60)

    port = str(free_port())
    r = authz("--port", port)
    assert r.returncode == 2 and "upstream's secret key" in r.stderr, r.stderr
    r = authz("--port", port, "--control-port", port)
    assert r.returncode == 2 and "--control-port" in r.stderr, r.stderr
    r = authz("--upstream", "http://x")
    assert r.returncode == 2, r.stderr  # not a setting of authz: Envoy owns the upstream
