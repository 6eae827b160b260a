"""Tables for consent by people: account links, browser sessions, OAuth codes and refresh tokens.

On the store's `metadata`; migrations `c0001_consent` and `c0002_oauth_pkce` create exactly
these. Every secret (link token, session token, code, refresh token) is stored only as its
SHA-256, as keys are.
OAuth access tokens are rows of `api_keys` (kind "oauth"), so the gateway's one indexed
lookup by hash finds them and uninstall revokes them with the install's other keys.
"""

from __future__ import annotations

import sqlalchemy as sa

from permgate.store.schema import UTCDateTime, metadata

account_links = sa.Table(
    "account_links", metadata,
    sa.Column("link_id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("return_url", sa.Text, nullable=True),
    sa.Column("next_path", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Index("uq_account_links_token", "token_hash", unique=True),
)

browser_sessions = sa.Table(
    "browser_sessions", metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("link_id", sa.String(40), sa.ForeignKey("account_links.link_id"), nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("return_url", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Index("uq_browser_sessions_token", "token_hash", unique=True),
)

oauth_codes = sa.Table(
    "oauth_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("install_id", sa.String(40), sa.ForeignKey("installs.install_id"),
              nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    # The token family the code was exchanged for: a replayed code revokes it (RFC 6749 4.1.2).
    sa.Column("family_id", sa.String(40), nullable=True),
    # Migration c0002_oauth_pkce: the PKCE challenge the install link carried (RFC 7636; only
    # S256 is accepted), and whether the link named its redirect_uri, which the token request
    # must then repeat (RFC 6749 4.1.3).
    sa.Column("code_challenge", sa.String(128), nullable=True),
    sa.Column("code_challenge_method", sa.String(8), nullable=True),
    sa.Column("redirect_uri_sent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_oauth_codes_install", "install_id"),
)

oauth_refresh_tokens = sa.Table(
    "oauth_refresh_tokens", metadata,
    sa.Column("token_id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("family_id", sa.String(40), nullable=False),
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("install_id", sa.String(40), sa.ForeignKey("installs.install_id"),
              nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    # The access token minted with this refresh token (an api_keys row).
    sa.Column("access_key_id", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Index("uq_oauth_refresh_tokens_hash", "token_hash", unique=True),
    sa.Index("ix_oauth_refresh_tokens_family", "family_id"),
    sa.Index("ix_oauth_refresh_tokens_install", "install_id"),
)
