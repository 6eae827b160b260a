"""For upstreams that cannot push: read `GET /v1/events` and accept what is new.

The cursor is the newest `created` seen, stored per (upstream, account). Each pass asks for
`created[gte]=cursor` and pages with `starting_after` to the end; events of the cursor's own
second come again and are dropped as duplicates by id. The cursor moves only after a whole
pass, because Stripe lists newest first: a pass cut short must not skip the older pages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from permgate import boundedjson
from permgate.errors import PermgateError
from permgate.events.db import utcnow, writing
from permgate.events.outbox import BadEvent, Router, accept_many
from permgate.events.schema import poll_cursors
from permgate.store import Store

PAGE = 100
log = logging.getLogger("permgate.events.poller")


@dataclass(frozen=True, slots=True)
class PollResult:
    fetched: int
    accepted: int
    duplicates: int
    cursor: int


class PollError(PermgateError):
    """The upstream's events list could not be read; the message says why."""


class Poller:
    def __init__(
        self, store: Store, upstream: str, api_key: str, *, account: str,
        connect_header: bool = False, client: httpx.Client | None = None, since: int = 0,
    ) -> None:
        """`account`: whose events these are; `connect_header`: send it as `Stripe-Account`
        (a platform polling a connected account); `since`: where a first run starts."""
        self.store = store
        self.base = upstream.rstrip("/")
        self.account = account
        self.source = f"{self.base}|{account}"
        self.since = since
        headers = {"Authorization": f"Bearer {api_key}"}
        if connect_header:
            headers["Stripe-Account"] = account
        self._http = client or httpx.Client(timeout=30.0)
        self._headers = headers
        self._router = Router(store)

    def close(self) -> None:
        self._http.close()

    def cursor(self) -> int:
        with self.store.engine.connect() as conn:
            value = conn.execute(sa.select(poll_cursors.c.created_gte).where(
                poll_cursors.c.source == self.source)).scalar()
        return self.since if value is None else int(value)

    def _save(self, cursor: int) -> None:
        with writing(self.store) as conn:
            updated = conn.execute(poll_cursors.update().where(
                poll_cursors.c.source == self.source).values(
                created_gte=cursor, updated_at=utcnow())).rowcount
            if not updated:
                conn.execute(poll_cursors.insert().values(
                    source=self.source, created_gte=cursor, updated_at=utcnow()))

    def _page(self, cursor: int, after: str | None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": PAGE, "created[gte]": cursor}
        if after is not None:
            params["starting_after"] = after
        resp = self._http.get(f"{self.base}/v1/events", params=params, headers=self._headers)
        if resp.status_code != 200:
            raise PollError(f"GET /v1/events answered {resp.status_code}: {resp.text[:200]}")
        try:
            page = boundedjson.loads(resp.content)  # no RecursionError on hostile nesting
        except boundedjson.JsonRefused as e:
            raise PollError(f"GET /v1/events answered something that is not a page: {e}") \
                from None
        if not isinstance(page, dict):
            raise PollError("GET /v1/events answered something that is not a page")
        return page

    def poll_once(self) -> PollResult:
        start = self.cursor()
        newest, fetched, fresh, dups = start, 0, 0, 0
        after: str | None = None
        while True:
            page = self._page(start, after)
            data = [ev for ev in page.get("data") or [] if isinstance(ev, dict)]
            # One transaction per page: the events and all their deliveries.
            results = accept_many(self.store, [(ev, None) for ev in data],
                                  account=self.account, source="poll", router=self._router)
            for ev, result in zip(data, results, strict=True):
                fetched += 1
                if isinstance(result, BadEvent):
                    # Skipped, not fatal: a malformed entry must not stop the cursor forever.
                    log.warning("skipped an invalid event from %s: %s", self.base,
                                result.message)
                elif result.duplicate:
                    dups += 1
                else:
                    fresh += 1
                if isinstance(ev.get("created"), int):
                    newest = max(newest, ev["created"])
            if not page.get("has_more") or not data:
                break
            after = str(data[-1]["id"])
        if newest != start:
            self._save(newest)
        return PollResult(fetched, fresh, dups, newest)

    def run(self, stop: Any, interval: float = 5.0) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.poll_once()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
