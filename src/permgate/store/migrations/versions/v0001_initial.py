"""Apps, versions, installs, keys, audit log and the change counter.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_TS = sa.DateTime(timezone=True)
_ACTIVE = sa.text("uninstalled_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "permgate_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("change_counter", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO permgate_state (id, change_counter) VALUES (1, 0)")
    op.create_table(
        "apps",
        sa.Column("app_id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("latest_seq", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )
    op.create_table(
        "app_versions",
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("permissions", sa.JSON, nullable=False),
        sa.Column("access_type", sa.String(32), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("manifest_text", sa.Text, nullable=False),
        sa.Column("uploaded_at", _TS, nullable=False),
        sa.Column("uploaded_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("app_id", "version", name="uq_app_versions_version"),
    )
    op.create_table(
        "installs",
        sa.Column("install_id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("approved_seq", sa.Integer, nullable=False),
        sa.Column("approved_permissions", sa.JSON, nullable=False),
        sa.Column("approved_by", sa.String(255), nullable=False),
        sa.Column("approved_at", _TS, nullable=False),
        sa.Column("installed_by", sa.String(255), nullable=False),
        sa.Column("installed_at", _TS, nullable=False),
        sa.Column("uninstalled_by", sa.String(255), nullable=True),
        sa.Column("uninstalled_at", _TS, nullable=True),
    )
    op.create_index(
        "uq_installs_active", "installs", ["app_id", "account", "mode"], unique=True,
        sqlite_where=_ACTIVE, postgresql_where=_ACTIVE,
    )
    op.create_index(
        "ix_installs_account_active", "installs", ["account", "mode"],
        sqlite_where=_ACTIVE, postgresql_where=_ACTIVE,
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(255), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "install_id", sa.String(40), sa.ForeignKey("installs.install_id"), nullable=True
        ),
        sa.Column("account", sa.String(255), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_index("uq_api_keys_secret_hash", "api_keys", ["secret_hash"], unique=True)
    op.create_index("ix_api_keys_app_mode", "api_keys", ["app_id", "mode"])
    op.create_index("ix_api_keys_install", "api_keys", ["install_id"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(255), nullable=True),
        sa.Column("account", sa.String(255), nullable=True),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_app", "audit_log", ["app_id", "id"])
    op.create_index("ix_audit_log_account", "audit_log", ["account", "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    _forbid_audit_edits()


def _forbid_audit_edits() -> None:
    """The audit trail is append-only in the database itself, not just by convention."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION permgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION permgate_audit_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION permgate_audit_append_only()")
    for table in ("audit_log", "api_keys", "installs", "app_versions", "apps", "permgate_state"):
        op.drop_table(table)
