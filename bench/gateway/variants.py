"""Gateway variants that only the benchmark builds: the product has no switch for them.

    python bench/gateway/variants.py no-enforce --port P --db URL --upstream URL
        --upstream-key-file PATH [--workers N] [--server native|granian|uvicorn]

`no-enforce`: the same gateway, server and process model with enforcement off (every call
forwarded with the upstream key, no key, install or decision work): `NoEnforce` is a
Gateway whose caller resolution and decision (`PassThrough`, supplied here) let everything
through. `enforce`: the same launcher with enforcement on (to tell the launcher's share
from enforcement's).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from permgate.gateway.app import Gateway
from permgate.gateway.body import NO_BODY, decide_body
from permgate.gateway.calls import Caller, Calls, Refusal, Ruling
from permgate.gateway.config import Settings, key_mode, resolve
from permgate.gateway.resolver import Resolver
from permgate.gateway.server import run_native
from permgate.serve import build


class PassThrough(Calls):
    """Every caller is let through, in the mode of the key it shows, on the account it
    names (forwarded as is); every call is allowed."""

    allowed: Any = None

    async def resolve(self, authorization: bytes | None, account_raw: bytes | None,
                      wait: bool = True) -> Caller | Refusal:
        mode = key_mode(self.headers.key(authorization) or "") or "test"
        caller = Caller("", mode, "", None, self.auth_by_mode.get(mode), float("inf"),
                        self.resolver.generation, account_b=account_raw or b"")
        if authorization is not None:
            self.remember(authorization, account_raw, caller)
        return caller

    def rule(self, caller: Caller, method: str, raw_path: bytes, query: bytes,
             target: bytes, ctypes: list[bytes], encodings: list[bytes],
             body: bytes) -> Ruling:
        decided = decide_body(method, raw_path, ctypes, encodings, body) if body else NO_BODY
        return Ruling(decided, self.allowed, 0.0)


class NoEnforce(Gateway):
    def make_calls(self, resolver: Resolver, decide: Any) -> Calls:
        import permgate

        calls = PassThrough(resolver, decide, self.auth_by_mode, self.headers)
        engine = permgate.engine
        calls.allowed = engine.decide("GET", "/v1/customers", None,
                                      engine.grant(["customer_read"]))
        return calls


def build_variant(settings: Settings, enforce: bool) -> Gateway:
    gw = build(settings)
    return gw if enforce else NoEnforce(gw.settings, gw.open_store, gw.compose)


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
    run_native(settings, lambda: build_variant(settings, enforce))
    return 0


if __name__ == "__main__":
    sys.exit(main())
