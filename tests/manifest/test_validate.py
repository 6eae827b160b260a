from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from tests.realworld import DATA, LOCAL_MANIFESTS, REAL_WORLD, SKIP_IF_ABSENT, Entry, lay_out

from permgate import manifest
from permgate.catalog import load_catalog
from permgate.cli import main
from permgate.manifest.schema import FIELDS_BEYOND_SCHEMA, VIEWPORTS_BEYOND_SCHEMA, check_structure

CATALOG = load_catalog()
EXAMPLES = sorted((DATA / "example-manifests").glob("*.json"))
SCHEMA_DIR = DATA / "stripe-apps-schema"

# Our verdict for each of Stripe's sample manifests, read one by one: the problems we expect.
EXPECTED_EXAMPLES: dict[str, set[tuple[str, str]]] = {
    "accessing-contextual-data.json": set(),
    "basic-auth.json": set(),
    "climate.json": set(),
    "crm-full-stack.json": set(),
    "dropbox-oauth-pkce.json": set(),
    "focus-view.json": set(),
    # uses stripe.dashboard.fullpage, newer than the schema's viewport list
    "full-page-pre-2026-06.json": set(),
    # no permissions; icon without "./"; post-install type "modal" is none of the three
    "full-page.json": {("/permissions", "required"), ("/icon", "pattern"),
                       ("/post_install_action/type", "enum")},
    "github-oauth.json": set(),
    "install-webhooks.json": set(),
    "linking-different-stripe-object.json": set(),
    "messaging.json": set(),
    "routing.json": set(),
    "secret-store.json": set(),
    "send-mail.json": set(),
    "settings-view.json": set(),
    "ship-io.json": set(),
    "show-toast.json": set(),
    "super-todo.json": set(),
    "ui-testing.json": set(),
}


def test_every_example_has_an_expected_verdict() -> None:
    assert sorted(EXPECTED_EXAMPLES) == [p.name for p in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_verdict(path: Path) -> None:
    problems = manifest.validate(manifest.load(path))
    assert {(p.pointer, p.code) for p in problems} == EXPECTED_EXAMPLES[path.name]
    for p in problems:
        assert p.line is not None and len(p.message) > 20


def _official() -> tuple[dict[str, Any], dict[str, Any], Registry]:
    base = json.loads((SCHEMA_DIR / "stripe-app.schema.json").read_text(encoding="utf-8"))
    local = json.loads((SCHEMA_DIR / "stripe-app-local.schema.json").read_text(encoding="utf-8"))
    registry: Registry = Registry().with_resources([
        (base["$id"], Resource.from_contents(base)),
        ("stripe-app.schema.json", Resource.from_contents(base)),
        (local["$id"], Resource.from_contents(local)),
    ])
    return base, local, registry


BASE, LOCAL, REGISTRY = _official()
SCHEMA_ENUM = set(BASE["properties"]["permissions"]["items"]["properties"]["permission"]["enum"])


def _official_fields(data: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Top-level fields the official schema faults, minus where it is stale."""
    out: set[str] = set()
    for e in jsonschema.Draft7Validator(schema, registry=REGISTRY).iter_errors(data):
        path = list(e.absolute_path)
        if e.validator == "required" and not path:
            m = re.match(r"'(.+)' is a required property", e.message)
            assert m
            out.add(m.group(1))
        elif e.validator == "additionalProperties" and not path:
            extra = set(e.instance) - set(schema["properties"])
            out |= extra - set(FIELDS_BEYOND_SCHEMA)
        elif e.validator == "enum" and path[0] == "permissions" and path[-1] == "permission":
            name = e.instance
            if not (name in CATALOG and CATALOG[name].requestable):
                out.add("permissions")
        elif e.validator == "enum" and path[-1] == "viewport":
            if e.instance not in VIEWPORTS_BEYOND_SCHEMA:
                out.add(str(path[0]))
        else:
            out.add(str(path[0]))
    return out


def _our_fields(data: dict[str, Any], *, local: bool) -> set[str]:
    problems = check_structure(data, local=local) + manifest.validate(
        manifest.parse(json.dumps(data)))  # names (structure repeated; same fields)
    out = {p.pointer.split("/")[1] for p in check_structure(data, local=local)}
    for p in problems:
        if p.code in ("unknown-permission", "not-requestable", "event-as-permission"):
            name = data["permissions"][int(p.pointer.split("/")[2])]["permission"]
            if name not in SCHEMA_ENUM:  # the stale enum accepts typos and webhook_write
                out.add("permissions")
    return out


@pytest.mark.parametrize("path", EXAMPLES + REAL_WORLD, ids=lambda p: p.name)
def test_structure_agrees_with_the_official_schema(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        data = manifest.load(path).data  # commented: compare what it says
    local = "extends" in data
    assert _our_fields(data, local=local) == _official_fields(data, LOCAL if local else BASE)


def test_stale_enum_is_the_only_disagreement_on_names() -> None:
    m = manifest.parse(json.dumps({"permissions": [
        {"permission": "apply_pay_domain_read", "purpose": "in the schema, a typo"},
        {"permission": "tax_settings_write", "purpose": "documented, not in the schema"},
    ]}))
    probs = {p.pointer: p for p in manifest.validate(m) if p.pointer.startswith("/permissions")}
    assert "apple_pay_domain_read" in probs["/permissions/0/permission"].message
    assert "/permissions/1/permission" not in probs


@SKIP_IF_ABSENT
@pytest.mark.parametrize("path", REAL_WORLD, ids=lambda p: p.name)
def test_real_world_manifests_are_handled(path: Path) -> None:
    m = manifest.load(path)
    problems = manifest.validate(m)
    for p in problems:
        assert p.pointer == "" or p.pointer.startswith("/")
        assert p.message and p.code and p.line is not None
    for a in manifest.lint(m):
        assert a.severity in ("warning", "note") and a.line is not None


@pytest.mark.parametrize(("name", "code", "hint"), [
    ("customer_raed", "unknown-permission", "customer_read"),
    ("shpping_rate_write", "unknown-permission", "shipping_rate_write"),
    ("webhook_write", "not-requestable", "webhook endpoint"),
    ("financing_transaction_read", "not-requestable", "implied"),
    ("account.application.authorized", "event-as-permission", "event_read"),
    ("invoice.paid", "event-as-permission", "invoice_read"),
])
def test_name_problems(name: str, code: str, hint: str) -> None:
    m = manifest.parse(json.dumps({"permissions": [{"permission": name, "purpose": "x y z"}]}))
    [p] = [p for p in manifest.validate(m) if p.pointer == "/permissions/0/permission"]
    assert p.code == code and hint in p.message


def test_all_errors_at_once_with_pointers() -> None:
    text = json.dumps({
        "id": "bad id!", "version": "", "name": "n", "icon": "", "permissions": [
            {"permission": "customer_read"}, "customer_write", {"permission": 3, "purpose": ""}],
        "ui_extension": {"views": [{"viewport": "nowhere"}],
                         "content_security_policy": {"connect-src": "https://a.b/c"}},
        "distribution_type": "secret", "sandbox_install_compatible": "yes", "colour": "red",
    }, indent=2)
    got = {(p.pointer, p.code) for p in manifest.validate(manifest.parse(text))}
    assert got == {
        ("/id", "pattern"), ("/version", "empty"), ("/permissions/0/purpose", "required"),
        ("/permissions/1", "type"), ("/permissions/2/permission", "type"),
        ("/permissions/2/purpose", "empty"), ("/ui_extension/views/0/viewport", "enum"),
        ("/ui_extension/views/0/component", "required"),
        ("/ui_extension/content_security_policy/connect-src", "type"),
        ("/ui_extension/content_security_policy/purpose", "required"),
        ("/distribution_type", "enum"), ("/sandbox_install_compatible", "type"),
        ("/colour", "unknown-field"),
    }


# Our verdict on each real local manifest merged onto its base: the problems we expect.
CSP = "/ui_extension/content_security_policy/connect-src"
EXPECTED_LOCAL: dict[str, set[tuple[str, str]]] = {
    "rw-017__stripe-app.dev.json": set(),
    "rw-033__stripe-app.dev.json": set(),
    # a bare origin and an origin with only "/": the schema wants a path ("^https?://.*/.+")
    "rw-053__stripe-app.dev.json": {(f"{CSP}/0", "pattern"), (f"{CSP}/2", "pattern")},
    "rw-057__stripe-app.dev.json": set(),
    "rw-059__stripe-app.dev.json": set(),
}


@SKIP_IF_ABSENT
def test_every_local_manifest_has_an_expected_verdict() -> None:
    assert sorted(EXPECTED_LOCAL) == [e.file.name for e in LOCAL_MANIFESTS]
    for e in LOCAL_MANIFESTS:
        assert e.extends is not None and e.extends.exists()
        assert e.file.name.endswith(".dev.json") and not e.extends.name.endswith(".dev.json")


@SKIP_IF_ABSENT
@pytest.mark.parametrize("entry", LOCAL_MANIFESTS, ids=lambda e: e.file.name)
def test_local_manifests_merge_onto_their_base(tmp_path: Path, entry: Entry) -> None:
    """A real local manifest next to its real base, laid out as in their repository."""
    dev = lay_out(entry, tmp_path)
    m = manifest.load(dev)
    # The index pairs it with the base its `extends` names in the repository.
    assert entry.extends is not None
    assert (dev.parent / m.data["extends"]).read_bytes() == entry.extends.read_bytes()
    problems = manifest.validate(m)
    assert {(p.pointer, p.code) for p in problems} == EXPECTED_LOCAL[entry.file.name]
    assert all(p.file is None and p.line is not None for p in problems)  # in the dev file


def test_local_manifest_problems_point_at_the_right_file(tmp_path: Path) -> None:
    (tmp_path / "stripe-app.json").write_text(json.dumps({
        "id": "a", "version": "1", "name": "A", "icon": "",
        "permissions": [{"permission": "customer_raed", "purpose": "see customers"}],
    }, indent=2), encoding="utf-8")
    dev = tmp_path / "stripe-app.dev.json"
    dev.write_text(json.dumps({"extends": "stripe-app.json", "name": "A dev",
                               "ui_extension": {"views": []}, "bogus": 1}), encoding="utf-8")
    got = {(p.pointer, p.code, p.file) for p in manifest.validate(manifest.load(dev))}
    base = str(tmp_path / "stripe-app.json")
    assert got == {
        ("/bogus", "unknown-field", None),
        ("/permissions/0/permission", "unknown-permission", base),
    }


def test_local_manifest_without_its_base(tmp_path: Path) -> None:
    dev = tmp_path / "stripe-app.dev.json"
    dev.write_text('{"extends": "stripe-app.json"}', encoding="utf-8")
    [p] = manifest.validate(manifest.load(dev))
    assert p.pointer == "/extends" and str(tmp_path / "stripe-app.json") in p.message


def test_merge_rules() -> None:
    from permgate.manifest.validate import merge
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


@pytest.mark.parametrize(("text", "reason"), [
    ("[1, 2]", "must be a JSON object, not an array"),
    ('{"a": }', "not valid JSON"),
    ("", "not valid JSON"),
])
def test_unusable_text(text: str, reason: str) -> None:
    with pytest.raises(manifest.ManifestError) as e:
        manifest.parse(text, "x/stripe-app.json")
    assert reason in str(e.value) and e.value.line == 1
    assert str(e.value).startswith("x/stripe-app.json:1:")


def test_missing_file_says_where_it_looked(workdir: Path) -> None:
    with pytest.raises(manifest.ManifestError) as e:
        manifest.load("stripe-app.json")
    assert str(workdir / "stripe-app.json") in str(e.value)


def test_http_redirect_uris_must_be_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    # Issue 20 item 9: an http:// redirect URI to a public host would receive codes in clear.
    data = {"id": "a", "version": "1", "name": "A", "icon": "", "permissions": [],
            "ui_extension": {"views": []}, "stripe_api_access_type": "oauth",
            "allowed_redirect_uris": ["http://app.example/cb", "https://app.example/cb",
                                      "http://127.0.0.1:4242/cb", "http://[::1]/cb",
                                      "http://localhost/cb", "http://10.0.0.7/cb",
                                      "http://localhost.evil.example/cb"]}
    path = tmp_path / "stripe-app.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    problems = manifest.validate(manifest.load(path))
    assert [(p.pointer, p.code) for p in problems] == [
        (f"/allowed_redirect_uris/{i}", "insecure-redirect-uri") for i in (0, 5, 6)]
    assert all("https://" in p.message and "127.0.0.1" in p.message for p in problems)
    # The CLI names the field, the line, and the fix.
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "allowed_redirect_uris/0" in text and "Use https://" in text
    # A local manifest that adds one is reported once, in its own file.
    dev = tmp_path / "stripe-app.dev.json"
    dev.write_text(json.dumps({"extends": "stripe-app.json",
                               "allowed_redirect_uris": ["http://tunnel.example/cb"]}),
                   encoding="utf-8")
    data["allowed_redirect_uris"] = ["https://app.example/cb"]
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    [p] = manifest.validate(manifest.load(dev))
    assert (p.pointer, p.code, p.file) == ("/allowed_redirect_uris/0", "insecure-redirect-uri",
                                          None)
