"""The values the store hands out: plain frozen records, safe to cache and share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

MODES: tuple[str, ...] = ("live", "test", "sandbox")
ADMIN_ROLE = "admin"
# Stripe's roles that may install, approve and uninstall apps; every other role only looks.
ADMIN_ROLES: frozenset[str] = frozenset({"admin", "super_admin"})


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Who a presented key belongs to.

    `mode` is "live" or "test" for an app's secret keys (sandboxes use test keys); for a
    restricted key it is the mode of the install it was minted for. An OAuth access token
    is reported as a restricted key of its install (it is one, for an hour): `expires` is
    then its end as a unix time, so a cache can drop it on time.
    """

    key_id: str
    app_id: str
    mode: str
    kind: Literal["secret", "restricted"]
    install_id: str | None
    account: str | None
    # Set while a rotated key is in its grace period: whoever caches this answer must stop
    # honouring it at that instant (the store's change counter does not move then).
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EffectiveGrant:
    """What an app may do on one account in one mode right now.

    `approved` is the set backend calls may use now: the current version's set when it is
    covered by what an administrator approved, else the most recently approved set.
    `pending` is what the current version asks for beyond that set.
    """

    install_id: str
    app_id: str
    account: str
    mode: str
    installed_version: str
    approved_version: str
    approved: frozenset[str]
    pending: frozenset[str]
    status: Literal["active", "pending_approval"]

    def as_json(self) -> dict[str, Any]:
        return {
            "install_id": self.install_id, "app_id": self.app_id, "account": self.account,
            "mode": self.mode, "installed_version": self.installed_version,
            "approved_version": self.approved_version, "approved": sorted(self.approved),
            "pending": sorted(self.pending), "status": self.status,
        }

    def pending_hint(self, missing: Iterable[Iterable[str]]) -> str | None:
        """For a denial whose `missing` groups (each: the permissions that would satisfy it)
        the version awaiting approval asks for, the sentence that says so (the gateway's
        403 and `permgate explain --app` add it); else None."""
        groups = [tuple(g) for g in missing]
        if self.status != "pending_approval" or not groups:
            return None
        asked = sorted({p for g in groups for p in g if p in self.pending})
        if not asked:
            return None
        names = ", ".join(f"'{p}'" for p in asked)
        enough = all(any(p in self.pending for p in g) for g in groups)
        return (f"Version {self.installed_version} of '{self.app_id}' asks for {names}, and "
                f"an administrator of account '{self.account}' has not approved it yet "
                f"({self.mode} mode: pending approval); "
                + ("once approved, this request will be allowed." if enough else
                   "approving it will not be enough for this request alone."))


@dataclass(frozen=True, slots=True)
class VersionInfo:
    app_id: str
    version: str
    seq: int
    permissions: frozenset[str]
    access_type: str
    uploaded_at: datetime
    uploaded_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id, "version": self.version, "seq": self.seq,
            "permissions": sorted(self.permissions), "access_type": self.access_type,
            "uploaded_at": self.uploaded_at.isoformat(), "uploaded_by": self.uploaded_by,
        }


@dataclass(frozen=True, slots=True)
class AppInfo:
    app_id: str
    name: str
    latest: VersionInfo
    versions: tuple[VersionInfo, ...]
    created_at: datetime
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id, "name": self.name, "latest_version": self.latest.version,
            "access_type": self.latest.access_type,
            "permissions": sorted(self.latest.permissions),
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "versions": [v.as_json() for v in self.versions],
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just minted: the only time its secret exists outside the caller's hands."""

    key_id: str
    app_id: str
    mode: str
    kind: Literal["secret", "restricted"]
    secret: str
    account: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "app_id": self.app_id, "mode": self.mode,
            "kind": self.kind, "secret": self.secret, "account": self.account,
        }


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as listed: never the secret, only its recognisable ends."""

    key_id: str
    app_id: str
    mode: str
    kind: str
    hint: str
    install_id: str | None
    account: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "app_id": self.app_id, "mode": self.mode,
            "kind": self.kind, "hint": self.hint, "install_id": self.install_id,
            "account": self.account, "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "usable": self.usable(now),
        }


@dataclass(frozen=True, slots=True)
class UploadResult:
    version: VersionInfo
    created_app: bool
    keys: tuple[NewKey, ...]  # the app's test and live secret keys, on first upload only

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.version.app_id, "version": self.version.version,
            "created_app": self.created_app, "permissions": sorted(self.version.permissions),
            "keys": [k.as_json() for k in self.keys],
        }


@dataclass(frozen=True, slots=True)
class InstallResult:
    grant: EffectiveGrant
    key: NewKey | None  # the install's restricted key, for restricted_api_key apps

    def as_json(self) -> dict[str, Any]:
        out = self.grant.as_json()
        out["restricted_key"] = self.key.as_json() if self.key else None
        return out


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    app_id: str | None
    account: str | None
    mode: str | None
    version: str | None
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": self.at.isoformat(), "actor": self.actor,
            "action": self.action, "app_id": self.app_id, "account": self.account,
            "mode": self.mode, "version": self.version, "detail": self.detail,
        }
