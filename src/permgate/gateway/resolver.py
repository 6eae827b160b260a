"""Keys and grants, cached in process and dropped within one refresh of a store change.

The store's change counter is polled every `refresh_interval` seconds (one indexed row read);
every replica on the same database sees the same counter, so an uninstall made through any
of them is enforced by all within one interval. A lookup that started before a change is not
cached after it (the generation check), so a stale answer never outlives the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from permgate.store.model import EffectiveGrant, KeyInfo

T = TypeVar("T")
log = logging.getLogger("permgate.gateway")

# Unknown keys are cached too (a client retrying a bad key must not hit the database every
# time), but a flood of random keys must not grow memory without bound.
MAX_CACHED_KEYS = 50_000


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
    ) -> None:
        self.store = store
        self.compile_grant = compile_grant
        self.refresh_interval = refresh_interval
        self.generation = 0
        self.counter: int | None = None
        self._keys: dict[str, KeyInfo | None] = {}
        self._installs: dict[tuple[str, str, str], Install | None] = {}
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="permgate-store")
        self._tasks: list[asyncio.Task[None]] = []

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Store calls block (SQLAlchemy): keep them off the event loop.
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def cached_key(self, secret: str) -> KeyInfo | None:
        """The cached answer, or `MISS`; the hot path's allocation-free check."""
        hit: KeyInfo | None = self._keys.get(secret, MISS)
        # Keys that end by themselves (OAuth access tokens, rotated keys in their grace
        # period) leave the cache when they end, not at the next store change.
        if hit is not MISS and hit is not None and hit.expires is not None \
                and hit.expires <= time.time():
            del self._keys[secret]
            return MISS  # type: ignore[no-any-return]
        return hit

    async def authenticate(self, secret: str) -> KeyInfo | None:
        hit = self.cached_key(secret)
        if hit is not MISS:
            return hit
        generation = self.generation
        info = await self._call(self.store.authenticate, secret)
        if generation == self.generation:
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[secret] = info
        return info

    def cached_install(self, app_id: str, account: str, mode: str) -> Install | None:
        """The cached answer, or `MISS`."""
        return self._installs.get((app_id, account, mode), MISS)

    async def install(self, app_id: str, account: str, mode: str) -> Install | None:
        key = (app_id, account, mode)
        hit = self._installs.get(key, MISS)
        if hit is not MISS:
            return hit  # type: ignore[no-any-return]
        generation = self.generation
        found = await self._call(self._load_install, app_id, account, mode)
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

    async def check_database(self) -> int:
        return await self._call(self.store.change_counter)

    async def refresh_once(self) -> None:
        counter = await self.check_database()
        if counter != self.counter:
            if self.counter is not None:
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
