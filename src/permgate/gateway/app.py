"""The gateway: its lifecycle, and the parts it is composed of.

- `calls.Calls`: who is calling and may they (key -> account -> install -> grant, and the
  decision), written once for both paths;
- `proxy.FullPath`: the full path, any call on any server (`Gateway.proxy`);
- `fast.FastPath`: the native server's fast path, the same checks with their results
  cached (`Gateway.admit`);
- `control.Control`: `/healthz`, `/readyz`, `/metrics`;
- `mounts.MountTable`: ASGI apps served beside the proxy (the gateway's own control paths,
  and what its composer `permgate.serve` hands it as `Mount`s: the gateway imports none of
  those services, docs/architecture.md), each with its own body limit.

Any ASGI server reaches all of it through `Gateway.__call__`; the native server
(`native.py`) calls `proxy`, `admit` and the mounted apps directly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from permgate.api.profile import STRIPE_PROFILE, ApiDirError, ApiProfile
from permgate.gateway.calls import Calls, HeaderValues
from permgate.gateway.config import ConfigError, Settings, upstream_keys
from permgate.gateway.control import CONTROL_BODY_LIMIT, CONTROL_PATHS, Control
from permgate.gateway.fast import Admitted, FastPath
from permgate.gateway.logs import JsonLog, RequestIds
from permgate.gateway.metrics import Metrics, SharedMetrics
from permgate.gateway.mounts import (
    Compose,
    Mount,
    MountTable,
    invalidating,
    serve_asgi,
)
from permgate.gateway.notify import conninfo, listen
from permgate.gateway.proxy import (
    ASGIApp,
    AsgiReply,
    FullPath,
    Headers,
    Message,
    Receive,
    Reply,
    Scope,
    Send,
    read_body,
    relay_headers,
    relay_lines,
)
from permgate.gateway.resolver import GrantStore, Resolver
from permgate.gateway.upstream import Origin, Pool

# Names other modules and tests import from here.
__all__ = [
    "ASGIApp", "Admitted", "AsgiReply", "Compose", "Gateway", "Headers", "Message", "Mount",
    "Receive", "Reply", "Scope", "Send", "relay_headers", "relay_lines",
]

log = logging.getLogger("permgate.gateway")

Proxy = Callable[..., Any]  # FullPath.proxy
Admit = Callable[[str, bytes, bytes, Sequence[tuple[bytes, bytes]]], Admitted | None]


def upstream_authorization(scheme: str, key: str) -> bytes:
    """The Authorization value the gateway presents upstream (api.toml upstream.auth_scheme:
    Stripe's is Bearer)."""
    if scheme == "basic":
        import base64

        # Stripe's form is the key as user and no password ("sk_...:"); a credential that
        # already is user:password is sent as it is (RFC 7617).
        raw = key.encode("utf-8")
        return b"Basic " + base64.b64encode(raw if b":" in raw else raw + b":")
    return b"Bearer " + key.encode("utf-8")


async def _not_started(*args: Any) -> None:
    raise RuntimeError("the gateway has not started")


def _not_admitted(*args: Any) -> Admitted | None:
    return None


class Gateway:
    def __init__(
        self,
        settings: Settings,
        open_store: Callable[[], GrantStore],
        compose: Compose | None = None,
    ) -> None:
        self.settings = settings
        self.open_store = open_store
        self.compose = compose
        self.metrics = Metrics()
        self.shared_metrics = SharedMetrics.from_env(self.metrics)
        self.ids = RequestIds()
        self.log = JsonLog()
        self.report_only = settings.report_only
        self.body_limit = settings.body_limit
        self.access_log = settings.access_log
        # The API: Stripe's built-in tables, or an API DIR (`api` setting). Its profile's
        # choices are compiled into the parts below once; no request branches on it.
        # The process's API (`permgate.use_api`) is set to it too: the consent pages, events
        # and manifest checks served beside the proxy then use the same catalog.
        self.engine: Any = None  # Stripe's: imported at startup (its tables load there)
        self.profile: ApiProfile = STRIPE_PROFILE
        import permgate

        if settings.api:
            try:
                self.engine, self.profile = permgate.use_api(settings.api, check_spec=True)
            except ApiDirError as e:
                raise ConfigError(str(e)) from None
        else:
            # Stripe's, even when something earlier in this process chose another API: the
            # consent pages, admin and events must use the catalog the proxy decides with.
            permgate.use_api(None)
        untagged = None if self.profile.stripe else self.profile.untagged_key_modes
        self.auth_by_mode: dict[str, bytes] = {
            mode: upstream_authorization(self.profile.upstream_auth, key)
            for mode, key in upstream_keys(settings, untagged=untagged).items()
        }
        # Sandboxes are test-mode accounts upstream: a sandbox install's restricted key
        # is forwarded with the test key.
        if "test" in self.auth_by_mode:
            self.auth_by_mode["sandbox"] = self.auth_by_mode["test"]
        self.headers = HeaderValues(frozenset(
            s.encode("ascii") for s in self.profile.auth_schemes))
        self.control = Control(
            self.metrics, self.shared_metrics,
            tuple(t.encode("utf-8") for t in (settings.metrics_token, settings.admin_token)
                  if t),
            settings.connect_timeout)
        self.mounts = MountTable(settings.body_limit)
        self.mount = self.mounts.mount
        self.mounted = self.mounts.mounted  # asked on every request: no extra call
        self.store: GrantStore | None = None
        self.resolver: Resolver | None = None
        self.pool: Pool | None = None
        self.calls: Calls | None = None
        self.full: FullPath | None = None
        self.fast: FastPath | None = None
        # Bound to the parts' methods at startup (direct calls on the request's path).
        self.proxy: Proxy = _not_started
        self.admit: Admit = _not_admitted

    def make_calls(self, resolver: Resolver, decide: Callable[..., Any]) -> Calls:
        """The caller resolution and decision both paths use."""
        return Calls(resolver, decide, self.auth_by_mode, self.headers, self.profile)

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        engine = self.engine
        if engine is None:
            import permgate  # Stripe's engine loads its tables here, once per worker

            engine = permgate.engine
        known = engine.catalog.permissions

        def compile_grant(names: Any) -> Any:
            # Names the catalog no longer knows grant nothing (fail closed).
            return engine.grant(n for n in names if n in known)

        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(None, self.open_store)
        # SQLAlchemy's engine: its URL keeps the password, which the store's `url` hides.
        db_engine = getattr(self.store, "engine", None)
        sqlite_path = None
        if db_engine is not None and db_engine.url.get_backend_name() == "sqlite":
            name = db_engine.url.database
            if name and name != ":memory:" and not name.startswith("file:"):
                sqlite_path = os.path.abspath(name)
        self.resolver = resolver = Resolver(
            self.store, compile_grant, self.settings.refresh_interval,
            sqlite_path=sqlite_path)
        dsn = None if db_engine is None else conninfo(db_engine.url)
        await resolver.start(
            None if dsn is None else (lambda: listen(dsn, resolver.invalidate)))
        assert self.settings.upstream is not None
        self.pool = pool = Pool(
            Origin(self.settings.upstream), self.settings.pool_size,
            self.settings.connect_timeout, self.settings.upstream_timeout,
            self.settings.pool_per_app,
        )
        self.calls = calls = self.make_calls(resolver, engine.decide)
        self.full = full = FullPath(
            calls, pool, self.metrics, self.log, self.ids, body_limit=self.body_limit,
            report_only=self.report_only, access_log=self.access_log,
            upstream_timeout=self.settings.upstream_timeout,
            problem=self.profile.error_style == "problem")
        self.fast = fast = FastPath(calls, full, pool, self.metrics, self.log, self.ids,
                                    access_log=self.access_log)
        self.proxy = full.proxy
        self.admit = fast.admit
        self.control.resolver = resolver
        self.control.pool = pool
        if self.shared_metrics is not None:
            self.shared_metrics.start()

        # The gateway's own paths, then what its composer (permgate/serve.py) mounts:
        # docs/gateway.md lists them all.
        for path in CONTROL_PATHS:
            self.mount(path.decode("ascii"), self.control, body_limit=CONTROL_BODY_LIMIT)
        for m in self.compose(self.store) if self.compose is not None else ():
            self.mount(m.path, invalidating(m.app, resolver) if m.invalidates else m.app,
                       prefix=m.prefix, body_limit=m.body_limit)
        # The engine's tables and everything loaded so far live as long as the process: out
        # of the collector's sight, a full collection no longer walks them (measured: p99
        # went from ~100 ms to a few ms under load, bench/bench_gateway.py).
        gc.collect()
        gc.freeze()
        self.log.write("gateway.started", upstream=self.settings.upstream,
                       report_only=self.report_only)

    async def shutdown(self) -> None:
        self.log.flush()
        if self.shared_metrics is not None:
            self.shared_metrics.stop()
        if self.resolver is not None:
            await self.resolver.stop()
        if self.pool is not None:
            self.pool.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI entry (granian, uvicorn; the native server calls proxy() directly) ------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
            mounted = self.mounted(raw_path)
            if mounted is not None:
                await serve_asgi(mounted, scope, receive, send)
                return
            limit = self.body_limit

            async def read() -> bytes | None:
                return await read_body(receive, limit)

            await self.proxy(scope["method"], raw_path, scope["query_string"],
                             scope["headers"], read, AsgiReply(send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
