"""`permgate scan`: read an app's code, tell which permissions it needs, missing and unused.

    from permgate.scan import scan
    v = scan(Path("my-app"), granted={"customer_read"}, manifest="my-app/stripe-app.json")
    v.missing, v.unused, v.covered, v.calls, v.findings.unresolved
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from permgate.scan.model import Call, Escape, EventUse, Partial, Skipped, Unresolved
from permgate.scan.scanner import Findings, scan_tree
from permgate.scan.verdict import (
    CallNeeds,
    EventNeeds,
    Missing,
    Site,
    Unused,
    Unverified,
    Verdict,
    narrowest,
    verdict,
)

__all__ = [
    "Call", "CallNeeds", "Escape", "EventNeeds", "EventUse", "Findings", "Missing", "Partial",
    "Site", "Skipped", "Unresolved", "Unused", "Unverified", "Verdict", "narrowest", "scan",
]


def scan(
    root: Path, granted: Iterable[str] | None = None, manifest: str | None = None, *,
    include_tests: bool = False, progress: bool | None = None,
) -> Verdict:
    """Scan `root` (a folder or one file); `granted` None means no manifest: needs only.

    Test files are left out unless `include_tests`. Progress goes to stderr only when it is a
    terminal: with `progress` None for large trees only, True whatever the size, False never.
    """
    # With a manifest the tree is a Stripe App's: its handlers serve the installing accounts.
    findings = scan_tree(root, None, include_tests=include_tests, progress=progress,
                         app=True if manifest is not None or granted is not None else None)
    return verdict(findings, granted, manifest)
