"""What several command modules share: the current user and the store with CLI errors."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from permgate.cli import EXIT_DENIED, EXIT_FINDINGS, EXIT_USAGE, CliError
from permgate.store import Forbidden, Store, StoreError


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@contextmanager
def open_store(db: str | None, *, upgrade: bool = False) -> Iterator[Store]:
    """The store, with its refusals turned into one-line CLI errors (3: not allowed)."""
    from permgate.events import SealError, SubscriptionRefused
    from permgate.events.targets import TargetRefused

    try:
        store = Store.open(db, upgrade=upgrade)
    except StoreError as e:
        raise CliError(e.message, EXIT_FINDINGS) from None
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
