"""Real pieces for the events tests: an HTTP receiver that counts, apps in a real store."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import pg

from permgate import manifest
from permgate.store import EffectiveGrant, Store

ACCOUNT = "acct_events1"
ADMIN = {"by": "admin@example.com", "role": "admin"}


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
    """Poll until true; the deadline only guards against a hang, it asserts no timing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A real HTTP server. `answer(path, n)` picks the status of the n-th request to path."""

    url: str
    received: list[Received] = field(default_factory=list)
    answer: Callable[[str, int], int] = lambda path, n: 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    tries: dict[str, int] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def event_ids(self, path: str) -> list[str]:
        return [str(r.event["id"]) for r in self.at(path)]


class _DeepQueueServer(ThreadingHTTPServer):
    # With the default accept queue (5), concurrent deliveries can be refused at connect,
    # and a refused attempt is retried: the receiver must not be the bottleneck measured.
    request_queue_size = 128


@contextmanager
def receiver() -> Iterator[Receiver]:
    rec: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                n = rec.tries.get(self.path, 0) + 1
                rec.tries[self.path] = n
            status = rec.answer(self.path, n)
            if 200 <= status < 300:
                with rec.lock:
                    rec.received.append(Received(self.path, body, dict(self.headers.items())))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _DeepQueueServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def manifest_for(app_id: str, version: str, permissions: list[str]) -> manifest.Manifest:
    data = {
        "id": app_id, "version": version, "name": f"App {app_id}", "icon": "",
        "permissions": [{"permission": p, "purpose": f"The app needs {p}."}
                        for p in permissions],
        "ui_extension": {"views": []},
    }
    return manifest.parse(json.dumps(data, indent=2) + "\n")


def new_app(store: Store, permissions: list[str], *, app_id: str | None = None,
            version: str = "1.0.0") -> str:
    app_id = app_id or f"com.example.ev{secrets.token_hex(4)}"
    store.upload_version(manifest_for(app_id, version, permissions), actor="dev")
    return app_id


def install(store: Store, app_id: str, mode: str = "live",
            account: str = ACCOUNT) -> EffectiveGrant:
    return store.install(app_id, account, mode, **ADMIN).grant


def event(event_type: str, *, account: str | None = ACCOUNT, livemode: bool = True,
          **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": f"evt_{secrets.token_hex(12)}", "object": "event", "type": event_type,
        "created": int(time.time()), "livemode": livemode,
        "data": {"object": {"id": "obj_1"}}, **extra,
    }
    if account is not None:
        ev["account"] = account
    return ev


def pg_schema() -> AbstractContextManager[str]:
    """A database URL whose search_path is a fresh schema, dropped afterwards (the server:
    tests/conftest.py, for tests marked `postgres`)."""
    return pg.pg_schema("permgate_ev")
