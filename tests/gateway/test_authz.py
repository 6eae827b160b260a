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
        r = httpx.post(check + "/v1/charges/ch_1",
                       headers={**auth, "x-envoy-auth-partial-body": "false"},
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
        b"x-forwarded-proto,stripe-context,cookie,content-encoding,x-envoy-internal"
    assert removals(client, account=False, content_type=False) == (
        b"stripe-account,content-type,x-forwarded-proto,stripe-context,cookie,"
        b"content-encoding,x-envoy-internal")
    # A client sets these freely; serve never forwards them: named, so Envoy drops them.
    spoof = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-host", b"evil.example"),
             (b"x-request-id", b"attacker"), (b"x-envoy-original-path", b"/v1/payouts"),
             (b"x-envoy-auth-partial-body", b"false"), (b"transfer-encoding", b"chunked"),
             (b"connection", b"close")]
    assert removals(spoof, account=True, content_type=True) == (
        b"x-forwarded-for,x-forwarded-host,x-request-id,x-envoy-original-path,"
        b"x-envoy-auth-partial-body")


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
    token_file.chmod(0o600)
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
    weak.chmod(0o600)
    r = subprocess.run([str(VENV_BIN / "permgate"), "authz", "--db", db_url, "--port",
                        str(free_port()), "--control-port", str(free_port()),
                        "--check-token-file", str(weak)],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PERMGATE_UPSTREAM_KEY": "sk_test_x"})
    assert r.returncode == 2 and "at least 32" in r.stderr, r.stderr


def test_a_check_that_may_carry_part_of_the_body_is_refused(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_write"])
    auth = {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account,
            "Content-Type": "application/x-www-form-urlencoded"}
    body = b"description=x"
    mark = "x-envoy-auth-partial-body"
    with run_authz(db_url, tmp_path) as authz:
        check = f"http://127.0.0.1:{authz.port}/v1/charges/ch_1"
        r = httpx.post(check, headers={**auth, mark: "false"}, content=body)
        assert r.status_code == 200 and r.headers["authorization"].startswith("Bearer sk_")
        for given in (["true"], ["False"], ["false", "false"], ["false", "true"], [""]):
            r = httpx.post(check, headers=[*auth.items(), *((mark, v) for v in given)],
                           content=body)
            assert r.status_code == 503, (given, r.status_code)
            assert r.json()["error"]["type"] == "api_error"
            assert "authorization" not in r.headers
        # A body without the mark: not what Envoy's body buffering sends.
        r = httpx.post(check, headers=auth, content=body)
        assert r.status_code == 503 and "with_request_body" in r.text
        # No body, no mark: a bodiless request (Envoy marks only checks with a body).
        r = httpx.get(f"http://127.0.0.1:{authz.port}/v1/charges",
                      headers={"Authorization": f"Bearer {app.key}",
                               "Stripe-Account": app.account})
        assert r.status_code == 200


def test_off_loopback_the_check_port_needs_a_token_file_of_its_owner_alone(
    tmp_path: Path, db_url: str
) -> None:
    def authz(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "permgate"), "authz", "--db", db_url, "--port", str(free_port()),
             "--control-port", str(free_port()), *args], capture_output=True, text=True,
            timeout=60, env={**os.environ, "PERMGATE_UPSTREAM_KEY": "sk_test_x"})

    r = authz("--host", "0.0.0.0")
    assert r.returncode == 2 and "--check-token-file" in r.stderr, r.stderr
    assert "not a loopback address" in r.stderr, r.stderr
    token = tmp_path / "token"
    token.write_text("t" * 40 + "\n")
    for mode in (0o644, 0o640, 0o604, 0o620):
        token.chmod(mode)
        r = authz("--host", "0.0.0.0", "--check-token-file", str(token))
        assert r.returncode == 2 and "chmod 600" in r.stderr, (oct(mode), r.stderr)


def test_a_comma_joined_header_decides_as_the_repeated_headers() -> None:
    from permgate.gateway.body import BodyRefused, decide_body, header_values

    assert header_values([b"a/b,c/d"]) == [b"a/b", b"c/d"]
    assert header_values([b'multipart/form-data; boundary="a,b"']) == [
        b'multipart/form-data; boundary="a,b"']
    assert header_values([b'x; p="a\\",b", c']) == [b'x; p="a\\",b"', b" c"]
    for types, encodings in (([b"a/b", b"c/d"], []), ([b"a/b,c/d"], []),
                             ([b"a/b, c/d"], []), ([b"a/b,"], [])):
        with pytest.raises(BodyRefused, match="more than one Content-Type"):
            decide_body("GET", b"/v1/charges", types, encodings, b"")
    for encodings in ([b"identity", b"identity"], [b"identity,identity"], [b"identity, "]):
        assert decide_body("GET", b"/v1/charges", [], encodings, b"").form is None
    for encodings in ([b"identity", b"gzip"], [b"identity,gzip"]):
        with pytest.raises(BodyRefused, match="compressed"):
            decide_body("GET", b"/v1/charges", [], encodings, b"")
