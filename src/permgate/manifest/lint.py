"""`lint`: advice that is not an error (redundancy, notes, duplicates, weak purposes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from permgate.catalog import Catalog
from permgate.manifest._catalog import default_catalog
from permgate.manifest.model import Advice, Manifest, pointer

# What `permgate scan --fix` writes for a permission it adds; lint flags it until replaced.
PLACEHOLDER_PURPOSE = "TODO: explain why the app needs this permission"
MIN_PURPOSE_WORDS = 3
_PLACEHOLDER = re.compile(
    r"^\s*(todo|tbd|fixme|xxx|lorem ipsum|placeholder|purpose|reason|description|test|"
    r"n/?a|none|-+|\.+)\b", re.IGNORECASE,
)

RULES: dict[str, tuple[str, Literal["warning", "note"]]] = {
    "duplicate-permission": ("A permission is listed more than once", "warning"),
    "redundant-permission": ("A permission is already granted by another one listed", "note"),
    "also-request": ("Stripe says this permission must be requested with another", "warning"),
    "placeholder-purpose": ("The purpose is a placeholder", "warning"),
    "short-purpose": ("The purpose is too short to tell users why", "note"),
    "event-permission-without-event-read": (
        "A permission that only serves events is listed without event_read", "warning"),
}


def _advice(m: Manifest, ptr: str, message: str, code: str) -> Advice:
    line, col = m.locate(ptr)
    return Advice(ptr, message, code, RULES[code][1], line, col)


def lint(m: Manifest, catalog: Catalog | None = None) -> list[Advice]:
    """Advice for a manifest; empty means nothing to improve. Malformed entries and unknown
    names are left to `validate`."""
    cat = catalog or default_catalog()
    out: list[Advice] = []
    entries = m.permission_entries
    first_at: dict[str, int] = {}
    for i, name, _ in entries:
        if name in first_at:
            out.append(_advice(
                m, pointer("permissions", i),
                f"'{name}' is listed again (first at {pointer('permissions', first_at[name])}); "
                "remove this entry", "duplicate-permission"))
        else:
            first_at[name] = i
    known = [n for n in first_at if n in cat.permissions]
    closure = cat.closure(known)
    for name, by in sorted(cat.redundant(known).items(), key=lambda kv: first_at[kv[0]]):
        ptr = pointer("permissions", first_at[name], "permission")
        if by in cat.implied_by(name):
            message = (f"'{name}' and '{by}' grant each other, so one of them is enough; "
                       f"'{name}' could go")
        else:
            message = f"'{name}' is already granted by '{by}'; it could go"
        out.append(_advice(m, ptr, message, "redundant-permission"))
    for name in known:
        for note in cat[name].also_request:
            if note.permission not in closure:
                out.append(_advice(
                    m, pointer("permissions", first_at[name], "permission"),
                    f"'{name}': {note.note} ('{note.permission}' is not listed)",
                    "also-request"))
    for i, name, purpose in entries:
        if i != first_at[name] or not isinstance(purpose, str):
            continue
        code = _purpose_code(purpose)
        if code is not None:
            what = ("a placeholder" if code == "placeholder-purpose"
                    else f"too short (fewer than {MIN_PURPOSE_WORDS} words)")
            out.append(_advice(
                m, pointer("permissions", i, "purpose"),
                f"the purpose of '{name}' is {what}; the people who install the app read it "
                "to decide, so say what the app does with it", code))
    if cat.event_permission not in closure:
        for name in known:
            perm = cat[name]
            if "event-table" in perm.sources and "reference" not in perm.sources:
                out.append(_advice(
                    m, pointer("permissions", first_at[name], "permission"),
                    f"'{name}' only lets the app receive events, and no event arrives without "
                    f"'{cat.event_permission}'; add it, or remove '{name}'",
                    "event-permission-without-event-read"))
    return sorted(out, key=lambda a: (a.line or 0, a.column or 0, a.code))


def _purpose_code(purpose: str) -> str | None:
    text = purpose.strip()
    if text == PLACEHOLDER_PURPOSE or not text or _PLACEHOLDER.match(text):
        return "placeholder-purpose"
    if len(text.split()) < MIN_PURPOSE_WORDS:
        return "short-purpose"
    return None


def sarif(results: list[tuple[Manifest, list[Advice]]], version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log of lint advice, one run, for code-scanning tools."""
    codes = list(RULES)
    rules = [
        {
            "id": code,
            "name": "".join(w.capitalize() for w in code.split("-")),
            "shortDescription": {"text": RULES[code][0]},
            "defaultConfiguration": {"level": RULES[code][1]},
        }
        for code in codes
    ]
    out_results: list[dict[str, Any]] = []
    for m, advice in results:
        uri = _uri(m)
        for a in advice:
            location: dict[str, Any] = {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri},
                    "region": {"startLine": a.line or 1, "startColumn": a.column or 1},
                },
                "logicalLocations": [{"fullyQualifiedName": a.pointer or "/", "kind": "member"}],
            }
            out_results.append({
                "ruleId": a.code,
                "ruleIndex": codes.index(a.code),
                "level": a.severity,
                "message": {"text": a.message},
                "locations": [location],
            })
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "permgate",
                "version": version,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": out_results,
        }],
    }


def _uri(m: Manifest) -> str:
    """A relative URI when the file is under the working folder (what scanners expect)."""
    if m.path is None:
        return "stripe-app.json"
    try:
        return m.path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return m.path.resolve().as_uri()
