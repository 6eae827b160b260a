"""`permgate scan`: read an app's code, tell which permissions it needs, missing and unused.

    from permgate.scan import scan
    v = scan(Path("my-app"), granted={"customer_read"}, manifest="my-app/stripe-app.json")
    v.missing, v.unused, v.covered, v.calls, v.findings.unresolved
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import permgate
from permgate.scan.model import Call, EventUse, Skipped, Unresolved
from permgate.scan.scanner import Findings, scan_tree
from permgate.scan.verdict import CallNeeds, EventNeeds, Missing, Verdict, verdict

__all__ = [
    "Call", "CallNeeds", "EventNeeds", "EventUse", "Findings", "Missing", "Skipped",
    "Unresolved", "Verdict", "scan",
]


def scan(root: Path, granted: Iterable[str] | None = None, manifest: str | None = None) -> Verdict:
    """Scan `root` (a folder or one file); `granted` None means no manifest: needs only."""
    findings = scan_tree(root, frozenset(permgate.engine.catalog.events))
    return verdict(findings, granted, manifest)
