"""Structural checks of `stripe-app.json`, equivalent to Stripe's published JSON schemas
(draft-07, `stripe-app.schema.json` and `stripe-app-local.schema.json`), in our own code.

Where the published schema is stale we follow what Stripe accepts (see docs/manifest.md):
the permission enum is replaced by the catalog (checked in `validate`), the viewport list
gains the viewports Stripe's own sample apps use, and a few top-level fields that Stripe's
own apps publish are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from permgate.manifest.model import Problem, describe, pointer

# Viewports of the published schema's enum.
VIEWPORTS = frozenset({
    "onboarding", "settings",
    "stripe.dashboard.balance.overview", "stripe.dashboard.billing.overview",
    "stripe.dashboard.customer.detail", "stripe.dashboard.customer.detail.page-module",
    "stripe.dashboard.customer.list", "stripe.dashboard.drawer.default",
    "stripe.dashboard.home.overview", "stripe.dashboard.invoice.detail",
    "stripe.dashboard.invoice.detail.page-module", "stripe.dashboard.invoice.list",
    "stripe.dashboard.payment-link.detail", "stripe.dashboard.payment-link.list",
    "stripe.dashboard.payment.detail", "stripe.dashboard.payment.list",
    "stripe.dashboard.product.detail", "stripe.dashboard.product.list",
    "stripe.dashboard.report.overview", "stripe.dashboard.revenue-recognition.overview",
    "stripe.dashboard.subscription.detail", "stripe.dashboard.subscription.list",
    "stripe.dashboard.tax-report.overview",
})
# Newer than the schema: used by Stripe's own sample apps (the full-page example).
VIEWPORTS_BEYOND_SCHEMA = frozenset({"stripe.dashboard.fullpage"})

# Top-level fields Stripe's own apps publish that the schema does not list; value: where seen.
FIELDS_BEYOND_SCHEMA = {
    "extensions": "Stripe's full-page sample app",
    "connect_permissions": "stripe-experiments/sync-data-stripe-app and other published apps",
    "app_backend": "apps published by Stripe staff (older `stripe apps create` output)",
}

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_\-\.]+$")
ICON_PATTERN = re.compile(r"^$|^\./((\.\./|[a-zA-Z0-9_/\-\\])[^\.\.]*\.png)$")
COMPONENT_PATTERN = re.compile(r"^[a-zA-Z0-9_]{1,}$")
URL_WITH_PATH = re.compile(r"^https?://.*/.+")
URL = re.compile(r"^https?://.+")
EXTERNAL_URL = re.compile(r"^https?://")
EXTENDS_PATTERN = re.compile(
    r"^(./)?((../)+)?(([a-zA-Z0-9-_]+/)+)?stripe-app(.[a-zA-Z0-9-_]+)?.json$"
)
DISTRIBUTION_TYPES = ("public", "private")
ACCESS_TYPES = ("restricted_api_key", "oauth", "platform")

BASE_REQUIRED = ("id", "version", "name", "icon", "permissions", "ui_extension")
_REQUIRED_HINTS = {
    "id": 'a unique identifier such as "com.example.myapp"',
    "version": 'a version of your choosing such as "1.0.0"',
    "name": "the name shown to users",
    "icon": 'the path of a 300x300 PNG such as "./icon.png", or ""',
    "permissions": "the list of permissions the app requests (may be [])",
    "ui_extension": "how the app appears in the Dashboard",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, ptr: str, message: str, code: str) -> None:
        self.problems.append(Problem(ptr, message, code))

    def typed(self, ptr: str, value: Any, *types: str) -> bool:
        """True when the value has one of the JSON types; a problem otherwise."""
        if _json_type(value) in types:
            return True
        wanted = " or ".join("null" if t == "null" else f"{_a(t)} {t}" for t in types)
        self.add(ptr, f"{_label(ptr)} must be {wanted}, not {describe(value)}", "type")
        return False

    def string(
        self, ptr: str, value: Any, *, min_length: int = 0,
        pattern: re.Pattern[str] | None = None, explain: str = "",
    ) -> None:
        if not self.typed(ptr, value, "string"):
            return
        if len(value) < min_length:
            self.add(ptr, f"{_label(ptr)} must not be empty", "empty")
        elif pattern is not None and not pattern.search(value):
            self.add(ptr, f"{_label(ptr)} is {value!r}: it {explain}", "pattern")

    def enum(self, ptr: str, value: Any, allowed: tuple[str, ...] | frozenset[str]) -> None:
        if value in allowed and isinstance(value, str):
            return
        choices = ", ".join(repr(a) for a in sorted(allowed))
        self.add(ptr, f"{_label(ptr)} is {_show(value)}; it must be one of {choices}", "enum")

    def url_list(self, ptr: str, value: Any, pattern: re.Pattern[str], explain: str) -> None:
        if not self.typed(ptr, value, "array", "null") or value is None:
            return
        for i, item in enumerate(value):
            self.string(f"{ptr}/{i}", item, pattern=pattern, explain=explain)

    def members(
        self, ptr: str, obj: dict[str, Any], known: dict[str, Callable[[str, Any], object]],
        *, closed: bool,
    ) -> None:
        for key, value in obj.items():
            check = known.get(key)
            if check is not None:
                check(f"{ptr}{pointer(key)}", value)
            elif closed:
                self.add(
                    f"{ptr}{pointer(key)}", f"{_label(ptr + pointer(key))} is not a manifest "
                    "field Stripe knows (misspelt, or in the wrong place?)", "unknown-field",
                )


def _a(t: str) -> str:
    return "an" if t[0] in "aeiou" else "a"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else describe(value)


def _label(ptr: str) -> str:
    """How a sentence names the place: the member name, or the path for nested ones."""
    parts = ptr.split("/")[1:]
    if not parts:
        return "the manifest"
    if len(parts) == 1:
        return f"'{parts[0]}'"
    return f"'{ptr}'"


def check_structure(data: dict[str, Any], *, local: bool = False) -> list[Problem]:
    """Structural problems of a manifest (a local one: `local=True`). Permission names are
    only checked to be strings here; `validate` checks them against the catalog."""
    c = _Checker()

    def permissions(ptr: str, value: Any) -> None:
        if not c.typed(ptr, value, "array"):
            return
        for i, entry in enumerate(value):
            p = f"{ptr}/{i}"
            if not c.typed(p, entry, "object"):
                continue
            for key in ("permission", "purpose"):
                if key not in entry:
                    c.add(f"{p}/{key}", f"entry {i} has no '{key}'", "required")
            c.members(p, entry, {
                "permission": lambda q, v: c.typed(q, v, "string"),
                "purpose": lambda q, v: c.string(q, v, min_length=1),
            }, closed=True)

    def nullable_permissions(ptr: str, value: Any) -> None:
        if value is not None:
            permissions(ptr, value)

    def post_install_action(ptr: str, value: Any) -> None:
        if not c.typed(ptr, value, "object", "null") or value is None:
            return
        kind = value.get("type")
        if "type" not in value:
            c.add(f"{ptr}/type", "'post_install_action' needs a 'type'", "required")
        elif kind == "external":
            if "url" not in value:
                c.add(f"{ptr}/url", "an 'external' post-install action needs a 'url'",
                      "required")
            else:
                c.string(f"{ptr}/url", value["url"], pattern=EXTERNAL_URL,
                         explain="must start with https:// or http://")
        elif kind in ("onboarding", "settings"):
            if "url" in value:
                c.add(f"{ptr}/url", f"'url' is only allowed when the type is 'external', "
                      f"not {kind!r}", "unknown-field")
        else:
            c.enum(f"{ptr}/type", kind, ("onboarding", "settings", "external"))
        for key in value:
            if key not in ("type", "url"):
                c.add(f"{ptr}{pointer(key)}", f"'post_install_action' has no field {key!r}",
                      "unknown-field")

    def views(ptr: str, value: Any) -> None:
        if not c.typed(ptr, value, "array"):
            return
        for i, view in enumerate(value):
            p = f"{ptr}/{i}"
            if not c.typed(p, view, "object"):
                continue
            for key in ("viewport", "component"):
                if key not in view:
                    c.add(f"{p}/{key}", f"view {i} has no '{key}'", "required")
            if "viewport" in view and c.typed(f"{p}/viewport", view["viewport"], "string"):
                c.enum(f"{p}/viewport", view["viewport"], VIEWPORTS | VIEWPORTS_BEYOND_SCHEMA)
            if "component" in view:
                c.string(f"{p}/component", view["component"], pattern=COMPONENT_PATTERN,
                         explain="must be a component name (letters, digits, _)")

    def csp(ptr: str, value: Any) -> None:
        if not c.typed(ptr, value, "object"):
            return
        if not local and "purpose" not in value:
            c.add(f"{ptr}/purpose", "'content_security_policy' needs a 'purpose' (it may be "
                  "\"\" when no URLs are listed)", "required")
        c.members(ptr, value, {
            "connect-src": lambda q, v: c.url_list(
                q, v, URL_WITH_PATH, "must be an http(s) URL with a path (e.g. "
                "https://api.example.com/v1/)"),
            "image-src": lambda q, v: c.url_list(q, v, URL, "must be an http(s) URL"),
            "purpose": lambda q, v: c.typed(q, v, "string"),
        }, closed=False)

    def ui_extension(ptr: str, value: Any) -> None:
        if not c.typed(ptr, value, "object"):
            return
        c.members(ptr, value, {"views": views, "content_security_policy": csp}, closed=False)

    known: dict[str, Callable[[str, Any], object]] = {
        "$schema": lambda p, v: c.typed(p, v, "string"),
        "id": lambda p, v: c.string(
            p, v, pattern=ID_PATTERN, explain="may only contain letters, digits, '_', '-', '.'"),
        "version": lambda p, v: c.string(p, v, min_length=1),
        "name": lambda p, v: c.string(p, v, min_length=1),
        "icon": lambda p, v: c.string(
            p, v, pattern=ICON_PATTERN,
            explain='must be "" or a relative path to a PNG starting with "./" '
            '(e.g. "./icon.png"; no other dots)'),
        "permissions": permissions,
        "post_install_action": post_install_action,
        "ui_extension": ui_extension,
        "constants": lambda p, v: c.typed(p, v, "object", "null"),
        "allowed_redirect_uris": lambda p, v: c.url_list(
            p, v, URL_WITH_PATH, "must be an http(s) URL with a path"),
        "distribution_type": lambda p, v: c.enum(p, v, DISTRIBUTION_TYPES),
        "stripe_api_access_type": lambda p, v: c.enum(p, v, ACCESS_TYPES),
        "sandbox_install_compatible": lambda p, v: c.typed(p, v, "boolean"),
        "extensions": lambda p, v: None,
        "connect_permissions": nullable_permissions,
        "app_backend": lambda p, v: c.typed(p, v, "object", "null"),
    }
    if local:
        known["extends"] = lambda p, v: c.string(
            p, v, pattern=EXTENDS_PATTERN,
            explain='must name a manifest such as "stripe-app.json"')
    else:
        for key in BASE_REQUIRED:
            if key not in data:
                c.add(pointer(key), f"'{key}' is required: {_REQUIRED_HINTS[key]}", "required")
    c.members("", data, known, closed=True)
    return c.problems
