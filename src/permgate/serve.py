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
# The token endpoint at both its paths (the second is under the /oauth prefix too; mounted
# exactly, it gets the token endpoint's smaller body limit).
OAUTH_TOKEN_PATHS = (OAUTH_TOKEN_PATH, "/oauth/token")
ADMIN_DISABLED_BODY = 1024  # the disabled admin API answers 404 to anything
INGEST_PATH = "/webhooks/upstream"
FACTORY = "permgate.serve:app_from_env"


def mounts(settings: Settings, store: GrantStore) -> list[Mount]:
    """Every service the gateway serves beside the proxy, given the store it opened, each
    with the largest body it takes (no server buffers more for it before it can refuse)."""
    from permgate.store import Store

    out: list[Mount] = []
    admin: ASGIApp = _admin_disabled
    admin_limit = ADMIN_DISABLED_BODY
    if settings.admin_token and isinstance(store, Store):
        from permgate.admin import create_admin_app
        from permgate.admin.app import MAX_BODY as ADMIN_BODY

        admin = _under(ADMIN_PREFIX, create_admin_app(store, settings.admin_token))
        admin_limit = min(settings.body_limit, ADMIN_BODY)
    out.append(Mount(ADMIN_PREFIX, admin, prefix=True, invalidates=True,
                     body_limit=admin_limit))
    if isinstance(store, Store):
        from permgate.console import create_console_app
        from permgate.console.app import MAX_FORM
        from permgate.oauth import MAX_BODY as TOKEN_BODY

        console: ASGIApp = create_console_app(store)
        out += [Mount(p, console, prefix=True, invalidates=True, body_limit=MAX_FORM)
                for p in CONSOLE_PREFIXES]
        out += [Mount(p, console, invalidates=True, body_limit=TOKEN_BODY)
                for p in OAUTH_TOKEN_PATHS]
        if settings.webhook_secret:
            from permgate.events.ingest import MAX_BODY as INGEST_BODY
            from permgate.events.ingest import ingest_app

            secrets = [s.strip() for s in settings.webhook_secret.split(",") if s.strip()]
            out.append(Mount(INGEST_PATH, ingest_app(store, secrets,
                                                     account=settings.webhook_account),
                             body_limit=min(settings.body_limit, INGEST_BODY)))
    return out


def build(settings: Settings) -> Gateway:
    def open_store() -> GrantStore:
        from permgate.store import Store

        return Store.open(settings.db)

    def compose(store: GrantStore) -> Iterable[Mount]:
        return mounts(settings, store)

    return Gateway(settings, open_store, compose)


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
