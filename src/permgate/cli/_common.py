"""What several command modules share: flags declared once, the current user, the store.

Nothing here (nor at the top of any command module) may import SQLAlchemy, Alembic, the
gateway, events or scan: `permgate check` must not pay for them (tests/test_cli_common.py).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from permgate.cli import EXIT_DENIED, EXIT_FINDINGS, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from permgate.store import Store

# The store's modes (permgate.store.MODES; a test keeps the two equal). Declared here so that
# building the parser does not import the store and SQLAlchemy.
MODES: tuple[str, ...] = ("live", "test", "sandbox")

DB_HELP = ("the store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: $PERMGATE_DB, "
           "else the nearest .permgate/permgate.db up from here, else "
           "$XDG_DATA_HOME/permgate/permgate.db)")


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def db_url(text: str) -> str:
    """`--db` value: an empty one is a mistake, never "the default database"."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "is empty; give sqlite:///PATH or postgresql://..., or leave --db out for the "
            "default database")
    return text


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", type=db_url, default=None, help=DB_HELP)


API_HELP = ("the API DIR to decide for, made by `permgate init --from-openapi` (default: "
            "$PERMGATE_API, else Stripe's built-in tables)")


def add_api(p: argparse.ArgumentParser) -> None:
    """`--api DIR`: the command decides for that API (the CLI's main selects it, see
    `select_api`)."""
    p.add_argument("--api", dest="api_dir", metavar="DIR", default=None, help=API_HELP)


def select_api(args: argparse.Namespace) -> None:
    """Make `--api DIR` (or $PERMGATE_API) the API this process decides for; Stripe's when
    neither is given. A DIR whose spec changed since `init` is used, with a warning (only
    `serve` refuses it)."""
    from permgate import envvars

    given = args.api_dir or envvars.API.get()
    if not given:
        return
    import permgate
    from permgate.api.profile import spec_changed

    try:
        _, profile = permgate.use_api(given)
    except permgate.ApiDirError as e:
        raise CliError(str(e)) from None
    why = spec_changed(profile)
    if why is not None:
        warn(why)


def add_format(p: argparse.ArgumentParser, *, sarif: bool = False,
               what: str = "the result") -> None:
    """`--format text|json[|sarif]`, with `--json` kept as a short alias of `--format json`."""
    choices = ("text", "json", "sarif") if sarif else ("text", "json")
    p.add_argument("--format", choices=choices, default="text",
                   help=f"how to print {what}: {', '.join(choices)} (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="the same as --format json")


def add_app(p: argparse.ArgumentParser, *, optional: bool = False,
            what: str = "the app's id, e.g. com.example.app") -> None:
    """The app, always as the positional APP (for filters also `--app APP`, the old spelling)."""
    if not optional:
        p.add_argument("app_id", metavar="APP", help=what)
        return
    p.add_argument("app_id", metavar="APP", nargs="?", default=None,
                   help=f"only this app ({what})")
    p.add_argument("--app", dest="app_flag", metavar="APP", default=None,
                   help="the same as the positional APP")


def app_of(args: argparse.Namespace, *, required: bool = False) -> str | None:
    """The app named by the positional APP or by `--app` (both: they must agree)."""
    pos, flag = getattr(args, "app_id", None), getattr(args, "app_flag", None)
    if pos and flag and pos != flag:
        raise CliError(f"two different apps named: {pos} and --app {flag}")
    app = pos or flag
    if required and not app:
        raise CliError("name the app: APP (e.g. com.example.app)")
    return app


def exit_codes(*lines: str) -> str:
    """The epilog every command shows: its exit codes, one per line."""
    return "exit codes:\n" + "\n".join(f"  {line}" for line in lines)


STORE_EXITS = exit_codes(
    "0  done",
    "1  refused by the store: not found, conflict, database not set up or unreachable",
    "2  bad input (arguments, --db, manifest)",
    "3  not allowed (only an account administrator may do this; events the app may not "
    "receive)",
)


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print `data` as JSON under --format json, else the text."""
    print(json.dumps(data, indent=2) if args.format == "json" else text())


def warn(message: str) -> None:
    print(f"permgate: warning: {message}", file=sys.stderr)


@contextmanager
def open_store(db: str | None, *, upgrade: bool = False,
               progress: bool = False) -> Iterator[Store]:
    """The store, with its refusals turned into one-line CLI errors (3: not allowed)."""
    import sqlalchemy as sa

    from permgate.events import SealError, SubscriptionRefused
    from permgate.events.targets import TargetRefused
    from permgate.store import Forbidden, Store, StoreError

    try:
        store = Store.open(db, upgrade=upgrade, progress=progress)
    except StoreError as e:
        bad_input = e.code in ("bad_database_url", "not_a_database", "api_mismatch",
                               "api_tables_changed")
        raise CliError(e.message, EXIT_USAGE if bad_input else EXIT_FINDINGS) from None
    try:
        yield store
    except (Forbidden, SubscriptionRefused) as e:
        raise CliError(e.message, EXIT_DENIED) from None
    except TargetRefused as e:  # a URL webhooks may not go to: bad input
        raise CliError(e.message, EXIT_USAGE) from None
    except StoreError as e:
        raise CliError(e.message, EXIT_FINDINGS) from None
    except SealError as e:
        raise CliError(str(e), EXIT_FINDINGS) from None
    except sa.exc.DataError as e:  # e.g. a --by longer than the column holds
        raise CliError(f"the database refused a value: {str(e.orig).strip()}") from None
    finally:
        store.close()


def read_key_file(path: str | os.PathLike[str], what: str) -> str:
    """A secret from a file, or one clear line saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(64 * 1024)
    except FileNotFoundError:
        raise CliError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{what} {path}: is a folder, not a file") from None
    except PermissionError:
        raise CliError(f"{what} {path}: not readable (permission denied)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{what} {path}: cannot be read ({e})") from None
    if not text.strip():
        raise CliError(f"{what} {path}: the file is empty")
    return text


def shell_command() -> str:
    """How the user's shell can run this permgate again: the path that started it when
    `permgate` on PATH is not this one (scripts/permgate runs the venv's copy)."""
    import shlex
    import shutil

    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith("__main__.py"):
        return f"{shlex.quote(sys.executable)} -m permgate"
    if os.sep in argv0:
        on_path = shutil.which("permgate")
        mine = os.path.realpath(argv0)
        if on_path is None or os.path.realpath(on_path) != mine:
            return shlex.quote(os.path.abspath(argv0))
    return "permgate"
