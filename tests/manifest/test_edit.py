from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests.realworld import DATA, REAL_WORLD, SKIP_IF_ABSENT

from permgate import manifest
from permgate.catalog import UnknownPermission, load_catalog

CATALOG = load_catalog()
EXAMPLES = sorted((DATA / "example-manifests").glob("*.json"))
PURPOSE = "Reads tax rates to show them next to invoices"


def _strict(text: str) -> Any:
    return json.loads(text)


def _loads_strictly(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return True


def _editable(path: Path) -> bool:
    data = json.loads(path.read_text(encoding="utf-8"))
    perms = data.get("permissions")
    return perms is None or (isinstance(perms, list) and all(isinstance(e, dict) for e in perms))


def _new_name(m: manifest.Manifest) -> str:
    return next(n for n in sorted(CATALOG.permissions)
                if CATALOG[n].requestable and n not in m.permission_names)


def _one_insertion(old: str, new: str) -> str:
    """The inserted text, asserting that `new` is `old` with one contiguous insertion."""
    p = 0
    while p < len(old) and old[p] == new[p]:
        p += 1
    s = 0
    while s < len(old) - p and old[len(old) - 1 - s] == new[len(new) - 1 - s]:
        s += 1
    assert p + s == len(old), "text outside the inserted entry changed"
    return new[p : len(new) - s]


def _purpose_at(text: str, index: int) -> str:
    purpose: str = json.loads(text)["permissions"][index]["purpose"]
    return purpose


def _one_deletion(old: str, new: str) -> str:
    return _one_insertion(new, old)


MANIFESTS = [p for p in EXAMPLES + REAL_WORLD if _loads_strictly(p) and _editable(p)]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_grant_inserts_only_the_new_entry(path: Path) -> None:
    old = path.read_text(encoding="utf-8")
    m = manifest.load(path)
    name = _new_name(m)
    change = manifest.grant(m, name, PURPOSE)
    assert change.action == "added"
    data = _strict(m.text)
    expected = json.loads(old)
    expected.setdefault("permissions", [])
    if expected["permissions"] is None:
        expected["permissions"] = []
    expected["permissions"].append({"permission": name, "purpose": PURPOSE})
    assert data == expected
    assert m.data == expected
    if json.loads(old).get("permissions"):
        inserted = _one_insertion(old, m.text)
        # nothing but a separator and the new entry
        assert json.loads(inserted.lstrip(", \r\n\t")) == {"permission": name, "purpose": PURPOSE}
        # granting then revoking gives back the original bytes
        manifest.revoke(m, name)
        assert m.text == old


@pytest.mark.parametrize("path", [p for p in MANIFESTS if json.loads(
    p.read_text(encoding="utf-8")).get("permissions")], ids=lambda p: p.name)
def test_revoke_and_update_touch_only_their_entry(path: Path) -> None:
    old = path.read_text(encoding="utf-8")
    m = manifest.load(path)
    if not m.permission_names:  # entries without a "permission": nothing to revoke
        with pytest.raises(manifest.NotGranted):
            manifest.revoke(m, "customer_read")
        return
    # any listed name can be revoked; only requestable ones can be (re)granted
    first = m.permission_names[0]
    valid = [n for n in m.permission_names if n in CATALOG and CATALOG[n].requestable]
    if not valid:
        manifest.revoke(m, first)
        _one_deletion(old, m.text)
        return
    change = manifest.grant(m, valid[0], "A brand new reason for this permission")
    assert change.action == "updated"
    expected = json.loads(old)
    idx = next(
        i for i, e in enumerate(expected["permissions"]) if e.get("permission") == valid[0])
    expected["permissions"][idx]["purpose"] = "A brand new reason for this permission"
    assert _strict(m.text) == expected
    p = 0
    while old[p] == m.text[p]:
        p += 1
    s = 0
    while old[-1 - s] == m.text[-1 - s]:
        s += 1
    # one contiguous replacement, inside the purpose string
    assert m.text[p : len(m.text) - s] in '"A brand new reason for this permission"'
    assert old[p : len(old) - s] in json.dumps(_purpose_at(old, idx), ensure_ascii=False)

    m = manifest.load(path)
    manifest.revoke(m, first)
    _one_deletion(old, m.text)
    assert first not in m.permission_names
    expected = json.loads(old)
    expected["permissions"] = [
        e for e in expected["permissions"]
        if not (isinstance(e, dict) and e.get("permission") == first)
    ]
    assert _strict(m.text) == expected


@pytest.mark.parametrize("indent", ["  ", "    ", "\t"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_indentation_and_newlines_are_kept(indent: str, newline: str) -> None:
    data = {"id": "x", "permissions": [{"permission": "customer_read", "purpose": "See them"}]}
    old = json.dumps(data, indent=indent).replace("\n", newline) + newline
    m = manifest.parse(old)
    manifest.grant(m, "invoice_read", "Shows the invoices of a customer")
    expected = json.dumps({**data, "permissions": [
        *data["permissions"],
        {"permission": "invoice_read", "purpose": "Shows the invoices of a customer"},
    ]}, indent=indent).replace("\n", newline) + newline
    assert m.text == expected


@pytest.mark.parametrize("indent", ["  ", "    ", "\t"])
def test_permissions_created_when_absent_or_empty(indent: str) -> None:
    entry = {"permission": "invoice_read", "purpose": "Shows the invoices"}
    for before in ({"id": "x", "name": "y"}, {"id": "x", "permissions": []},
                   {"id": "x", "permissions": None}):
        m = manifest.parse(json.dumps(before, indent=indent) + "\n")
        manifest.grant(m, "invoice_read", "Shows the invoices")
        after = {**before, "permissions": [entry]}
        assert m.text == json.dumps(after, indent=indent) + "\n", before


def test_minified_manifest_stays_on_one_line() -> None:
    m = manifest.parse("{}")
    manifest.grant(m, "invoice_read", "Shows the invoices")
    assert m.text == ('{"permissions": [{"permission": "invoice_read", '
                      '"purpose": "Shows the invoices"}]}')
    m = manifest.parse('{"id":"x","permissions":[]}')
    manifest.grant(m, "invoice_read", "Shows the invoices")
    assert "\n" not in m.text
    assert json.loads(m.text)["permissions"] == [
        {"permission": "invoice_read", "purpose": "Shows the invoices"}]


def test_entry_style_is_copied_from_existing_entries() -> None:
    old = ('{\n  "permissions": [\n    { "purpose": "See them all", '
           '"permission": "customer_read" }\n  ]\n}')
    m = manifest.parse(old)
    manifest.grant(m, "invoice_read", "Shows the invoices")
    assert m.text == (
        '{\n  "permissions": [\n    { "purpose": "See them all", "permission": "customer_read" },'
        '\n    { "purpose": "Shows the invoices", "permission": "invoice_read" }\n  ]\n}')


def test_unknown_fields_and_non_ascii_survive() -> None:
    old = ('{\n  "zz": {"keep": [1, 2]},\n  "permissions": [\n    {\n      "permission": '
           '"customer_read",\n      "purpose": "Voir les clients — très utile",\n      "x": 1\n'
           '    }\n  ],\n  "aa": "é"\n}\n')
    m = manifest.parse(old)
    manifest.grant(m, "invoice_read", "Afficher les factures — été")
    assert list(json.loads(m.text)) == ["zz", "permissions", "aa"]
    assert "été" in m.text and m.text.endswith("}\n")
    manifest.revoke(m, "invoice_read")
    assert m.text == old


def test_revoke_last_entry_leaves_an_empty_array() -> None:
    m = manifest.parse('{\n  "permissions": [\n    {"permission": "customer_read", '
                       '"purpose": "See them"}\n  ]\n}\n')
    manifest.revoke(m, "customer_read")
    assert m.text == '{\n  "permissions": []\n}\n'


def test_duplicates_grant_updates_first_and_revoke_removes_all() -> None:
    text = json.dumps({"permissions": [
        {"permission": "customer_read", "purpose": "one one one"},
        {"permission": "invoice_read", "purpose": "two two two"},
        {"permission": "customer_read", "purpose": "three three three"},
    ]}, indent=2)
    m = manifest.parse(text)
    change = manifest.grant(m, "customer_read", "new new new")
    assert change.action == "updated" and "/permissions/2" in change.message
    assert [e["purpose"] for e in m.data["permissions"]] == [
        "new new new", "two two two", "three three three"]
    change = manifest.revoke(m, "customer_read")
    assert change.pointers == ("/permissions/0", "/permissions/2")
    assert m.permission_names == ["invoice_read"]


def test_missing_purpose_member_is_added() -> None:
    m = manifest.parse('{\n  "permissions": [\n    {\n      "permission": "customer_read"\n'
                       '    }\n  ]\n}')
    manifest.grant(m, "customer_read", "See the customers")
    assert m.text == ('{\n  "permissions": [\n    {\n      "permission": "customer_read",\n'
                      '      "purpose": "See the customers"\n    }\n  ]\n}')


def test_same_purpose_is_unchanged() -> None:
    m = manifest.parse('{"permissions": [{"permission": "customer_read", "purpose": "See"}]}')
    assert manifest.grant(m, "customer_read", "  See ").action == "unchanged"


@pytest.mark.parametrize(("name", "purpose", "error"), [
    ("customer_raed", "Reads customers", UnknownPermission),
    ("shpping_rate_write", "Edits shipping rates", UnknownPermission),
    ("webhook_write", "Registers webhooks", manifest.NotRequestable),
    ("financing_transaction_read", "Reads financing", manifest.NotRequestable),
    ("customer_read", "   \t", manifest.EmptyPurpose),
    ("customer_read", "", manifest.EmptyPurpose),
])
def test_refused_grants_change_nothing(name: str, purpose: str, error: type[Exception]) -> None:
    old = '{\n  "permissions": []\n}\n'
    m = manifest.parse(old)
    with pytest.raises(error) as e:
        manifest.grant(m, name, purpose)
    assert isinstance(e.value, ValueError)
    assert m.text == old
    if name == "shpping_rate_write":
        assert isinstance(e.value, UnknownPermission)
        assert e.value.suggestion == "shipping_rate_write"


def test_revoke_not_granted_raises_and_changes_nothing() -> None:
    old = '{"permissions": [{"permission": "customer_read", "purpose": "See"}]}'
    m = manifest.parse(old)
    with pytest.raises(manifest.NotGranted):
        manifest.revoke(m, "invoice_read")
    assert m.text == old


@pytest.mark.parametrize("text", [
    '{"permissions": {"permission": "customer_read"}}',
    '{"permissions": "customer_read"}',
    '{"permissions": ["customer_read"]}',
    '{"permissions": [{"permission": "a", "purpose": "b"}, 3]}',
])
def test_misshapen_permissions_are_errors(text: str) -> None:
    m = manifest.parse(text)
    with pytest.raises(manifest.ManifestError) as e:
        manifest.grant(m, "invoice_read", "Shows the invoices")
    assert e.value.line == 1 and e.value.column is not None
    with pytest.raises(manifest.ManifestError):
        manifest.revoke(m, "customer_read")
    assert m.text == text


def test_comments_and_trailing_commas_are_removed_on_write(tmp_path: Path) -> None:
    path = tmp_path / "stripe-app.json"
    path.write_text('{\n  "id": "x", // the app\n  "permissions": [\n    /* none yet */\n'
                    '  ],\n}\n', encoding="utf-8")
    m = manifest.load(path)
    assert len(m.warnings) == 3
    manifest.grant(m, "invoice_read", "Shows the invoices")
    manifest.save(m)
    written = path.read_text(encoding="utf-8")
    assert json.loads(written) == {"id": "x", "permissions": [
        {"permission": "invoice_read", "purpose": "Shows the invoices"}]}
    assert written.startswith('{\n  "id": "x",\n  "permissions": [\n    {\n')


@SKIP_IF_ABSENT
def test_real_manifest_with_a_comment_is_written_as_json(tmp_path: Path) -> None:
    src = next(p for p in REAL_WORLD if not _loads_strictly(p))
    path = tmp_path / "stripe-app.json"
    path.write_bytes(src.read_bytes())
    m = manifest.load(path)
    assert m.warnings
    manifest.grant(m, "customer_read", "Shows the customer in the drawer")
    manifest.save(m)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["permissions"] == [
        {"permission": "customer_read", "purpose": "Shows the customer in the drawer"}]


def test_save_is_atomic_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stripe-app.json"
    original = EXAMPLES[0].read_bytes()
    path.write_bytes(original)
    m = manifest.load(path)
    manifest.grant(m, "coupon_read", "Shows coupons on the customer page")
    written: list[bytes] = []

    def crash(src: str, dst: str) -> None:
        written.append(Path(src).read_bytes())  # the temp file was complete...
        raise OSError(28, "No space left on device")  # ...and then the machine died

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        manifest.save(m)
    assert written and b"coupon_read" in written[0]
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stripe-app.json"]


def test_save_keeps_mode_bom_and_writes_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(b'\xef\xbb\xbf{"permissions": []}')
    real.chmod(0o640)
    link = tmp_path / "stripe-app.json"
    link.symlink_to(real)
    m = manifest.load(link)
    manifest.grant(m, "coupon_read", "Shows coupons on the customer page")
    manifest.save(m)
    assert link.is_symlink()
    assert real.read_bytes().startswith(b'\xef\xbb\xbf{"permissions": [{')
    assert real.stat().st_mode & 0o777 == 0o640


def test_save_needs_a_path() -> None:
    with pytest.raises(manifest.ManifestError):
        manifest.save(manifest.parse("{}"))
