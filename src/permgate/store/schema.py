"""Tables (SQLAlchemy Core). The migrations create exactly these; a test checks they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so store UTC naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

state = sa.Table(
    "permgate_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("change_counter", sa.BigInteger, nullable=False),
    # The API the database belongs to (None: not yet claimed) and, for an own API, the
    # sha256 of its tables (migration ap0001_store_api; Store.open checks both).
    sa.Column("api", sa.String(40), nullable=True),
    sa.Column("api_tables", sa.String(64), nullable=True),
)

apps = sa.Table(
    "apps", metadata,
    sa.Column("app_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("latest_seq", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
)

app_versions = sa.Table(
    "app_versions", metadata,
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("permissions", sa.JSON, nullable=False),
    sa.Column("access_type", sa.String(32), nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),
    sa.Column("manifest_text", sa.Text, nullable=False),  # byte-for-byte as uploaded
    sa.Column("uploaded_at", UTCDateTime, nullable=False),
    sa.Column("uploaded_by", sa.String(255), nullable=False),
    sa.UniqueConstraint("app_id", "version", name="uq_app_versions_version"),
)

installs = sa.Table(
    "installs", metadata,
    sa.Column("install_id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("approved_seq", sa.Integer, nullable=False),
    sa.Column("approved_permissions", sa.JSON, nullable=False),
    sa.Column("approved_by", sa.String(255), nullable=False),
    sa.Column("approved_at", UTCDateTime, nullable=False),
    sa.Column("installed_by", sa.String(255), nullable=False),
    sa.Column("installed_at", UTCDateTime, nullable=False),
    sa.Column("uninstalled_by", sa.String(255), nullable=True),
    sa.Column("uninstalled_at", UTCDateTime, nullable=True),
    # One live install per (app, account, mode); uninstalled rows stay as history.
    sa.Index(
        "uq_installs_active", "app_id", "account", "mode", unique=True,
        sqlite_where=sa.text("uninstalled_at IS NULL"),
        postgresql_where=sa.text("uninstalled_at IS NULL"),
    ),
    sa.Index(
        "ix_installs_account_active", "account", "mode",
        sqlite_where=sa.text("uninstalled_at IS NULL"),
        postgresql_where=sa.text("uninstalled_at IS NULL"),
    ),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("install_id", sa.String(40), sa.ForeignKey("installs.install_id"), nullable=True),
    sa.Column("account", sa.String(255), nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("hint", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Index("uq_api_keys_secret_hash", "secret_hash", unique=True),
    sa.Index("ix_api_keys_app_mode", "app_id", "mode"),
    sa.Index("ix_api_keys_install", "install_id"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("app_id", sa.String(255), nullable=True),
    sa.Column("account", sa.String(255), nullable=True),
    sa.Column("mode", sa.String(16), nullable=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_audit_log_app", "app_id", "id"),
    sa.Index("ix_audit_log_account", "account", "id"),
    sa.Index("ix_audit_log_at", "at"),
)
