"""Alembic environment: always run programmatically by `permgate.store.migrate`.

The caller hands over an open connection in `config.attributes["connection"]`, so migrations
run on the same engine (and PostgreSQL search_path) as the store itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from permgate.store.schema import metadata


def _run(connection: Connection) -> None:
    hook = context.config.attributes.get("on_version_apply")  # migrate.upgrade's progress
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True,
        transaction_per_migration=True, on_version_apply=hook,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("permgate migrations run through `permgate db upgrade`, not alembic's CLI")
_run(_connection)
