"""`permgate listen`: forward an app's events to a local server while the session runs.

The session registers a temporary test-mode endpoint of kind "local" for the app: it may
target loopback (the point of it) and only loopback; routing treats it as any endpoint, so
the app gets exactly what permgate would deliver to it (filtered by its approved grant). The
session delivers that endpoint's deliveries itself (general workers leave local endpoints
alone), once each, no retries, as the Stripe CLI forwards; and it removes the endpoint when
it ends. A session killed without clean-up stops renewing its endpoint's lease; the next
session of the app, or any worker, then removes it and cancels what was queued for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta

from permgate.events.db import utcnow
from permgate.events.model import LOCAL, NewEndpoint
from permgate.events.retry import RetryPolicy
from permgate.events.sealing import Sealer
from permgate.events.subscriptions import (
    add_endpoint,
    remove_abandoned_local,
    remove_endpoint,
    renew_local,
)
from permgate.events.worker import DeliveryWorker, Outcome
from permgate.store import NotFound, Store

LEASE = timedelta(seconds=60)  # an abandoned session's endpoint is removed after this
RENEW_EVERY = 15.0
NO_RETRIES = RetryPolicy(horizon=0.0)  # a failed forward is final: resend it if wanted


def forward_url(text: str) -> str:
    """`localhost:3000/webhooks` -> `http://localhost:3000/webhooks` (as the Stripe CLI)."""
    return text if "://" in text else f"http://{text}"


def open_session(store: Store, app_id: str, forward_to: str, events: Sequence[str], *,
                 by: str, sealer: Sealer | None = None) -> NewEndpoint:
    remove_abandoned_local(store, app_id, by=by)
    return add_endpoint(store, app_id, forward_url(forward_to), events, "test", by=by,
                        sealer=sealer, kind=LOCAL, expires_at=utcnow() + LEASE)


def run_session(store: Store, new: NewEndpoint, stop: threading.Event, *,
                on_outcome: Callable[[Outcome], None], by: str,
                sealer: Sealer | None = None, timeout: float = 10.0,
                idle: float = 0.1) -> None:
    """Deliver the session's endpoint until `stop`; then remove the endpoint."""
    endpoint_id = new.endpoint.endpoint_id

    def renew() -> None:
        while not stop.wait(RENEW_EVERY):
            try:
                renew_local(store, endpoint_id, utcnow() + LEASE)
            except Exception:  # a missed renewal costs nothing until the lease runs out
                continue

    renewer = threading.Thread(target=renew, name="permgate-listen-lease", daemon=True)
    renewer.start()
    try:
        with DeliveryWorker(store, sealer=sealer, policy=NO_RETRIES, timeout=timeout,
                            only_endpoint=endpoint_id, on_outcome=on_outcome,
                            batch=50, concurrency=8, per_endpoint=8) as worker:
            worker.run(stop, idle)
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(NotFound):
            remove_endpoint(store, endpoint_id, by=by)


def describe(outcome: Outcome) -> str:
    """One line per event: type, id, account, what the local server answered."""
    if outcome.http_status is not None:
        answer = f"[{outcome.http_status}]"
    elif outcome.status == "cancelled":
        answer = f"not sent: {outcome.error}"
    else:
        answer = f"failed: {outcome.error}"
    return f"{outcome.event_type}  {outcome.event_id}  {outcome.account}  -> {answer}"
