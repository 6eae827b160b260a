"""`permgate webhooks ...` and `permgate events deliveries|resend|worker --once`."""

from __future__ import annotations

import json

import pytest
import stripe
from tests.events.support import Receiver, event, install, new_app

from permgate.cli import main
from permgate.events import accept
from permgate.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_webhooks_and_deliveries_cli(
    store: Store, sqlite_url: str, webhook_key: str, rec: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    install(store, app)
    db = ("--db", sqlite_url)
    code, _, err = run(capsys, "webhooks", "add", app, "--url", rec.url + "/h", "--events",
                       "customer.created,invoice.paid", "--mode", "live", *db)
    assert code == 3 and "'invoice_read'" in err
    code, out, _ = run(capsys, "webhooks", "add", app, "--url", rec.url + "/h", "--events",
                       "*", "--mode", "live", "--json", *db)
    assert code == 0
    added = json.loads(out)
    assert added["secret"].startswith("whsec_")
    code, out, _ = run(capsys, "webhooks", "list", "--app", app, "--json", *db)
    [listed] = json.loads(out)
    assert listed["id"] == added["id"] and "secret" not in listed
    assert added["secret"] not in out
    ev = event("customer.created")
    accept(store, ev)
    assert run(capsys, "events", "worker", "--once", *db)[0] == 0
    code, out, _ = run(capsys, "events", "deliveries", "--app", app, "--status", "delivered",
                       "--json", *db)
    [d] = json.loads(out)
    assert d["event_id"] == ev["id"] and d["attempts"] == 1
    assert run(capsys, "events", "resend", ev["id"], "--app", app, *db)[0] == 0
    assert run(capsys, "events", "worker", "--once", *db)[0] == 0
    assert rec.event_ids("/h") == [ev["id"], ev["id"]]
    code, out, _ = run(capsys, "webhooks", "rotate-secret", added["id"], "--json", *db)
    rotated = json.loads(out)["secret"]
    accept(store, event("customer.updated"))
    run(capsys, "events", "worker", "--once", *db)
    last = rec.at("/h")[-1]
    stripe.Webhook.construct_event(last.body.decode(), last.headers["Stripe-Signature"],
                                   rotated)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(last.body.decode(), last.headers["Stripe-Signature"],
                                       added["secret"])
    assert run(capsys, "webhooks", "remove", added["id"], *db)[0] == 0
    code, out, _ = run(capsys, "webhooks", "list", *db)
    assert out.strip() == "no webhook endpoints"


def test_install_and_uninstall_commands_notify_the_app(
    store: Store, sqlite_url: str, webhook_key: str, capsys: pytest.CaptureFixture[str],
) -> None:
    app = new_app(store, ["event_read", "customer_read"])
    db = ("--db", sqlite_url)
    assert run(capsys, "install", app, "--account", "acct_cli1", "--mode", "live",
               "--by", "ann", "--role", "admin", *db)[0] == 0
    # An endpoint added after install still gets what happens next: the deauthorization.
    assert run(capsys, "webhooks", "add", app, "--url", "http://127.0.0.1:9/h",
               "--events", "*", "--mode", "live", *db)[0] == 0
    assert run(capsys, "uninstall", app, "--account", "acct_cli1", "--mode", "live",
               "--by", "ann", "--role", "admin", *db)[0] == 0
    code, out, _ = run(capsys, "events", "deliveries", "--app", app, "--json", *db)
    assert code == 0
    types = [d["event_type"] for d in json.loads(out)]
    assert types == ["account.application.deauthorized"]
