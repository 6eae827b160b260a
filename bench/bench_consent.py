"""Consent and OAuth costs (not a test), on SQLite and PostgreSQL, in process.

- authenticate: an OAuth access token against a restricted key (its peer: the same lookup
  must cost the same), µs per call;
- refresh: `grant_type=refresh_token` rotations per second (one write transaction each);
- consent page: renders per second of the consent screen for an app with 20 permissions.

    .venv/bin/python bench/bench_consent.py [--n 2000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from permgate import envvars, manifest
from permgate.console.app import Console, csrf_token
from permgate.console.settings import ConsoleSettings
from permgate.store import Store, describe, oauth, people

PG = envvars.TEST_PG.get()
PERMS = ["customer_read", "invoice_write", "charge_read", "credit_note_read", "product_read",
         "plan_read", "subscription_write", "payment_intent_read", "webhook_read",
         "dispute_read", "coupon_read", "promotion_code_read", "tax_rate_read", "quote_read",
         "checkout_session_read", "payment_links_read", "payout_read", "balance_read",
         "file_read", "event_read"]


def _manifest(app_id: str, access: str) -> manifest.Manifest:
    return manifest.parse(json.dumps({
        "id": app_id, "version": "1.0.0", "name": "Bench app", "icon": "",
        "permissions": [{"permission": p, "purpose": f"Because the bench needs {p}."}
                        for p in PERMS],
        "stripe_api_access_type": access, "allowed_redirect_uris": ["https://app.example/cb"],
        "ui_extension": {"views": [], "content_security_policy": {
            "connect-src": ["https://api.app.example/v1/"], "image-src": None,
            "purpose": "Bench."}},
    }))


def stores(use_pg: bool) -> Iterator[tuple[str, Store]]:
    with tempfile.TemporaryDirectory() as tmp, Store.open(
            f"sqlite:///{tmp}/bench.db", upgrade=True) as s:
        yield "sqlite", s
    if not use_pg:
        return
    schema = f"permgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            with Store.open(f"{PG}?options=-csearch_path%3D{schema}", upgrade=True) as s:
                yield "postgresql", s
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def per_call(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(n, 100)):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def run(name: str, store: Store, n: int) -> dict[str, float]:
    store.upload_version(_manifest("com.bench.rk", "restricted_api_key"), actor="b")
    key = store.install("com.bench.rk", "acct_bench", "test", by="b", role="admin").key
    assert key is not None
    up = store.upload_version(_manifest("com.bench.oauth", "oauth"), actor="b")
    secret = next(k.secret for k in up.keys if k.mode == "test")
    store.install("com.bench.oauth", "acct_bench", "test", by="b", role="admin")
    client = store.authenticate(secret)
    assert client is not None
    code = oauth.issue_code(store, app_id="com.bench.oauth", account="acct_bench",
                            mode="test", redirect_uri="https://app.example/cb", user_id="b")
    tokens = oauth.exchange_code(store, client, code, "https://app.example/cb")
    rk_us = per_call(lambda: store.authenticate(key.secret), n) * 1e6
    tok_us = per_call(lambda: store.authenticate(tokens.access_token), n) * 1e6
    current = [tokens.refresh_token]

    def rotate() -> None:
        current[0] = oauth.refresh(store, client, current[0]).refresh_token

    refresh_s = per_call(rotate, max(50, n // 10))
    console = Console(store, ConsoleSettings())
    view = describe.describe_latest(store, "com.bench.oauth")
    link = people.create_link(store, account="acct_bench", user_id="b", display_name="B",
                              role="admin", actor="b")
    found = people.redeem_link(store, link.secret)
    assert found is not None
    session, token, _ = found

    def render() -> None:
        console.env.get_template("consent.html").render(
            who=session, csrf=csrf_token(token), app=view, mode="test",
            action="/console/apps/x/install?mode=test", hidden={}, installed=False,
            cancel="/console/")

    render_s = per_call(render, n)
    out = {"authenticate_restricted_key_us": round(rk_us, 1),
           "authenticate_access_token_us": round(tok_us, 1),
           "token_vs_key_ratio": round(tok_us / rk_us, 2),
           "refresh_rotations_per_s": round(1 / refresh_s),
           "consent_page_renders_per_s": round(1 / render_s)}
    print(f"{name:10} " + "  ".join(f"{k}={v}" for k, v in out.items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args(argv)
    for name, store in stores(not args.no_postgres):
        run(name, store, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
