"""`diff`: what a new version of a manifest asks for compared with an old one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from permgate.catalog import Catalog
from permgate.manifest._catalog import default_catalog
from permgate.manifest.model import Manifest


@dataclass(frozen=True, slots=True)
class Diff:
    added: tuple[str, ...]  # requested by new, not by old (in new's order)
    removed: tuple[str, ...]  # requested by old, not by new (in old's order)
    purpose_changed: tuple[str, ...]  # in both, with a different purpose
    needs_approval: bool  # new asks for a name old did not: installs must re-approve
    widens_access: tuple[str, ...]  # added names whose access old's closure did not give

    def as_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "purpose_changed": list(self.purpose_changed),
            "needs_approval": self.needs_approval,
            "widens_access": list(self.widens_access),
        }


def _purposes(m: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, name, purpose in m.permission_entries:
        out.setdefault(name, purpose)
    return out


def diff(old: Manifest, new: Manifest, catalog: Catalog | None = None) -> Diff:
    """Compare requested permissions. Approval is about the list an administrator accepted:
    any name that is not in the old list needs it, even one the old list already implies
    (that one is reported as not widening access)."""
    cat = catalog or default_catalog()
    before, after = _purposes(old), _purposes(new)
    added = tuple(n for n in after if n not in before)
    removed = tuple(n for n in before if n not in after)
    changed = tuple(n for n in after if n in before and after[n] != before[n])
    held = cat.closure(n for n in before if n in cat.permissions)
    widens = tuple(n for n in added if n not in held)
    return Diff(added, removed, changed, bool(added), widens)
