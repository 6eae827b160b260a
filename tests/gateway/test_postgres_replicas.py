"""Two gateway processes on one PostgreSQL: a change made through one binds the other."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
import stripe
from tests.gateway.procs import new_app, run_gateway, wait_until

from permgate.gateway.demo import Upstream
from permgate.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
ADMIN_TOKEN = secrets.token_hex(32)  # the admin API refuses weaker tokens


def test_uninstall_through_one_replica_binds_the_other(
    pg_url: str, localstripe: Upstream, tmp_path: Path
) -> None:
    with Store.open(pg_url, upgrade=True) as store:
        app = new_app(store, ["customer_read"])
    env = {"PERMGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    with run_gateway(pg_url, localstripe.url, tmp_path, env=env) as one, \
            run_gateway(pg_url, localstripe.url, tmp_path, env=env) as two:
        clients = [stripe.StripeClient(app.key, stripe_account=app.account,
                                       base_addresses={"api": g.url}, max_network_retries=0)
                   for g in (one, two)]
        for c in clients:  # both replicas have the install cached now
            assert isinstance(c.v1.customers.list().data, list)

        r = httpx.post(
            f"{one.url}/admin/v1/installs/{app.app_id}/{app.account}/test/uninstall",
            json={"by": "admin@example.com", "role": "admin"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.json()["uninstalled"] is True

        def denied_by_two() -> bool:
            try:
                clients[1].v1.customers.list()
            except stripe.PermissionError:
                return True
            return False

        wait_until(denied_by_two, what="uninstall enforced by the other replica")
        with pytest.raises(stripe.PermissionError, match="not installed"):
            clients[0].v1.customers.list()


def test_notifications_alone_invalidate_the_cache(
    pg_url: str, localstripe: Upstream, tmp_path: Path
) -> None:
    # With a refresh interval of an hour, only LISTEN/NOTIFY can make this pass.
    with Store.open(pg_url, upgrade=True) as store:
        app = new_app(store, ["customer_read"])
        with run_gateway(pg_url, localstripe.url, tmp_path,
                         ["--refresh-interval", "3600"]) as gw:
            c = stripe.StripeClient(app.key, stripe_account=app.account,
                                    base_addresses={"api": gw.url}, max_network_retries=0)
            assert isinstance(c.v1.customers.list().data, list)
            store.uninstall(app.app_id, app.account, "test", by="admin@example.com",
                            role="admin")

            def denied() -> bool:
                try:
                    c.v1.customers.list()
                except stripe.PermissionError:
                    return True
                return False

            wait_until(denied, what="uninstall enforced through NOTIFY")
