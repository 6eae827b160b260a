"""`permgate serve` without LISTEN: store changes reach it by polling alone (the benchmark's
control for NOTIFY; the product has no such switch).

    python bench/gateway/polling.py --port P --db URL --upstream URL --upstream-key-file PATH
        [--refresh-interval SECONDS]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from permgate.gateway import app
from permgate.gateway.config import resolve
from permgate.serve import run


def _no_dsn(url: Any) -> None:
    return None  # Gateway.startup then starts no listener: the poller alone remains


def main() -> int:
    p = argparse.ArgumentParser()
    for flag in ("--port", "--db", "--upstream", "--upstream-key-file", "--refresh-interval"):
        p.add_argument(flag)
    args = p.parse_args()
    flags: dict[str, Any] = {"port": int(args.port), "db": args.db, "upstream": args.upstream,
                             "upstream_key_file": args.upstream_key_file}
    if args.refresh_interval:
        flags["refresh_interval"] = float(args.refresh_interval)
    app.conninfo = _no_dsn  # type: ignore[assignment]
    run(resolve(flags, {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
