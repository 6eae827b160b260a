"""The official Python SDK through `permgate serve` to localstripe, all real processes."""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import stripe
from tests.gateway.procs import VENV_BIN, App, Gateway, new_app, raw_request, upload, wait_until

from permgate.gateway.demo import Upstream
from permgate.store import Store

pytestmark = pytest.mark.e2e


def client(gateway: Gateway, app: App, key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        key or app.key, stripe_account=app.account, base_addresses={"api": gateway.url},
        max_network_retries=0,
    )


def test_allowed_call_returns_the_upstreams_data(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_write"])
    c = client(gateway, app)
    email = f"{uuid.uuid4().hex}@example.com"
    created = c.v1.customers.create(params={"email": email})
    assert created.id.startswith("cus_")
    fetched = c.v1.customers.retrieve(created.id)  # customer_write includes read
    assert fetched.email == email
    assert fetched.last_response is not None
    assert fetched.last_response.request_id is not None
    assert fetched.last_response.request_id.startswith("req_")


def test_missing_permission_raises_permission_error(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_read"])
    with pytest.raises(stripe.PermissionError) as err:
        client(gateway, app).v1.charges.list()
    e = err.value
    assert e.http_status == 403
    # The SDK keeps a 403's code on the parsed error object, not on the exception.
    assert e.error is not None
    assert e.error.code == "more_permissions_required_for_application"
    assert e.error.type == "invalid_request_error"
    assert e.user_message is not None
    assert f"account '{app.account}'" in e.user_message
    assert "'charge_read' permission would allow" in e.user_message
    assert e.request_id is not None and e.request_id.startswith("req_")
    # The write side of the same object is missing too.
    with pytest.raises(stripe.PermissionError, match="customer_write"):
        client(gateway, app).v1.customers.create(params={"email": "x@example.com"})


def test_denied_expand(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_read"])
    c = client(gateway, app)
    assert isinstance(c.v1.customers.list(params={"limit": 1}).data, list)
    with pytest.raises(stripe.PermissionError) as err:
        c.v1.customers.list(params={"expand": ["data.invoice_settings.default_payment_method"]})
    assert err.value.error is not None
    assert err.value.error.code == "more_permissions_required_for_application"
    assert err.value.user_message is not None
    assert "payment_method_read" in err.value.user_message


def test_uninstall_is_enforced_without_restart(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_read"])
    c = client(gateway, app)
    c.v1.customers.list()  # cached as installed in the gateway now
    store.uninstall(app.app_id, app.account, "test", by="admin@example.com", role="admin")

    def denied() -> bool:
        try:
            c.v1.customers.list()
        except stripe.PermissionError as e:
            assert e.user_message is not None and "not installed" in e.user_message
            return True
        return False

    wait_until(denied, what="uninstall enforced")


def test_upgrade_pending_approval_then_approved_via_cli(
    gateway: Gateway, store: Store, db_url: str
) -> None:
    app = new_app(store, ["customer_read"])
    c = client(gateway, app)
    c.v1.customers.list()
    upload(store, app, "2.0.0", ["customer_read", "charge_read"])
    # The new version's extra permission waits for an administrator.
    with pytest.raises(stripe.PermissionError, match="charge_read"):
        c.v1.charges.list()
    c.v1.customers.list()  # the approved set still works
    done = subprocess.run(
        [str(VENV_BIN / "permgate"), "approve", app.app_id, "--account", app.account,
         "--mode", "test", "--by", "admin@example.com", "--role", "admin", "--db", db_url],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    def allowed() -> bool:
        try:
            return isinstance(c.v1.charges.list().data, list)
        except stripe.PermissionError:
            return False

    wait_until(allowed, what="approval enforced")


def test_bad_keys_raise_authentication_error(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_read"])
    unknown = "sk_test_" + "x" * 64
    with pytest.raises(stripe.AuthenticationError) as err:
        client(gateway, app, key=unknown).v1.customers.list()
    assert err.value.http_status == 401
    assert unknown not in str(err.value)  # the key is never echoed whole
    # A revoked key: rotation without grace revokes the old one at once.
    store.rotate_key(app.app_id, "test", grace=timedelta(0),
                     actor="tests")

    def rejected() -> bool:
        try:
            client(gateway, app).v1.customers.list()
        except stripe.AuthenticationError:
            return True
        return False

    wait_until(rejected, what="revoked key rejected")
    # No key at all, and HTTP basic with the key as user, as curl -u sends it.
    assert httpx.get(gateway.url + "/v1/customers").status_code == 401
    fresh = new_app(store, ["customer_read"])
    r = httpx.get(gateway.url + "/v1/customers", auth=(fresh.key, ""),
                  headers={"Stripe-Account": fresh.account})
    assert r.status_code == 200, r.text


def test_not_installed_account_is_refused(gateway: Gateway, store: Store) -> None:
    app = new_app(store, ["customer_read"], install=False)
    with pytest.raises(stripe.PermissionError, match="not installed on account"):
        client(gateway, app).v1.customers.list()
    # Live mode is a separate install: the test-mode install does not cover it.
    installed = new_app(store, ["customer_read"])
    with pytest.raises(stripe.PermissionError, match="in live mode"):
        client(gateway, installed, key=installed.live_key).v1.customers.list()


HOSTILE = (
    "/v1/customers/../charges?m={m}",
    "/v1/customers/%2e%2e/charges?m={m}",
    "/v1/customers/cus_{m}%2F..%2Fcharges",
    "/v1//customers?m={m}",
    "/v1/customers/./cus_{m}",
    "/v1/customers/cus_{m}%00",
    "/v1/customers/cus_{m}\\..\\x",
)


def test_hostile_paths_never_reach_the_upstream(
    gateway: Gateway, store: Store, localstripe: Upstream
) -> None:
    app = new_app(store, ["customer_read", "charge_read"])
    marker = uuid.uuid4().hex[:12]
    auth = [f"Authorization: Bearer {app.key}", f"Stripe-Account: {app.account}"]
    for template in HOSTILE:
        answer = raw_request(gateway.url, f"GET {template.format(m=marker)} HTTP/1.1", auth)
        assert answer.startswith(b"HTTP/1.1 400"), (template, answer[:300])
        assert b"invalid_request_error" in answer
    # A request after them that does reach the upstream: once it is in the upstream's log,
    # anything sent before it would be too.
    after = uuid.uuid4().hex[:12]
    ok = raw_request(gateway.url, f"GET /v1/customers/cus_{after} HTTP/1.1", auth)
    assert b"aiohttp" in ok, ok[:300]  # localstripe answered it
    log: Path = localstripe.log_path
    wait_until(lambda: after in log.read_text("utf-8", "replace"), what="upstream log")
    assert marker not in log.read_text("utf-8", "replace")
