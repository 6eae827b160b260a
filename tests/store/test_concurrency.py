"""Concurrent approvals, uninstalls, installs and uploads end in one consistent state.

On PostgreSQL every worker has its own engine (its own connections). A holder transaction
first locks the contested row, the workers start and queue up behind it (we wait until the
server reports them all waiting on a lock), then the holder lets go and they race for real.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
from tests.store.conftest import APP, MakeManifest

from permgate.store import Conflict, NotFound, Store

ACCT = "acct_1Race"
Outcome = str


def _join(threads: list[threading.Thread], outcomes: list[Outcome]) -> list[Outcome]:
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a worker is stuck"
    return outcomes


@contextmanager
def _holding(pg_url: str, lock_sql: str, waiters: int) -> Iterator[str]:
    """Hold `lock_sql`'s row lock; yield the URL workers must use; on exit, wait until
    `waiters` of them are blocked on a lock, then release it."""
    tag = f"pgrace_{secrets.token_hex(4)}"
    url = f"{pg_url}&application_name={tag}"
    base, _, query = pg_url.partition("?")
    options = dict(p.split("=", 1) for p in query.split("&"))["options"].replace("%3D", "=")
    with psycopg.connect(base, options=options) as holder, psycopg.connect(
            base, autocommit=True) as watcher:
        holder.execute(lock_sql)
        yield url
        for _ in range(1200):
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock'", (tag,)).fetchone()
            if row is not None and row[0] >= waiters:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the workers never queued up behind the lock")
        holder.commit()


def _stores(url: str, n: int, stack: ExitStack) -> list[Store]:
    return [stack.enter_context(Store.open(url)) for _ in range(n)]


def _approve(s: Store) -> Any:
    return s.approve(APP, ACCT, "live", by="ann", role="admin", version="2.0.0")


def _uninstall(s: Store) -> Any:
    return s.uninstall(APP, ACCT, "live", by="bob", role="admin")


def _check_approve_uninstall(store: Store, jobs: list[Callable[[Store], Any]],
                             outcomes: list[Outcome]) -> None:
    assert not [o for o in outcomes if o.startswith("error")], outcomes
    removals = [o for j, o in zip(jobs, outcomes, strict=True) if j is _uninstall]
    approvals = [o for j, o in zip(jobs, outcomes, strict=True) if j is _approve]
    assert sorted(removals) == ["NotFound"] * (len(removals) - 1) + ["ok"]
    assert set(approvals) <= {"ok", "NotFound"}
    assert store.effective_grant(APP, ACCT, "live") is None
    trail = [e for e in store.audit(account=ACCT) if e.action != "install.created"]
    actions = [e.action for e in trail]
    # Every successful approval committed before the one removal; nothing after it.
    assert actions == ["install.approved"] * approvals.count("ok") + ["install.removed"]


@pytest.fixture
def pending(store: Store, make_manifest: MakeManifest) -> Store:
    store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
    store.install(APP, ACCT, "live", by="ann", role="admin")
    store.upload_version(make_manifest("2.0.0", ["customer_read", "charge_read"]), actor="dev")
    return store


def test_concurrent_approvals_and_uninstalls(pending: Store, db_url: str) -> None:
    jobs: list[Callable[[Store], Any]] = [
        _approve, _uninstall, _approve, _uninstall, _approve, _uninstall]
    if pending.engine.dialect.name == "sqlite":
        with ExitStack() as stack:
            outcomes = _join(*_start(_stores(db_url, len(jobs), stack), jobs))
    else:
        lock = ("SELECT 1 FROM installs WHERE app_id = 'com.example.consent' "
                "AND uninstalled_at IS NULL FOR UPDATE")
        with ExitStack() as stack:
            with _holding(db_url, lock, len(jobs)) as url:
                stores = _stores(url, len(jobs), stack)
                threads, outcomes = _start(stores, jobs)
            _join(threads, outcomes)
    _check_approve_uninstall(pending, jobs, outcomes)


def _start(stores: list[Store], jobs: list[Callable[[Store], Any]]
           ) -> tuple[list[threading.Thread], list[Outcome]]:
    outcomes: list[Outcome] = ["" for _ in jobs]

    def worker(i: int) -> None:
        try:
            jobs[i](stores[i])
            outcomes[i] = "ok"
        except (NotFound, Conflict) as e:
            outcomes[i] = type(e).__name__
        except Exception as e:
            outcomes[i] = f"error: {e!r}"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    return threads, outcomes


@pytest.mark.postgres
def test_concurrent_installs_of_one_account(pg_url: str, make_manifest: MakeManifest) -> None:
    with Store.open(pg_url, upgrade=True) as store:
        store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
        jobs = [lambda s: s.install(APP, ACCT, "live", by="ann", role="admin")] * 5
        lock = "SELECT 1 FROM apps FOR UPDATE"
        with ExitStack() as stack:
            with _holding(pg_url, lock, len(jobs)) as url:
                threads, outcomes = _start(_stores(url, len(jobs), stack), jobs)
            _join(threads, outcomes)
        assert sorted(outcomes) == ["Conflict"] * 4 + ["ok"]
        assert len(store.installs_for_account(ACCT)) == 1
        assert [e.action for e in store.audit(account=ACCT)] == ["install.created"]


@pytest.mark.postgres
@pytest.mark.parametrize("locked", ["installs", "apps"])
def test_approval_racing_a_new_upload(
    pg_url: str, make_manifest: MakeManifest, locked: str
) -> None:
    with Store.open(pg_url, upgrade=True) as store:
        store.upload_version(make_manifest("1.0.0", ["customer_read"]), actor="dev")
        store.install(APP, ACCT, "live", by="ann", role="admin")
        store.upload_version(make_manifest("2.0.0", ["customer_read", "charge_read"]),
                             actor="dev")
        v3 = make_manifest("3.0.0", ["customer_read", "charge_read", "invoice_read"])
        jobs: list[Callable[[Store], Any]] = [
            _approve, lambda s: s.upload_version(v3, actor="dev"), _approve]
        with ExitStack() as stack:
            # Behind a locked app row all three wait; behind a locked install only the two
            # approvals surely do (the upload may finish first, or wait for them).
            waiters = 3 if locked == "apps" else 2
            with _holding(pg_url, f"SELECT 1 FROM {locked} FOR UPDATE", waiters) as url:
                threads, outcomes = _start(_stores(url, len(jobs), stack), jobs)
            _join(threads, outcomes)
        assert outcomes[1] == "ok"
        assert set(outcomes) <= {"ok", "Conflict"}, outcomes
        g = store.effective_grant(APP, ACCT, "live")
        assert g is not None and g.installed_version == "3.0.0"
        trail = [e.action for e in store.audit() if e.action in (
            "install.approved", "version.uploaded")][2:]
        approvals = outcomes.count("ok") - 1
        # Approvals of 2.0.0 either all committed before 3.0.0 arrived, or were refused.
        assert trail == ["install.approved"] * approvals + ["version.uploaded"]
        assert g.approved_version == ("2.0.0" if approvals else "1.0.0")
        assert g.status == "pending_approval"
        assert g.pending == {"invoice_read"} | (set() if approvals else {"charge_read"})
