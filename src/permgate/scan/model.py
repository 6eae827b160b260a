"""What the extractors find in one file, before any permission is looked up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Whose account a call acts on, and so whether the app's permissions apply:
# "installing" (UI extension) and "connected" (a backend acting for an install) need them;
# "own" (the developer's own account) does not; "unknown" is reported but not needed.
Account = Literal["installing", "connected", "own", "unknown"]
NEEDS_APP_PERMISSION: frozenset[str] = frozenset({"installing", "connected"})


@dataclass(frozen=True, slots=True)
class Call:
    """One API request the code makes: an SDK method call or a raw HTTP request."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    call: str  # the source text of the callee, e.g. "stripe.customers.retrieve"
    method: str  # HTTP method
    path: str  # path template, e.g. "/v1/customers/{customer}"
    expand: tuple[str, ...] = ()
    account: Account = "unknown"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A call that reaches the API but whose operation is only known at run time."""

    file: str
    line: int
    column: int
    call: str
    reason: str


@dataclass(frozen=True, slots=True)
class EventUse:
    """A webhook handler branch on one event type."""

    file: str
    line: int
    column: int
    event: str


@dataclass(slots=True)
class FileFindings:
    calls: list[Call] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    events: list[EventUse] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file the scan did not read, and why (binary, too large, unreadable, ...)."""

    file: str
    reason: str
