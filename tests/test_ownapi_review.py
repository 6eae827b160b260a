"""`permgate init --from-openapi`: the review's findings, each a test that fails without its fix.

Grants wider than the document (a write scope implying a broader read, an object's events
gated by whichever read scope came first), `--force` deleting what init did not write,
literal segments a server would normalise, YAML bounded only after composing, inputs that
ended as internal errors, scope names, scope levels, an interrupted swap, REVIEW.md escaping.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import permgate
from permgate.api.operations import operations_from_document
from permgate.api.router import Router
from permgate.cli import main
from permgate.decision import Engine
from permgate.ownapi import SpecError, derive
from permgate.ownapi.spec import MAX_YAML_EVENTS, parse
from permgate.ownapi.writer import render_review, render_toml

TABLES = ("permissions.json", "events.json", "operations.json", "objects.json",
          "expansions.json")


def run_init(spec: Path, out: Path, *extra: str) -> int:
    return main(["init", "--from-openapi", str(spec), "--out", str(out), *extra])


def engine_of(d: Path) -> Engine:
    name = tomllib.loads((d / "api.toml").read_text())["api"]["name"]
    return permgate.load(*(d / t for t in TABLES), name=name)


def write(tmp_path: Path, doc: dict[str, Any], name: str = "spec.json") -> Path:
    spec = tmp_path / name
    spec.write_text(json.dumps(doc))
    return spec


def init_ok(tmp_path: Path, doc: dict[str, Any], *extra: str) -> tuple[Engine, Path]:
    out = tmp_path / "api"
    assert run_init(write(tmp_path, doc), out, *extra) == 0
    return engine_of(out), out


def refused(tmp_path: Path, doc: dict[str, Any] | bytes, capsys: pytest.CaptureFixture[str],
            name: str = "spec.json") -> str:
    spec = tmp_path / name
    if isinstance(doc, bytes):
        spec.write_bytes(doc)
    else:
        spec.write_text(json.dumps(doc))
    out = tmp_path / "api"
    assert run_init(spec, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert not out.exists()
    return err


def resp(ref: str, array: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ref}"}
    if array:
        schema = {"type": "array", "items": schema}
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def op(oid: str, scopes: list[str] | None = None, ref: str | None = None,
       **extra: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"operationId": oid,
                         "responses": resp(ref) if ref else {"200": {"description": "ok"}}}
    if scopes is not None:
        o["security"] = [{"o": scopes}]
    o.update(extra)
    return o


def oauth(*scopes: str) -> dict[str, Any]:
    return {"securitySchemes": {"o": {"type": "oauth2", "flows": {"clientCredentials": {
        "tokenUrl": "https://t.test/token", "scopes": {s: s for s in scopes}}}}}}


def graphish(paths: dict[str, Any]) -> dict[str, Any]:
    """The review's t2: Microsoft-Graph-style scopes, one object, four operations."""
    comps = oauth()
    comps["schemas"] = {"User": {"type": "object", "properties": {"id": {"type": "string"}}}}
    return {"openapi": "3.1.0", "info": {"title": "Graphish", "version": "1"},
            "servers": [{"url": "https://api.example.com/v1"}], "components": comps,
            "paths": paths}


GRAPH_PATHS: dict[str, Any] = {
    "/me": {"get": op("me", ["User.Read"], "User")},
    "/users/{id}": {"get": op("user", ["User.Read.All"], "User"),
                    "patch": op("updUser", ["User.ReadWrite.All"], "User")},
    "/me/profile": {"patch": op("updMe", ["User.ReadWrite"], "User")},
}


# -- 1. implication only within one scope family ---------------------------------------------

def test_write_scope_never_implies_a_broader_read(tmp_path: Path) -> None:
    engine, _ = init_ok(tmp_path, graphish(GRAPH_PATHS))
    # editing your own profile does not let you read every user
    assert not engine.decide("GET", "/v1/users/someone_else", None,
                             engine.grant(["User.ReadWrite"])).allowed
    assert engine.decide("GET", "/v1/me", None, engine.grant(["User.ReadWrite"])).allowed
    assert engine.decide("GET", "/v1/users/u1", None,
                         engine.grant(["User.ReadWrite.All"])).allowed
    assert not engine.decide("GET", "/v1/me", None,
                             engine.grant(["User.ReadWrite.All"])).allowed


def _implications(doc: dict[str, Any]) -> set[tuple[str, str]]:
    r = derive(parse(json.dumps(doc).encode(), "t"), "t")
    return {(p["name"], t) for p in r.permissions for t in p["implies"]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(list(GRAPH_PATHS)))
def test_implications_do_not_depend_on_path_order(order: list[str]) -> None:
    doc = graphish({k: GRAPH_PATHS[k] for k in order})
    assert _implications(doc) == {("User.ReadWrite", "User.Read"),
                                  ("User.ReadWrite.All", "User.Read.All")}


def test_a_family_with_several_scopes_implies_nothing_and_is_flagged(tmp_path: Path) -> None:
    doc = graphish({
        "/a": {"get": op("a", ["files.read"], "User")},
        "/b": {"get": op("b", ["read:files"], "User"),
               "post": op("c", ["files.write"], "User")},
    })
    engine, out = init_ok(tmp_path, doc)
    assert not engine.decide("GET", "/v1/a", None, engine.grant(["files.write"])).allowed
    assert "Write scopes that imply no read scope" in (out / "REVIEW.md").read_text()


# -- 2. an object's read permission: the one every reader holds, or none ---------------------

def two_views(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    comps = oauth("profile.public.read", "profile.read")
    comps["schemas"] = {"Profile": {"type": "object", "x-permgate-object": "profile",
                                    "properties": {"id": {"type": "string"}}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0", "info": {"title": "Views", "version": "1"},
        "servers": [{"url": "https://api.example.com/v1"}], "components": comps,
        "paths": {"/profiles/public": {"get": op("pub", ["profile.public.read"], "Profile")},
                  "/profiles/{id}": {"get": op("prof", ["profile.read"], "Profile")}},
        "webhooks": {"profile.updated": {"post": {
            "requestBody": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Profile"}}}},
            "responses": {"200": {"description": "ok"}}}}},
    }
    doc.update(extra or {})
    return doc


@pytest.mark.parametrize("order", ["public-first", "full-first"])
def test_object_read_under_two_scopes_gates_events_for_nobody(tmp_path: Path,
                                                               order: str) -> None:
    doc = two_views()
    if order == "full-first":
        doc["paths"] = dict(reversed(list(doc["paths"].items())))
    engine, out = init_ok(tmp_path, doc)
    for grant in (["profile.public.read", "event_read"], ["profile.read", "event_read"]):
        assert not engine.decide_event("profile.updated", engine.grant(grant)).allowed, grant
    objects = json.loads((out / "objects.json").read_text())["objects"]
    assert "permission" not in objects["profile"]
    assert "Objects read under several permissions" in (out / "REVIEW.md").read_text()


def test_object_read_permission_the_strictest_or_explicit(tmp_path: Path) -> None:
    # the document says the full view includes the public one: the full view gates events
    engine, _ = init_ok(tmp_path, two_views(
        {"x-permgate-implies": {"profile.read": ["profile.public.read"]}}))
    assert engine.decide_event("profile.updated",
                               engine.grant(["profile.read", "event_read"])).allowed
    assert not engine.decide_event("profile.updated",
                                   engine.grant(["profile.public.read", "event_read"])).allowed
    shutil.rmtree(tmp_path / "api")
    engine, _ = init_ok(tmp_path, two_views(
        {"x-permgate-object-permissions": {"profile": "profile.read"}}))
    assert engine.decide_event("profile.updated",
                               engine.grant(["profile.read", "event_read"])).allowed


# -- 3. --force replaces only what init wrote --------------------------------------------------

def test_force_never_deletes_the_spec_or_foreign_files(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "main.py").write_text("print()")
    spec = write(proj, two_views(), "openapi.json")
    assert run_init(spec, proj, "--force") == 2
    assert "holds the document itself" in capsys.readouterr().err
    assert spec.is_file() and (proj / "src" / "main.py").is_file()
    # a DIR with only init's file names but an api.toml init did not write
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "api.toml").write_text("[api]\n")
    assert run_init(spec, fake, "--force") == 2
    assert "no api.toml written by init" in capsys.readouterr().err
    assert (fake / "api.toml").read_text() == "[api]\n"


def test_force_refuses_the_working_directory_and_above(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    spec = write(tmp_path, two_views())
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert run_init(spec, tmp_path / "a", "--force") == 2
    assert "or above it" in capsys.readouterr().err
    assert work.is_dir() and spec.is_file()


# -- 9. an interrupted swap never loses the old DIR --------------------------------------------

def test_interrupted_force_twice_keeps_the_old_dir(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from permgate.ownapi import writer

    spec = write(tmp_path, two_views())
    out = tmp_path / "api"
    assert run_init(spec, out) == 0
    before = (out / "operations.json").read_text()
    real_rename, real_rmtree = os.rename, shutil.rmtree
    calls = {"rename": 0, "rmtree": 0}

    def rename(a: Any, b: Any) -> None:
        calls["rename"] += 1
        if Path(b) == out and ".init-" in str(a):
            raise KeyboardInterrupt  # the first Ctrl-C: new DIR into place
        real_rename(a, b)

    def rmtree(p: Any, ignore_errors: bool = False) -> None:
        calls["rmtree"] += 1
        raise KeyboardInterrupt  # the second, during the clean-up

    monkeypatch.setattr(writer.os, "rename", rename)
    monkeypatch.setattr(writer.shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
        writer.init_api(spec, out, force=True)
    monkeypatch.setattr(writer.os, "rename", real_rename)
    monkeypatch.setattr(writer.shutil, "rmtree", real_rmtree)
    assert calls["rmtree"] >= 1
    assert (out / "operations.json").read_text() == before  # put back, never deleted


# -- 4. literal segments pass the router's hostile-path checks ----------------------------------

@pytest.mark.parametrize("template", ["/files/..", "/files/%2e%2e/admin", "/files/x;y",
                                      "/files/.", "/files/a b", "/files/{a b}",
                                      "/fil\\es/x"])
def test_hostile_literal_segments_refused(tmp_path: Path, template: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Lit", "version": "1"},
           "paths": {template: {"get": op("a")}, "/ok": {"get": op("b")}}}
    err = refused(tmp_path, doc, capsys)
    assert "path" in err and repr(template) in err, err


def test_hostile_base_path_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Lit", "version": "1"},
           "servers": [{"url": "https://e.test/v1/%2e%2e"}], "paths": {"/ok": {"get": op("b")}}}
    assert "percent-encoded" in refused(tmp_path, doc, capsys)


def test_router_refuses_a_table_with_a_hostile_literal() -> None:
    rows = [{"method": "DELETE", "path": "/v1/files/%2e%2e/admin", "permission": "x_write",
             "unavailable": None, "objects": [], "list": False, "sources": ["test"]}]
    with pytest.raises(ValueError, match="percent-encoded"):
        Router(operations_from_document({"operations": rows}))


# -- 5. YAML bounded before it is composed ------------------------------------------------------

def test_huge_flat_yaml_refused_in_small_memory(tmp_path: Path) -> None:
    """19 MB of `x: [0,0,...]` once took 3.4 GB: here under a 1 GB address-space limit."""
    spec = tmp_path / "flat.yaml"
    with open(spec, "w") as f:
        f.write("openapi: 3.0.0\nx: [")
        f.write("0," * (9_500_000))
        f.write("0]\n")
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from permgate.cli import main
        sys.exit(main(["init", "--from-openapi", {str(spec)!r}, "--out", {str(tmp_path / "o")!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert f"more than {MAX_YAML_EVENTS:,} YAML nodes" in proc.stderr


def test_deep_yaml_refused_by_the_event_count(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert "nested deeper than 64" in refused(
        tmp_path, b"openapi: 3.0.0\nx: " + b"[" * 100 + b"]" * 100 + b"\n", capsys,
        "deep.yaml")


# -- 6. inputs that were internal errors: one line, exit 2 --------------------------------------

MINI: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "Mini", "version": "1"},
                        "paths": {"/things": {"get": op("list")}}}


def mini(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINI)
    doc.update(changes)
    return doc


BAD_CONTENT: dict[str, tuple[bytes, str]] = {
    "yaml-bigint": (b"openapi: 3.0.0\ninfo: {title: x}\nx: " + b"1" * 5000 + b"\n",
                    "invalid YAML"),
    "yaml-bad-date": (b"openapi: 3.0.0\ninfo: {title: x}\nx: 2020-13-45\n", "invalid YAML"),
    "json-lone-surrogate": (b'{"openapi":"3.0.0","info":{"title":"\\ud800"},"paths":{"/a":'
                            b'{"get":{"responses":{}}}}}', "lone surrogate"),
    "yaml-lone-surrogate": (b'openapi: 3.0.0\ninfo: {title: "\\ud800"}\n'
                            b"paths: {/a: {get: {responses: {}}}}\n", "invalid YAML"),
    "server-variables": (json.dumps(mini(servers=[{"url": "https://e.test/{v}",
                                                   "variables": 1}])).encode(),
                         "'variables' must be a mapping"),
    "implies-unhashable": (json.dumps(mini(**{"x-permgate-implies": {"things_write": [[]]}})
                                      ).encode(), "x-permgate-implies"),
    "json-duplicate-key": (b'{"openapi":"3.0.3","info":{"title":"x"},"paths":{"/a":{"get":'
                           b'{"security":[{"o":["a"]}],"security":[],"responses":{}}}}}',
                           "duplicate key 'security'"),
    "yaml-duplicate-key": (b"openapi: 3.0.3\ninfo: {title: x}\npaths:\n  /a:\n    get:\n"
                           b"      security: [{o: [a]}]\n      security: []\n"
                           b"      responses: {}\n", "duplicate key 'security'"),
    "yaml-int-and-str-key": (b"openapi: 3.0.3\ninfo: {title: x}\npaths:\n  /a:\n    get:\n"
                             b"      responses: {200: {description: a}, '200': "
                             b"{description: b}}\n", "duplicate key '200'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONTENT))
def test_bad_content_one_line_exit_2(tmp_path: Path, name: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    raw, expect = BAD_CONTENT[name]
    err = refused(tmp_path, raw, capsys, "spec.yaml" if "yaml" in name else "spec.json")
    assert expect in err and "internal error" not in err, err


@pytest.mark.parametrize("content", [1, [1], "x"])
def test_odd_request_body_content_is_ignored(tmp_path: Path, content: Any) -> None:
    """Once a TypeError (exit 70): a content that is not a mapping names no encoding."""
    _, out = init_ok(tmp_path, mini(paths={"/a": {"post": {**op("a"), "requestBody": {
        "content": content}}}}))
    assert tomllib.loads((out / "api.toml").read_text())["edge"]["body_encodings"] == ["json"]


FUZZ_BASE: dict[str, Any] = {
    "openapi": "3.1.0", "info": {"title": "T", "version": "1"},
    "servers": [{"url": "https://api.example.com/v1", "variables": {"x": {"default": "y"}}}],
    "security": [{"oauth": ["read:pets"]}],
    "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {
        "clientCredentials": {"tokenUrl": "https://x", "scopes": {"read:pets": "r",
                                                                   "write:pets": "w"}}}}},
        "schemas": {"Pet": {"type": "object", "properties": {
            "id": {"type": "string"}, "owner_id": {"type": "string"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}},
            "friend": {"type": "string", "x-permgate-expand": "pet"}}}}},
    "paths": {"/pets": {
        "get": {"operationId": "list", "tags": ["pets"],
                "security": [{"oauth": ["read:pets", "write:pets"]}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {
                    "schema": {"type": "array",
                               "items": {"$ref": "#/components/schemas/Pet"}}}}}}},
        "post": {"operationId": "search", "requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Pet"}}}},
            "responses": {"201": {"description": "ok"}}}},
        "/pets/{id}": {"delete": {"security": [{"oauth": ["write:pets"]}],
                                  "responses": {"204": {"description": "x"}}}}},
    "webhooks": {"pet.created": {"post": {"requestBody": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Pet"}}}}}}},
    "x-permgate-implies": {"write:pets": ["read:pets"]},
}
FUZZ_VALUES: list[Any] = [None, 1, "s", [], {}, [1], ["a"], {"a": 1}, True, 1.5, [None], [[]],
                          {"get": 1}, "", "a\nb", "x" * 300, "../..", "<!--", "event_read",
                          "pets_read", "%2e%2e", "{id}", "a b", "a|b`c"]


def _paths(o: Any, p: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [p]
    if isinstance(o, dict):
        for k, v in o.items():
            out += _paths(v, (*p, k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            out += _paths(v, (*p, i))
    return out


def test_fuzz_every_substitution_is_refused_or_rendered() -> None:
    """The review's fuzz loop: every value of FUZZ_VALUES at every place of a valid document.
    Anything but a SpecError (one line, exit 2) or a rendered DIR fails."""
    from pathlib import Path as P

    cases, bugs = 0, {}
    for at in _paths(FUZZ_BASE)[1:]:
        for value in FUZZ_VALUES:
            doc = copy.deepcopy(FUZZ_BASE)
            holder: Any = doc
            for k in at[:-1]:
                holder = holder[k]
            holder[at[-1]] = value
            for style in ("auto", "objects"):
                cases += 1
                try:
                    r = derive(parse(json.dumps(doc).encode(), "w"), "w", style=style)
                    tomllib.loads(render_toml(r, P("/x"), "0"))
                    render_review(r, P("/x"), "c")
                except SpecError as e:
                    assert "\n" not in str(e)
                except Exception as e:  # what the test is looking for
                    bugs.setdefault(type(e).__name__, (at, value, style, str(e)[:100]))
    assert cases > 1000 and not bugs, bugs


# -- 7. permission names taken from scopes -------------------------------------------------------

@pytest.mark.parametrize("scope", ["", "a\nb", "a b", "x" * 129, 7, {"a": 1}, 'q"uote'])
def test_scope_names_that_are_not_scope_tokens_refused(tmp_path: Path, scope: Any,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "S", "version": "1"},
           "components": oauth("pets.read"),
           "paths": {"/pets": {"get": op("a", [scope])}}}
    assert "not an OAuth scope token" in refused(tmp_path, doc, capsys)


def test_scope_named_event_read_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = two_views()
    doc["components"] = oauth("event_read", "profile.read")
    doc["paths"] = {"/profiles/{id}": {"get": op("prof", ["profile.read"], "Profile"),
                                       "delete": op("del", ["event_read"])}}
    doc["components"]["schemas"] = two_views()["components"]["schemas"]
    assert "scope named 'event_read'" in refused(tmp_path, doc, capsys)


def test_an_event_object_and_webhooks_share_event_read(tmp_path: Path) -> None:
    """`/events` returns `event` objects: their `event_read` is the one events need (as in
    Stripe's model), not a clash."""
    doc = two_views({"x-permgate-object-permissions": {"profile": "profile_read"}})
    doc["components"] = {"schemas": {**doc["components"]["schemas"], "Event": {
        "type": "object", "properties": {"id": {"type": "string"}}}}}
    doc["paths"] = {**{k: {m: {kk: vv for kk, vv in o.items() if kk != "security"}
                           for m, o in v.items()} for k, v in doc["paths"].items()},
                    "/events": {"get": op("events", ref="Event")}}
    engine, _ = init_ok(tmp_path, doc, "--permissions", "objects")
    assert engine.decide("GET", "/v1/events", None, engine.grant(["event_read"])).allowed
    assert engine.decide_event("profile.updated",
                               engine.grant(["profile_read", "event_read"])).allowed


def test_scope_spelt_like_an_object_name_with_another_meaning_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `pets_read` guards a DELETE of `users`; an operation without scopes on object `pets`
    # would get the generated `pets_read`: the same name, two meanings
    doc = {"openapi": "3.0.3", "info": {"title": "S", "version": "1"},
           "components": oauth("pets_read", "users.write"),
           "paths": {"/users/{u}": {"delete": op("a", ["users.write"], tags=["users"])},
                     "/users": {"post": op("b", ["pets_read"], tags=["users"])},
                     "/pets": {"get": op("c", tags=["pets"], security=[])}}}
    assert "has the name permgate gives" in refused(tmp_path, doc, capsys)


# -- 8. a scope's level from every operation it guards ------------------------------------------

def test_scope_level_from_all_operations(tmp_path: Path) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Gh", "version": "1"},
           "components": oauth("repo", "read:pets"),
           "paths": {"/repos/{r}": {"get": op("getRepo", ["repo"], tags=["repos"]),
                                    "delete": op("delRepo", ["repo"], tags=["repos"])},
                     "/pets/{p}": {"delete": op("delPet", ["read:pets"], tags=["pets"])}}}
    engine, out = init_ok(tmp_path, doc)
    assert engine.catalog.permissions["repo"].level == "write"
    review = (out / "REVIEW.md").read_text()
    assert "guards read and write operations" in review
    assert "the method says write, its scope read:pets says read" in review


# -- 10-12. flagged guesses, explicit objects, escaping, encodings, event names -----------------

def test_one_of_common_object_on_word_boundaries() -> None:
    from permgate.ownapi.rules import _kind_of

    assert _kind_of("deleted_customer", "customer") and _kind_of("card", "card")
    assert not _kind_of("discard_request", "card") and not _kind_of("border_rule", "order")


def test_guesses_flagged_and_schema_object_beats_the_owner_rule(tmp_path: Path) -> None:
    schemas = {
        "Order": {"type": "object", "properties": {"id": {"type": "string"}}},
        "Card": {"type": "object", "x-permgate-object": "card",
                 "properties": {"id": {"type": "string"}}},
        "Thing": {"oneOf": [{"$ref": "#/components/schemas/Order"},
                            {"$ref": "#/components/schemas/DeletedOrder"}]},
        "DeletedOrder": {"type": "object", "properties": {"deleted": {"type": "boolean"}}},
    }
    titled = {"200": {"description": "ok", "content": {"application/json": {"schema": {
        "type": "object", "title": "Widget", "properties": {"id": {"type": "string"}}}}}}}
    doc = {"openapi": "3.0.3", "info": {"title": "G", "version": "1"},
           "components": {"schemas": schemas},
           "paths": {"/orders/{order}": {"get": op("getOrder", ref="Order"),
                                         "delete": op("delOrder")},
                     "/orders/{order}/cards": {"get": op("cards", ref="Card")},
                     "/things/{t}": {"get": op("thing", ref="Thing")},
                     "/widgets": {"get": {"operationId": "w", "responses": titled}}}}
    _, out = init_ok(tmp_path, doc, "--permissions", "objects")
    rows = {f"{r['method']} {r['path']}": r for r in
            json.loads((out / "operations.json").read_text())["operations"]}
    assert rows["GET /orders/{order}/cards"]["permission"] == "card_read"
    review = (out / "REVIEW.md").read_text()
    for subject in ("DELETE /orders/{order}", "GET /things/{t}", "GET /widgets"):
        assert f"- `{subject}`: object" in review, subject


def test_review_md_escapes_the_spec(tmp_path: Path) -> None:
    doc = {"openapi": "3.0.3", "info": {"title": "Shop <!-- hidden", "version": "1"},
           "paths": {"/things": {"get": op("listThings", tags=["<!--[x](http://e)"],
                                           security=[{}])}}}
    _, out = init_ok(tmp_path, doc)
    review = (out / "REVIEW.md").read_text()
    outside = re.sub(r"`[^`\n]*`", "", review)  # nothing renders inside a code span
    assert "<!--" not in outside and "](http" not in outside
    assert "&lt;!--" in review
    assert "re-run with" in review


def test_encodings_follow_refs(tmp_path: Path) -> None:
    doc = mini(paths={"/a": {"$ref": "#/components/pathItems/A"}},
               components={"pathItems": {"A": {"post": {**op("a"), "requestBody": {
                   "$ref": "#/components/requestBodies/Form"}}}},
                   "requestBodies": {"Form": {"content": {
                       "application/x-www-form-urlencoded": {"schema": {}}}}}})
    _, out = init_ok(tmp_path, doc)
    assert tomllib.loads((out / "api.toml").read_text())["edge"]["body_encodings"] == ["form"]


def test_webhook_names_apps_cannot_subscribe_to_are_flagged(tmp_path: Path) -> None:
    doc = two_views({"x-permgate-object-permissions": {"profile": "profile.read"}})
    doc["webhooks"]["profileUpdated"] = doc["webhooks"]["profile.updated"]
    _, out = init_ok(tmp_path, doc)
    review = (out / "REVIEW.md").read_text()
    assert "- `profileUpdated`: not an event type" in review
    assert "- `profile.updated`: not an event type" not in review


def test_messages_name_the_document_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text("openapi: 3.0.0\npaths: {\n")
    assert main(["init", "--from-openapi", "bad.yaml", "--out", "o"]) == 2
    assert capsys.readouterr().err.startswith("permgate: bad.yaml: invalid YAML")


def test_the_reinit_command_serve_prints_works(tmp_path: Path) -> None:
    """`serve --api` refuses a DIR whose document changed and prints the command that makes
    it again: that command must replace the DIR (it is init's), with the same names."""
    import shlex

    from permgate.api.profile import read_profile, reinit_command, spec_changed

    spec = write(tmp_path, two_views({"x-permgate-object-permissions": {
        "profile": "profile.read"}}))
    out = tmp_path / "api"
    assert run_init(spec, out, "--permissions", "scopes") == 0
    doc = json.loads(spec.read_text())
    doc["info"]["version"] = "2"
    spec.write_text(json.dumps(doc))
    profile = read_profile(out)
    assert spec_changed(profile) is not None
    argv = shlex.split(reinit_command(profile))
    assert argv[:2] == ["permgate", "init"] and "--force" in argv
    assert main(argv[1:]) == 0
    again = read_profile(out)
    assert spec_changed(again) is None and again.permissions_style == "scopes"
