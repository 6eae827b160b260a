"""`permgate authz` without Envoy: its listeners, its answers' headers, its CLI checks."""

from __future__ import annotations

import os
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
    r = authz("--port", port, "--control-port", str(free_port()))
    assert r.returncode == 2 and "upstream's secret key" in r.stderr, r.stderr
    r = authz("--port", port, "--control-port", port)  # refused before anything is bound
    assert r.returncode == 2 and "--control-port" in r.stderr, r.stderr
    r = authz("--upstream", "http://x")
    assert r.returncode == 2, r.stderr  # not a setting of authz: Envoy owns the upstream


def test_with_a_check_token_only_checks_that_carry_it_are_answered(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_read"])
    token = "t" * 40
    token_file = tmp_path / "check-token"
    token_file.write_text(token + "\n")
    auth = {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account}
    with run_authz(db_url, tmp_path, ["--check-token-file", str(token_file)]) as authz:
        check = f"http://127.0.0.1:{authz.port}"
        for headers in ({}, {"X-Permgate-Check": "t" * 39},
                        {"X-Permgate-Check": token + "x"}):
            r = httpx.get(check + "/v1/charges", headers={**auth, **headers})
            assert r.status_code == 403 and "authorization" not in r.headers, r.text
            assert "x-permgate-check" in r.json()["error"]["message"]
        r = httpx.get(check + "/v1/charges", headers={**auth, "X-Permgate-Check": token})
        assert r.status_code == 200
        assert r.headers["authorization"] == "Bearer sk_test_permgate_tests_upstream"
        # Twice (a client's copy beside Envoy's): refused.
        r = httpx.get(check + "/v1/charges", headers=[
            *auth.items(), ("X-Permgate-Check", token), ("X-Permgate-Check", token)])
        assert r.status_code == 403


def test_a_weak_check_token_is_refused(tmp_path: Path, db_url: str) -> None:
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    r = subprocess.run([str(VENV_BIN / "permgate"), "authz", "--db", db_url, "--port",
                        str(free_port()), "--control-port", str(free_port()),
                        "--check-token-file", str(weak)],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PERMGATE_UPSTREAM_KEY": "sk_test_x"})
    assert r.returncode == 2 and "at least 32" in r.stderr, r.stderr
