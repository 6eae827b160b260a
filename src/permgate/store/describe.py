"""The data behind a consent screen: a version's permissions with the app's purposes and the
catalog's titles, and what an upgrade asks an administrator to approve.

Everything here is manifest text, i.e. hostile: it is returned as plain strings, bounded in
length, and escaped by whoever renders it (Jinja2 autoescape, JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from permgate.manifest._catalog import default_catalog
from permgate.store.model import EffectiveGrant
from permgate.store.store import Store

_MAX_TEXT = 2000


def _clip(value: Any, limit: int = _MAX_TEXT) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class PermissionView:
    name: str
    level: str  # "read" | "write" ("" for a name the catalog does not know)
    title: str  # the catalog's resource title, e.g. "Customers"
    description: str  # the catalog's description
    purpose: str  # the app's own words (manifest), hostile
    implies: tuple[tuple[str, str], ...]  # (name, title) granted along with it

    def as_json(self) -> dict[str, Any]:
        return {
            "permission": self.name, "level": self.level, "title": self.title,
            "description": self.description, "purpose": self.purpose,
            "implies": [{"permission": n, "title": t} for n, t in self.implies],
        }


@dataclass(frozen=True, slots=True)
class VersionView:
    app_id: str
    name: str
    version: str
    access_type: str
    uploaded_by: str
    icon: str
    connect_src: tuple[str, ...]
    csp_purpose: str
    allowed_redirect_uris: tuple[str, ...]
    sandbox_install_compatible: bool
    permissions: tuple[PermissionView, ...]

    @property
    def reads(self) -> tuple[PermissionView, ...]:
        return tuple(p for p in self.permissions if p.level != "write")

    @property
    def writes(self) -> tuple[PermissionView, ...]:
        return tuple(p for p in self.permissions if p.level == "write")

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id, "name": self.name, "version": self.version,
            "access_type": self.access_type, "uploaded_by": self.uploaded_by,
            "icon": self.icon, "connect_src": list(self.connect_src),
            "csp_purpose": self.csp_purpose,
            "allowed_redirect_uris": list(self.allowed_redirect_uris),
            "sandbox_install_compatible": self.sandbox_install_compatible,
            "permissions": [p.as_json() for p in self.permissions],
        }


@dataclass(frozen=True, slots=True)
class Review:
    """What approving the install's current version would change."""

    grant: EffectiveGrant
    current: VersionView  # the version the account runs
    new: tuple[PermissionView, ...]  # asked for beyond what was approved: needs approval
    kept: tuple[str, ...]  # approved before and still asked for
    dropped: tuple[str, ...]  # approved before, no longer asked for (approval narrows)

    def as_json(self) -> dict[str, Any]:
        return {
            "install": self.grant.as_json(), "version": self.current.version,
            "needs_approval": bool(self.new),
            "new": [p.as_json() for p in self.new], "kept": list(self.kept),
            "dropped": list(self.dropped),
        }


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_clip(value, 2048),)
    if isinstance(value, list):
        return tuple(_clip(v, 2048) for v in value[:100] if isinstance(v, str))
    return ()


def describe_version(store: Store, app_id: str, version: str) -> VersionView:
    """One stored version, as a consent screen shows it."""
    from permgate import manifest

    text = store.get_manifest_text(app_id, version)
    data = manifest.parse(text).data
    info = next(v for v in store.get_app(app_id).versions if v.version == version)
    catalog = default_catalog()
    purposes: dict[str, str] = {}
    for entry in data.get("permissions") or []:
        if isinstance(entry, dict) and isinstance(entry.get("permission"), str):
            purposes.setdefault(entry["permission"], _clip(entry.get("purpose")))
    views = []
    for name in sorted(info.permissions):
        perm = catalog.permissions.get(name)
        if perm is None:
            views.append(PermissionView(name, "", name, "", purposes.get(name, ""), ()))
            continue
        implied = sorted(catalog.closure({name}) - {name})
        views.append(PermissionView(
            name, perm.level, perm.title, perm.description, purposes.get(name, ""),
            tuple((n, catalog.permissions[n].title) for n in implied
                  if n in catalog.permissions)))
    ui = data.get("ui_extension")
    csp = ui.get("content_security_policy") if isinstance(ui, dict) else None
    csp = csp if isinstance(csp, dict) else {}
    return VersionView(
        app_id=app_id, name=_clip(data.get("name") or app_id, 200), version=version,
        access_type=info.access_type, uploaded_by=info.uploaded_by,
        icon=_clip(data.get("icon"), 2048), connect_src=_strings(csp.get("connect-src")),
        csp_purpose=_clip(csp.get("purpose")),
        allowed_redirect_uris=_strings(data.get("allowed_redirect_uris")),
        sandbox_install_compatible=data.get("sandbox_install_compatible") is True,
        permissions=tuple(views),
    )


def describe_latest(store: Store, app_id: str) -> VersionView:
    return describe_version(store, app_id, store.get_app(app_id).latest.version)


def review(store: Store, app_id: str, account: str, mode: str) -> Review:
    """The upgrade an administrator would approve: only what is new is asked for."""
    grant = store.get_install(app_id, account, mode)
    current = describe_version(store, app_id, grant.installed_version)
    approved = set(next(v for v in store.get_app(app_id).versions
                        if v.version == grant.approved_version).permissions)
    approved |= grant.approved
    requested = {p.name for p in current.permissions}
    new = tuple(p for p in current.permissions if p.name in grant.pending)
    return Review(grant, current, new, tuple(sorted(requested & approved)),
                  tuple(sorted(approved - requested)))
