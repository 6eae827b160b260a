"""Which installs get an event, table-driven from the documented event permissions."""

from __future__ import annotations

import json

import pytest
from tests.events.support import ACCOUNT, install, new_app
from tests.vendored import VENDOR

from permgate.events import accept, add_endpoint, list_deliveries
from permgate.events.sealing import Sealer
from permgate.store import Store

TABLE = VENDOR / "event-permissions.json"
ROWS = {k: v for k, v in json.loads(TABLE.read_text()).items() if not k.startswith("_")}


def _cases() -> list[tuple[str, list[str], bool, str]]:
    cases = []
    for etype, perms in sorted(ROWS.items()):
        if not perms:
            cases.append((etype, ["event_read"], False, "empty cell: nobody"))
            continue
        if perms == ["event_read"]:
            cases.append((etype, ["event_read"], True, "allowed"))
            cases.append((etype, ["customer_read"], False, "event_read missing"))
            continue
        first = perms[0]
        cases.append((etype, ["event_read", first], True, "allowed"))
        cases.append((etype, [first], False, "event_read missing"))
        cases.append((etype, ["event_read", _unrelated(perms)], False, "denied"))
        via = _implier(perms)
        if via is not None:
            cases.append((etype, ["event_read", via], True, "implied"))
        if first.endswith("_read"):
            write = first[: -len("_read")] + "_write"
            if write != first and _known(write):
                cases.append((etype, ["event_read", write], True, "write covers read"))
    return cases


def _implier(perms: list[str]) -> str | None:
    """A permission the event does not list that implies one it does (read from the
    catalog's implication notes), or None."""
    import permgate

    catalog = permgate.default_engine().catalog
    for name in sorted(catalog.permissions):
        covers_by_level = name.endswith("_write") and name[:-6] + "_read" in perms
        if name not in perms and not covers_by_level and any(
                p in catalog.closure([name]) for p in perms):
            return name
    return None


def _known(name: str) -> bool:
    import permgate

    return name in permgate.default_engine().catalog.permissions


def _unrelated(perms: list[str]) -> str:
    for candidate in ("file_read", "tax_rate_read", "webhook_read"):
        if candidate not in perms:
            return candidate
    raise AssertionError("no unrelated permission")


CASES = _cases()


def test_the_table_is_the_whole_documented_table() -> None:
    assert len(ROWS) == 162
    kinds = {c[3] for c in CASES}
    assert kinds == {"allowed", "denied", "event_read missing", "write covers read",
                     "implied", "empty cell: nobody"}
    assert sum(1 for c in CASES if c[3] == "write covers read") > 50


@pytest.mark.slow
def test_filtering_table(store: Store, sealer: Sealer) -> None:
    """One app per case, all installed on one account; one event per type; every case's
    app must get exactly the events its case says."""
    apps: dict[tuple[str, str], tuple[str, bool]] = {}
    by_perms: dict[tuple[str, ...], str] = {}
    for _etype, perms, _, _ in CASES:
        key = tuple(sorted(perms))
        if key not in by_perms:
            app = new_app(store, sorted(perms))
            install(store, app)
            by_perms[key] = app
    for etype, perms, allowed, why in CASES:
        apps[(etype, why)] = (by_perms[tuple(sorted(perms))], allowed)
    # Subscribing needs the manifest to allow the event; "*" lets the grant alone decide.
    for app in by_perms.values():
        add_endpoint(store, app, f"http://127.0.0.1:9/{app}", ["*"], "live", by="t",
                     sealer=sealer)
    denied_app = new_app(store, ["event_read", _unrelated([])])
    install(store, denied_app)
    add_endpoint(store, denied_app, "http://127.0.0.1:9/d", ["*"], "live", by="t",
                 sealer=sealer)
    for etype in ROWS:
        accept(store, {"id": f"evt_{etype}", "type": etype, "livemode": True,
                       "account": ACCOUNT, "created": 1})
    got: dict[str, set[str]] = {}
    for d in list_deliveries(store):
        got.setdefault(d.app_id, set()).add(d.event_type)
    failures = []
    for (etype, why), (app, allowed) in apps.items():
        if (etype in got.get(app, set())) != allowed:
            failures.append(f"{etype} ({why}): expected {'allowed' if allowed else 'denied'}")
    assert failures == []
    assert got.get(denied_app, set()) <= {
        t for t, p in ROWS.items() if "file_read" in p} | {
        "account.application.authorized", "account.application.deauthorized"}


@pytest.mark.parametrize(("granted", "etype", "allowed"), [
    (["event_read", "checkout_session_write"], "payment_intent.succeeded", True),
    (["event_read", "balance_transaction_source_read"], "invoice.paid", False),
    (["event_read"], "account.application.authorized", True),
    (["customer_read"], "account.application.authorized", False),
])
def test_implied_and_event_read_only(
    store: Store, sealer: Sealer, granted: list[str], etype: str, allowed: bool,
) -> None:
    app = new_app(store, granted)
    install(store, app)
    add_endpoint(store, app, "http://127.0.0.1:9/h", ["*"], "live", by="t", sealer=sealer)
    accept(store, {"id": "evt_1", "type": etype, "livemode": True, "account": ACCOUNT})
    assert len(list_deliveries(store, app_id=app)) == (1 if allowed else 0)
