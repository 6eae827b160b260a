"""The one place the services meet: the gateway with the admin API, the consent pages and
OAuth endpoints, and the upstream webhook ingest mounted beside its proxy.

It sits above gateway/, admin/, events/ and console/ (and below cli/), so none of those
needs to know another (docs/architecture.md, enforced by tests/test_layers.py).
`build(settings)` gives the ASGI application; `run(settings)` serves it;
`app_from_env()` is the factory the ASGI servers' worker processes import by name.
"""

from __future__ import annotations

from collections.abc import Iterable

from permgate.gateway import errors as gateway_errors
from permgate.gateway.app import ASGIApp, Gateway, Mount, Receive, Scope, Send
from permgate.gateway.config import Settings
from permgate.gateway.resolver import GrantStore
from permgate.gateway.server import run as run_server
from permgate.gateway.server import settings_from_env

ADMIN_PREFIX = "/admin"
CONSOLE_PREFIXES = ("/console", "/oauth")  # consent pages, OAuth install links
OAUTH_TOKEN_PATH = "/v1/oauth/token"  # under /v1, served by the console app, never forwarded
INGEST_PATH = "/webhooks/upstream"
FACTORY = "permgate.serve:app_from_env"


def mounts(settings: Settings, store: GrantStore) -> list[Mount]:
    """Every service the gateway serves beside the proxy, given the store it opened."""
    from permgate.store import Store

    out: list[Mount] = []
    admin: ASGIApp = _admin_disabled
    if settings.admin_token and isinstance(store, Store):
        from permgate.admin import create_admin_app

        admin = _under(ADMIN_PREFIX, create_admin_app(store, settings.admin_token))
    out.append(Mount(ADMIN_PREFIX, admin, prefix=True, invalidates=True))
    if isinstance(store, Store):
        from permgate.console import create_console_app

        console: ASGIApp = create_console_app(store)
        out += [Mount(p, console, prefix=True, invalidates=True) for p in CONSOLE_PREFIXES]
        out.append(Mount(OAUTH_TOKEN_PATH, console, invalidates=True))
        if settings.webhook_secret:
            from permgate.events.ingest import ingest_app

            secrets = [s.strip() for s in settings.webhook_secret.split(",") if s.strip()]
            out.append(Mount(INGEST_PATH, ingest_app(store, secrets,
                                                     account=settings.webhook_account)))
    return out


def build(settings: Settings, *, enforce: bool = True) -> Gateway:
    def open_store() -> GrantStore:
        from permgate.store import Store

        return Store.open(settings.db)

    def compose(store: GrantStore) -> Iterable[Mount]:
        return mounts(settings, store)

    return Gateway(settings, open_store, compose, enforce=enforce)


def app_from_env() -> Gateway:
    """The ASGI servers' factory in each worker process (`--workers N`)."""
    return build(settings_from_env())


def run(settings: Settings) -> None:
    run_server(settings, lambda: build(settings), FACTORY)


def _under(prefix: str, app: ASGIApp) -> ASGIApp:
    """The admin app routes on paths below its prefix: tell it where it is mounted."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + prefix
        await app(child, receive, send)

    return call


async def _admin_disabled(scope: Scope, receive: Receive, send: Send) -> None:
    body = gateway_errors.error_body(
        "invalid_request_error",
        "The admin API is disabled on this gateway: set PERMGATE_ADMIN_TOKEN "
        "(or admin_token in the config file) to enable it.")
    await send({"type": "http.response.start", "status": 404, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": body})
