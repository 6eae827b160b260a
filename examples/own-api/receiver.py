"""A webhook receiver for the walkthrough: prints one line per event it gets, `PATH TYPE`.

    python receiver.py --port 3000

(A real receiver verifies the `Stripe-Signature` header with its endpoint's secret first:
permgate signs deliveries as Stripe does, whatever the API.)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Deliveries arrive on several threads at once: one write per line, under a lock, or two
# lines could interleave (print writes the text and its newline separately).
_OUT = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), 1 << 20)
        event = json.loads(self.rfile.read(length) or b"{}")
        with _OUT:
            sys.stdout.write(f"{self.path} {event.get('type')}\n")
            sys.stdout.flush()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per event is the output


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the events delivered here.")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
