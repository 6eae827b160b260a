"""Building the gateway from settings and running it on uvicorn (uvloop + httptools)."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import uvicorn

from permgate.gateway.app import ASGIApp, Gateway
from permgate.gateway.config import Settings
from permgate.gateway.logs import log_config
from permgate.gateway.resolver import GrantStore

SETTINGS_ENV = "PERMGATE_GATEWAY_RESOLVED"  # hands resolved settings to worker processes
MAX_REQUEST_HEAD = 65_536  # bytes the server buffers for a request line and headers
log = logging.getLogger("permgate.gateway")


def build(settings: Settings) -> Gateway:
    def open_store() -> GrantStore:
        from permgate.store import Store

        return Store.open(settings.db)

    def admin_app(store: GrantStore) -> ASGIApp | None:
        if not settings.admin_token:
            return None
        from permgate.admin import create_admin_app
        from permgate.store import Store

        assert isinstance(store, Store)
        app: ASGIApp = create_admin_app(store, settings.admin_token)
        return app

    def console_app(store: GrantStore) -> ASGIApp | None:
        from permgate.console import create_console_app
        from permgate.store import Store

        if not isinstance(store, Store):
            return None
        app: ASGIApp = create_console_app(store)
        return app

    return Gateway(settings, open_store, admin_app, console_app)


def app_from_env() -> Gateway:
    """uvicorn's factory in each worker process (`--workers N`)."""
    return build(Settings.from_json(os.environ[SETTINGS_ENV]))


def server_name(settings: Settings) -> str:
    """granian when installed (measured the faster, bench/bench_gateway.py), else uvicorn."""
    if settings.server != "auto":
        return settings.server
    return "granian" if importlib.util.find_spec("granian") is not None else "uvicorn"


def run(settings: Settings) -> None:
    name = server_name(settings)
    # Workers (and granian's, always) build the app from the environment.
    os.environ[SETTINGS_ENV] = settings.to_json()
    if name == "granian":
        _run_granian(settings)
    else:
        _run_uvicorn(settings)


def _run_granian(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    Granian(
        "permgate.gateway.server:app_from_env", factory=True, address=settings.host,
        port=settings.port, interface=Interfaces.ASGI, workers=settings.workers,
        loop=Loops.uvloop, backlog=4096, log_enabled=True, log_access=False,
        log_dictconfig=log_config(),
        # A request head larger than this is refused by the server itself (the default,
        # about 400 KB, let huge Authorization values through to the application).
        http1_settings=HTTP1Settings(max_buffer_size=MAX_REQUEST_HEAD),
    ).serve()


def _run_uvicorn(settings: Settings) -> None:
    common: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "loop": "uvloop", "http": "httptools",
        "lifespan": "on", "access_log": False, "server_header": False, "date_header": False,
        "log_config": log_config(), "timeout_keep_alive": 75, "backlog": 4096,
    }
    if settings.workers == 1:
        uvicorn.run(build(settings), **common)
    else:
        uvicorn.run("permgate.gateway.server:app_from_env", factory=True,
                    workers=settings.workers, **common)
