"""Running a gateway: permgate's own protocol server (native.py, the default), or granian or
uvicorn as ASGI servers; one process or several. What the gateway serves beside the proxy is
its composer's business (permgate/serve.py builds it and hands `run` the builder)."""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn

from permgate import envvars
from permgate.gateway.app import Gateway
from permgate.gateway.config import Settings
from permgate.gateway.logs import log_config

SETTINGS_ENV = envvars.GATEWAY_RESOLVED.name  # hands resolved settings to worker processes
MAX_REQUEST_HEAD = 65_536  # bytes a server buffers for a request line and headers
log = logging.getLogger("permgate.gateway")
# What a native worker runs on its listening socket until stopped (native.serve's shape).
Serve = Callable[[Any, socket.socket], Coroutine[Any, Any, None]]


def server_name(settings: Settings) -> str:
    """`auto` is the native server (measured the fastest, bench/bench_gateway.py)."""
    return "native" if settings.server == "auto" else settings.server


def settings_from_env() -> Settings:
    """The resolved settings a worker process was started with (`run` puts them there)."""
    return Settings.from_json(envvars.GATEWAY_RESOLVED.require())


def run(settings: Settings, make: Callable[[], Gateway], factory: str,
        serve: Serve | None = None) -> None:
    """Serve: `make()` builds a Gateway in this process (or each forked native worker);
    `factory` ("module:function") is the same builder by name, for the ASGI servers' own
    worker processes, which import it after reading `settings_from_env()`. `serve`: what
    each native worker runs (default `native.serve`; `permgate authz` has its own)."""
    name = server_name(settings)
    # Workers (and granian's, always) build the app from the environment.
    envvars.GATEWAY_RESOLVED.put(settings.to_json())
    metrics_dir = None
    if settings.workers > 1:
        # Every worker writes its counts here; any worker's /metrics adds them all up.
        metrics_dir = tempfile.mkdtemp(prefix="permgate-metrics-")
        envvars.METRICS_DIR.put(metrics_dir)
    try:
        if name == "granian":
            _run_granian(settings, factory)
        elif name == "uvicorn":
            _run_uvicorn(settings, make, factory)
        else:
            run_native(settings, make, serve)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


# -- the native server's process model ----------------------------------------------------

def run_native(settings: Settings, make: Any, serve: Serve | None = None) -> None:
    """One process serving (`workers == 1`), or a supervisor forking `workers` processes
    that each listen on the address with SO_REUSEPORT (the kernel spreads connections
    evenly over them) and replacing any that dies. `make()` builds each worker's Gateway."""
    logging.config.dictConfig(log_config())
    if settings.workers == 1:
        sock = _listen(settings, reuse_port=False)
        _worker(make, sock, serve)
        return
    # Bound, never listening: holds the address (and reports it in use) for the workers.
    holder = _listen(settings, reuse_port=True)
    children: dict[int, float] = {}
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                holder.close()
                _worker(make, _listen(settings, reuse_port=True), serve)
                code = 0
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def on_signal(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for _ in range(settings.workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        log.warning("worker %d exited (status %d); starting another", pid, status)
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)  # a worker dying at start: do not spin
        if not stopping:
            spawn()
    holder.close()


def _listen(settings: Settings, reuse_port: bool) -> socket.socket:
    from permgate.gateway.native import listen_socket

    return listen_socket(settings.host, settings.port, reuse_port=reuse_port)


def _worker(make: Any, sock: socket.socket, serve: Serve | None = None) -> None:
    import uvloop

    from permgate.gateway.native import serve as native_serve

    gateway = make()
    uvloop.run((serve or native_serve)(gateway, sock))
    sock.close()
    sys.stderr.flush()


# -- ASGI servers -------------------------------------------------------------------------

def _run_granian(settings: Settings, factory: str) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    Granian(
        factory, factory=True, address=settings.host,
        port=settings.port, interface=Interfaces.ASGI, workers=settings.workers,
        loop=Loops.uvloop, backlog=4096, log_enabled=True, log_access=False,
        log_dictconfig=log_config(),
        # A request head larger than this is refused by the server itself (the default,
        # about 400 KB, let huge Authorization values through to the application).
        http1_settings=HTTP1Settings(max_buffer_size=MAX_REQUEST_HEAD),
    ).serve()


def _run_uvicorn(settings: Settings, make: Callable[[], Gateway], factory: str) -> None:
    common: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "loop": "uvloop", "http": "httptools",
        "lifespan": "on", "access_log": False, "server_header": False, "date_header": False,
        "log_config": log_config(), "timeout_keep_alive": 75, "backlog": 4096,
    }
    if settings.workers == 1:
        uvicorn.run(make(), **common)
    else:
        uvicorn.run(factory, factory=True,
                    workers=settings.workers, **common)
