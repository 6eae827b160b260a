"""A tiny upstream of our own that records what reaches it (for the forwarding tests).

Paths it knows: /v1/customers/cus_slow (answers after `slow_seconds`), /v1/customers/cus_drop
(closes the connection without answering), /v1/customers/cus_big (a chunked 1 MiB body);
anything else echoes the request as JSON.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BIG = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class Recorder:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    slow_seconds: float = 3.0

    def paths(self) -> list[str]:
        return [r["target"] for r in self.requests]


def _handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                body = self._chunked()
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            seen = {"method": self.command, "target": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    # Every header line, repeats kept (`headers` keeps the last of each).
                    "header_lines": [(k.lower(), v) for k, v in self.headers.items()],
                    "body": body.decode("latin-1"), "peer_port": self.client_address[1]}
            rec.requests.append(seen)
            if self.path.startswith("/v1/customers/cus_slow"):
                time.sleep(rec.slow_seconds)
            if self.path.startswith("/v1/customers/cus_drop"):
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if self.path.startswith("/v1/customers/cus_big"):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(BIG), 65536):
                    part = BIG[i:i + 65536]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            out = json.dumps({"object": "echo", **seen}).encode()
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.send_header("Request-Id", "req_from_upstream")
            self.send_header("X-Upstream-Header", "kept")
            self.end_headers()
            self.wfile.write(out)

        def _chunked(self) -> bytes:
            """A chunked body, de-chunked (a proxy may forward a body so): its trailer
            lines are read and dropped."""
            body = b""
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline(8)  # the CRLF after the chunk

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

    return Handler


@contextmanager
def recording_upstream() -> Iterator[Recorder]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    rec = Recorder(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(rec)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
