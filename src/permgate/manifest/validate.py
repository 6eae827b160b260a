"""`validate`: every error at once, each with its JSON pointer and a plain sentence."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from permgate.catalog import Catalog
from permgate.manifest._catalog import default_catalog
from permgate.manifest.model import Manifest, ManifestError, Problem, load, pointer
from permgate.manifest.schema import check_structure
from permgate.sarif import Result, Rule
from permgate.sarif import log as sarif_log

_EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
_MAX_EXTENDS = 8

# The errors validate reports (Problem.code), in the order its SARIF log declares them.
VALIDATE_RULES: tuple[Rule, ...] = (
    Rule("unreadable", "The manifest cannot be read as JSON", "error",
         "The file is missing, unreadable, not UTF-8, not JSON, or too large or deep; nothing "
         "else can be checked.", "Fix the file at the position given."),
    Rule("required", "A required field is missing", "error",
         "Stripe refuses a manifest without this field.", "Add the field."),
    Rule("type", "A field has the wrong JSON type", "error",
         "The value is not of the type Stripe's manifest schema gives for this field.",
         "Write a value of the type named in the message."),
    Rule("empty", "A field that must say something is empty", "error",
         "The value is an empty string where Stripe needs text.", "Fill it in."),
    Rule("pattern", "A value does not have the form Stripe requires", "error",
         "The value does not match the form the schema gives (an app id, a version, a URL...).",
         "Write it in the form the message describes."),
    Rule("enum", "A value is not one of those allowed", "error",
         "The field only takes one of a fixed list of values.",
         "Use one of the values the message lists."),
    Rule("unknown-field", "A field Stripe does not know", "error",
         "The manifest has a field Stripe's schema does not have here: misspelt or misplaced.",
         "Fix the spelling or move the field; remove it if it is not Stripe's."),
    Rule("unknown-permission", "A permission name Stripe does not know", "error",
         "The name is not in Stripe's permission catalog.",
         "Use the name the message suggests (`permgate permissions` lists them)."),
    Rule("not-requestable", "A permission an app cannot request", "error",
         "Stripe does not let apps request this permission (at all, or on its own).",
         "Request the permission the message names instead, or remove it."),
    Rule("event-as-permission", "An event type written where a permission belongs", "error",
         "Apps do not request events by name: they request event_read and the permission of "
         "the event's object.", "Request the permissions the message names."),
    Rule("extends", "The base of a local manifest cannot be used", "error",
         "The file named by 'extends' cannot be read, or the chain of bases loops or is too "
         "long.", "Point 'extends' at the app's stripe-app.json."),
    Rule("insecure-redirect-uri", "A redirect URI would receive OAuth codes in clear", "error",
         "An allowed_redirect_uris entry is plain http:// to a host that is not loopback: "
         "the authorization code (and the state) would cross the network unencrypted. "
         "permgate requires https (RFC 6749 section 3.1.2.1), except to a loopback host "
         "(127.0.0.1, [::1], localhost; RFC 8252 section 7.3).",
         "Serve the callback over https, or use http://127.0.0.1:PORT/... while developing."),
)

# Hosts an http:// redirect URI may name: the browser's own machine (RFC 8252 section 7.3).
_LOOPBACK_NAMES = ("localhost",)


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` may not receive OAuth codes, or None: https, or http to a loopback host only.
    The one rule, used by `validate` and by the install link (for versions uploaded before
    it)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        _ = parts.port  # a bad port raises here
    except ValueError:
        return "is not a valid URL"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme != "http" or not host:
        return "must be an absolute https:// URL"
    if host.lower() in _LOOPBACK_NAMES:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"uses http:// to {host[:255]!r}, which is not a loopback host: OAuth codes "
            "would travel in clear. Use https:// (http:// is allowed only to 127.0.0.1, "
            "[::1] or localhost, for development)")


def check_redirect_uris(data: dict[str, Any]) -> list[Problem]:
    """allowed_redirect_uris entries that would receive codes in clear (`redirect_uri_problem`);
    the shape of each entry is the schema's (check_structure)."""
    uris = data.get("allowed_redirect_uris")
    if not isinstance(uris, list):
        return []
    out = []
    for i, uri in enumerate(uris):
        if not isinstance(uri, str) or not uri.startswith("http://"):
            continue  # the schema's pattern reports any other shape
        why = redirect_uri_problem(uri)
        if why is not None:
            out.append(Problem(pointer("allowed_redirect_uris", i),
                               f"redirect URI {why}", "insecure-redirect-uri"))
    return out


def check_names(data: dict[str, Any], catalog: Catalog) -> list[Problem]:
    """Permission names against the catalog: unknown (with a suggestion), not requestable,
    or an event type written where a permission belongs."""
    out: list[Problem] = []
    for field in ("permissions", "connect_permissions"):
        entries = data.get(field)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("permission"), str):
                continue
            problem = _name_problem(entry["permission"], catalog)
            if problem is not None:
                message, code = problem
                out.append(Problem(pointer(field, i, "permission"), message, code))
    return out


def _name_problem(name: str, catalog: Catalog) -> tuple[str, str] | None:
    perm = catalog.permissions.get(name)
    if perm is not None:
        if perm.refused:
            return f"'{name}' cannot be requested: {perm.refused}", "not-requestable"
        if not perm.requestable:
            holders = [h for h in catalog.satisfiers(name) if catalog[h].requestable]
            hint = f" (request {' or '.join(holders[:3])}, which grants it)" if holders else ""
            return (f"'{name}' cannot be requested on its own: Stripe documents it only as "
                    f"implied by other permissions{hint}", "not-requestable")
        return None
    rule = catalog.event_rule(name)
    if rule is not None or _EVENT_TYPE.match(name):
        need = catalog.event_permission
        if rule is not None and rule.permissions:
            need += " and one of " + ", ".join(rule.permissions)
        return (f"'{name}' is an event type, not a permission; to receive it, request {need}",
                "event-as-permission")
    suggestion = catalog.suggest(name)
    if suggestion is not None:
        kind = "a misspelling in Stripe's published schema" if name in catalog.typos else ""
        note = f" ({kind})" if kind else ""
        return (f"unknown permission '{name}'{note}; did you mean '{suggestion}'?",
                "unknown-permission")
    return f"unknown permission '{name}'", "unknown-permission"


def merge(base: Any, local: Any) -> Any:
    """A local manifest over its base: objects merge member by member, recursively; any
    other value (arrays included) in the local manifest replaces the base's."""
    if isinstance(base, dict) and isinstance(local, dict):
        out = dict(base)
        for key, value in local.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return local


def validate(m: Manifest, catalog: Catalog | None = None) -> list[Problem]:
    """All problems of a manifest; empty means valid. A local manifest (one with `extends`)
    is checked on its own and then merged onto its base and checked as the result."""
    cat = catalog or default_catalog()
    if "extends" not in m.data:
        found = _content(m.data, cat, local=False)
        return sorted((_located(p, m) for p in found), key=_order)
    own = _content(m.data, cat, local=True)
    problems = [_located(p, m) for p in own]
    seen = {(p.pointer, p.code) for p in problems}
    base, chain_problem = _resolve_base(m)
    if chain_problem is not None:
        problems.append(_located(chain_problem, m))
    if base is not None:
        merged: Any = {}
        for layer in [*reversed(base), m]:  # the farthest base first, the local one last
            merged = merge(merged, {k: v for k, v in layer.data.items() if k != "extends"})
        for p in _content(merged, cat, local=False):
            if (p.pointer, p.code) in seen:
                continue
            if m.node_at(p.pointer) is not None or not _in_any(p.pointer, base):
                problems.append(_located(p, m, "in the merged manifest"))
            else:
                origin = next(b for b in base if b.node_at(p.pointer) is not None)
                problems.append(_located(p, origin, f"in the base {origin.name}"))
    return sorted(problems, key=_order)


def _content(data: dict[str, Any], cat: Catalog, *, local: bool) -> list[Problem]:
    return (check_structure(data, local=local) + check_names(data, cat)
            + check_redirect_uris(data))


def _in_any(ptr: str, manifests: list[Manifest]) -> bool:
    return any(b.node_at(ptr) is not None for b in manifests)


def _resolve_base(m: Manifest) -> tuple[list[Manifest] | None, Problem | None]:
    """The chain of bases, nearest first (the last one has no `extends`)."""
    chain: list[Manifest] = []
    current = m
    seen = set()
    for _ in range(_MAX_EXTENDS):
        ext = current.data.get("extends")
        if not isinstance(ext, str):
            return (chain or None), None
        if current.path is None:
            return None, Problem("/extends", "cannot follow 'extends' for a manifest that was "
                                 "not read from a file", "extends")
        target = (current.path.parent / ext).resolve()
        if target in seen:
            return None, Problem("/extends", f"'extends' goes round in a circle ({target})",
                                 "extends")
        seen.add(target)
        try:
            current = load(target)
        except ManifestError as e:
            return None, Problem("/extends", f"the base manifest is unusable: {e}", "extends")
        chain.append(current)
    return None, Problem("/extends", "too many levels of 'extends'", "extends")


def _located(p: Problem, m: Manifest, context: str = "") -> Problem:
    line, col = m.locate(p.pointer)
    message = f"{p.message} ({context})" if context else p.message
    file = m.name if context.startswith("in the base") else None
    return replace(p, message=message, line=line, column=col, file=file)


def _order(p: Problem) -> tuple[str, int, int, str]:
    return (p.file or "", p.line or 0, p.column or 0, p.pointer)


def sarif(results: list[tuple[Manifest, list[Problem]]], version: str,
          base: Path | None = None,
          unreadable: ManifestError | Sequence[ManifestError] | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log of validation errors (and of a manifest that could not be read at
    all), one run. Files under `base` (default: the working folder) are relative to it."""
    found = [
        Result(p.code, p.message, str(Path(p.file).resolve()) if p.file else _file(m),
               p.line, p.column, pointer=p.pointer)
        for m, problems in results for p in problems
    ]
    for e in [unreadable] if isinstance(unreadable, ManifestError) else unreadable or ():
        found.append(Result("unreadable", e.reason,
                            str(Path(e.path).resolve()) if e.path else "stripe-app.json",
                            e.line, e.column))
    return sarif_log(VALIDATE_RULES, found, base=base or Path.cwd(), version=version,
                     column_kind="unicodeCodePoints")


def _file(m: Manifest) -> str:
    return str(m.path.resolve()) if m.path is not None else "stripe-app.json"
