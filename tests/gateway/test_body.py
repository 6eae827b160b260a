"""What request bodies the gateway forwards: only what it decided on (issue 11, item 1).

Regression: `POST /v1/charges/ch_X` with `Content-Type: application/json` and
`{"expand":["customer"]}` was forwarded to an app holding only charge_write; an upstream
that reads JSON then expanded the customer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.gateway.procs import App, Gateway, new_app, raw_request, run_gateway
from tests.gateway.recorder import Recorder

from permgate.gateway.body import (
    FORM,
    JSON,
    MULTIPART,
    BodyRefused,
    check_v2_query,
    decide_body,
    media_type,
)
from permgate.store import Store

B = b"XyZ-boundary-1"


def multipart(*parts: tuple[str, bytes, str | None], boundary: bytes = B) -> bytes:
    out = b""
    for name, content, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disp.encode()
        if filename:
            out += b"\r\nContent-Type: application/pdf"
        out += b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


FILE = multipart(("purpose", b"dispute_evidence", None), ("file", b"%PDF-1.4\x00\xff", "a.pdf"))


@pytest.mark.parametrize(("method", "path", "ctype", "body", "form", "sent_type"), [
    ("POST", b"/v1/customers", [b"application/x-www-form-urlencoded"], b"name=x",
     b"name=x", FORM),
    ("POST", b"/v1/customers", [b"Application/X-WWW-Form-URLEncoded ; Charset=\"UTF-8\""],
     b"name=x", b"name=x", FORM),
    ("POST", b"/v1/customers", [b"application/json"], b"", None, None),  # no body: no type
    ("GET", b"/v1/customers", [], b"", None, None),
    ("DELETE", b"/v1/customers/cus_1", [FORM], b"", None, None),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], FILE,
     b"purpose=dispute_evidence", MULTIPART + b"; boundary=" + B),
    ("POST", b"/v1/files", [b'multipart/form-data; boundary="' + B + b'"'],
     multipart(("expand[]", b"links", None), ("file", b"x", "x.txt")), b"expand[]=links",
     MULTIPART + b"; boundary=" + B),
    ("POST", b"/v2/billing/meter_events", [b"application/json"], b'{"event_name":"x"}', None,
     JSON),
])
def test_accepted_bodies(
    method: str, path: bytes, ctype: list[bytes], body: bytes, form: bytes | None,
    sent_type: bytes | None,
) -> None:
    d = decide_body(method, path, ctype, [], body)
    assert d.form == form
    assert d.forward == body
    assert d.content_type == sent_type


# Issue 20, item 7: a UTF-8 byte-order mark before JSON was forwarded as a form body; a
# BOM-skipping or sniffing upstream reads the JSON. A form starts with a parameter name.
@pytest.mark.parametrize("body", [
    b'\xef\xbb\xbf{"expand":["customer"]}', b"\xef\xbb\xbfexpand[]=customer",
    b"\xef\xbb\xbf[1]", b"\xfe\xff{}", b" name=x", b"\tname=x", b"\r\nname=x",
    b"&expand[]=customer", b"=x", b"+name=x", b"\x00{}", b"%zz=1", b"\xc2\xa0{}",
])
def test_form_bodies_must_start_like_a_form(body: bytes) -> None:
    with pytest.raises(BodyRefused, match=r"must start with a parameter name|looks like JSON"
                       r"|not valid UTF-8"):
        decide_body("POST", b"/v1/charges/ch_1", [FORM], [], body)


@pytest.mark.parametrize("body", [b"name=x", b"Name=x", b"0=x", b"_x=1", b"%65xpand=x",
                                  b"metadata[a]=1", b"-a=1", b".a=1", b"~a=1", b"*a=1"])
def test_form_shaped_bodies_pass(body: bytes) -> None:
    assert decide_body("POST", b"/v1/charges/ch_1", [FORM], [], body).form == body


@pytest.mark.parametrize(("method", "path", "ctype", "enc", "body"), [
    ("POST", b"/v1/charges/ch_1", [b"application/json"], [], b'{"expand":["customer"]}'),
    ("POST", b"/v1/charges/ch_1", [b"text/plain"], [], b"expand[]=customer"),
    ("POST", b"/v1/charges/ch_1", [], [], b"expand[]=customer"),  # no Content-Type
    ("POST", b"/v1/charges/ch_1", [FORM, FORM], [], b"name=x"),  # two Content-Types
    ("POST", b"/v1/charges/ch_1", [FORM], [], b'{"expand":["customer"]}'),  # sniffable JSON
    ("POST", b"/v1/charges/ch_1", [FORM], [], b' \n["customer"]'),
    ("POST", b"/v1/charges/ch_1", [FORM + b"; charset=utf-16"], [], b"name=x"),
    ("POST", b"/v1/charges/ch_1", [FORM + b"; charset=iso-8859-1"], [], b"name=x"),
    ("POST", b"/v1/charges/ch_1", [FORM + b"; boundary=x"], [], b"name=x"),
    ("POST", b"/v1/charges/ch_1", [FORM], [b"gzip"], b"\x1f\x8b\x08\x00"),
    ("POST", b"/v1/charges/ch_1", [FORM], [], b"name=\xff\xfe"),  # not UTF-8
    ("POST", b"/v1/charges/ch_1", [b"application/json; charset=utf-8"], [], b"{}"),
    ("POST", b"/v1/charges/ch_1", [b"APPLICATION/JSON"], [], b"{}"),
    ("POST", b"/v1/charges/ch_1", [b"multipart/form-data; boundary=" + B], [],
     multipart(("expand[]", b"customer", None))),  # multipart only for files
    ("POST", b"/v1/charges/ch_1", [b"form"], [], b"name=x"),
    ("GET", b"/v1/charges/ch_1", [FORM], [], b"expand[]=customer"),
    ("DELETE", b"/v1/customers/cus_1", [FORM], [], b"expand[]=customer"),
    ("HEAD", b"/v1/customers/cus_1", [FORM], [], b"x=1"),
    ("POST", b"/v1/files", [b"multipart/form-data"], [], FILE),  # no boundary
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=other"], [], FILE),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B + b"; x=1"], [], FILE),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     b"preamble\r\n" + FILE),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [], FILE + b"epilogue"),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     FILE.replace(b"Content-Disposition: form-data;", b"Content-Disposition: attachment;")),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     FILE.replace(b'name="purpose"', b"name*=UTF-8''purpose")),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     FILE.replace(b'name="purpose"\r\n', b'name="purpose"\r\nContent-Transfer-Encoding: '
                  b"base64\r\n")),
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     multipart(("expand[]", b"x", "expand.txt"))),  # a file named like expand
    ("POST", b"/v1/files", [b"multipart/form-data; boundary=" + B], [],
     multipart(("expand[]", b"\xff", None))),  # a field that is not text
    ("POST", b"/v1/files", [FORM], [], b'{"purpose":"x"}'),
    ("POST", b"/v2/billing/meter_events", [FORM], [], b"event_name=x"),
    ("POST", b"/v2/billing/meter_events", [JSON], [], b'{"a":1,"a":2}'),  # duplicate key
    ("POST", b"/v2/billing/meter_events", [JSON], [], b'{"Expand":["x"]}'),
    ("POST", b"/v2/billing/meter_events", [JSON], [], b'{"include":["x"]}'),
    ("POST", b"/v2/billing/meter_events", [JSON], [], b"[1]"),
    ("POST", b"/v2/billing/meter_events", [JSON], [], b'{"a":NaN}'),
    ("POST", b"/v2/billing/meter_events", [JSON], [], b"[" * 100_000),
    ("POST", b"/v2/billing/meter_events", [JSON], [],
     '{"a":1}'.encode("utf-16")),  # json.loads(bytes) would read UTF-16
])
def test_refused_bodies(
    method: str, path: bytes, ctype: list[bytes], enc: list[bytes], body: bytes
) -> None:
    with pytest.raises(BodyRefused):
        decide_body(method, path, ctype, enc, body)


@pytest.mark.parametrize("query", [
    b"include=payout_method", b"include[]=x", b"INCLUDE=x", b"a=1;include=x", b"%69nclude=x",
    b"%2569nclude=x", b"expand[]=x", b"inc%6Cude%5B%5D=x",
])
def test_v2_include_is_refused(query: bytes) -> None:
    # v2 expands with `include`, which the engine does not read: refused, not forwarded.
    with pytest.raises(BodyRefused):
        check_v2_query(query)


def test_v2_queries_without_include_pass() -> None:
    check_v2_query(b"limit=10&page=abc_1")


def test_media_type_parameters() -> None:
    assert media_type(b'Multipart/Form-Data; Boundary="a b"') == (
        b"multipart/form-data", {b"boundary": b"a b"})
    for bad in (b"text", b"a/b/c", b"a/b; x", b"a/b; x=1; X=2", b"a b/c"):
        with pytest.raises(BodyRefused):
            media_type(bad)


# -- end to end: a real gateway, a recording upstream --------------------------------------


@pytest.fixture(scope="module")
def gw(db_url: str, recorder: Recorder, workdir: Path) -> Iterator[Gateway]:
    with run_gateway(db_url, recorder.url, workdir) as g:
        yield g


@pytest.fixture(scope="module")
def app(store: Store) -> App:
    return new_app(store, ["charge_write", "file_write"])


def auth(app: App) -> list[str]:
    return [f"Authorization: Bearer {app.key}", f"Stripe-Account: {app.account}"]


def send(gw: Gateway, app: App, method: str, target: str, ctype: str | None,
         body: bytes) -> bytes:
    lines = [*auth(app), f"Content-Length: {len(body)}"]
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    host, port = gw.url.removeprefix("http://").split(":")
    import socket

    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = "\r\n".join([f"{method} {target} HTTP/1.1", f"Host: {host}",
                            "Connection: close", *lines])
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.e2e
@pytest.mark.parametrize(("method", "ctype", "body"), [
    ("POST", "application/json", b'{"expand":["customer"]}'),
    ("GET", "application/json", b'{"expand":["customer"]}'),
    ("POST", "text/plain", b'{"expand":["customer"]}'),
    ("POST", None, b'{"expand":["customer"]}'),
    ("POST", "application/x-www-form-urlencoded", b'{"expand":["customer"]}'),
    ("GET", "application/x-www-form-urlencoded", b"expand[]=customer"),
    ("DELETE", "application/x-www-form-urlencoded", b"expand[]=customer"),
    ("POST", "application/x-www-form-urlencoded; charset=utf-16", b"expand[]=customer"),
    ("POST", f"multipart/form-data; boundary={B.decode()}",
     multipart(("expand[]", b"customer", None))),
])
def test_expand_in_a_body_the_engine_does_not_read_is_refused(
    gw: Gateway, recorder: Recorder, app: App, method: str, ctype: str | None, body: bytes
) -> None:
    before = len(recorder.requests)
    answer = send(gw, app, method, "/v1/charges/ch_X", ctype, body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b'"type": "invalid_request_error"' in answer
    assert len(recorder.requests) == before


@pytest.mark.e2e
def test_forwarded_bodies_carry_the_gateways_content_type(
    gw: Gateway, recorder: Recorder, app: App
) -> None:
    answer = send(gw, app, "POST", "/v1/charges/ch_X",
                  "application/x-www-form-urlencoded; charset=UTF-8", b"description=x")
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    seen = recorder.requests[-1]
    assert seen["body"] == "description=x"
    assert seen["headers"]["content-type"] == "application/x-www-form-urlencoded"

    # A file upload: forwarded byte for byte, its fields decided on like a form's.
    ctype = f"multipart/form-data; boundary={B.decode()}"
    answer = send(gw, app, "POST", "/v1/files", ctype, FILE)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    seen = recorder.requests[-1]
    assert seen["body"].encode("latin-1") == FILE
    assert seen["headers"]["content-type"] == ctype
    before = len(recorder.requests)
    answer = send(gw, app, "POST", "/v1/files", ctype,
                  multipart(("expand[]", b"purpose", None), ("file", b"x", "x.txt")))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]  # the engine read the expand
    assert len(recorder.requests) == before

    # A GET with an empty body and a stray Content-Type: forwarded without one.
    r = httpx.get(gw.url + "/v1/charges/ch_X?empty=1", headers={
        "Authorization": f"Bearer {app.key}", "Stripe-Account": app.account,
        "Content-Type": "application/json"})
    assert r.status_code == 200
    assert "content-type" not in r.json()["headers"]


@pytest.mark.e2e
def test_braces_in_the_path_are_refused(gw: Gateway, recorder: Recorder, app: App) -> None:
    before = len(recorder.requests)
    answer = raw_request(gw.url, "GET /v1/charges/{charge} HTTP/1.1", auth(app))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert len(recorder.requests) == before


@pytest.mark.e2e
def test_v2_include_is_not_forwarded(gw: Gateway, recorder: Recorder, store: Store) -> None:
    app = new_app(store, ["recipient_verification_read"])
    path = "/v2/money_management/recipient_verifications/rv_1"
    h = {"Authorization": f"Bearer {app.key}", "Stripe-Account": app.account}
    r = httpx.get(gw.url + path + "?probe=1", headers=h)
    assert r.status_code == 200, r.text
    before = len(recorder.requests)
    r = httpx.get(gw.url + path + "?include=payout_method", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_not_allowed"
    assert len(recorder.requests) == before
