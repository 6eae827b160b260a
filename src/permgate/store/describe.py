"""The data behind a consent screen: a version's permissions with the app's purposes and the
catalog's titles, and what an upgrade asks an administrator to approve.

Everything here is manifest text, i.e. hostile: it is returned as plain strings, bounded in
length, and escaped by whoever renders it (Jinja2 autoescape, JSON).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from permgate.manifest._catalog import default_catalog
from permgate.store.model import EffectiveGrant
from permgate.store.store import Store

_MAX_TEXT = 2000
_EXAMPLE_EVENTS = 6  # event types named on the page; the rest are counted

# How the app reaches an account's data, in an administrator's words (Stripe's
# `stripe_api_access_type`); what the consent pages print under "How it connects".
ACCESS_WORDS = {
    "platform": "Its developer's servers call Stripe for your account with the developer's "
                "own key, limited to the permissions below.",
    "oauth": "It signs in to your account with OAuth: its developer's servers get an access "
             "token for your account, limited to the permissions below.",
    "restricted_api_key": "You give it a restricted key made for this install (shown once "
                          "after installing), limited to the permissions below.",
}


def default_developer(app_id: str, name: str) -> str:
    """The developer's name when the upload named none: the domain a reverse-DNS app id
    names (com.example.app -> example.com), else the app's name, said to be unconfirmed.
    Never a Unix user. The manifest is the developer's own text: an app id
    `com.stripe.anything` must not read as "Developer: stripe.com"."""
    parts = app_id.split(".")
    if len(parts) >= 3 and all(parts):
        return ".".join(reversed(parts[:-1])) + " (unconfirmed: taken from its app id)"
    return (name or app_id) + " (unconfirmed: taken from its manifest)"


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
    # For event_read: the event types this version's permissions let through (the engine's
    # own rule), so the page says what will actually be delivered.
    events: tuple[str, ...] = ()

    @property
    def can(self) -> str:
        """What the permission lets the app do, in an administrator's words: a write says
        what it lets the app change, event_read what will actually be delivered."""
        if self.name == "event_read":
            if not self.events:
                return ("Can receive event notifications, but none reach it: each event needs "
                        "the permission to see its object too, and it asks for none.")
            # Examples about different objects (one per object type) say more than the
            # first few of one object's alphabetical list.
            firsts = list({t.split(".", 1)[0]: t for t in reversed(self.events)}.values())
            examples = sorted(firsts)[:_EXAMPLE_EVENTS]
            shown = ", ".join(examples)
            more = len(self.events) - len(examples)
            tail = f" and {more} more" if more > 0 else ""
            return (f"Can receive event notifications, only about what it may see: "
                    f"{len(self.events)} kinds ({shown}{tail}).")
        # Most titles are plurals ("Customers"); a dozen are not ("Balance", "Quote").
        them = "them" if self.title.endswith("s") else "it"
        if self.level == "write":
            return (f"Can create and change {self.title} (update, cancel or delete where "
                    f"Stripe allows it), and see {them}.")
        if self.level == "read":
            return f"Can see {self.title}, without changing {them}."
        return "Not a permission Stripe lists: it lets the app do nothing."

    @property
    def note(self) -> str:
        """What the catalog adds beyond "Grants access to X" (e.g. "Apps can only access
        secrets they create.")."""
        first, _, rest = self.description.partition(". ")
        return rest.strip() if first.startswith("Grants access to") else self.description

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
    def developer(self) -> str:
        """Who made the app, as the upload names it: the uploader given to `apps upload
        --developer` (or the admin API's actor); an upload that named nobody falls back to
        the app id's domain (`default_developer`)."""
        return self.uploaded_by or default_developer(self.app_id, self.name)

    @property
    def access_words(self) -> str:
        return ACCESS_WORDS.get(self.access_type, ACCESS_WORDS["platform"])

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
    delivered = _delivered_events(frozenset(info.permissions))
    for name in sorted(info.permissions):
        perm = catalog.permissions.get(name)
        if perm is None:
            views.append(PermissionView(name, "", name, "", purposes.get(name, ""), ()))
            continue
        implied = sorted(catalog.closure({name}) - {name})
        views.append(PermissionView(
            name, perm.level, perm.title, perm.description, purposes.get(name, ""),
            tuple((n, catalog.permissions[n].title) for n in implied
                  if n in catalog.permissions),
            delivered if name == catalog.event_permission else ()))
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


@functools.lru_cache(maxsize=256)
def _delivered_events(grants: frozenset[str]) -> tuple[str, ...]:
    """The event types an app holding `grants` receives, decided by the engine (cached: a
    version's set never changes)."""
    import permgate

    engine = permgate.default_engine()
    grant = engine.grant(n for n in grants if n in engine.catalog.permissions)
    return tuple(t for t in sorted(engine.catalog.events)
                 if engine.catalog.events[t].receivable
                 and engine.decide_event(t, grant).allowed)


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
