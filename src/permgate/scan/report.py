"""A scan verdict as text, JSON or SARIF 2.1.0."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import permgate
from permgate import sarif as sarif_log
from permgate.sarif import Result, Rule
from permgate.scan.redact import redact, redact_doc
from permgate.scan.sdk import table
from permgate.scan.verdict import CallNeeds, Groups, Site, Verdict

UNUSED_NOTE = "no call or handled event in the scanned tree needs it (code outside the tree may)"
# What a scan reports, in the order its SARIF log declares them (tools key results by index).
SCAN_RULES: tuple[Rule, ...] = (
    Rule("missing-permission", "A call or handled event that no granted permission allows.",
         "error",
         "The app's code makes an API call or handles an event that needs a permission the "
         "manifest does not grant; on Stripe the call fails with a permission error.",
         "Grant the narrowest permission named in the message (`permgate apps grant permission "
         "NAME PURPOSE`, or `permgate scan --fix`)."),
    Rule("unused-permission", "A granted permission that nothing in the scanned code needs.",
         "warning",
         "The manifest grants a permission that no call or handled event in the scanned tree "
         "needs; users are asked for more access than the app uses.",
         "Remove it (`permgate apps revoke permission NAME`) unless code outside the scanned "
         "tree needs it."),
    Rule("unavailable-endpoint", "A call to an endpoint no Stripe App may use.", "error",
         "Stripe does not open this endpoint to apps, whatever the permissions.",
         "Remove the call or do it from the platform's own account."),
    Rule("invalid-expansion", "An expansion the API would refuse.", "error",
         "The call asks to expand a field that cannot be expanded that way; the API answers "
         "400.",
         "Fix the expand path."),
    Rule("unresolved-call", "A call whose operation is only known at run time.", "note",
         "The scanner cannot tell which endpoint this call reaches (its method or path is "
         "computed at run time), so its permissions are not counted.",
         "Check by hand what it needs, or write the path literally."),
    Rule("unverified-permission", "A granted permission the scan cannot vouch for either way.",
         "note",
         "Nothing the scan could read needs this permission, but some of the app's API traffic "
         "could not be read (a path or method built at run time, a client whose account is "
         "unknown), so the permission is not called unused.",
         "Check the listed calls by hand before removing the permission."),
)
NOT_COUNTED = {
    "own": "the developer's own account: the app's permissions do not apply",
    "unknown": "account unknown: reported, not counted, and it keeps no grant from being unused",
}


def _site(s: Site) -> str:
    return f"{s.file}:{s.line} {s.what} [{s.account}: {s.reason}]"


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
            if call.reason:
                lines.append(f"      account: {call.reason}")
            if c.kind in ("missing", "allowed"):
                lines.append(f"      allowed by: {_groups(c.required)}")
            else:
                lines.append(f"      {c.kind}: {c.message}")
            lines.extend(f"      note: {n}" for n in call.notes)
    if v.events:
        lines.append("\nEvents handled")
        for e in v.events:
            lines.append(f"  {e.use.file}:{e.use.line}  {e.use.event}  needs {_groups(e.required)}"
                         f"  [{e.use.account}]")
            if e.use.reason:
                lines.append(f"      account: {e.use.reason}")
    if f.unresolved:
        lines.append("\nUnresolved (operation known only at run time; not guessed)")
        lines += [f"  {u.file}:{u.line}  {u.call}  {u.reason}" for u in f.unresolved]
    for acct, note in NOT_COUNTED.items():
        n_calls = sum(1 for c in v.calls if c.call.account == acct)
        n_events = sum(1 for e in v.events if e.use.account == acct)
        if n_calls or n_events:
            lines.append(f"\n{n_calls} call(s), {n_events} event(s) on {note}")
    if f.escapes:
        lines.append("\nCredentials handed to code outside the project (grants kept)")
        lines += [f"  {e.file}:{e.line}  {e.call}({e.credential})" for e in f.escapes]
    if f.tests_excluded:
        lines.append(f"\n{f.tests_excluded} test file(s) left out (--include-tests reads them)")
    if f.skipped:
        lines.append("\nSkipped")
        lines += [f"  {s.file}: {s.reason}" for s in f.skipped]
    if f.partial:
        lines.append("\nRead in part (what was found is kept)")
        lines += [f"  {p.file}: {p.reason}" for p in f.partial]
    lines.append("\nVerdict" if v.manifest else "\nNeeded")
    if not v.manifest:
        lines += [f"  needs    {p}" for p in v.needed] or ["  nothing"]
    for m in v.missing:
        lines.append(f"  missing  {m.permission}  (the narrowest permission that allows:)")
        lines += [f"      {_site(s)}" for s in m.sites[:5]]
        if len(m.sites) > 5:
            lines.append(f"      (+{len(m.sites) - 5} more; --format json lists all)")
    for c in v.unavailable:
        lines.append(f"  unavailable  {c.call.file}:{c.call.line} {c.call.call} -> {c.operation}: "
                     f"not open to apps [{c.call.account}: {c.call.reason}]")
    for c in v.invalid:
        lines.append(f"  invalid  {c.call.file}:{c.call.line} {c.call.call}: {c.message} "
                     f"[{c.call.account}: {c.call.reason}]")
    lines += [f"  unused   {u.permission}  ({u.reason})" for u in v.unused]
    lines += [f"  kept     {u.permission}  ({u.reason})" for u in v.outside]
    for w in v.unverified:
        lines.append(f"  unverified  {w.permission}  ({w.reason}:)")
        lines += [f"      {_site(s)}" for s in w.sites[:5]]
        if len(w.sites) > 5:
            lines.append(f"      (+{len(w.sites) - 5} more; --format json lists all)")
    for p in v.covered:
        sites = v.used_by.get(p, [])
        first = f"  (e.g. {_site(sites[0])})" if sites else ""
        lines.append(f"  covered  {p}{first}")
    lines += [f"  unknown  {n}  (not a permission name)" for n in v.unknown_names]
    if v.manifest and not v.has_findings:
        lines.append("  clean")
    # App code is hostile: no control character of it reaches the terminal.
    # Key-like values quoted from the code are masked (issue 25).
    return "\n".join(_CONTROL.sub(_escape, redact(line)) for line in lines) + "\n"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group(0)):04x}"


def _call_dict(c: CallNeeds) -> dict[str, Any]:
    call = c.call
    return {
        "file": call.file, "line": call.line, "column": call.column, "call": call.call,
        "method": call.method, "path": call.path, "operation": c.operation,
        "expand": list(call.expand), "account": call.account, "account_reason": call.reason,
        "counted": c.counts, "kind": c.kind,
        "allowed_by": [list(g) for g in c.required], "notes": list(call.notes),
        **({"message": c.message} if c.kind not in ("missing", "allowed") else {}),
    }


def _site_dict(s: Site) -> dict[str, Any]:
    return {"file": s.file, "line": s.line, "call": s.what, "account": s.account,
            "reason": s.reason}


def as_json(v: Verdict) -> str:
    f = v.findings
    doc = {
        "root": str(f.root), "files": f.files, "manifest": v.manifest,
        "sdk_table": table().meta,
        "calls": [_call_dict(c) for c in v.calls],
        "events": [
            {"file": e.use.file, "line": e.use.line, "event": e.use.event, "kind": e.kind,
             "account": e.use.account, "account_reason": e.use.reason, "counted": e.counts,
             "needs": [list(g) for g in e.required]}
            for e in v.events
        ],
        "unresolved": [
            {"file": u.file, "line": u.line, "call": u.call, "reason": u.reason}
            for u in f.unresolved
        ],
        "skipped": [{"file": s.file, "reason": s.reason, "dropped": s.dropped}
                    for s in f.skipped],
        "partial": [{"file": p.file, "reason": p.reason} for p in f.partial],
        "tests_excluded": f.tests_excluded,
        "escapes": [{"file": e.file, "line": e.line, "call": e.call, "credential": e.credential}
                    for e in f.escapes],
        "verdict": None if v.manifest is None else {
            "missing": [
                {"permission": m.permission, "sites": [_site_dict(s) for s in m.sites]}
                for m in v.missing
            ],
            "unused": [{"permission": u.permission, "reason": u.reason,
                        "narrower": list(u.narrower)} for u in v.unused],
            "kept": [{"permission": u.permission, "reason": u.reason} for u in v.outside],
            "unverified": [{"permission": w.permission, "reason": w.reason,
                            "sites": [_site_dict(s) for s in w.sites]} for w in v.unverified],
            "unused_note": UNUSED_NOTE,
            "covered": [{"permission": p, "sites": [_site_dict(s) for s in v.used_by.get(p, [])]}
                        for p in v.covered],
            "unavailable": [_call_dict(c) for c in v.unavailable],
            "invalid": [_call_dict(c) for c in v.invalid],
            "unknown_names": v.unknown_names,
        },
        "needed": v.needed,
    }
    return json.dumps(redact_doc(doc), indent=2) + "\n"


def _manifest_line(manifest: str | None, name: str) -> int:
    if manifest is None:
        return 1
    try:
        text_ = Path(manifest).read_text("utf-8", "replace")
    except OSError:
        return 1
    m = re.search(rf'"{re.escape(name)}"', text_)
    return text_.count("\n", 0, m.start()) + 1 if m else 1


def sarif(v: Verdict, manifest: Path | None = None) -> str:
    """The verdict as a SARIF 2.1.0 log (permgate.sarif): files relative to the scanned
    folder (a file's folder when one file was scanned); `manifest` is where the unused
    permissions are reported (default: stripe-app.json in that folder)."""
    root = Path(v.findings.root)
    base = root if root.is_dir() else root.parent
    mfile = str(manifest.resolve()) if manifest is not None else "stripe-app.json"
    results: list[Result] = []
    for m in v.missing:
        for s in m.sites:
            results.append(Result(
                "missing-permission",
                f"{s.what} needs '{m.permission}', which the manifest does not grant. "
                f"Whose account: {s.account} ({s.reason}).",
                s.file, s.line,
                properties={"permission": m.permission, "account": s.account,
                            "accountReason": s.reason}))
    for u in v.unused:
        results.append(Result(
            "unused-permission", f"'{u.permission}' is granted but {u.reason}.",
            mfile, _manifest_line(v.manifest, u.permission),
            properties={"permission": u.permission, "narrower": list(u.narrower)}))
    for w in v.unverified:
        shown = "; ".join(f"{s.what} at {s.file}:{s.line} (whose account: {s.account}, "
                          f"{s.reason})" for s in w.sites[:3])
        more = f" (+{len(w.sites) - 3} more)" if len(w.sites) > 3 else ""
        results.append(Result(
            "unverified-permission",
            f"'{w.permission}' is granted and {w.reason}" + (f": {shown}{more}." if shown else "."),
            mfile, _manifest_line(v.manifest, w.permission),
            properties={"permission": w.permission,
                        "sites": [f"{s.file}:{s.line}" for s in w.sites]}))
    for rule, calls in (("unavailable-endpoint", v.unavailable), ("invalid-expansion", v.invalid)):
        for c in calls:
            results.append(Result(
                rule, f"{c.call.call}: {c.message} Whose account: {c.call.account} "
                f"({c.call.reason}).",
                c.call.file, c.call.line, c.call.column,
                properties={"account": c.call.account, "accountReason": c.call.reason}))
    for r in v.findings.unresolved:
        results.append(Result(
            "unresolved-call", f"{r.call}: {r.reason}; its permissions are not counted.",
            r.file, r.line, r.column))
    return sarif_log.dumps(redact_doc(sarif_log.log(SCAN_RULES, results, base=base,
                                                    version=permgate.__version__)))
