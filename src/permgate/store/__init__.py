"""Apps, versions, installs, consent, keys and the audit trail, on SQLite or PostgreSQL.

The gateway and event delivery read `authenticate`, `effective_grant`,
`installs_for_account` and `change_counter`; see docs/store.md.
"""

from permgate.store import describe, oauth, people
from permgate.store.errors import (
    Conflict,
    Forbidden,
    InvalidManifest,
    NotFound,
    SchemaOutOfDate,
    StoreError,
)
from permgate.store.model import (
    MODES,
    AppInfo,
    AuditEntry,
    EffectiveGrant,
    InstallResult,
    KeyInfo,
    KeyRecord,
    NewKey,
    UploadResult,
    VersionInfo,
)
from permgate.store.store import DEFAULT_GRACE, MAX_GRACE, NOTIFY_CHANNEL, Store

__all__ = [
    "DEFAULT_GRACE", "MAX_GRACE", "MODES", "NOTIFY_CHANNEL", "AppInfo", "AuditEntry", "Conflict",
    "EffectiveGrant", "Forbidden", "InstallResult", "InvalidManifest", "KeyInfo", "KeyRecord",
    "NewKey", "NotFound", "SchemaOutOfDate", "Store", "StoreError", "UploadResult",
    "VersionInfo", "describe", "oauth", "people",
]
