"""The consent rule (SPEC "Consent and versions"), as a pure function of two sets."""

from __future__ import annotations

from typing import Literal

Status = Literal["active", "pending_approval"]


def effective(
    approved: frozenset[str], requested: frozenset[str]
) -> tuple[frozenset[str], frozenset[str], Status]:
    """-> (set backend calls may use, pending additions, status).

    A version asking for no more than the administrator approved is used at once, with its
    own (possibly smaller) set: least privilege, and exactly what the app now asks for.
    A version asking for more keeps the most recently approved set until approval.
    """
    if requested <= approved:
        return requested, frozenset(), "active"
    return approved, requested - approved, "pending_approval"
