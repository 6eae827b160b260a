"""A delivery's lease (ev0004): a column of its own that no index holds, so on PostgreSQL
the lease is a HOT update writing no index; the claim indexes cover pending rows only; a
lease taken before the migration still holds after it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from tests.events.conftest import FAST
from tests.events.support import Receiver, event, install, new_app, pg_schema, wait_until

from permgate.events import DeliveryWorker, Sealer, accept_many, add_endpoint, list_deliveries
from permgate.events.schema import deliveries
from permgate.store import Store, migrate
from permgate.store.engine import create, resolve_url

# What a claim writes into a delivery row, besides the row lock.
LEASE_COLUMNS = ("attempts", "leased_until", "last_attempt_at", "first_attempt_at")


def _index_definitions(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            sql = ("SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                   "WHERE indrelid = 'event_deliveries'::regclass")
        else:
            sql = ("SELECT sql FROM sqlite_master WHERE type = 'index' "
                   "AND tbl_name = 'event_deliveries' AND sql IS NOT NULL")
        return [str(r[0]) for r in conn.exec_driver_sql(sql)]


def test_no_index_holds_what_a_lease_writes(any_store: Store) -> None:
    """Regression (issue 21): the claim index held `attempts` and `next_attempt_at`, which
    the lease changed, so every lease rewrote every index of the table on PostgreSQL."""
    definitions = _index_definitions(any_store)
    for d in definitions:
        for column in LEASE_COLUMNS:
            assert not re.search(rf"\b{column}\b", d), (column, d)
    # The claim indexes hold pending rows only: a finished delivery leaves them.
    claim = [d for d in definitions if "_fresh" in d or "_retry" in d or "_pending" in d]
    assert len(claim) == 3 and all(re.search(r"WHERE.*\bstatus\b.*'pending'", d)
                                   for d in claim), claim


def _hot_updates(url: str) -> tuple[int, int]:
    """(updates, HOT updates) of event_deliveries in the URL's schema, as reported so far."""
    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect(url.split("?", 1)[0].replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'event_deliveries'", (schema,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.postgres
def test_a_lease_is_a_hot_update_on_postgres(sealer: Sealer, rec: Receiver) -> None:
    """Every lease is a heap-only update (no index written); the result that finishes a
    delivery is not (it takes the row out of the claim indexes)."""
    n = 12  # one page of the table: room for every lease's new row version
    with pg_schema() as url:
        with Store.open(url, upgrade=True) as store:
            app = new_app(store, ["event_read", "customer_read"])
            install(store, app)
            add_endpoint(store, app, f"{rec.url}/hot", ["*"], "live", by="dev",
                         sealer=sealer)
            accept_many(store, [(event("customer.updated"), None) for _ in range(n)])
            with DeliveryWorker(store, sealer=sealer, policy=FAST) as w:
                assert w.drain() == n
            assert {d.status for d in list_deliveries(store, app_id=app)} == {"delivered"}
        # The store is closed: its server processes ended and reported their statistics.
        wait_until(lambda: _hot_updates(url)[0] >= 2 * n, what="the statistics reported")
        updates, hot = _hot_updates(url)
    assert updates == 2 * n  # a lease and a result per delivery
    assert hot == n, (updates, hot)


def test_a_lease_taken_before_the_upgrade_still_holds(db_url: str, sealer: Sealer,
                                                      rec: Receiver) -> None:
    """A row leased the earlier way (its due time moved past the lease) is not claimed
    again after ev0004 until that time: an upgrade under a running worker sends nothing
    twice."""
    with Store.open(db_url, upgrade=True) as store:
        app = new_app(store, ["event_read", "customer_read"])
        install(store, app)
        add_endpoint(store, app, f"{rec.url}/old", ["*"], "live", by="dev", sealer=sealer)
        accept_many(store, [(event("customer.updated"), None) for _ in range(2)])
    engine = create(resolve_url(db_url))
    try:
        migrate.downgrade(engine, "c0002_oauth_pkce")  # the schema before ev0004
        old = sa.table("event_deliveries", sa.column("delivery_id"), sa.column("attempts"),
                       sa.column("next_attempt_at", deliveries.c.next_attempt_at.type))
        with engine.begin() as conn:
            # One of them leased by a worker of the earlier code, still running.
            first = conn.execute(sa.select(old.c.delivery_id).order_by(
                old.c.delivery_id).limit(1)).scalar_one()
            conn.execute(old.update().where(old.c.delivery_id == first).values(
                attempts=1, next_attempt_at=datetime.now(UTC) + timedelta(minutes=5)))
    finally:
        engine.dispose()
    with Store.open(db_url, upgrade=True) as store:
        with DeliveryWorker(store, sealer=sealer, policy=FAST) as w:
            assert w.drain() == 1  # the other one; the leased one waits for its lease
        by_id = {d.delivery_id: d for d in list_deliveries(store, app_id=app)}
    assert by_id[first].status == "pending" and by_id[first].attempts == 1
    assert [d.status for i, d in by_id.items() if i != first] == ["delivered"]
    assert len(rec.at("/old")) == 1
