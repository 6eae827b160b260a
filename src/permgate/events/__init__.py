"""Events: permission-filtered, signed, durable webhook delivery to apps.

    from permgate.events import add_endpoint, accept, DeliveryWorker
    new = add_endpoint(store, "com.example.app", "https://app.example/hook", ["*"], "live",
                       by="alice")        # new.secret: whsec_..., shown once
    accept(store, upstream_event_dict)    # durable fan-out into the outbox
    accept_many(store, [(event, raw_bytes_or_None), ...])   # a batch, one transaction
    DeliveryWorker(store).drain()         # signed POSTs, retried with backoff

See docs/events.md.
"""

from permgate.events.model import Accepted, Delivery, Endpoint, NewEndpoint
from permgate.events.outbox import (
    AUTHORIZED,
    DEAUTHORIZED,
    BadEvent,
    Router,
    accept,
    accept_many,
    list_deliveries,
    on_install,
    on_uninstall,
    resend,
)
from permgate.events.retry import RetryPolicy
from permgate.events.sealing import Sealer, SealError
from permgate.events.signing import SignatureError, sign, verify
from permgate.events.subscriptions import (
    SubscriptionRefused,
    add_endpoint,
    enable_endpoint,
    list_endpoints,
    remove_endpoint,
    rotate_secret,
)
from permgate.events.worker import DeliveryWorker

__all__ = [
    "AUTHORIZED", "DEAUTHORIZED", "Accepted", "BadEvent", "Delivery", "DeliveryWorker",
    "Endpoint", "NewEndpoint", "RetryPolicy", "Router", "SealError", "Sealer",
    "SignatureError", "SubscriptionRefused", "accept", "accept_many", "add_endpoint",
    "enable_endpoint", "list_deliveries", "list_endpoints",
    "on_install", "on_uninstall", "remove_endpoint", "resend", "rotate_secret", "sign",
    "verify",
]
