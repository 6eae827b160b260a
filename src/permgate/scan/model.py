"""What the extractors find in one file, before any permission is looked up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Whose account a call acts on, and so whether the app's permissions apply:
# "installing" (UI extension) and "connected" (a backend acting for an install) need them;
# "own" (the developer's own account) does not; "unknown" is reported but not needed.
Account = Literal["installing", "connected", "own", "unknown"]
NEEDS_APP_PERMISSION: frozenset[str] = frozenset({"installing", "connected"})
# The note on a call whose expand list is built at run time: its expansions' needs are unseen.
EXPAND_AT_RUN_TIME = "expand is built at run time: its permissions are not counted"


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
    # Why the scan says whose account this is ("a UI extension", "client built at
    # lib/stripe.ts:4 from process.env.STRIPE_SECRET_KEY", ...): shown with every verdict.
    reason: str = ""


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
    account: Account = "installing"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Escape:
    """The installing account's credential handed to code outside the project (a package):
    what that code calls cannot be seen, so no grant is called unused."""

    file: str
    line: int
    call: str
    credential: str


@dataclass(frozen=True, slots=True)
class Scope:
    """A function (or a top-level declaration) of a file: where a handler's branches live."""

    name: str
    start: int  # first line, 1-based
    end: int  # last line
    calls: tuple[str, ...] = ()  # names of the functions it calls (same-file follow-up)


@dataclass(slots=True)
class FileFindings:
    calls: list[Call] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    events: list[EventUse] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)
    # the file's text while its handlers are decided (lines that name the event's account,
    # `event.account` / `stripe_account`, are looked for only when a handler needs them)
    source: bytes = b""
    partial: str | None = None  # why the file was only partly analysed
    local_calls: list[tuple[int, str]] = field(default_factory=list)  # (line, function name)
    escapes: list[Escape] = field(default_factory=list)
    # names the file takes from the rest of the project (imports; "<module key>" when a
    # module-level SDK call fell back to the project's key): if the project-wide pass learns
    # about one of them later, the file is read again
    imports: set[str] = field(default_factory=set)
    ui: bool = False  # a UI extension file: everything acts for the installing account


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file the scan did not read, and why (binary, too large, unreadable, ...)."""

    file: str
    reason: str
    # dropped: a source file the scan meant to read and could not (not an ignored one)
    dropped: bool = True


@dataclass(frozen=True, slots=True)
class Partial:
    """A file analysed only in part (what was found before the failure is kept)."""

    file: str
    reason: str
