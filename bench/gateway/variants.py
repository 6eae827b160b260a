"""Gateway variants that only the benchmark builds: the product has no switch for them.

    python bench/gateway/variants.py no-enforce --port P --db URL --upstream URL
        --upstream-key-file PATH [--workers N] [--server native|granian|uvicorn]

`no-enforce`: the same gateway, server and process model with enforcement off (every call
forwarded with the upstream key, no key, install or decision work), built by constructing
the Gateway with `enforce=False`. `enforce`: the same launcher with enforcement on (to tell
the launcher's share from enforcement's).
"""

from __future__ import annotations

import argparse
import sys

from permgate.gateway.config import resolve
from permgate.gateway.server import run_native
from permgate.serve import build


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=("no-enforce", "enforce"))
    for flag in ("--port", "--db", "--upstream", "--upstream-key-file", "--workers"):
        p.add_argument(flag)
    args = p.parse_args()
    flags = {"port": int(args.port), "db": args.db, "upstream": args.upstream,
             "upstream_key_file": args.upstream_key_file,
             "workers": int(args.workers or 1)}
    settings = resolve(flags, {})
    enforce = args.variant == "enforce"
    run_native(settings, lambda: build(settings, enforce=enforce))
    return 0


if __name__ == "__main__":
    sys.exit(main())
