"""OAuth for apps (`stripe_api_access_type: "oauth"`): codes, access and refresh tokens.

- A code is issued to a signed-in administrator's install, single-use, for `CODE_TTL`.
- An access token is an `rk_live_`/`rk_test_` key of the install (an `api_keys` row of kind
  "oauth") that expires after an hour: the gateway authenticates it like a restricted key.
- A refresh token is rotated on every use; presenting a used one again means it leaked, so the
  whole family (every refresh and access token since the code) is revoked, as is the family of
  a code presented twice (RFC 6749 section 4.1.2, OAuth 2.0 Security BCP section 4.14).
- PKCE (RFC 7636, required by RFC 9700 section 2.1.1): a code issued for a link carrying a
  `code_challenge` is exchanged only with its `code_verifier`; a verifier for a code issued
  without a challenge is refused too (the downgrade RFC 9700 names). S256 only: see
  docs/consent.md. A code also remembers whether its link named the redirect_uri, which the
  token request must then repeat (RFC 6749 section 4.1.3).
- Uninstall revokes everything (Store.uninstall). Every secret is stored as its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from permgate.errors import PermgateError
from permgate.store import keys
from permgate.store.consent_schema import oauth_codes, oauth_refresh_tokens
from permgate.store.errors import NotFound
from permgate.store.model import KeyInfo
from permgate.store.schema import api_keys, installs
from permgate.store.store import Store, _Tx, append_audit

CODE_TTL = timedelta(minutes=5)
ACCESS_TTL = timedelta(hours=1)
SCOPE = "stripe_apps"
_ALPHABET = string.ascii_letters + string.digits
PKCE_METHODS = ("S256",)
# RFC 7636 section 4.1: 43 to 128 unreserved characters (RFC 3986 section 2.3).
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# An S256 challenge is base64url(SHA-256) without padding: exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_UNRESERVED = "43 to 128 characters of A-Z a-z 0-9 - . _ ~"


class OAuthError(PermgateError):
    """An OAuth 2.0 error response (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def as_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str
    account: str
    mode: str
    expires_in: int

    def as_json(self) -> dict[str, Any]:
        # Stripe's token response, plus the standard expires_in.
        return {
            "access_token": self.access_token, "refresh_token": self.refresh_token,
            "token_type": "bearer", "scope": SCOPE, "livemode": self.mode == "live",
            "stripe_user_id": self.account, "expires_in": self.expires_in,
        }


@dataclass(frozen=True, slots=True)
class Pkce:
    """An install link's PKCE challenge, as checked by `check_challenge`."""

    challenge: str
    method: str


def check_challenge(challenge: str | None, method: str | None) -> Pkce | None:
    """The install link's `code_challenge` and `code_challenge_method`, or None when it sent
    neither. Raises OAuthError("invalid_request"), which the authorize endpoint sends to the
    app's redirect URI (RFC 7636 section 4.4.1)."""
    if challenge is None:
        if method is not None:
            raise OAuthError("invalid_request",
                             "code_challenge_method was sent without a code_challenge.")
        return None
    method = "plain" if method is None else method  # RFC 7636 section 4.3: absent is plain
    if method not in PKCE_METHODS:
        raise OAuthError("invalid_request", f"code_challenge_method {method[:16]!r} is not "
                         "supported: send code_challenge_method=S256 with "
                         "code_challenge=BASE64URL(SHA256(code_verifier)).")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge is not an S256 challenge "
                         "(43 base64url characters without padding).")
    return Pkce(challenge, method)


def _pkce_refusal(challenge: str | None, method: str | None,
                  verifier: str | None) -> OAuthError | None:
    """Why the token request's `code_verifier` does not redeem a code issued for `challenge`
    by `method`, or None if it does."""
    if challenge is None:
        if verifier is None:
            return None
        # RFC 9700 section 2.1.1: a verifier for a code issued without a challenge is a
        # downgrade (the challenge was stripped from the link): refuse it.
        return OAuthError("invalid_grant", "code_verifier was sent, but the install link "
                          "this code was issued for carried no code_challenge.")
    if verifier is None:
        return OAuthError("invalid_grant", "code_verifier is required: the install link "
                          "carried a code_challenge.")
    if method not in PKCE_METHODS:  # never stored by check_challenge: deny, whatever it is
        return OAuthError("invalid_grant", "The code's code_challenge_method is not S256.")
    if not _VERIFIER.fullmatch(verifier):
        return OAuthError("invalid_grant", f"code_verifier must be {_UNRESERVED}.")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if not hmac.compare_digest(computed, challenge):
        return OAuthError("invalid_grant", "code_verifier does not match the install link's "
                          "code_challenge.")
    return None


def _secret(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(keys.SECRET_LENGTH))


def _key_modes(key_mode: str) -> tuple[str, ...]:
    # Sandboxes use test keys (docs/store.md).
    return ("test", "sandbox") if key_mode == "test" else (key_mode,)


def issue_code(
    store: Store, *, app_id: str, account: str, mode: str, redirect_uri: str, user_id: str,
    redirect_uri_sent: bool = True, pkce: Pkce | None = None,
) -> str:
    """A single-use code for the live install of `app_id` on `account` in `mode`, sent to
    `redirect_uri`. `redirect_uri_sent`: the install link named it (then the token request
    must repeat it); `pkce`: the link's challenge (`check_challenge`)."""
    if pkce is not None:
        check_challenge(pkce.challenge, pkce.method)  # one rule, whoever calls
    grant = store.effective_grant(app_id, account, mode)
    if grant is None:
        raise NotFound(f"{app_id} is not installed on {account} in {mode} mode",
                       "not_installed")
    code = _secret("ac_")
    now = store.now()
    with store._writer.begin() as conn:
        conn.execute(oauth_codes.insert().values(
            code_hash=keys.hash_secret(code), app_id=app_id, install_id=grant.install_id,
            account=account, mode=mode, redirect_uri=redirect_uri, user_id=user_id,
            created_at=now, expires_at=now + CODE_TTL, redirect_uri_sent=redirect_uri_sent,
            code_challenge=pkce.challenge if pkce else None,
            code_challenge_method=pkce.method if pkce else None))
        append_audit(conn, user_id, "oauth.code_issued", at=now, app_id=app_id,
                     account=account, mode=mode, install_id=grant.install_id)
    return code


def exchange_code(
    store: Store, client: KeyInfo, code: str, redirect_uri: str | None = None,
    code_verifier: str | None = None,
) -> TokenSet:
    """grant_type=authorization_code, for the app whose secret key authenticated. A refused
    verifier or redirect_uri leaves the code unspent (nothing was issued)."""
    refused: OAuthError | None = None
    tokens: TokenSet | None = None
    with store._change(client.app_id) as tx:
        row = tx.conn.execute(sa.select(oauth_codes).where(
            oauth_codes.c.code_hash == keys.hash_secret(code)).with_for_update()
        ).mappings().first()
        if row is None or row["app_id"] != client.app_id:
            raise OAuthError("invalid_grant", "Authorization code does not exist.")
        if row["used_at"] is not None:
            if row["family_id"] is not None:
                _revoke_family(tx, row["family_id"], "code_reused")
            refused = OAuthError(
                "invalid_grant", "Authorization code was already used; every token issued "
                "for it is revoked.")
        elif row["expires_at"] <= tx.now:
            raise OAuthError("invalid_grant", "Authorization code expired.")
        elif redirect_uri is None and row["redirect_uri_sent"]:
            raise OAuthError("invalid_grant", "redirect_uri is required: the install link "
                             "named one, and the token request must repeat it (RFC 6749 "
                             "section 4.1.3).")
        elif redirect_uri is not None and redirect_uri != row["redirect_uri"]:
            raise OAuthError("invalid_grant",
                             "redirect_uri does not match the one the code was issued for.")
        elif row["mode"] not in _key_modes(client.mode):
            raise OAuthError("invalid_grant", f"This code is for a {row['mode']} mode install; "
                             f"authenticate with the app's {client.mode} key for it.")
        elif (pkce := _pkce_refusal(
                row["code_challenge"], row["code_challenge_method"], code_verifier)) is not None:
            raise pkce
        else:
            _require_installed(tx.conn, row["install_id"])
            family = keys.new_id("fam")
            tx.conn.execute(oauth_codes.update().where(
                oauth_codes.c.code_hash == row["code_hash"]).values(
                used_at=tx.now, family_id=family))
            tokens = _mint_pair(tx, row, family, "authorization_code")
    if refused is not None:
        raise refused
    assert tokens is not None
    return tokens


def refresh(store: Store, client: KeyInfo, refresh_token: str) -> TokenSet:
    """grant_type=refresh_token: a new pair; the presented refresh token is spent."""
    refused: OAuthError | None = None
    tokens: TokenSet | None = None
    with store._change(client.app_id) as tx:
        row = tx.conn.execute(sa.select(oauth_refresh_tokens).where(
            oauth_refresh_tokens.c.token_hash == keys.hash_secret(refresh_token))
            .with_for_update()).mappings().first()
        if row is None or row["app_id"] != client.app_id:
            raise OAuthError("invalid_grant", "Refresh token does not exist.")
        if row["revoked_at"] is not None:
            raise OAuthError("invalid_grant", "Refresh token was revoked.")
        if row["used_at"] is not None:
            _revoke_family(tx, row["family_id"], "refresh_token_reused")
            refused = OAuthError(
                "invalid_grant", "Refresh token was already used; as it may have leaked, "
                "every token of this authorization is revoked. Send the user through the "
                "install link again.")
        elif row["mode"] not in _key_modes(client.mode):
            raise OAuthError("invalid_grant", f"This token is for a {row['mode']} mode "
                             f"install; authenticate with the app's {client.mode} key.")
        else:
            _require_installed(tx.conn, row["install_id"])
            tx.conn.execute(oauth_refresh_tokens.update().where(
                oauth_refresh_tokens.c.token_id == row["token_id"]).values(used_at=tx.now))
            tokens = _mint_pair(tx, row, row["family_id"], "refresh_token")
    if refused is not None:
        raise refused
    assert tokens is not None
    return tokens


def _require_installed(conn: Connection, install_id: str) -> None:
    live = conn.execute(sa.select(installs.c.install_id).where(
        installs.c.install_id == install_id, installs.c.uninstalled_at.is_(None))
        .with_for_update()).first()
    if live is None:
        raise OAuthError("invalid_grant", "The app was uninstalled from this account.")


def _mint_pair(tx: _Tx, source: Any, family: str, grant_type: str) -> TokenSet:
    mode, account, install_id, app_id = (
        source["mode"], source["account"], source["install_id"], source["app_id"])
    # Exactly the shape of a restricted key (keys.new_secret), so every key check agrees.
    access = keys.new_secret("restricted", mode)
    key_id = keys.new_id("key")
    tx.conn.execute(api_keys.insert().values(
        key_id=key_id, app_id=app_id, mode=mode, kind="oauth", install_id=install_id,
        account=account, secret_hash=keys.hash_secret(access), hint=keys.hint(access),
        created_at=tx.now, created_by=tx.actor, expires_at=tx.now + ACCESS_TTL))
    refresh_token = _secret("rt_")
    tx.conn.execute(oauth_refresh_tokens.insert().values(
        token_id=keys.new_id("rtok"), token_hash=keys.hash_secret(refresh_token),
        family_id=family, app_id=app_id, install_id=install_id, account=account, mode=mode,
        access_key_id=key_id, created_at=tx.now))
    tx.audit("oauth.token_issued", app_id=app_id, account=account, mode=mode,
             install_id=install_id, grant_type=grant_type, family_id=family, key_id=key_id)
    return TokenSet(access, refresh_token, account, mode, int(ACCESS_TTL.total_seconds()))


def _revoke_family(tx: _Tx, family: str, reason: str) -> None:
    members = tx.conn.execute(sa.select(
        oauth_refresh_tokens.c.access_key_id, oauth_refresh_tokens.c.app_id,
        oauth_refresh_tokens.c.account, oauth_refresh_tokens.c.mode,
    ).where(oauth_refresh_tokens.c.family_id == family)).mappings().all()
    tx.conn.execute(oauth_refresh_tokens.update().where(
        oauth_refresh_tokens.c.family_id == family,
        oauth_refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=tx.now))
    key_ids = [m["access_key_id"] for m in members]
    if key_ids:
        tx.conn.execute(api_keys.update().where(
            api_keys.c.key_id.in_(key_ids), api_keys.c.revoked_at.is_(None))
            .values(revoked_at=tx.now))
        first = members[0]
        tx.audit("oauth.family_revoked", app_id=first["app_id"], account=first["account"],
                 mode=first["mode"], family_id=family, reason=reason,
                 revoked_keys=sorted(key_ids))
