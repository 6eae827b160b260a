"""`lint`: advice that is not an error (redundancy, notes, duplicates, weak purposes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from permgate.catalog import Catalog
from permgate.manifest._catalog import default_catalog
from permgate.manifest.model import Advice, Manifest, pointer
from permgate.sarif import Result, Rule
from permgate.sarif import log as sarif_log

# What `permgate scan --fix` writes for a permission it adds; lint flags it until replaced.
PLACEHOLDER_PURPOSE = "TODO: explain why the app needs this permission"
MIN_PURPOSE_WORDS = 3
_PLACEHOLDER = re.compile(
    r"^\s*(todo|tbd|fixme|xxx|lorem ipsum|placeholder|purpose|reason|description|test|"
    r"n/?a|none|-+|\.+)\b", re.IGNORECASE,
)

# The advice lint gives, in the order its SARIF log declares them (the order is part of the
# output: code-scanning tools key results by rule index).
LINT_RULES: tuple[Rule, ...] = (
    Rule("duplicate-permission", "A permission is listed more than once", "warning",
         "The same permission appears in more than one entry of 'permissions'.",
         "Remove the later entry; keep one entry with the purpose users should read."),
    Rule("redundant-permission", "A permission is already granted by another one listed", "note",
         "Another permission in the manifest already grants this one (a write permission grants "
         "its read, for example), so asking for it adds nothing.",
         "Remove the entry, or keep it if you want users to read its purpose separately."),
    # A note: Stripe's notes are conditional ("if you use the hosted invoice page..."), so
    # whether the advice applies depends on what the app does (and `lint` exits 0 on notes).
    Rule("also-request", "Stripe says this permission must be requested with another", "note",
         "Stripe documents that this permission only works together with another one that the "
         "manifest does not list, when the app uses the feature the note names.",
         "Add the other permission with its purpose if the condition applies; else ignore it "
         "(lint --ignore also-request)."),
    Rule("placeholder-purpose", "The purpose is a placeholder", "warning",
         "The purpose is empty or a placeholder (TODO, TBD, the text `permgate scan --fix` "
         "writes, ...); users read it to decide whether to install the app.",
         "Say what the app does with this permission."),
    Rule("short-purpose", "The purpose is too short to tell users why", "note",
         f"The purpose has fewer than {MIN_PURPOSE_WORDS} words.",
         "Say what the app does with this permission, in a sentence."),
    Rule("event-permission-without-event-read",
         "A permission that only serves events is listed without event_read", "warning",
         "The permission only lets the app receive events, and no event reaches an app without "
         "event_read.",
         "Add event_read, or remove the permission."),
)
RULES: dict[str, Rule] = {r.id: r for r in LINT_RULES}


def _advice(m: Manifest, ptr: str, message: str, code: str) -> Advice:
    line, col = m.locate(ptr)
    level: Literal["warning", "note"] = "note" if RULES[code].level == "note" else "warning"
    return Advice(ptr, message, code, level, line, col)


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


def sarif(results: list[tuple[Manifest, list[Advice]]], version: str,
          base: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log of lint advice, one run, for code-scanning tools. Files under `base`
    (default: the working folder) are named relative to it."""
    return sarif_log(LINT_RULES, (
        Result(a.code, a.message, _file(m), a.line, a.column, a.severity, a.pointer)
        for m, advice in results for a in advice
    ), base=base or Path.cwd(), version=version, column_kind="unicodeCodePoints")


def _file(m: Manifest) -> str:
    return str(m.path.resolve()) if m.path is not None else "stripe-app.json"
