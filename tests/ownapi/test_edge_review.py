"""The own-API edge against the review's findings (review-edge): each one a negative test.

Units first (the readers, the body rules, the store's record of its API), then real
`permgate serve --api` processes in front of a recording upstream that keeps repeated
header lines (tests/gateway/recorder.py `header_lines`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.gateway.procs import UPSTREAM_KEY, Gateway, run_gateway
from tests.gateway.recorder import Recorder, recording_upstream
from tests.ownapi.acme import SPEC, api_toml, write_dir

import permgate
from permgate import manifest as manifest_mod
from permgate.api.params import BadParam, ExpandReader
from permgate.api.profile import (
    ApiDirError,
    ApiProfile,
    gateway_path,
    parse_api_toml,
    spec_changed,
    spec_digest,
)
from permgate.gateway.body import (
    STRIPE_BODY,
    BodyRefused,
    body_rules,
    decide_body,
)
from permgate.gateway.demo import free_port
from permgate.store import Store, StoreError

ACCOUNT = "acct_edge1"
OWN = ApiProfile(name="acme", title="Acme", base_paths=("/v1",), account_header="Acme-Account",
                 auth_schemes=("bearer",), body_encodings=("json", "form"),
                 expand_style="comma", error_style="problem", directory="/x")
BIN = Path(sys.executable).parent


# -- finding 1: expansion-like parameters in every non-Stripe style --------------------------

@pytest.mark.parametrize("style,param", [("none", "expand"), ("comma", "expand"),
                                         ("include", "include")])
@pytest.mark.parametrize("key", [
    "include", "embed", "with", "populate", "fields[order]", "_embed", "%24expand", "$expand",
    "Include", "EMBED", "expand_fields", "sideload", "%C4%B1nclude",  # dotless i: INCLUDE
    "%EF%BD%89nclude",  # fullwidth i (NFKC)
    "%C5%BFideload",  # long s: SIDELOAD
    "populate%5B%5D", "embed%255B%255D",
])
def test_expansion_like_parameters_are_refused(style: str, param: str, key: str) -> None:
    reader = ExpandReader(style, param)
    if key == param:
        return
    with pytest.raises(BadParam):
        reader.query(f"{key}=customer")
    with pytest.raises(BadParam):
        reader.body(f"{key}=customer")
    with pytest.raises(BadParam):
        reader.body({key: "customer"})


def test_the_own_parameter_and_ordinary_ones_still_pass() -> None:
    assert ExpandReader("comma", "expand").query("expand=customer,product&limit=3") == (
        "customer", "product")
    assert ExpandReader("include", "include").query("include=customer&page[size]=2") == (
        "customer",)
    assert ExpandReader("none", "expand").query("limit=3&include_archived=true") == ()
    with pytest.raises(BadParam):
        ExpandReader("none", "expand").query("expand=customer")
    # api.toml refuse_params adds the API's own names.
    reader = ExpandReader("none", "expand", ("hydrate",))
    with pytest.raises(BadParam):
        reader.query("Hydrate=customer")


def test_refuse_params_and_single_tenant_in_api_toml(tmp_path: Path) -> None:
    p = parse_api_toml(api_toml(refuse_params='["hydrate"]'), tmp_path)
    assert p.refuse_params == ("hydrate",)
    with pytest.raises(ApiDirError, match="refuse_params"):
        parse_api_toml(api_toml(refuse_params='["a b"]'), tmp_path)
    p = parse_api_toml(api_toml(account_header='""', single_tenant="true"), tmp_path)
    assert p.single_tenant and not p.account_header
    with pytest.raises(ApiDirError, match="single_tenant"):
        parse_api_toml(api_toml(single_tenant="true"), tmp_path)  # with Acme-Account


def test_declared_query_parameters_only(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "dir")
    doc = json.loads((d / "operations.json").read_text())
    for row in doc["operations"]:
        if row["path"] == "/v1/orders/{order}":
            row["query_params"] = ["expand", "filter"]
    (d / "operations.json").write_text(json.dumps(doc))
    engine, _ = permgate.read_api_dir(d)
    grant = ["order_read", "customer_read"]
    assert engine.decide("GET", "/v1/orders/ord_1?expand=customer", None, grant).allowed
    assert engine.decide("GET", "/v1/orders/ord_1?filter[status]=open", None, grant).allowed
    for q in ("limit=3", "Filter=x", "filterx=1", "%66ields=customer", "q"):
        d1 = engine.decide("GET", f"/v1/orders/ord_1?{q}", None, grant)
        assert d1.kind == "bad_request" and "declares no such query parameter" in d1.message
        # The same through the uncached path (a body beside the query).
        d2 = engine.decide("GET", f"/v1/orders/ord_1?{q}", "", grant)
        assert d2.kind == "bad_request", q
    # Operations without the field (Stripe's table, older DIRs) refuse nothing for it.
    assert engine.decide("GET", "/v1/orders?limit=3", None, grant).allowed


# -- finding 12: JSON keys at every depth, by word ---------------------------------------------

def test_json_keys_by_word_at_every_depth() -> None:
    rules = body_rules(OWN)
    ok = decide_body("POST", b"/v1/orders", [b"application/json"], [],
                     b'{"include_archived": true, "includes_tax": 1, "nested": {"a": [1]}}',
                     rules)
    assert ok.content_type == b"application/json"
    for body in (b'{"options": {"expand": ["customer"]}}', b'{"a": [{"include": "x"}]}',
                 b'{"Embed": 1}', b'{"\\u0131nclude": "customer"}'):
        with pytest.raises(BodyRefused, match="expansions are read from the query"):
            decide_body("POST", b"/v1/orders", [b"application/json"], [], body, rules)


# -- finding 5: bodies on PUT/PATCH/DELETE, +json types -----------------------------------------

def test_write_methods_and_json_suffixes_for_own_apis() -> None:
    rules = body_rules(OWN)
    for method in ("PUT", "PATCH", "DELETE"):
        b = decide_body(method, b"/v1/orders/o", [b"application/json"], [], b'{"a": 1}', rules)
        assert b.forward == b'{"a": 1}'
    for ctype in (b"application/vnd.api+json", b"application/merge-patch+json",
                  b"Application/Merge-Patch+JSON; charset=utf-8"):
        b = decide_body("PATCH", b"/v1/orders/o", [ctype], [], b'{"a": 1}', rules)
        assert b.content_type == ctype.split(b";")[0].lower()
    with pytest.raises(BodyRefused):
        decide_body("PATCH", b"/v1/orders/o", [b"application/vnd.api+json"], [],
                    b'{"include": 1}', rules)
    with pytest.raises(BodyRefused):
        decide_body("PATCH", b"/v1/orders/o", [b"text/plain+json"], [], b'{"a": 1}', rules)
    # Stripe's rules and Stripe's sentence are unchanged.
    with pytest.raises(BodyRefused, match="Stripe reads its parameters from the query"):
        decide_body("PATCH", b"/v1/customers/c", [b"application/x-www-form-urlencoded"], [],
                    b"a=1", STRIPE_BODY)
    with pytest.raises(BodyRefused):
        decide_body("POST", b"/v2/core/x", [b"application/vnd.api+json"], [], b"{}",
                    STRIPE_BODY)


# -- finding 4: the account header may not be one the gateway forwards or uses ----------------

@pytest.mark.parametrize("name", [
    "Idempotency-Key", "User-Agent", "Accept", "Stripe-Version", "Forwarded",
    "X-Forwarded-For", "X-Forwarded-Host", "Proxy-Authorization", "Proxy-Foo", "Keep-Alive",
    "Request-Id", "Stripe-Context", "Stripe-Account", "Via", "Trailer", "Accept-Encoding",
    "Authorization", "Sec-Fetch-Mode",
])
def test_account_header_names_the_gateway_uses_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ApiDirError, match="account_header"):
        parse_api_toml(api_toml(account_header=json.dumps(name)), tmp_path)


# -- finding 9: the upstream URL ---------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://:secret@host", "http://u@host", "http://h:8000/a b", "http://h/a\\r\\nb",
    "http://h/a\\tb", "http://h/../x", "http://h/./x", "http://127.0.0.1:99999", "http://h:0",
    "http://h?x=1", "http://h#f", "ftp://h", "http://", "http://h/\\u00e9",
])
def test_bad_upstream_urls_are_one_line(tmp_path: Path, url: str) -> None:
    with pytest.raises(ApiDirError) as e:
        parse_api_toml(api_toml(upstream=url), tmp_path)
    assert "\n" not in str(e.value) and "url" in str(e.value)


def test_upstream_url_is_recomposed(tmp_path: Path) -> None:
    p = parse_api_toml(api_toml(upstream="HTTP://API.Example.com:8080/base/"), tmp_path)
    assert p.upstream_url == "http://api.example.com:8080/base"


# -- finding 10: the spec hash reads one bounded regular file ---------------------------------

def test_spec_hash_reads_only_a_regular_bounded_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(OSError):
            spec_digest(path)
    p = parse_api_toml(api_toml(spec=SPEC), tmp_path)
    p = ApiProfile(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "spec": str(fifo)})
    why = spec_changed(p)
    assert why is not None and "cannot be read" in why


# -- finding 13: paths the gateway serves itself -----------------------------------------------

def test_gateway_paths_match_the_gateways_mounts() -> None:
    from permgate import serve
    from permgate.api import profile
    from permgate.gateway.control import CONTROL_PATHS

    assert {p.decode() for p in CONTROL_PATHS} | {serve.INGEST_PATH, *serve.OAUTH_TOKEN_PATHS} \
        >= set(profile.GATEWAY_PATHS) - {"/oauth/token"}
    assert set(profile.GATEWAY_PREFIXES) == {serve.ADMIN_PREFIX, *serve.CONSOLE_PREFIXES}
    for path in ("/metrics", "/admin", "/admin/apps", "/console/x", "/oauth/authorize",
                 "/v1/oauth/token", "/webhooks/upstream", "/healthz"):
        assert gateway_path(path), path
    for path in ("/v1/orders", "/administrators", "/metrics/x", "/consoles"):
        assert not gateway_path(path), path


# -- finding 3: the store records its API ------------------------------------------------------

def _manifest(app_id: str, permissions: list[str]) -> manifest_mod.Manifest:
    return manifest_mod.parse(json.dumps({
        "id": app_id, "version": "1.0.0", "name": app_id, "icon": "",
        "permissions": [{"permission": p, "purpose": f"The tests need {p}."}
                        for p in permissions],
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": None, "image-src": None, "purpose": ""}},
    }))


def test_the_store_belongs_to_one_api(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "acme")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    try:
        permgate.use_api(d)
        with Store.open(url, upgrade=True) as store:
            store.upload_version(_manifest("com.example.orders", ["order_read"]), actor="t")
        permgate.use_api(None)  # Stripe's, on Acme's database: order_read is Stripe's too
        with pytest.raises(StoreError, match="belongs to the 'acme' API") as e:
            Store.open(url)
        assert e.value.code == "api_mismatch"
        with pytest.raises(StoreError, match="belongs to the 'acme' API"):
            Store.open(url, upgrade=True)
        # Acme's tables regenerated: refused until `db upgrade` accepts them.
        doc = json.loads((d / "permissions.json").read_text())
        doc["permissions"][0]["description"] += " (changed)"
        (d / "permissions.json").write_text(json.dumps(doc))
        permgate.use_api(d)
        with pytest.raises(StoreError, match="tables changed") as e:
            Store.open(url)
        assert e.value.code == "api_tables_changed"
        Store.open(url, upgrade=True).close()
        Store.open(url).close()
        # A Stripe database refuses Acme.
        stripe_url = f"sqlite:///{tmp_path / 'stripe.sqlite'}"
        permgate.use_api(None)
        with Store.open(stripe_url, upgrade=True) as store:
            store.upload_version(_manifest("com.example.s", ["customer_read"]), actor="t")
        permgate.use_api(d)
        with pytest.raises(StoreError, match="belongs to the 'stripe' API"):
            Store.open(stripe_url)
        # An empty database claimed by one API may still be taken by another.
        empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
        permgate.use_api(None)
        Store.open(empty, upgrade=True).close()
        permgate.use_api(d)
        with Store.open(empty) as store:
            store.upload_version(_manifest("com.example.o", ["order_read"]), actor="t")
        permgate.use_api(None)
        with pytest.raises(StoreError, match="belongs to the 'acme' API"):
            Store.open(empty)
    finally:
        permgate.use_api(None)


def test_the_cli_refuses_another_apis_database_with_exit_2(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "acme")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERMGATE_")}
    m = tmp_path / "app.json"
    from tests.gateway.procs import manifest_text

    m.write_text(manifest_text("com.example.o", "1.0.0", ["order_read"]))
    r = subprocess.run([str(BIN / "permgate"), "db", "upgrade", "--db", db, "--api", str(d)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(BIN / "permgate"), "apps", "upload", str(m), "--db", db,
                        "--api", str(d)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    for cmd in (["installs", "list"], ["admin", "serve", "--port", str(free_port())]):
        r = subprocess.run([str(BIN / "permgate"), *cmd, "--db", db], capture_output=True,
                           text=True, timeout=120,
                           env={**env, "PERMGATE_ADMIN_TOKEN": secrets.token_urlsafe(32)})
        assert r.returncode == 2, (cmd, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "belongs to the 'acme' API" in lines[0], lines


# -- finding 6: admin serve takes --api ---------------------------------------------------------

def test_admin_serve_takes_api() -> None:
    r = subprocess.run([str(BIN / "permgate"), "admin", "serve", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--api DIR" in r.stdout


# -- finding 11: scan decides events with the process's API ------------------------------------

def test_scan_events_use_the_process_api(tmp_path: Path) -> None:
    from permgate.scan import scan

    d = write_dir(tmp_path / "acme")
    src = tmp_path / "app"
    src.mkdir()
    (src / "hooks.py").write_text(
        "def on_event(event):\n    if event.type == 'order.created':\n        return 1\n")
    try:
        permgate.use_api(d)
        v = scan(src)
    finally:
        permgate.use_api(None)
    kinds = {e.use.event: (e.kind, e.required) for e in v.events}
    assert kinds.get("order.created", ("?",))[0] == "missing", kinds
    assert kinds["order.created"][1] == (("event_read",), ("order_read", "order_write"))


# -- through real gateways ----------------------------------------------------------------------

def _setup(tmp: Path, upstream: str, name: str, **edge: str) -> tuple[Path, str, str, str]:
    """A DIR and its database: a restricted-key app (order_read) on ACCOUNT, a secret-key app
    (order_read) on ACCOUNT. (DIR, db url, restricted key, secret key)."""
    d = write_dir(tmp / f"{name}-dir", upstream=upstream, **edge)
    url = f"sqlite:///{tmp / f'{name}.db'}"
    from tests.gateway.procs import manifest_text

    permgate.use_api(d)
    try:
        with Store.open(url, upgrade=True) as store:
            store.upload_version(manifest_mod.parse(manifest_text(
                "com.example.rk", "1.0.0", ["order_read"], access_type="restricted_api_key")),
                actor="t")
            rk = store.install("com.example.rk", ACCOUNT, "test", by="ann", role="admin")
            assert rk.key is not None
            r2 = store.upload_version(manifest_mod.parse(manifest_text(
                "com.example.sk", "1.0.0", ["order_read"])), actor="t")
            store.install("com.example.sk", ACCOUNT, "test", by="ann", role="admin")
            sk = next(k.secret for k in r2.keys if k.mode == "test")
    finally:
        permgate.use_api(None)
    return d, url, rk.key.secret, sk


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    with recording_upstream() as r:
        yield r


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-review")


@pytest.fixture(scope="module")
def tenant_gw(tmp: Path, rec: Recorder) -> Iterator[tuple[Gateway, str, str]]:
    """A comma-style API whose account header is X-Tenant, Basic with user:password upstream,
    both app-key schemes."""
    d, url, rk, sk = _setup(tmp, rec.url, "tenant", account_header='"X-Tenant"',
                            auth_schemes='["basic"]')
    toml = (d / "api.toml").read_text().replace('auth_scheme = "bearer"',
                                                'auth_scheme = "basic"')
    (d / "api.toml").write_text(toml)
    with run_gateway(url, rec.url, tmp, extra=["--api", str(d)],
                     key_text="test: acme-user:pa55:word\n") as gw:
        yield gw, rk, sk


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_client_copies_of_the_account_header_never_reach_the_upstream(
        tenant_gw: tuple[Gateway, str, str], rec: Recorder) -> None:
    gw, rk, _ = tenant_gw
    n = len(rec.requests)
    # A restricted key carries its account: a client's X-Tenant naming another is refused,
    # its own is replaced by the gateway's, never forwarded beside it.
    r = httpx.get(gw.url + "/v1/orders/ord_1", headers=[
        ("Authorization", _basic(rk)), ("X-Tenant", "acct_mallory")], timeout=10)
    assert r.status_code == 403, r.text
    assert len(rec.requests) == n
    r = httpx.get(gw.url + "/v1/orders/ord_1", headers=[
        ("Authorization", _basic(rk)), ("X-Tenant", ACCOUNT), ("Idempotency-Key", "k1"),
        ("User-Agent", "ua")], timeout=10)
    assert r.status_code == 200, r.text
    lines = rec.requests[-1]["header_lines"]
    assert [v for k, v in lines if k == "x-tenant"] == [ACCOUNT]
    auths = [v for k, v in lines if k == "authorization"]
    # The upstream's Basic credential is user:password as written, no colon added.
    assert auths == ["Basic " + base64.b64encode(b"acme-user:pa55:word").decode()]
    assert ("idempotency-key", "k1") in lines


def test_401_challenges_follow_auth_schemes(tenant_gw: tuple[Gateway, str, str]) -> None:
    gw, _, _ = tenant_gw
    r = httpx.get(gw.url + "/v1/orders", timeout=10)
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == ['Basic realm="permgate"']


def test_a_comma_expansion_without_its_grant_is_refused_end_to_end(
        tenant_gw: tuple[Gateway, str, str], rec: Recorder) -> None:
    gw, _, sk = tenant_gw
    headers = {"Authorization": _basic(sk), "X-Tenant": ACCOUNT}
    n = len(rec.requests)
    r = httpx.get(gw.url + "/v1/orders/ord_1?expand=customer", headers=headers, timeout=10)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "'customer_read'" in r.json()["detail"]
    for q in ("include=customer", "embed=customer", "with=customer", "fields[order]=customer",
              "%C4%B1nclude=customer", "Expand=customer", "populate=customer"):
        r = httpx.get(gw.url + "/v1/orders/ord_1?" + q, headers=headers, timeout=10)
        assert r.status_code == 400, (q, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert len(rec.requests) == n  # none reached the upstream
    r = httpx.get(gw.url + "/v1/orders/ord_1?limit=3", headers=headers, timeout=10)
    assert r.status_code == 200 and len(rec.requests) == n + 1


def test_patch_and_jsonapi_bodies_through_the_gateway(
        tenant_gw: tuple[Gateway, str, str], rec: Recorder, tmp: Path) -> None:
    gw, _, _ = tenant_gw
    # The secret-key app holds order_read only: its PATCH is decided (403) ...
    _, _, sk = tenant_gw
    headers = {"Authorization": _basic(sk), "X-Tenant": ACCOUNT}
    r = httpx.patch(gw.url + "/v1/orders/ord_1", headers={
        **headers, "Content-Type": "application/vnd.api+json"}, content=b'{"status": "x"}',
        timeout=10)
    assert r.status_code == 403 and "'order_write'" in r.json()["detail"], r.text
    n = len(rec.requests)
    r = httpx.patch(gw.url + "/v1/orders/ord_1", headers={
        **headers, "Content-Type": "application/json"},
        content=b'{"status": "x", "meta": {"include": ["customer"]}}', timeout=10)
    assert r.status_code == 400, r.text
    assert len(rec.requests) == n


def test_patch_forwarded_for_a_writer(tmp: Path, rec: Recorder) -> None:
    from tests.gateway.procs import manifest_text

    d = write_dir(tmp / "writer-dir", upstream=rec.url)
    url = f"sqlite:///{tmp / 'writer.db'}"
    permgate.use_api(d)
    try:
        with Store.open(url, upgrade=True) as store:
            res = store.upload_version(manifest_mod.parse(manifest_text(
                "com.example.w", "1.0.0", ["order_write"])), actor="t")
            store.install("com.example.w", ACCOUNT, "test", by="ann", role="admin")
            key = next(k.secret for k in res.keys if k.mode == "test")
    finally:
        permgate.use_api(None)
    with run_gateway(url, rec.url, tmp, extra=["--api", str(d)]) as gw:
        r = httpx.patch(gw.url + "/v1/orders/ord_1", headers={
            "Authorization": f"Bearer {key}", "Acme-Account": ACCOUNT,
            "Content-Type": "application/vnd.api+json"}, content=b'{"status": "x"}',
            timeout=10)
        assert r.status_code == 200, r.text
        seen = rec.requests[-1]
        assert seen["method"] == "PATCH" and seen["body"] == '{"status": "x"}'
        assert seen["headers"]["content-type"] == "application/vnd.api+json"


def test_an_untagged_upstream_credential_serves_live_only(tmp: Path, rec: Recorder) -> None:
    d, url, _, sk = _setup(tmp, rec.url, "modes")
    n = len(rec.requests)
    headers = {"Authorization": f"Bearer {sk}", "Acme-Account": ACCOUNT}
    with run_gateway(url, rec.url, tmp, extra=["--api", str(d)],
                     key_text="acme_production_token\n") as gw:
        r = httpx.get(gw.url + "/v1/orders/ord_1", headers=headers, timeout=10)
        assert r.status_code == 503 and "test mode" in r.json()["detail"], r.text
    assert len(rec.requests) == n
    # api.toml may say an untagged credential serves test mode too.
    toml = (d / "api.toml").read_text().replace(
        'auth_scheme = "bearer"', 'auth_scheme = "bearer"\nuntagged_key_modes = ["live", "test"]')
    (d / "api.toml").write_text(toml)
    with run_gateway(url, rec.url, tmp, extra=["--api", str(d)],
                     key_text="acme_production_token\n") as gw:
        r = httpx.get(gw.url + "/v1/orders/ord_1", headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        assert rec.requests[-1]["headers"]["authorization"] == "Bearer acme_production_token"


def test_serve_refuses_shadowed_operation_paths(tmp: Path, rec: Recorder) -> None:
    d = write_dir(tmp / "shadow-dir", upstream=rec.url)
    doc = json.loads((d / "operations.json").read_text())
    doc["operations"].append({**doc["operations"][0], "path": "/metrics"})
    (d / "operations.json").write_text(json.dumps(doc))
    r = subprocess.run([str(BIN / "permgate"), "serve", "--api", str(d), "--db",
                        f"sqlite:///{tmp / 'shadow.db'}", "--port", str(free_port())],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PERMGATE_UPSTREAM_KEY": UPSTREAM_KEY})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "serves /metrics itself" in lines[0], lines


# -- brief item 11: `permgate authz --api DIR` ---------------------------------------------------

def test_authz_removals_follow_the_apis_account_header() -> None:
    from permgate.gateway.authz import removals

    client = [(b"authorization", b"Bearer k"), (b"acme-account", b"a"),
              (b"stripe-account", b"acct_2"), (b"idempotency-key", b"i")]
    assert removals(client, account=True, content_type=False,
                    account_name=b"acme-account") == b"stripe-account"
    assert removals(client, account=False, content_type=False,
                    account_name=b"acme-account") == b"acme-account,stripe-account"


@pytest.mark.e2e
def test_authz_decides_for_the_api(tmp: Path, rec: Recorder) -> None:
    from tests.gateway.envoyproc import run_authz

    from permgate.gateway.authz import REMOVE

    d, url, _, sk = _setup(tmp, rec.url, "authz")
    auth = {"Authorization": f"Bearer {sk}", "Acme-Account": ACCOUNT}
    with run_authz(url, tmp, ["--api", str(d)]) as authz:
        check = f"http://127.0.0.1:{authz.port}"
        r = httpx.get(check + "/v1/orders/ord_1", headers={**auth, "Stripe-Account": "acct_x"},
                      timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["acme-account"] == ACCOUNT and "stripe-account" not in r.headers
        assert "stripe-account" in r.headers[REMOVE.decode()].split(",")
        r = httpx.get(check + "/v1/customers", headers=auth, timeout=10)
        assert r.status_code == 403 and "authorization" not in r.headers
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "'customer_read'" in r.json()["detail"]
        r = httpx.get(check + "/v1/orders/ord_1?include=customer", headers=auth, timeout=10)
        assert r.status_code == 400, r.text
        # Envoy lets through only the headers its config lists: the shipped one lists
        # stripe-account, so a start with another account header says what to change.
        assert "allowed_upstream_headers must list 'Acme-Account'" in authz.log_path.read_text()
    # The same refusals as serve: no account header without single_tenant.
    d2 = write_dir(tmp / "authz-noaccount", upstream=rec.url, account_header='""')
    r = subprocess.run([str(BIN / "permgate"), "authz", "--api", str(d2), "--db", url,
                        "--port", str(free_port()), "--control-port", str(free_port())],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PERMGATE_UPSTREAM_KEY": UPSTREAM_KEY})
    assert r.returncode == 2 and "single_tenant = true" in r.stderr, r.stderr


# -- init's part: declared parameters, and REVIEW.md flags ----------------------------------------

TINY = """openapi: 3.1.0
info: {title: Tiny, version: '1'}
servers: [{url: 'https://tiny.example.com'}]
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows: {clientCredentials: {tokenUrl: 'https://tiny.example.com/t',
              scopes: {things.read: Read things}}}
paths:
  /things/{thing}:
    get:
      operationId: getThing
      security: [{oauth: [things.read]}]
      parameters:
        - {name: thing, in: path, required: true, schema: {type: string}}
        - {name: include, in: query, schema: {type: string}}
        - {name: limit, in: query, schema: {type: integer}}
      responses:
        '200': {description: A thing, content: {application/json: {schema:
                {type: object, properties: {id: {type: string}}}}}}
  /metrics:
    get:
      operationId: metrics
      security: [{oauth: [things.read]}]
      parameters:
        - {name: filter, in: query, schema: {type: object}}
      responses:
        '200': {description: Metrics}
"""


def test_init_writes_declared_parameters_and_flags_the_edge(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "tiny-api"
    r = subprocess.run([str(BIN / "permgate"), "init", "--from-openapi", str(spec), "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {row["path"]: row for row in json.loads(
        (out / "operations.json").read_text())["operations"]}
    assert rows["/things/{thing}"]["query_params"] == ["include", "limit"]
    assert "query_params" not in rows["/metrics"]  # a form-exploded object: not nameable
    review = (out / "REVIEW.md").read_text()
    for text in ("every install acts on the same upstream data", "reads as an expansion",
                 "the gateway serves this path itself", "cannot be named"):
        assert text in review, text
    engine, _ = permgate.read_api_dir(out)
    d = engine.decide("GET", "/things/t1?limit=2&sort=x", None, ["things.read"])
    assert d.kind == "bad_request" and "'sort'" in d.message
    assert engine.decide("GET", "/things/t1?limit=2", None, ["things.read"]).allowed
