"""Keys: Stripe-shaped, shown once, stored only as hashes; restricted keys; rotation."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from tests.store.conftest import APP, MakeManifest

from permgate.store import Store, StoreError
from permgate.store.schema import metadata

ACCT = "acct_1Keys"
# What secret scanners match for Stripe keys.
STRIPE_KEY = re.compile(r"(sk|rk)_(live|test)_[0-9a-zA-Z]{24,247}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(db_url: str, clock: Clock) -> Iterator[Store]:
    with Store.open(db_url, upgrade=True, clock=clock) as s:
        yield s


def raw_dump(store: Store) -> str:
    """Every value of every table, as the database holds it."""
    out = []
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.text(f"SELECT * FROM {table.name}")):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_first_upload_returns_both_secret_keys_once(
    store: Store, make_manifest: MakeManifest
) -> None:
    first = store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    assert first.created_app
    assert [k.mode for k in first.keys] == ["test", "live"]
    test_key, live_key = first.keys
    assert test_key.secret.startswith("sk_test_") and live_key.secret.startswith("sk_live_")
    for k in first.keys:
        assert STRIPE_KEY.fullmatch(k.secret)
        info = store.authenticate(k.secret)
        assert info is not None
        assert (info.key_id, info.app_id, info.mode, info.kind) == (
            k.key_id, APP, k.mode, "secret")
        assert (info.install_id, info.account) == (None, None)
    again = store.upload_version(make_manifest("1.0.1", ["customer_read"]), actor="dev")
    assert not again.created_app and again.keys == ()


@pytest.mark.parametrize("secret", [
    "", "sk_test_", "sk_test_nope", "pk_test_abc", "sk_live_" + "a" * 64, "garbage"])
def test_unknown_keys_authenticate_to_nothing(store: Store, secret: str) -> None:
    assert store.authenticate(secret) is None


def test_keys_are_never_stored_in_clear(store: Store, make_manifest: MakeManifest) -> None:
    up = store.upload_version(
        make_manifest("1.0.0", ["customer_read"], access="restricted_api_key"), actor="dev")
    rk = store.install(APP, ACCT, "live", by="ann", role="admin").key
    rotated = store.rotate_key(APP, "test", actor="dev")
    assert rk is not None
    secrets = [*(k.secret for k in up.keys), rk.secret, rotated.secret]
    dump = raw_dump(store)
    for secret in secrets:
        assert secret not in dump
        assert secret[8:] not in dump  # nor without its prefix
        assert secret[8:40] not in dump  # nor a large part of it
        assert hashlib.sha256(secret.encode()).hexdigest() in dump
        assert store.authenticate(secret) is not None


def test_restricted_keys_are_minted_per_install(
    store: Store, make_manifest: MakeManifest
) -> None:
    store.upload_version(
        make_manifest("1.0.0", ["customer_read"], access="restricted_api_key"), actor="dev")
    keys = {}
    for mode, prefix in (("live", "rk_live_"), ("test", "rk_test_"), ("sandbox", "rk_test_")):
        result = store.install(APP, ACCT, mode, by="ann", role="admin")
        assert result.key is not None
        assert result.key.secret.startswith(prefix) and STRIPE_KEY.fullmatch(result.key.secret)
        info = store.authenticate(result.key.secret)
        assert info is not None
        assert (info.kind, info.mode, info.account, info.install_id) == (
            "restricted", mode, ACCT, result.grant.install_id)
        keys[mode] = result.key.secret
    other = store.install(APP, "acct_1Other", "live", by="ann", role="admin").key
    assert other is not None and other.secret != keys["live"]

    store.uninstall(APP, ACCT, "live", by="ann", role="admin")
    assert store.authenticate(keys["live"]) is None  # revoked with the install
    assert store.authenticate(keys["test"]) is not None
    fresh = store.install(APP, ACCT, "live", by="ann", role="admin").key
    assert fresh is not None and store.authenticate(fresh.secret) is not None
    assert store.authenticate(keys["live"]) is None


def test_rotation_with_grace_period(
    timed: Store, clock: Clock, make_manifest: MakeManifest
) -> None:
    old = timed.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev").keys[1]
    new = timed.rotate_key(APP, "live", grace=timedelta(hours=1), actor="ops")
    assert new.secret.startswith("sk_live_") and new.secret != old.secret
    assert timed.authenticate(old.secret) is not None  # still inside the grace period
    assert timed.authenticate(new.secret) is not None
    clock.now += timedelta(minutes=59)
    assert timed.authenticate(old.secret) is not None
    clock.now += timedelta(minutes=1)
    assert timed.authenticate(old.secret) is None
    assert timed.authenticate(new.secret) is not None
    listed = {k.key_id: k for k in timed.list_keys(APP)}
    assert not listed[old.key_id].usable(clock.now)
    assert listed[new.key_id].usable(clock.now)
    assert listed[new.key_id].hint == new.secret[:8] + "..." + new.secret[-4:]


def test_rotation_default_grace_is_a_day(
    timed: Store, clock: Clock, make_manifest: MakeManifest
) -> None:
    old = timed.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev").keys[0]
    timed.rotate_key(APP, "test", actor="ops")
    clock.now += timedelta(hours=23, minutes=59)
    assert timed.authenticate(old.secret) is not None
    clock.now += timedelta(minutes=1)
    assert timed.authenticate(old.secret) is None


def test_rotation_without_grace_revokes_at_once(
    store: Store, make_manifest: MakeManifest
) -> None:
    test_key, live_key = store.upload_version(
        make_manifest("1.0.0", ["customer_read"]), actor="dev").keys
    first = store.rotate_key(APP, "test", grace=timedelta(0), actor="ops")
    second = store.rotate_key(APP, "test", grace=timedelta(0), actor="ops")
    assert store.authenticate(test_key.secret) is None
    assert store.authenticate(first.secret) is None
    assert store.authenticate(second.secret) is not None
    assert store.authenticate(live_key.secret) is not None  # other mode untouched


def test_rotating_a_restricted_key(store: Store, make_manifest: MakeManifest) -> None:
    store.upload_version(
        make_manifest("1.0.0", ["customer_read"], access="restricted_api_key"), actor="dev")
    old = store.install(APP, ACCT, "sandbox", by="ann", role="admin").key
    assert old is not None
    new = store.rotate_key(APP, "sandbox", account=ACCT, grace=timedelta(0), actor="ops")
    assert new.secret.startswith("rk_test_")
    assert store.authenticate(old.secret) is None
    info = store.authenticate(new.secret)
    assert info is not None and (info.account, info.mode) == (ACCT, "sandbox")


@pytest.mark.parametrize(("mode", "grace"), [
    ("sandbox", timedelta(hours=1)), ("live", timedelta(days=8)), ("test", timedelta(-1))])
def test_rotation_refusals(
    store: Store, make_manifest: MakeManifest, mode: str, grace: timedelta
) -> None:
    store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    with pytest.raises(StoreError):
        store.rotate_key(APP, mode, grace=grace)
