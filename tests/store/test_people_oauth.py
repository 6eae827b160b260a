"""Account links, browser sessions and OAuth tokens in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from tests.store.conftest import APP, MakeManifest

from permgate.store import Forbidden, Store, StoreError, describe, keys, migrate, oauth, people
from permgate.store.consent_schema import metadata, oauth_codes
from permgate.store.engine import create, resolve_url

CONSENT_TABLES = {"account_links", "browser_sessions", "oauth_codes", "oauth_refresh_tokens"}
RK = re.compile(r"rk_(live|test)_[A-Za-z0-9]{64}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: Any) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cstore(db_url: str, clock: Clock) -> Iterator[Store]:
    with Store.open(db_url, upgrade=True, clock=clock) as s:
        yield s


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in CONSENT_TABLES


def test_migration_creates_exactly_the_consent_tables(db_url: str) -> None:
    engine = create(resolve_url(db_url))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _ours})
            assert compare_metadata(context, metadata) == []
        migrate.downgrade(engine, "ev0001")
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def _link(store: Store, role: str = "admin", **kw: Any) -> people.AccountLink:
    return people.create_link(store, account="acct_1", user_id="u_ann", display_name="Ann",
                              role=role, actor="platform", **kw)


def test_a_link_opens_one_session_once(cstore: Store, clock: Clock) -> None:
    link = _link(cstore, return_url="https://platform.example/back", next_path="/console/")
    found = people.redeem_link(cstore, link.secret)
    assert found is not None
    session, token, landing = found
    assert (session.account, session.user_id, session.role, session.can_act) == (
        "acct_1", "u_ann", "admin", True)
    assert landing == "/console/" and session.return_url == "https://platform.example/back"
    assert people.redeem_link(cstore, link.secret) is None  # single use
    assert people.find_session(cstore, token) == session
    assert people.find_session(cstore, token + "x") is None
    assert people.end_session(cstore, token)
    assert people.find_session(cstore, token) is None
    actions = [e.action for e in cstore.audit(account="acct_1")]
    assert actions == ["account_link.created", "session.started"]


def test_links_expire_within_minutes(cstore: Store, clock: Clock) -> None:
    link = _link(cstore)
    clock.advance(minutes=5, seconds=1)
    assert people.redeem_link(cstore, link.secret) is None
    with pytest.raises(StoreError, match="between 1 second and 30 minutes"):
        _link(cstore, ttl=timedelta(hours=1))


def test_sessions_end_by_lifetime_and_by_idleness(cstore: Store, clock: Clock) -> None:
    found = people.redeem_link(cstore, _link(cstore).secret, lifetime=timedelta(hours=1))
    assert found is not None
    token = found[1]
    for _ in range(2):  # kept alive by use
        clock.advance(minutes=25)
        assert people.find_session(cstore, token, idle=timedelta(minutes=30)) is not None
    clock.advance(minutes=25)
    assert people.find_session(cstore, token) is None  # past its lifetime, though not idle
    found = people.redeem_link(cstore, _link(cstore).secret)
    assert found is not None
    clock.advance(minutes=31)
    assert people.find_session(cstore, found[1], idle=timedelta(minutes=30)) is None


@pytest.mark.parametrize("field,value,message", [
    ("account", "nope", "acct_"), ("role", "Admin!", "role"), ("user_id", "", "user_id"),
    ("display_name", "a\nb", "printable"), ("return_url", "javascript:alert(1)", "http"),
    ("next_path", "//evil.example/", "path on this server"),
])
def test_links_refuse_hostile_input(cstore: Store, field: str, value: str, message: str) -> None:
    args: dict[str, Any] = {"account": "acct_1", "user_id": "u", "display_name": "U",
                            "role": "admin", "actor": "platform"}
    args[field] = value
    with pytest.raises(StoreError, match=message):
        people.create_link(cstore, **args)


def test_non_admin_roles_are_read_only(cstore: Store, make_manifest: MakeManifest) -> None:
    found = people.redeem_link(cstore, _link(cstore, role="view_only").secret)
    assert found is not None and not found[0].can_act
    cstore.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    with pytest.raises(Forbidden):
        cstore.install(APP, "acct_1", "live", by="u", role="view_only")
    cstore.install(APP, "acct_1", "live", by="boss", role="super_admin", via="console")
    entry = cstore.audit(app=APP)[-1]
    assert entry.actor == "boss" and entry.detail["via"] == "console"


def _oauth_install(store: Store, make_manifest: MakeManifest, mode: str = "test",
                   **kw: Any) -> str:
    """A code for a link that named no redirect_uri (unless `kw` says otherwise)."""
    kw.setdefault("redirect_uri_sent", False)
    store.upload_version(make_manifest("1.0.0", ["customer_read"], access="oauth"), actor="dev")
    store.install(APP, "acct_1", mode, by="ann", role="admin", via="console")
    return oauth.issue_code(store, app_id=APP, account="acct_1", mode=mode,
                            redirect_uri="https://app.example/cb", user_id="ann", **kw)


def _client(store: Store, mode: str = "test") -> Any:
    # The app's secret key is what authenticates at the token endpoint.
    key = store.rotate_key(APP, mode, grace=timedelta(0), actor="dev")
    info = store.authenticate(key.secret)
    assert info is not None and info.kind == "secret"
    return info


def test_code_exchange_refresh_rotation_and_reuse(
    cstore: Store, clock: Clock, make_manifest: MakeManifest
) -> None:
    code = _oauth_install(cstore, make_manifest)
    client = _client(cstore)
    with pytest.raises(oauth.OAuthError, match="redirect_uri"):
        oauth.exchange_code(cstore, client, code, "https://app.example/other")
    first = oauth.exchange_code(cstore, client, code, "https://app.example/cb")
    assert RK.fullmatch(first.access_token) and first.access_token.startswith("rk_test_")
    assert len(first.access_token) == len(keys.new_secret("restricted", "test"))
    body = first.as_json()
    assert body["stripe_user_id"] == "acct_1" and body["livemode"] is False
    assert body["scope"] == "stripe_apps" and body["token_type"] == "bearer"
    info = cstore.authenticate(first.access_token)
    assert info is not None and (info.kind, info.account, info.app_id) == (
        "restricted", "acct_1", APP)
    assert info.expires_at is not None
    second = oauth.refresh(cstore, client, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert cstore.authenticate(second.access_token) is not None
    # The old refresh token again: refused, and the whole family goes.
    with pytest.raises(oauth.OAuthError) as e:
        oauth.refresh(cstore, client, first.refresh_token)
    assert e.value.error == "invalid_grant"
    for token in (first.access_token, second.access_token):
        assert cstore.authenticate(token) is None
    with pytest.raises(oauth.OAuthError, match="revoked"):
        oauth.refresh(cstore, client, second.refresh_token)
    assert "oauth.family_revoked" in [a.action for a in cstore.audit(app=APP)]


def test_codes_are_single_use_and_short_lived(
    cstore: Store, clock: Clock, make_manifest: MakeManifest
) -> None:
    code = _oauth_install(cstore, make_manifest)
    client = _client(cstore)
    tokens = oauth.exchange_code(cstore, client, code)
    with pytest.raises(oauth.OAuthError, match="already used"):
        oauth.exchange_code(cstore, client, code)
    assert cstore.authenticate(tokens.access_token) is None  # replay revokes what it gave
    late = oauth.issue_code(cstore, app_id=APP, account="acct_1", mode="test",
                            redirect_uri="https://app.example/cb", user_id="ann",
                            redirect_uri_sent=False)
    clock.advance(minutes=6)
    with pytest.raises(oauth.OAuthError, match="expired"):
        oauth.exchange_code(cstore, client, late)
    with pytest.raises(oauth.OAuthError, match="does not exist"):
        oauth.exchange_code(cstore, client, "ac_nothing")


def test_access_tokens_expire_after_an_hour(
    cstore: Store, clock: Clock, make_manifest: MakeManifest
) -> None:
    code = _oauth_install(cstore, make_manifest)
    tokens = oauth.exchange_code(cstore, _client(cstore), code)
    clock.advance(minutes=59)
    assert cstore.authenticate(tokens.access_token) is not None
    clock.advance(minutes=1)
    assert cstore.authenticate(tokens.access_token) is None


def test_live_key_cannot_take_a_test_code(cstore: Store, make_manifest: MakeManifest) -> None:
    code = _oauth_install(cstore, make_manifest)
    with pytest.raises(oauth.OAuthError, match="test mode install"):
        oauth.exchange_code(cstore, _client(cstore, "live"), code)


def test_uninstall_revokes_every_token(cstore: Store, make_manifest: MakeManifest) -> None:
    code = _oauth_install(cstore, make_manifest)
    client = _client(cstore)
    tokens = oauth.exchange_code(cstore, client, code)
    spare = oauth.issue_code(cstore, app_id=APP, account="acct_1", mode="test",
                             redirect_uri="https://app.example/cb", user_id="ann",
                             redirect_uri_sent=False)
    cstore.uninstall(APP, "acct_1", "test", by="ann", role="admin")
    assert cstore.authenticate(tokens.access_token) is None
    with pytest.raises(oauth.OAuthError):
        oauth.refresh(cstore, client, tokens.refresh_token)
    with pytest.raises(oauth.OAuthError):
        oauth.exchange_code(cstore, client, spare)
    assert all(k.kind != "oauth" for k in cstore.list_keys(APP))


def test_describe_and_review(cstore: Store, make_manifest: MakeManifest) -> None:
    cstore.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    cstore.install(APP, "acct_1", "live", by="ann", role="admin")
    cstore.upload_version(make_manifest("1.1.0", ["customer_read", "credit_note_read"]),
                          actor="dev")
    view = describe.describe_latest(cstore, APP)
    note = next(p for p in view.permissions if p.name == "credit_note_read")
    assert note.title and note.purpose == "The app needs credit_note_read."
    assert ("invoice_read", "Invoices") in note.implies
    r = describe.review(cstore, APP, "acct_1", "live")
    assert [p.name for p in r.new] == ["credit_note_read"]
    assert r.kept == ("customer_read",) and r.dropped == ()


# -- PKCE (RFC 7636) and the redirect_uri rule of RFC 6749 section 4.1.3 ---------------------

def _pkce() -> tuple[str, oauth.Pkce]:
    # The verifier and challenge as a real client library makes them.
    verifier = generate_token(64)
    return verifier, oauth.Pkce(create_s256_code_challenge(verifier), "S256")


def test_pkce_s256_is_enforced_at_the_token_endpoint(
    cstore: Store, make_manifest: MakeManifest
) -> None:
    verifier, pkce = _pkce()
    code = _oauth_install(cstore, make_manifest, pkce=pkce)
    client = _client(cstore)
    other, _ = _pkce()
    for wrong, why in ((None, "code_verifier is required"), (other, "does not match"),
                       ("short", "43 to 128"), (verifier + "\n", "43 to 128"),
                       (pkce.challenge, "does not match")):
        with pytest.raises(oauth.OAuthError, match=why) as e:
            oauth.exchange_code(cstore, client, code, code_verifier=wrong)
        assert e.value.error == "invalid_grant"
    # A refused verifier spends nothing: the right one still redeems the code, once.
    tokens = oauth.exchange_code(cstore, client, code, code_verifier=verifier)
    assert cstore.authenticate(tokens.access_token) is not None
    with pytest.raises(oauth.OAuthError, match="already used"):
        oauth.exchange_code(cstore, client, code, code_verifier=verifier)


def test_a_verifier_for_a_code_issued_without_a_challenge_is_refused(
    cstore: Store, make_manifest: MakeManifest
) -> None:
    # RFC 9700 section 2.1.1: the challenge may have been stripped from the link (downgrade).
    code = _oauth_install(cstore, make_manifest)
    verifier, _ = _pkce()
    with pytest.raises(oauth.OAuthError, match="carried no code_challenge") as e:
        oauth.exchange_code(cstore, _client(cstore), code, code_verifier=verifier)
    assert e.value.error == "invalid_grant"


@pytest.mark.parametrize(("challenge", "method", "why"), [
    ("x" * 43, None, "'plain' is not supported"),  # absent means plain (RFC 7636 4.3)
    ("x" * 43, "plain", "'plain' is not supported"),
    ("x" * 43, "S512", "'S512' is not supported"),
    ("x" * 43, "s256", "'s256' is not supported"),  # method names are case-sensitive
    ("x" * 42, "S256", "not an S256 challenge"),
    ("x" * 44, "S256", "not an S256 challenge"),
    ("x" * 42 + "=", "S256", "not an S256 challenge"),
    ("", "S256", "not an S256 challenge"),
    (None, "S256", "without a code_challenge"),
])
def test_challenges_other_than_s256_are_refused(
    challenge: str | None, method: str | None, why: str
) -> None:
    with pytest.raises(oauth.OAuthError, match=why) as e:
        oauth.check_challenge(challenge, method)
    assert e.value.error == "invalid_request"


def test_a_redirect_uri_named_in_the_link_must_be_repeated(
    cstore: Store, make_manifest: MakeManifest
) -> None:
    code = _oauth_install(cstore, make_manifest, redirect_uri_sent=True)
    client = _client(cstore)
    with pytest.raises(oauth.OAuthError, match="redirect_uri is required") as e:
        oauth.exchange_code(cstore, client, code)
    assert e.value.error == "invalid_grant"
    with pytest.raises(oauth.OAuthError, match="does not match"):
        oauth.exchange_code(cstore, client, code, "https://app.example/cb/")
    tokens = oauth.exchange_code(cstore, client, code, "https://app.example/cb")
    assert cstore.authenticate(tokens.access_token) is not None


def test_codes_issued_before_the_pkce_migration_still_redeem(
    db_url: str, make_manifest: MakeManifest
) -> None:
    # A database at ev0003 holding a live code: after the upgrade it redeems under the rules
    # it was issued with (no verifier, no redirect_uri).
    engine = create(resolve_url(db_url))
    try:
        migrate.upgrade(engine, "ev0003")
        old = Store(engine)
        old.upload_version(make_manifest("1.0.0", ["customer_read"], access="oauth"),
                           actor="dev")
        install = old.install(APP, "acct_1", "test", by="ann", role="admin").grant.install_id
        code = "ac_" + generate_token(64)
        with engine.begin() as conn:
            conn.execute(oauth_codes.insert().values(
                code_hash=keys.hash_secret(code), app_id=APP, install_id=install,
                account="acct_1", mode="test", redirect_uri="https://app.example/cb",
                user_id="ann", created_at=old.now(), expires_at=old.now() + oauth.CODE_TTL))
        migrate.upgrade(engine)
        new = Store(engine)
        tokens = oauth.exchange_code(new, _client(new), code)
        assert new.authenticate(tokens.access_token) is not None
    finally:
        engine.dispose()
