"""permgate: the Stripe Apps permission system, faithful and fast.

    import permgate
    d = permgate.decide("GET", "/v1/customers/cus_1?expand[]=default_source",
                        grants={"customer_read"}, account="acct_1")
    d.allowed, d.missing, d.message

`permgate.engine` holds Stripe's catalog, operations and expansion graph, loaded once on
first use; `permgate.catalog.<attr>` reads Stripe's Catalog (`permgate.catalog.permissions`);
`permgate.load(...)` builds an Engine for another API from documents of the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from permgate.api import BadPath, Operation
from permgate.catalog import Catalog, EventRule, Permission, UnknownPermission
from permgate.decision import Decision, Engine, Grant
from permgate.load import load

if TYPE_CHECKING:
    from collections.abc import Callable

    engine: Engine
    decide: Callable[..., Decision]
    decide_event: Callable[..., Decision]

__version__ = "0.1.0"

_default: Engine | None = None


def default_engine() -> Engine:
    """Stripe's engine, loaded once (on first use, so that `import permgate.x` stays cheap)."""
    global _default
    if _default is None:
        _default = load()
    return _default


def __getattr__(name: str) -> Any:
    if name == "engine":
        return default_engine()
    if name == "decide":
        return default_engine().decide
    if name == "decide_event":
        return default_engine().decide_event
    raise AttributeError(f"module 'permgate' has no attribute {name!r}")


__all__ = [
    "BadPath", "Catalog", "Decision", "Engine", "EventRule", "Grant", "Operation", "Permission",
    "UnknownPermission", "catalog", "decide", "decide_event", "default_engine", "engine", "load",
]
