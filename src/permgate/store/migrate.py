"""Schema migrations (Alembic), run programmatically from the package's own scripts."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from permgate._progress import progress as show_progress

SCRIPT_LOCATION = "permgate.store:migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    return cfg


def head() -> str:
    heads = ScriptDirectory.from_config(_config()).get_heads()
    assert len(heads) == 1, f"migrations must have one head, found {heads}"
    return heads[0]


def known_revisions() -> set[str]:
    return {r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()}


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_of(conn)


def upgrade(engine: Engine, revision: str = "head", *, progress: bool = False) -> str | None:
    """Bring the schema to `revision`; `progress`: a bar on stderr, one step per migration,
    when stderr is a terminal (permgate._progress). Returns the revision found before (None:
    an empty database, now created)."""
    cfg = _config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        before = current_of(conn)
        steps = _pending(cfg, before, revision) if progress else 0
        with show_progress("upgrading the database", steps, enabled=steps > 0) as bar:
            # env.py hands this to Alembic's on_version_apply: called after each migration.
            cfg.attributes["on_version_apply"] = lambda **_: bar.advance()
            command.upgrade(cfg, revision)
        conn.commit()
    return before


def current_of(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _pending(cfg: Config, have: str | None, want: str) -> int:
    """How many migrations an upgrade from `have` to `want` runs."""
    script = ScriptDirectory.from_config(cfg)
    return sum(1 for _ in script.iterate_revisions(want, have or "base"))


def downgrade(engine: Engine, revision: str) -> None:
    cfg = _config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()
