"""Schema migrations: from empty, checked at open, and matching the tables the code uses."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from permgate.cli import main
from permgate.store import SchemaOutOfDate, Store, StoreError, migrate, schema
from permgate.store.engine import create, resolve_url

# Other layers (events) put their tables on the same MetaData; they check their own.
STORE_TABLES = {"permgate_state", "apps", "app_versions", "installs", "api_keys", "audit_log"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in STORE_TABLES


def test_open_refuses_an_unmigrated_database(db_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="permgate db upgrade"):
        Store.open(db_url)


def test_db_upgrade_from_empty(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "check", "--db", db_url]) == 1
    assert "permgate db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert main(["db", "upgrade", "--db", db_url]) == 0  # idempotent
    assert main(["db", "check", "--db", db_url]) == 0
    with Store.open(db_url) as store:
        assert store.change_counter() == 0
        assert store.list_apps() == []


def test_migrated_schema_matches_the_code(db_url: str) -> None:
    engine = create(resolve_url(db_url))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _ours})
            diffs = compare_metadata(context, schema.metadata)
        assert diffs == []
        migrate.downgrade(engine, "base")
        assert migrate.current(engine) is None
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://localhost/x")
    with pytest.raises(StoreError, match="not a database URL"):
        Store.open("::nope::")


# Every head `main` has had, in order: a database left at any of them upgrades to today's.
EARLIER_HEADS = ["0001", "ev0001", "c0001_consent", "ev0002", "ev0003",
                 "c0002_oauth_pkce", "ev0004_delivery_leases"]


def test_one_linear_chain() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate._config())
    assert script.get_heads() == [migrate.head()]
    chain = [rev.revision for rev in script.walk_revisions("base", "heads")][::-1]
    assert chain[:len(EARLIER_HEADS)] == EARLIER_HEADS
    assert chain == [*EARLIER_HEADS, "ap0001_store_api"]


@pytest.mark.parametrize("start", EARLIER_HEADS)
def test_upgrade_from_each_earlier_head(db_url: str, start: str) -> None:
    engine = create(resolve_url(db_url))
    try:
        migrate.upgrade(engine, start)
        assert migrate.current(engine) == start
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        import permgate.events.schema
        import permgate.store.consent_schema  # their tables join the metadata too

        assert permgate.events.schema.webhook_endpoints.metadata is schema.metadata
        with engine.connect() as conn:
            # The whole schema (store, events, consent): what the code uses, nothing else.
            diffs = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert diffs == []
    finally:
        engine.dispose()
