"""People the platform vouches for: one-time account links and the browser sessions they open.

permgate owns no users. The platform's backend says who a person is on one account (user id,
display name, role) by creating an account link through the admin API, as Stripe's Account
Links do; opening the link once starts a browser session for that user on that account only.
Links and session tokens are stored only as SHA-256 hashes (see keys.py for why that is
enough). Session reads and touches do not bump the change counter: nothing the gateway caches
depends on them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from permgate.store import keys
from permgate.store.consent_schema import account_links, browser_sessions
from permgate.store.errors import StoreError
from permgate.store.model import ADMIN_ROLES
from permgate.store.store import Store, append_audit

LINK_TTL = timedelta(minutes=5)
MAX_LINK_TTL = timedelta(minutes=30)
DEFAULT_LIFETIME = timedelta(hours=12)
DEFAULT_IDLE = timedelta(minutes=30)
# A session's last_seen_at is written at most this often: reads stay reads.
TOUCH_EVERY = timedelta(seconds=30)

_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,200}")
_ROLE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class AccountLink:
    link_id: str
    secret: str  # the one-time token of the URL: exists only in this answer
    account: str
    user_id: str
    display_name: str
    role: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class BrowserSession:
    session_id: str
    account: str
    user_id: str
    display_name: str
    role: str
    return_url: str | None
    created_at: datetime
    expires_at: datetime

    @property
    def can_act(self) -> bool:
        """Only administrators install, approve and uninstall; other roles look."""
        return self.role in ADMIN_ROLES

    @property
    def actor(self) -> str:
        return self.user_id


def _text(value: Any, name: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"{name} must be a non-empty string", "parameter_invalid")
    if len(value) > limit or not value.isprintable():
        raise StoreError(f"{name} must be printable text of at most {limit} characters",
                         "parameter_invalid")
    return value


def check_return_url(value: str | None) -> str | None:
    """An http(s) URL the page links back to (shown, escaped; never redirected to)."""
    if value is None:
        return None
    _text(value, "return_url", 2048)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or "\\" in value:
        raise StoreError("return_url must be an absolute http(s) URL", "parameter_invalid")
    return value


def check_next_path(value: str | None) -> str | None:
    """A path on this server to land on after the link (never another host)."""
    if value is None:
        return None
    _text(value, "next", 2048)
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        raise StoreError("next must be a path on this server, starting with one '/'",
                         "parameter_invalid")
    return value


def create_link(
    store: Store, *, account: str, user_id: str, display_name: str, role: str,
    actor: str, return_url: str | None = None, next_path: str | None = None,
    ttl: timedelta = LINK_TTL,
) -> AccountLink:
    """A single-use link for one person on one account; it expires within minutes."""
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise StoreError(f"account must look like acct_..., not {account!r}", "bad_account")
    _text(user_id, "user_id")
    _text(display_name, "display_name")
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise StoreError("role must be a role name such as admin, super_admin, developer or "
                         "view_only", "parameter_invalid")
    check_return_url(return_url)
    check_next_path(next_path)
    if not timedelta(seconds=1) <= ttl <= MAX_LINK_TTL:
        raise StoreError("a link may wait between 1 second and 30 minutes to be opened",
                         "parameter_invalid")
    secret = "acl_" + secrets.token_urlsafe(32)
    link_id = keys.new_id("link")
    now = store.now()
    with store._writer.begin() as conn:
        conn.execute(account_links.insert().values(
            link_id=link_id, token_hash=keys.hash_secret(secret), account=account,
            user_id=user_id, display_name=display_name, role=role, return_url=return_url,
            next_path=next_path, created_at=now, created_by=actor, expires_at=now + ttl))
        append_audit(conn, actor, "account_link.created", at=now, account=account,
                     link_id=link_id, user_id=user_id, role=role)
    return AccountLink(link_id, secret, account, user_id, display_name, role, now + ttl)


def redeem_link(
    store: Store, secret: str, *, lifetime: timedelta = DEFAULT_LIFETIME,
) -> tuple[BrowserSession, str, str | None] | None:
    """Spend the link once: -> (session, session token, where to land), or None when the link
    is unknown, used or expired (`link_refusal` says which)."""
    if not secret.startswith("acl_") or len(secret) > 100:
        return None
    now = store.now()
    token = "pgs_" + secrets.token_urlsafe(32)
    with store._writer.begin() as conn:
        link = conn.execute(sa.select(account_links).where(
            account_links.c.token_hash == keys.hash_secret(secret))).mappings().first()
        if link is None or link["used_at"] is not None or link["expires_at"] <= now:
            return None
        spent = conn.execute(account_links.update().where(
            account_links.c.link_id == link["link_id"], account_links.c.used_at.is_(None))
            .values(used_at=now))
        if spent.rowcount != 1:
            return None
        session_id = keys.new_id("sess")
        conn.execute(browser_sessions.insert().values(
            session_id=session_id, token_hash=keys.hash_secret(token), link_id=link["link_id"],
            account=link["account"], user_id=link["user_id"],
            display_name=link["display_name"], role=link["role"],
            return_url=link["return_url"], created_at=now, expires_at=now + lifetime,
            last_seen_at=now))
        append_audit(conn, link["user_id"], "session.started", at=now, account=link["account"],
                     session_id=session_id, role=link["role"], link_id=link["link_id"])
    session = BrowserSession(
        session_id, link["account"], link["user_id"], link["display_name"], link["role"],
        link["return_url"], now, now + lifetime)
    return session, token, link["next_path"]


def link_refusal(store: Store, secret: str) -> str:
    """Why `redeem_link` refused a link: "used", "expired" or "unknown" (never issued here,
    e.g. made against another database). Saying which leaks nothing: the token is a 256-bit
    secret, so only its holder learns the reason, and an administrator who is told why can
    act (ask for a new link, or check that the link and the gateway share one database)."""
    if not secret.startswith("acl_") or len(secret) > 100:
        return "unknown"
    with store.engine.connect() as conn:
        link = conn.execute(sa.select(account_links.c.used_at, account_links.c.expires_at)
                            .where(account_links.c.token_hash == keys.hash_secret(secret))
                            ).mappings().first()
    if link is None:
        return "unknown"
    if link["used_at"] is not None:
        return "used"
    return "expired" if link["expires_at"] <= store.now() else "unknown"


def find_session(
    store: Store, token: str, *, idle: timedelta = DEFAULT_IDLE,
) -> BrowserSession | None:
    """The live session of a cookie's token, or None (unknown, ended, expired or idle)."""
    if not token.startswith("pgs_") or len(token) > 100:
        return None
    now = store.now()
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(browser_sessions).where(
            browser_sessions.c.token_hash == keys.hash_secret(token))).mappings().first()
    if (row is None or row["ended_at"] is not None or row["expires_at"] <= now
            or row["last_seen_at"] + idle <= now):
        return None
    if now - row["last_seen_at"] >= TOUCH_EVERY:
        with store._writer.begin() as conn:
            conn.execute(browser_sessions.update().where(
                browser_sessions.c.session_id == row["session_id"]).values(last_seen_at=now))
    return BrowserSession(
        row["session_id"], row["account"], row["user_id"], row["display_name"], row["role"],
        row["return_url"], row["created_at"], row["expires_at"])


def end_session(store: Store, token: str) -> bool:
    if not token.startswith("pgs_") or len(token) > 100:
        return False
    now = store.now()
    with store._writer.begin() as conn:
        done = conn.execute(browser_sessions.update().where(
            browser_sessions.c.token_hash == keys.hash_secret(token),
            browser_sessions.c.ended_at.is_(None)).values(ended_at=now))
    return bool(done.rowcount)
