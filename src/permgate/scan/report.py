"""A scan verdict as text, JSON or SARIF 2.1.0."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import permgate
from permgate.scan.sdk import table
from permgate.scan.verdict import CallNeeds, Groups, Verdict

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
UNUSED_NOTE = "no call or handled event in the scanned tree needs it (code outside the tree may)"
RULES = {
    "missing-permission": ("error", "A call or handled event that no granted permission allows."),
    "unused-permission": (
        "warning", "A granted permission that nothing in the scanned code needs."
    ),
    "unavailable-endpoint": ("error", "A call to an endpoint no Stripe App may use."),
    "invalid-expansion": ("error", "An expansion the API would refuse."),
    "unresolved-call": ("note", "A call whose operation is only known at run time."),
}


def _groups(groups: Groups) -> str:
    return "; ".join(" | ".join(g) for g in groups) or "-"


def text(v: Verdict) -> str:
    f = v.findings
    lines = [
        f"permgate scan {f.root}: {f.files} files, {len(v.calls)} calls, {len(v.events)} event "
        f"handlers, {len(f.unresolved)} unresolved"
        + (f" (manifest {v.manifest})" if v.manifest else " (no manifest: no verdict)"),
    ]
    if v.calls:
        lines.append("\nCalls")
        for c in v.calls:
            call = c.call
            op = c.operation or f"{call.method} {call.path}"
            exp = f" expand={','.join(call.expand)}" if call.expand else ""
            lines.append(f"  {call.file}:{call.line}  {call.call}  {op}{exp}  [{call.account}]")
            if c.kind in ("missing", "allowed"):
                lines.append(f"      allowed by: {_groups(c.required)}")
            else:
                lines.append(f"      {c.kind}: {c.message}")
            lines.extend(f"      note: {n}" for n in call.notes)
    if v.events:
        lines.append("\nEvents handled")
        for e in v.events:
            lines.append(f"  {e.use.file}:{e.use.line}  {e.use.event}  needs {_groups(e.required)}")
    if f.unresolved:
        lines.append("\nUnresolved (operation known only at run time; not guessed)")
        lines += [f"  {u.file}:{u.line}  {u.call}  {u.reason}" for u in f.unresolved]
    unknown = [c for c in v.calls if c.call.account == "unknown"]
    if unknown:
        lines.append(f"\n{len(unknown)} call(s) on an account the scan cannot determine: "
                     "not counted as needed (pass stripeAccount / stripe_account to make it clear)")
    if f.skipped:
        lines.append("\nSkipped")
        lines += [f"  {s.file}: {s.reason}" for s in f.skipped]
    lines.append("\nVerdict" if v.manifest else "\nNeeded")
    if not v.manifest:
        lines += [f"  needs    {p}" for p in v.needed] or ["  nothing"]
    for m in v.missing:
        where = ", ".join(f"{fl}:{ln} {what}" for fl, ln, what in m.sites[:3])
        more = f" (+{len(m.sites) - 3} more)" if len(m.sites) > 3 else ""
        lines.append(f"  missing  {m.permission}  ({where}{more})")
    for c in v.unavailable:
        lines.append(f"  unavailable  {c.call.file}:{c.call.line} {c.operation}: not open to apps")
    for c in v.invalid:
        lines.append(f"  invalid  {c.call.file}:{c.call.line}: {c.message}")
    lines += [f"  unused   {p}  ({UNUSED_NOTE})" for p in v.unused]
    lines += [f"  covered  {p}" for p in v.covered]
    lines += [f"  unknown  {n}  (not a permission name)" for n in v.unknown_names]
    if v.manifest and not v.has_findings:
        lines.append("  clean")
    return "\n".join(lines) + "\n"


def _call_dict(c: CallNeeds) -> dict[str, Any]:
    call = c.call
    return {
        "file": call.file, "line": call.line, "column": call.column, "call": call.call,
        "method": call.method, "path": call.path, "operation": c.operation,
        "expand": list(call.expand), "account": call.account, "kind": c.kind,
        "allowed_by": [list(g) for g in c.required], "notes": list(call.notes),
        **({"message": c.message} if c.kind not in ("missing", "allowed") else {}),
    }


def as_json(v: Verdict) -> str:
    f = v.findings
    doc = {
        "root": str(f.root), "files": f.files, "manifest": v.manifest,
        "sdk_table": table().meta,
        "calls": [_call_dict(c) for c in v.calls],
        "events": [
            {"file": e.use.file, "line": e.use.line, "event": e.use.event, "kind": e.kind,
             "needs": [list(g) for g in e.required]}
            for e in v.events
        ],
        "unresolved": [
            {"file": u.file, "line": u.line, "call": u.call, "reason": u.reason}
            for u in f.unresolved
        ],
        "skipped": [{"file": s.file, "reason": s.reason} for s in f.skipped],
        "verdict": None if v.manifest is None else {
            "missing": [
                {"permission": m.permission,
                 "sites": [{"file": a, "line": b, "call": c} for a, b, c in m.sites]}
                for m in v.missing
            ],
            "unused": v.unused, "unused_note": UNUSED_NOTE, "covered": v.covered,
            "unavailable": [_call_dict(c) for c in v.unavailable],
            "invalid": [_call_dict(c) for c in v.invalid],
            "unknown_names": v.unknown_names,
        },
        "needed": v.needed,
    }
    return json.dumps(doc, indent=2) + "\n"


def _location(uri: str, line: int, column: int = 1) -> dict[str, Any]:
    return {"physicalLocation": {
        "artifactLocation": {"uri": uri, "uriBaseId": "SRCROOT"},
        "region": {"startLine": max(line, 1), "startColumn": max(column, 1)},
    }}


def _manifest_line(manifest: str | None, name: str) -> int:
    if manifest is None:
        return 1
    try:
        text_ = Path(manifest).read_text("utf-8", "replace")
    except OSError:
        return 1
    m = re.search(rf'"{re.escape(name)}"', text_)
    return text_.count("\n", 0, m.start()) + 1 if m else 1


def sarif(v: Verdict, manifest_uri: str | None = None) -> str:
    results: list[dict[str, Any]] = []
    for m in v.missing:
        for file, line, what in m.sites:
            results.append({
                "ruleId": "missing-permission", "level": "error",
                "message": {"text": f"{what} needs '{m.permission}', which the manifest does "
                                    "not grant."},
                "locations": [_location(file, line)],
                "properties": {"permission": m.permission},
            })
    for p in v.unused:
        results.append({
            "ruleId": "unused-permission", "level": "warning",
            "message": {"text": f"'{p}' is granted but {UNUSED_NOTE}."},
            "locations": [_location(manifest_uri or "stripe-app.json",
                                    _manifest_line(v.manifest, p))],
            "properties": {"permission": p},
        })
    for rule, calls in (("unavailable-endpoint", v.unavailable), ("invalid-expansion", v.invalid)):
        for c in calls:
            results.append({
                "ruleId": rule, "level": "error", "message": {"text": c.message},
                "locations": [_location(c.call.file, c.call.line, c.call.column)],
            })
    for u in v.findings.unresolved:
        results.append({
            "ruleId": "unresolved-call", "level": "note",
            "message": {"text": f"{u.call}: {u.reason}; its permissions are not counted."},
            "locations": [_location(u.file, u.line, u.column)],
        })
    rules = [
        {"id": rid, "shortDescription": {"text": desc},
         "defaultConfiguration": {"level": level}}
        for rid, (level, desc) in RULES.items()
    ]
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "permgate scan", "version": permgate.__version__,
                "rules": rules,
            }},
            "originalUriBaseIds": {"SRCROOT": {"uri": Path(v.findings.root).resolve().as_uri()
                                               + ("/" if Path(v.findings.root).is_dir() else "")}},
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2) + "\n"
