"""Gateway variants that only the benchmark builds: the product has no switch for them.

    python bench/gateway/variants.py no-enforce --port P --db URL --upstream URL
        --upstream-key-file PATH [--workers N] [--server native|granian|uvicorn]

`no-enforce`: the same gateway, server and process model with enforcement off (every call
forwarded with the upstream key, no store lookup and no engine decision): `NoEnforce` is a
Gateway whose `make_calls` hands the product's own `Calls` a resolver that knows every key
and install (`PassResolver`) and a decision that allows every call. Nothing of the call path
is subclassed, so `Calls` can be compiled (a compiled class takes no interpreted subclass).
`enforce`: the same launcher with enforcement on (to tell the launcher's share from
enforcement's).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from permgate.gateway.app import Gateway
from permgate.gateway.calls import Calls
from permgate.gateway.config import Settings, key_mode, resolve
from permgate.gateway.resolver import Install, Resolver
from permgate.gateway.server import run_native
from permgate.serve import build
from permgate.store.model import EffectiveGrant, KeyInfo

# Every account's install of the app "", with nothing pending: what `PassResolver` answers.
_INSTALLED = Install(
    EffectiveGrant("", "", "", "", "", "", frozenset(), frozenset(), "active"), None)


class PassResolver(Resolver):
    """Every key is a secret key of its own mode (test when its prefix says none) and every
    account has an install: the caches always hit, the store is never asked, the generation
    never moves and no key expires. Unused beside a gateway: it starts nothing."""

    def __init__(self, real: Resolver) -> None:
        super().__init__(real.store, real.compile_grant, real.refresh_interval, threads=1)

    def cached_key(self, secret: str) -> KeyInfo | None:
        return KeyInfo("", "", key_mode(secret) or "test", "secret", None, None)

    def key_expiry(self, secret: str) -> float:
        return float("inf")

    def cached_install(self, app_id: str, account: str, mode: str) -> Install | None:
        return _INSTALLED


class NoEnforce(Gateway):
    def make_calls(self, resolver: Resolver, decide: Callable[..., Any]) -> Calls:
        import permgate

        engine = permgate.engine
        allowed = engine.decide("GET", "/v1/customers", None, engine.grant(["customer_read"]))

        def allow(*args: Any) -> Any:
            return allowed

        return super().make_calls(PassResolver(resolver), allow)


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
