"""Whose account a handled event belongs to: decided per handler branch, with the reason.

An app receives events for the accounts that installed it, but an app's backend often also
receives its developer's own events (the developer's subscription billing). For each event
literal the branch that handles it is read (from the literal to the next event of the same
function, and the same-file functions that branch calls), then its function:

1. a call on the installing or a connected account, or code naming the event's account
   (`event.account`, `stripe_account`) -> installing;
2. only calls on the developer's own key -> own;
3. the same, over the whole enclosing function, when it points one way only;
4. `checkout.session.*` / `customer.subscription.*` in a project that creates Checkout
   Sessions or subscriptions on its own key: the developer's own billing -> own;
5. otherwise installing (events reach an app for the accounts that installed it).

In a tree that is not a Stripe App no event needs a permission: its webhook endpoints receive
the developer's own events, or (a Connect platform) its connected accounts' events, by the
endpoint's configuration, not by an app's permissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from permgate.scan.model import Call, EventUse, FileFindings, Scope

INSTALLING = re.compile(
    r"[sS]tripe[_-]?[aA]ccount|STRIPE_ACCOUNT|\b(?:event|evt)\.account\b|"
    r"\[[\"']account[\"']\]|\.get\([\"']account[\"']\)"
)
_INSTALLING_B = re.compile(INSTALLING.pattern.encode())
_OWN_BILLING_EVENTS = ("checkout.session.", "customer.subscription.")
_OWN_BILLING_PATHS = ("/v1/checkout/sessions", "/v1/subscriptions", "/v1/billing_portal/")


def _innermost(scopes: list[Scope], line: int) -> Scope | None:
    best: Scope | None = None
    for s in scopes:
        if s.start <= line <= s.end and (best is None or s.end - s.start < best.end - best.start):
            best = s
    return best


class _Signals:
    def __init__(self, f: FileFindings, file: str) -> None:
        self.f = f
        self.file = file
        self._lines: list[bytes] | None = None
        self.by_name: dict[str, list[Scope]] = {}
        for s in f.scopes:
            self.by_name.setdefault(s.name, []).append(s)

    def spans(self, start: int, end: int, follow: int = 1) -> list[tuple[int, int]]:
        out = [(start, end)]
        if follow:
            for line, name in self.f.local_calls:
                if start <= line <= end:
                    for s in self.by_name.get(name, ()):
                        if not (s.start <= start and end <= s.end):  # not a recursive self
                            out += self.spans(s.start, s.end, follow - 1)
        return out

    def read(self, spans: Iterable[tuple[int, int]]) -> tuple[str | None, str | None]:
        """(installing reason, own reason) for what the lines of `spans` do."""
        spans = list(spans)

        def inside(line: int) -> bool:
            return any(a <= line <= b for a, b in spans)

        inst = own = None
        for c in self.f.calls:
            if inside(c.line):
                if c.account in ("installing", "connected") and inst is None:
                    inst = f"its code calls {c.call} on the {c.account} account ({c.file}:{c.line})"
                elif c.account == "own" and own is None:
                    own = f"its code calls {c.call} on the developer's own key ({c.file}:{c.line})"
        if inst is None:
            if self._lines is None:
                self._lines = self.f.source.split(b"\n")
            # only the lines of the spans are read (not the whole file)
            for a, b in sorted(spans):
                hit = next((n for n in range(a, min(b, len(self._lines)) + 1)
                            if _INSTALLING_B.search(self._lines[n - 1])), None)
                if hit is not None:
                    inst = f"its code reads the event's account ({self.file}:{hit})"
                    break
        return inst, own


def decide(f: FileFindings, file: str) -> list[EventUse]:
    """Each event of the file with its account decided by rules 1-3; rule 4 and 5 are left to
    `finish` (they need the whole project): those come back with account "unknown"."""
    if not f.events:
        return []
    sig = _Signals(f, file)
    lines = sorted({e.line for e in f.events})
    out = []
    for e in f.events:
        scope = _innermost(f.scopes, e.line)
        end = scope.end if scope is not None else e.line
        later = [ln for ln in lines if e.line < ln <= end]
        branch_end = later[0] - 1 if later else end
        if scope is None:
            branch_end = e.line
        inst, own = sig.read(sig.spans(e.line, branch_end))
        where = f"the branch at {file}:{e.line}"
        if inst:
            out.append(replace(e, account="installing", reason=f"{where}: {inst}"))
            continue
        if own:
            out.append(replace(e, account="own", reason=f"{where}: {own}"))
            continue
        if scope is not None:
            inst, own = sig.read(sig.spans(scope.start, scope.end))
            name = f"{scope.name} ({file}:{scope.start})"
            if inst and not own:
                out.append(replace(e, account="installing", reason=f"handler {name}: {inst}"))
                continue
            if own and not inst:
                out.append(replace(e, account="own", reason=f"handler {name}: {own}"))
                continue
        out.append(replace(e, account="unknown", reason=""))
    return out


def own_billing_site(calls: Iterable[Call]) -> Call | None:
    """A call that sells the developer's own product: Checkout / subscriptions on the own key."""
    for c in calls:
        if c.account == "own" and c.method == "POST" and c.path.startswith(_OWN_BILLING_PATHS):
            return c
    return None


def finish(e: EventUse, billing: Call | None, app: bool = True) -> EventUse:
    """Decide a handler no branch decided. `app`: the tree is a Stripe App's (a manifest, a UI
    extension); a backend that is not one receives its own account's events."""
    if not app and e.account == "installing":
        # The sign that made it "installing" (`event.account`, a call on a connected account)
        # shows a Connect webhook endpoint: a platform that is not a Stripe App receives its
        # connected accounts' events by that endpoint, which no app permission gates. The
        # calls its handlers make are counted on their own.
        return replace(e, account="own", reason=(
            f"the tree is not a Stripe App (no stripe-app.json, no UI extension): its webhook "
            f"endpoint receives these events by its own configuration (own or Connect), and no "
            f"app permission gates them; {e.reason}"))
    if e.account != "unknown":
        return e
    if not app:
        return replace(e, account="own", reason=(
            "no sign of the event's account in its handler, and the tree is not a Stripe App "
            "(no stripe-app.json, no UI extension): its webhook endpoint receives the "
            "developer's own account's events"))
    if billing is not None and e.event.startswith(_OWN_BILLING_EVENTS):
        return replace(e, account="own", reason=(
            f"no sign of the installing account in its handler, and the project bills on the "
            f"developer's own key ({billing.call} at {billing.file}:{billing.line}): the "
            "developer's own billing event"))
    return replace(e, account="installing", reason=(
        "a handled event: events reach an app for the accounts that installed it"))
