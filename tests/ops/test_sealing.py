"""Webhook signing secrets at rest (issue 11, item 8): AES-GCM bound to the endpoint, key
ids and rotation, an explicit key location, and values of the earlier format migrated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
import stripe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tests.events.support import event, install, new_app, receiver, wait_until

from permgate.cli import main
from permgate.events import accept, add_endpoint, rotate_secret
from permgate.events.schema import webhook_endpoints
from permgate.events.sealing import (
    KEY_ENV,
    KEY_FILE_ENV,
    Sealer,
    SealError,
    kid_of,
    load_sealer,
    parse_ring,
)
from permgate.events.targets import DEV_SETTING
from permgate.store import Store


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(DEV_SETTING, "all")  # receivers on 127.0.0.1
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def legacy_seal(key: bytes, plain: str) -> str:
    """The earlier construction (HMAC-SHA256 keystream, encrypt-then-MAC), to make the values
    an earlier permgate stored."""
    enc = hmac.new(key, b"permgate-webhook-secret/enc", hashlib.sha256).digest()
    mac = hmac.new(key, b"permgate-webhook-secret/mac", hashlib.sha256).digest()
    nonce = secrets.token_bytes(16)
    data = plain.encode()
    stream = b"".join(hmac.new(enc, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
                      for i in range((len(data) + 31) // 32))
    ct = bytes(a ^ b for a, b in zip(data, stream, strict=False))
    tag = hmac.new(mac, b"pgs1" + nonce + ct, hashlib.sha256).digest()
    return "pgs1:" + base64.urlsafe_b64encode(nonce + ct + tag).decode()


def test_aes_gcm_with_the_endpoint_id_as_associated_data() -> None:
    key = secrets.token_bytes(32)
    sealer = Sealer(key)
    sealed = sealer.seal("whsec_abc", "we_1")
    version, kid, body = sealed.split(":")
    assert (version, kid) == ("pgs2", sealer.current.kid)
    raw = base64.urlsafe_b64decode(body)
    # Independently of permgate's code: it is AES-GCM with exactly this associated data.
    aad = f"permgate/webhook-secret/pgs2/{kid}/we_1".encode()
    assert AESGCM(key).decrypt(raw[:12], raw[12:], aad) == b"whsec_abc"
    assert sealer.open(sealed, "we_1") == "whsec_abc"
    with pytest.raises(SealError, match="moved from another endpoint"):
        sealer.open(sealed, "we_2")  # copied onto another row: does not open
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        sealer.open(tampered, "we_1")
    with pytest.raises(SealError, match="not in the key ring"):
        Sealer(secrets.token_bytes(32)).open(sealed, "we_1")


def test_a_moved_secret_does_not_deliver(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, secrets.token_hex(32))
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    a = add_endpoint(store, app, "http://127.0.0.1:9/a", ["*"], "live", by="d")
    b = add_endpoint(store, app, "http://127.0.0.1:9/b", ["*"], "live", by="d")
    with store.engine.begin() as conn:
        sealed_a = conn.execute(sa.select(webhook_endpoints.c.secret_sealed).where(
            webhook_endpoints.c.endpoint_id == a.endpoint.endpoint_id)).scalar_one()
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == b.endpoint.endpoint_id).values(
            secret_sealed=sealed_a))
    sealer = load_sealer(store.url)
    with pytest.raises(SealError):
        sealer.open(sealed_a, b.endpoint.endpoint_id)


def test_the_default_key_file_lives_with_the_sqlite_database(
    store: Store, sqlite_url: str, tmp_path: Path,
) -> None:
    sealer = load_sealer(store.url)
    path = Path(sqlite_url.removeprefix("sqlite:///")).parent / "sealing.keys"
    assert sealer.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (Path.cwd() / ".permgate").exists()  # nothing made in the working directory
    assert load_sealer(store.url).current == sealer.current  # the same key next time


def test_without_sqlite_the_key_location_must_be_configured(tmp_path: Path) -> None:
    with pytest.raises(SealError, match=KEY_FILE_ENV):
        load_sealer("postgresql+psycopg://postgres@127.0.0.1:5432/test")


def test_values_of_the_earlier_format_are_migrated_not_stranded(
    store: Store, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    # An earlier permgate made ./.permgate/webhook.key and stored pgs1 values with it.
    old_key = secrets.token_bytes(32)
    (Path.cwd() / ".permgate").mkdir()
    (Path.cwd() / ".permgate" / "webhook.key").write_text(old_key.hex() + "\n")
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    with receiver() as rec:
        new = add_endpoint(store, app, rec.url + "/h", ["*"], "live", by="d")
        eid = new.endpoint.endpoint_id
        with store.engine.begin() as conn:
            conn.execute(webhook_endpoints.update().where(
                webhook_endpoints.c.endpoint_id == eid).values(
                secret_sealed=legacy_seal(old_key, new.secret)))
        accept(store, event("customer.created"))
        assert main(["events", "worker", "--once", "--db", sqlite_url]) == 0
        assert "re-sealed 1 webhook secret(s) of the earlier format" in capsys.readouterr().err
        wait_until(lambda: len(rec.at("/h")) == 1, what="the delivery")
        got = rec.at("/h")[0]
    stripe.Webhook.construct_event(got.body.decode(), got.headers["Stripe-Signature"],
                                   new.secret)
    with store.engine.connect() as conn:
        sealed = conn.execute(sa.select(webhook_endpoints.c.secret_sealed).where(
            webhook_endpoints.c.endpoint_id == eid)).scalar_one()
    assert kid_of(sealed) == load_sealer(store.url).current.kid


def test_rotate_sealing_reseals_everything_then_drops_the_old_key(
    store: Store, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ring = tmp_path / "keys" / "ring"
    monkeypatch.setenv(KEY_FILE_ENV, str(ring))
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    first = add_endpoint(store, app, "http://127.0.0.1:9/a", ["*"], "live", by="d")
    from datetime import timedelta
    second = rotate_secret(store, first.endpoint.endpoint_id, by="d", grace=timedelta(hours=1))
    other = add_endpoint(store, app, "http://127.0.0.1:9/b", ["*"], "live", by="d")
    running = load_sealer(store.url)  # a worker that loaded the ring before the rotation
    old_kid = running.current.kid
    assert main(["keys", "rotate-sealing", "--db", sqlite_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resealed"] == 3 and report["dropped_key_ids"] == [old_kid]
    [only] = parse_ring(ring.read_text(), "ring")
    assert only.kid == report["new_key_id"] != old_kid
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    with store.engine.connect() as conn:
        rows = {r.endpoint_id: r for r in conn.execute(sa.select(webhook_endpoints))}
    a, b = rows[first.endpoint.endpoint_id], rows[other.endpoint.endpoint_id]
    assert {kid_of(a.secret_sealed), kid_of(a.previous_secret_sealed),
            kid_of(b.secret_sealed)} == {only.kid}
    # The running worker re-reads the changed file and opens the new values.
    assert running.open(a.secret_sealed, a.endpoint_id) == second.secret
    assert running.open(a.previous_secret_sealed, a.endpoint_id) == first.secret
    assert running.open(b.secret_sealed, b.endpoint_id) == other.secret
    # With the keys in the environment, permgate cannot write a ring: it says what to do.
    monkeypatch.setenv(KEY_ENV, "k1:" + secrets.token_hex(32))
    assert main(["keys", "rotate-sealing", "--db", sqlite_url]) == 1
    assert "put the new key first there" in capsys.readouterr().err


def test_rotation_keeps_old_keys_readable_until_it_finishes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from permgate.events.sealing import rotate

    ring = tmp_path / "ring"
    monkeypatch.setenv(KEY_FILE_ENV, str(ring))
    app = new_app(store, ["event_read", "customer_read"])
    new = add_endpoint(store, app, "http://127.0.0.1:9/a", ["*"], "live", by="d")
    sealer = load_sealer(store.url)
    old = sealer.current
    key, result = rotate(store, sealer, keep_old=True)
    assert result.resealed == 1
    assert [k.kid for k in parse_ring(ring.read_text(), "r")] == [key.kid, old.kid]
    with store.engine.connect() as conn:
        sealed = conn.execute(sa.select(webhook_endpoints.c.secret_sealed)).scalar_one()
    assert sealer.open(sealed, new.endpoint.endpoint_id) == new.secret


def test_an_unreadable_value_does_not_stop_the_others(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from permgate.events.sealing import reseal, rotate

    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "ring"))
    app = new_app(store, ["event_read", "customer_read"])
    good = add_endpoint(store, app, "http://127.0.0.1:9/a", ["*"], "live", by="d")
    bad = add_endpoint(store, app, "http://127.0.0.1:9/b", ["*"], "live", by="d")
    stranger = Sealer(secrets.token_bytes(32)).seal("whsec_x", bad.endpoint.endpoint_id)
    with store.engine.begin() as conn:
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == bad.endpoint.endpoint_id).values(
            secret_sealed=legacy_seal(secrets.token_bytes(32), "whsec_y")))
    sealer = load_sealer(store.url)
    assert reseal(store, sealer, only_legacy=True).unreadable == (bad.endpoint.endpoint_id,)
    with store.engine.begin() as conn:
        conn.execute(webhook_endpoints.update().where(
            webhook_endpoints.c.endpoint_id == bad.endpoint.endpoint_id).values(
            secret_sealed=stranger))
    old = sealer.current.kid
    _, result = rotate(store, sealer)
    assert result.resealed == 1 and result.unreadable == (bad.endpoint.endpoint_id,)
    assert old not in [k.kid for k in sealer.keys]  # nothing readable used it any more
    with store.engine.connect() as conn:
        sealed = conn.execute(sa.select(webhook_endpoints.c.secret_sealed).where(
            webhook_endpoints.c.endpoint_id == good.endpoint.endpoint_id)).scalar_one()
    assert sealer.open(sealed, good.endpoint.endpoint_id) == good.secret


def test_the_key_file_sits_beside_a_database_whose_path_needs_escaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's URL escapes `'` (%27) and `#`; the key file must still be found in the
    database's own folder, not in a folder literally named with the escapes."""
    folder = tmp_path / "o'brien #1 ?x=%20"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_DATA_HOME", str(folder / "data"))
    monkeypatch.delenv("PERMGATE_DB", raising=False)
    with Store.open(None, upgrade=True) as store:
        assert "%27" in store.url  # what the renderer does: the reason for this test
        sealer = load_sealer(store.url)
    assert sealer.path == folder / "data" / "permgate" / "sealing.keys"
    assert sealer.path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", folder.name]  # nothing more
