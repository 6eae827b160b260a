"""Keys and grants, cached in process and dropped within one refresh of a store change.

The store's change counter is polled every `refresh_interval` seconds (one indexed row read);
every replica on the same database sees the same counter, so an uninstall made through any
of them is enforced by all within one interval. A lookup that started before a change is not
cached after it (the generation check), so a stale answer never outlives the interval.

A key's expiry (the end of a rotated key's grace period) moves no counter: each cached key
carries its expiry and is checked against the clock on every hit. A SQLite file replaced
under a running gateway (a restore, a copy) is noticed by its device and inode on every
refresh; the gateway then fails closed until it is restarted on the new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from permgate.errors import PermgateError
from permgate.store.model import EffectiveGrant, KeyInfo

T = TypeVar("T")
log = logging.getLogger("permgate.gateway")

# Unknown keys are cached too (a client retrying a bad key must not hit the database every
# time), but a flood of random keys must not grow memory without bound. Only well-formed
# keys (72 bytes, permgate.store.keys) ever reach this cache, so its size is bounded in bytes
# too: about 50,000 x 250 bytes.
MAX_CACHED_KEYS = 50_000


class StoreReplaced(PermgateError, RuntimeError):
    """The database file this gateway opened is no longer the file at its path."""


class GrantStore(Protocol):
    def authenticate(self, secret: str) -> KeyInfo | None: ...
    def effective_grant(self, app_id: str, account: str, mode: str) -> EffectiveGrant | None: ...
    def change_counter(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Install:
    grant: EffectiveGrant
    compiled: Any  # permgate.engine.grant(...) result: what decide() takes as `grants`


MISS: Any = object()


class Resolver:
    def __init__(
        self,
        store: GrantStore,
        compile_grant: Callable[[Iterable[str]], Any],
        refresh_interval: float,
        threads: int = 4,
        *,
        sqlite_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.compile_grant = compile_grant
        self.refresh_interval = refresh_interval
        self.generation = 0
        self.counter: int | None = None
        self.clock = clock
        self.sqlite_path = sqlite_path
        self.file_identity: tuple[int, int] | None = None
        self.replaced: str | None = None  # set once: the reason every lookup now fails
        # secret -> (answer, expiry as a Unix time; inf for keys that do not expire)
        self._keys: dict[str, tuple[KeyInfo | None, float]] = {}
        self._installs: dict[tuple[str, str, str], Install | None] = {}
        self._writes_seen = getattr(store, "writes", None)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="permgate-store")
        self._tasks: list[asyncio.Task[None]] = []

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Store calls block (SQLAlchemy): keep them off the event loop.
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _check_open(self) -> None:
        if self.replaced is not None:
            raise StoreReplaced(self.replaced)

    def cached_key(self, secret: str) -> KeyInfo | None:
        """The cached answer, or `MISS` (also once a cached key's expiry has passed)."""
        entry = self._keys.get(secret)
        if entry is None:
            return MISS  # type: ignore[no-any-return]
        if entry[1] <= self.clock():
            # Expired since it was cached: ask the store again (which refuses it).
            self._keys.pop(secret, None)
            return MISS  # type: ignore[no-any-return]
        return entry[0]

    def key_expiry(self, secret: str) -> float:
        """When the cached answer for `secret` stops holding (0 when none is cached)."""
        entry = self._keys.get(secret)
        return 0.0 if entry is None else entry[1]

    async def authenticate(self, secret: str) -> KeyInfo | None:
        self._check_open()
        hit = self.cached_key(secret)
        if hit is not MISS:
            return hit
        generation = self.generation
        info = await self._call(self.store.authenticate, secret)
        self._check_open()
        if generation == self.generation:
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            until = math.inf
            if info is not None and info.expires_at is not None:
                until = info.expires_at.timestamp()
            self._keys[secret] = (info, until)
        return info

    def cached_install(self, app_id: str, account: str, mode: str) -> Install | None:
        """The cached answer, or `MISS`."""
        return self._installs.get((app_id, account, mode), MISS)

    async def install(self, app_id: str, account: str, mode: str) -> Install | None:
        key = (app_id, account, mode)
        self._check_open()
        hit = self._installs.get(key, MISS)
        if hit is not MISS:
            return hit  # type: ignore[no-any-return]
        generation = self.generation
        found = await self._call(self._load_install, app_id, account, mode)
        self._check_open()
        if generation == self.generation:
            if len(self._installs) >= MAX_CACHED_KEYS:
                self._installs.clear()
            self._installs[key] = found
        return found

    def _load_install(self, app_id: str, account: str, mode: str) -> Install | None:
        # Sandboxes use test keys: a test-mode request may be for a sandbox install.
        modes = ("test", "sandbox") if mode == "test" else (mode,)
        for m in modes:
            eg = self.store.effective_grant(app_id, account, m)
            if eg is not None:
                return Install(eg, self.compile_grant(eg.approved))
        return None

    def invalidate(self) -> None:
        self.generation += 1
        self._keys.clear()
        self._installs.clear()

    def _identity(self) -> tuple[int, int] | None:
        if self.sqlite_path is None:
            return None
        try:
            st = os.stat(self.sqlite_path)
        except FileNotFoundError:
            return (-1, -1)  # removed: pooled connections would go on reading the old file
        return (st.st_dev, st.st_ino)

    def _read_state(self) -> int:
        # The file is stat'ed before and after the counter is read: a counter read from a
        # file other than the one this gateway opened is never trusted.
        identity = self._identity()
        if self.file_identity is None:
            self.file_identity = identity
        elif identity != self.file_identity:
            self._replaced()
        counter = self.store.change_counter()
        if self._identity() != self.file_identity:
            self._replaced()
        return counter

    def _replaced(self) -> None:
        self.replaced = (
            f"the database file {self.sqlite_path} was replaced while the gateway ran; "
            "restart the gateway to serve from the new file")
        raise StoreReplaced(self.replaced)

    async def check_database(self) -> int:
        self._check_open()
        return await self._call(self._read_state)

    async def refresh_once(self) -> None:
        counter = await self.check_database()
        if counter != self.counter:
            if self.counter is not None:
                self.invalidate()
            self.counter = counter

    async def catch_up(self) -> None:
        """Bind a change this worker just made before its answer leaves: the caches go only
        if the store changed (a refused request changes nothing, so it keeps them), or if
        that cannot be known (fail closed). A store that counts the changes committed
        through it (`Store.writes`: the mounted apps write through the gateway's own store)
        answers without a query; another is asked for its change counter."""
        writes = getattr(self.store, "writes", None)
        if isinstance(writes, int):
            if writes != self._writes_seen:
                self._writes_seen = writes
                self.invalidate()
            return
        try:
            counter = await self.check_database()
        except Exception as e:
            log.warning("store check after a change failed: %s", e)
            self.invalidate()
            self.counter = None
            return
        if counter != self.counter:
            self.invalidate()
            self.counter = counter

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Fail closed on what we cannot confirm: drop the caches and retry.
                log.warning("store refresh failed: %s", e)
                self.invalidate()
                self.counter = None
            await asyncio.sleep(self.refresh_interval)

    async def start(self, listen: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Start polling; `listen`, if given, runs beside (change notifications)."""
        await self.refresh_once()
        self._tasks.append(asyncio.create_task(self._refresh_forever()))
        if listen is not None:
            self._tasks.append(asyncio.create_task(listen()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._executor.shutdown(wait=False)
