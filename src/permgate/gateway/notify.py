"""PostgreSQL change notifications: the store NOTIFYs `permgate_changes` on every change, so
replicas can drop their caches within milliseconds instead of at the next counter poll.

The poll stays on as the backstop: a lost connection or a missed notification costs at most
one refresh interval, never a stale grant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import URL, make_url

from permgate.store import NOTIFY_CHANNEL

log = logging.getLogger("permgate.gateway")


def conninfo(url: str | URL) -> str | None:
    """A libpq URI for a PostgreSQL store URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(dsn: str, on_change: Callable[[], None], retry_seconds: float = 1.0) -> None:
    """Call `on_change` on every notification, until cancelled; reconnects on failure."""
    import psycopg

    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            async with conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                on_change()  # whatever changed while we were not listening
                async for _ in conn.notifies():
                    on_change()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("LISTEN %s failed (%s); polling continues", NOTIFY_CHANNEL, e)
        await asyncio.sleep(retry_seconds)
