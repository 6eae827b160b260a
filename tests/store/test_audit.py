"""The audit trail and the change counter (plus NOTIFY on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from tests.store.conftest import APP, MakeManifest

from permgate.store import NOTIFY_CHANNEL, Store

ACCT = "acct_1Audit"


def test_every_change_is_audited_with_actor_and_time(
    store: Store, make_manifest: MakeManifest
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    store.upload_version(make_manifest("1.0.0", ["customer_read"],
                                       access="restricted_api_key"), actor="dev")
    store.install(APP, ACCT, "live", by="ann", role="admin")
    store.upload_version(make_manifest("1.1.0", ["customer_read", "charge_read"]), actor="dev2")
    store.approve(APP, ACCT, "live", by="bob", role="admin")
    store.rotate_key(APP, "live", actor="ops")
    store.uninstall(APP, ACCT, "live", by="cat", role="admin")
    got = [(e.action, e.actor, e.mode, e.account, e.version) for e in store.audit()]
    assert got == [
        ("app.created", "dev", None, None, "1.0.0"),
        ("version.uploaded", "dev", None, None, "1.0.0"),
        ("key.created", "dev", "test", None, None),
        ("key.created", "dev", "live", None, None),
        ("install.created", "ann", "live", ACCT, "1.0.0"),
        ("key.created", "ann", "live", ACCT, None),
        ("version.uploaded", "dev2", None, None, "1.1.0"),
        ("install.approved", "bob", "live", ACCT, "1.1.0"),
        ("key.rotated", "ops", "live", None, None),
        ("install.removed", "cat", "live", ACCT, None),
    ]
    entries = store.audit()
    assert all(e.app_id == APP and before <= e.at <= datetime.now(UTC) for e in entries)
    approved = entries[7].detail
    assert approved["permissions"] == ["charge_read", "customer_read"]
    assert approved["previous"] == ["customer_read"]
    assert entries[9].detail["revoked_keys"] == [entries[5].detail["key_id"]]
    assert [e.action for e in store.audit(account=ACCT)] == [
        "install.created", "key.created", "install.approved", "install.removed"]
    assert store.audit(app="com.example.other") == []
    assert [e.id for e in store.audit(limit=2)] == [entries[8].id, entries[9].id]
    assert store.audit(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_audit_log_is_append_only_in_the_database(
    store: Store, make_manifest: MakeManifest
) -> None:
    store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    for stmt in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(sa.text(stmt))
    assert {e.actor for e in store.audit()} == {"dev"}


def test_change_counter_bumps_once_per_change_and_not_on_refusal(
    store: Store, make_manifest: MakeManifest
) -> None:
    assert store.change_counter() == 0
    store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    assert store.change_counter() == 1
    store.install(APP, ACCT, "live", by="ann", role="admin")
    assert store.change_counter() == 2
    for refused in (
        lambda: store.install(APP, ACCT, "live", by="ann", role="admin"),
        lambda: store.approve(APP, ACCT, "live", by="x", role="developer"),
        lambda: store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="d"),
    ):
        with pytest.raises(Exception, match=r"."):
            refused()
    assert store.change_counter() == 2
    store.upload_version(make_manifest("1.1.0", ["customer_read", "charge_read"]), actor="dev")
    store.approve(APP, ACCT, "live", by="ann", role="admin")
    store.rotate_key(APP, "test")
    store.uninstall(APP, ACCT, "live", by="ann", role="admin")
    assert store.change_counter() == 6


def test_a_second_process_sees_the_change(db_url: str, make_manifest: MakeManifest) -> None:
    with Store.open(db_url, upgrade=True) as writer, Store.open(db_url) as reader:
        seen = reader.change_counter()
        writer.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
        writer.install(APP, ACCT, "test", by="ann", role="admin")
        assert reader.change_counter() == seen + 2
        assert reader.effective_grant(APP, ACCT, "test") is not None


@pytest.mark.postgres
def test_postgres_notifies_on_commit(pg_url: str, make_manifest: MakeManifest) -> None:
    with Store.open(pg_url, upgrade=True) as store:
        conninfo = pg_url.split("?")[0]
        with psycopg.connect(conninfo, autocommit=True) as listener:
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
            store.install(APP, ACCT, "live", by="ann", role="admin")
            schema = pg_url.rsplit("%3D", 1)[1]
            ours = []
            # Other stores in the same database share the channel; keep this store's.
            for n in listener.notifies(timeout=10):
                if n.payload.startswith(f"{schema}:"):
                    ours.append(n.payload)
                if len(ours) == 2:
                    break
    assert ours == [f"{schema}:1", f"{schema}:2"]
