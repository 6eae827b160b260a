"""The consent rules (SPEC "Consent and versions"), each on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from tests.store.conftest import APP, MakeManifest

from permgate.store import Conflict, Forbidden, InvalidManifest, NotFound, Store, StoreError

ACCT = "acct_1Consent"


@pytest.fixture
def v1(store: Store, make_manifest: MakeManifest) -> Store:
    store.upload_version(make_manifest("1.0.0", ["customer_read", "charge_read"]), actor="dev")
    return store


def test_nothing_is_usable_before_install(v1: Store) -> None:
    assert v1.effective_grant(APP, ACCT, "live") is None
    assert v1.installs_for_account(ACCT) == []


def test_install_accepts_exactly_the_versions_set(v1: Store) -> None:
    result = v1.install(APP, ACCT, "live", by="ann", role="admin")
    g = v1.effective_grant(APP, ACCT, "live")
    assert g == result.grant
    assert g is not None
    assert g.approved == {"customer_read", "charge_read"}
    assert g.pending == frozenset()
    assert (g.status, g.installed_version, g.approved_version) == ("active", "1.0.0", "1.0.0")
    assert g.install_id.startswith("inst_")
    assert result.key is None  # platform apps use their own secret key


def test_live_and_test_are_two_grants(v1: Store) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    assert v1.effective_grant(APP, ACCT, "test") is None
    v1.install(APP, ACCT, "test", by="ann", role="admin")
    both = v1.installs_for_account(ACCT)
    assert [g.mode for g in both] == ["live", "test"]
    assert len({g.install_id for g in both}) == 2
    assert [g.mode for g in v1.installs_for_account(ACCT, "test")] == ["test"]


@pytest.mark.parametrize("role", ["developer", "analyst", "view_only", "Admin", ""])
def test_only_admins_install_approve_uninstall(v1: Store, role: str) -> None:
    counter = v1.change_counter()
    with pytest.raises(Forbidden, match="role=admin"):
        v1.install(APP, ACCT, "live", by="dev", role=role)
    assert v1.effective_grant(APP, ACCT, "live") is None
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    counter = v1.change_counter()
    with pytest.raises(Forbidden):
        v1.approve(APP, ACCT, "live", by="dev", role=role)
    with pytest.raises(Forbidden):
        v1.uninstall(APP, ACCT, "live", by="dev", role=role)
    assert v1.effective_grant(APP, ACCT, "live") is not None
    assert v1.change_counter() == counter


def test_subset_version_is_used_at_once(v1: Store, make_manifest: MakeManifest) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    v1.upload_version(make_manifest("1.1.0", ["customer_read"]), actor="dev")
    g = v1.effective_grant(APP, ACCT, "live")
    assert g is not None
    assert g.status == "active"
    assert g.approved == {"customer_read"}  # least privilege: what the app now asks for
    assert (g.installed_version, g.approved_version) == ("1.1.0", "1.0.0")
    # Asking again for what the administrator approved before needs no new approval.
    v1.upload_version(make_manifest("1.2.0", ["charge_read", "customer_read"]), actor="dev")
    g = v1.effective_grant(APP, ACCT, "live")
    assert g is not None
    assert g.status == "active"
    assert g.approved == {"charge_read", "customer_read"}


def test_version_asking_for_more_waits_for_approval(
    v1: Store, make_manifest: MakeManifest
) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    v1.upload_version(
        make_manifest("2.0.0", ["customer_read", "charge_read", "invoice_read"]), actor="dev"
    )
    g = v1.effective_grant(APP, ACCT, "live")
    assert g is not None
    assert g.status == "pending_approval"
    assert g.installed_version == "2.0.0"  # the account runs the new code ...
    assert g.approved_version == "1.0.0"  # ... with the most recently approved set
    assert g.approved == {"customer_read", "charge_read"}
    assert g.pending == {"invoice_read"}

    g = v1.approve(APP, ACCT, "live", by="ann", role="admin", version="2.0.0")
    assert g == v1.effective_grant(APP, ACCT, "live")
    assert g.status == "active"
    assert g.approved == {"customer_read", "charge_read", "invoice_read"}
    assert g.pending == frozenset()
    assert g.approved_version == "2.0.0"


def test_pending_then_smaller_version(v1: Store, make_manifest: MakeManifest) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    v1.upload_version(make_manifest("2.0.0", ["customer_read", "invoice_read"]), actor="dev")
    v1.upload_version(make_manifest("2.0.1", ["customer_read"]), actor="dev")
    g = v1.effective_grant(APP, ACCT, "live")
    assert g is not None
    assert g.status == "active"
    assert g.approved == {"customer_read"}
    assert not g.pending


def test_approving_a_superseded_version_is_a_conflict(
    v1: Store, make_manifest: MakeManifest
) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    v1.upload_version(make_manifest("2.0.0", ["customer_read", "invoice_read"]), actor="dev")
    v1.upload_version(
        make_manifest("3.0.0", ["customer_read", "invoice_read", "customer_write"]), actor="dev"
    )
    counter = v1.change_counter()
    with pytest.raises(Conflict, match=r"3\.0\.0 was uploaded since") as e:
        v1.approve(APP, ACCT, "live", by="ann", role="admin", version="2.0.0")
    assert e.value.code == "version_superseded"
    with pytest.raises(NotFound):
        v1.approve(APP, ACCT, "live", by="ann", role="admin", version="9.9.9")
    g = v1.effective_grant(APP, ACCT, "live")
    assert g is not None
    assert (g.status, g.approved_version) == ("pending_approval", "1.0.0")
    assert v1.change_counter() == counter
    assert v1.approve(APP, ACCT, "live", by="ann", role="admin").approved_version == "3.0.0"


def test_approve_or_uninstall_what_is_not_installed(v1: Store) -> None:
    with pytest.raises(NotFound, match="not installed"):
        v1.approve(APP, ACCT, "live", by="ann", role="admin")
    with pytest.raises(NotFound, match="not installed"):
        v1.uninstall(APP, ACCT, "live", by="ann", role="admin")
    with pytest.raises(NotFound, match="no app"):
        v1.install("com.example.missing", ACCT, "live", by="ann", role="admin")


def test_uninstall_revokes_at_once_and_reinstall_starts_fresh(
    v1: Store, make_manifest: MakeManifest
) -> None:
    first = v1.install(APP, ACCT, "live", by="ann", role="admin").grant
    v1.install(APP, ACCT, "test", by="ann", role="admin")
    v1.upload_version(make_manifest("2.0.0", ["customer_read", "invoice_read"]), actor="dev")
    v1.uninstall(APP, ACCT, "live", by="ann", role="admin")
    assert v1.effective_grant(APP, ACCT, "live") is None
    assert [g.mode for g in v1.installs_for_account(ACCT)] == ["test"]
    with pytest.raises(NotFound):
        v1.uninstall(APP, ACCT, "live", by="ann", role="admin")

    again = v1.install(APP, ACCT, "live", by="bob", role="admin").grant
    assert again.install_id != first.install_id
    # A fresh approval of the current version: not the old set, not pending.
    assert (again.status, again.approved_version) == ("active", "2.0.0")
    assert again.approved == {"customer_read", "invoice_read"}


def test_installing_twice_is_a_conflict(v1: Store) -> None:
    v1.install(APP, ACCT, "live", by="ann", role="admin")
    with pytest.raises(Conflict, match="already installed"):
        v1.install(APP, ACCT, "live", by="ann", role="admin")


def test_invalid_manifest_is_refused_and_nothing_stored(
    store: Store, make_manifest: MakeManifest
) -> None:
    bad = make_manifest("1.0.0", ["customer_read", "not_a_permission"])
    with pytest.raises(InvalidManifest) as e:
        store.upload_version(bad, actor="dev")
    assert e.value.problems
    assert "not_a_permission" in str(e.value)
    assert store.list_apps() == []
    assert store.audit() == []
    assert store.change_counter() == 0


def test_versions_are_immutable(v1: Store, make_manifest: MakeManifest) -> None:
    with pytest.raises(Conflict, match="already uploaded"):
        v1.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    app = v1.get_app(APP)
    assert [v.version for v in app.versions] == ["1.0.0"]
    assert app.latest.permissions == {"customer_read", "charge_read"}


def test_apps_listing_and_manifest_text(v1: Store, make_manifest: MakeManifest) -> None:
    m2 = make_manifest("1.1.0", ["customer_read"])
    v1.upload_version(m2, actor="dev2")
    (app,) = v1.list_apps()
    assert (app.app_id, app.latest.version, app.created_by) == (APP, "1.1.0", "dev")
    assert [(v.version, v.seq, v.uploaded_by) for v in app.versions] == [
        ("1.0.0", 1, "dev"), ("1.1.0", 2, "dev2")]
    assert v1.get_manifest_text(APP, "1.1.0") == m2.text
    with pytest.raises(NotFound):
        v1.get_app("com.example.nope")


@pytest.mark.parametrize(("account", "mode"), [("cus_1", "live"), ("acct_1", "prod")])
def test_bad_account_or_mode(v1: Store, account: str, mode: str) -> None:
    with pytest.raises(StoreError):
        v1.install(APP, account, mode, by="ann", role="admin")


def test_sandbox_install(v1: Store) -> None:
    g = v1.install(APP, ACCT, "sandbox", by="ann", role="admin").grant
    assert g.mode == "sandbox"
    assert v1.effective_grant(APP, ACCT, "test") is None


def test_local_manifests_are_not_uploaded(store: Store) -> None:
    from permgate import manifest

    text = '{"id": "com.example.consent", "version": "1.0.0", "extends": "stripe-app.json"}'
    m = manifest.parse(text)
    with pytest.raises(InvalidManifest):
        store.upload_version(m, actor="dev")
    assert store.list_apps() == [] and store.change_counter() == 0
