"""`permgate serve`: the enforcing gateway (docs/gateway.md lists every setting)."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import socket
from typing import Any

from permgate.cli import EXIT_OK, CliError
from permgate.cli._common import DB_HELP, exit_codes, shell_command
from permgate.cli._common import db_url as db_url_arg

_FLAG_FIELDS = (
    "host", "port", "db", "upstream", "upstream_key_file", "workers", "report_only",
    "body_limit", "connect_timeout", "upstream_timeout", "pool_size", "refresh_interval",
    "access_log", "server", "demo_account",
)


def _serve(args: argparse.Namespace) -> int:
    from permgate.gateway import ConfigError, resolve
    from permgate.gateway.config import upstream_keys
    from permgate.serve import run

    flags: dict[str, Any] = {name: getattr(args, name, None) for name in _FLAG_FIELDS}
    try:
        settings = resolve(flags, config_path=args.config)
        _check_admin_token(settings.admin_token)
        _check_port(settings.host, settings.port)
        if settings.upstream is not None:
            if not upstream_keys(settings):
                raise CliError("--upstream needs the upstream's secret key: --upstream-key-file "
                               "PATH or PERMGATE_UPSTREAM_KEY")
            _check_store(settings.db)
            run(settings)
            return EXIT_OK
    except ConfigError as e:
        raise CliError(str(e)) from None
    return _serve_demo(settings)


def _check_admin_token(token: str | None) -> None:
    """An admin API behind a guessable token is refused before anything starts."""
    if token is None:
        return  # the admin API stays off
    from permgate.admin.app import WeakToken, check_token

    try:
        check_token(token)
    except WeakToken as e:
        raise CliError(str(e)) from None


def _check_port(host: str, port: int) -> None:
    """Fail before anything starts (localstripe, the banner) if the address is taken."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        hint = " (another program uses it: pick another with --port)" if e.errno in (
            errno.EADDRINUSE, errno.EACCES) else ""
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None


def _check_store(url: str | None) -> None:
    """Refuse to start on a database the workers could not open, with the store's reason."""
    from permgate.store import Store, StoreError

    try:
        Store.open(url).close()
    except StoreError as e:
        raise CliError(str(e)) from None


def _serve_demo(settings: Any) -> int:
    from permgate.gateway import demo
    from permgate.serve import run
    from permgate.store import Store, StoreError

    try:
        upstream = demo.start_localstripe()
    except (RuntimeError, OSError) as e:
        raise CliError(str(e)) from None
    try:
        try:
            with Store.open(settings.db, upgrade=True) as store:
                app = demo.install_demo_app(store, settings.demo_account)
                db_url = store.url
        except StoreError as e:
            raise CliError(f"demo setup failed: {e}") from None
        settings = dataclasses.replace(
            settings, upstream=upstream.url, upstream_key=demo.DEMO_UPSTREAM_KEY,
            upstream_key_file=None)
        url = f"http://{settings.host}:{settings.port}"
        print(demo.banner(url, upstream, app, db_url, shell_command()), flush=True)
        run(settings)
    finally:
        upstream.stop()
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="run the enforcing gateway (no --upstream: a local demo)",
        description="Run the enforcing gateway in front of a Stripe-compatible API. Without "
        "--upstream, start localstripe as the upstream and install a demo app. Every "
        "setting can also come from PERMGATE_<NAME> environment variables or the [gateway] "
        "table of a TOML file (--config); flags win over the environment, which wins over "
        "the file. See docs/gateway.md.",
        epilog=exit_codes("0  stopped", "2  bad settings, an address in use, an unreadable key "
                          "file, a store that cannot be opened"),
    )
    p.add_argument("--config", metavar="PATH", default=None,
                   help="TOML config file (default: $PERMGATE_CONFIG)")
    p.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen port (default 8420)")
    p.add_argument("--db", metavar="URL", type=db_url_arg, default=None, help=DB_HELP)
    p.add_argument("--upstream", metavar="URL", default=None,
                   help="the Stripe-compatible API to forward to, e.g. https://api.stripe.com "
                        "(none: demo mode with localstripe)")
    p.add_argument("--upstream-key-file", metavar="PATH", default=None,
                   help="file with the upstream secret key(s), one per line (live and/or test)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--report-only", action="store_true", default=None,
                   help="decide and log, but forward denied calls too")
    p.add_argument("--body-limit", type=int, metavar="BYTES", default=None,
                   help="largest request body accepted (default 1048576)")
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS", default=None,
                   help="upstream connect timeout (default 5)")
    p.add_argument("--upstream-timeout", type=float, metavar="SECONDS", default=None,
                   help="wait for the upstream's answer before a 504 (default 80)")
    p.add_argument("--pool-size", type=int, metavar="N", default=None,
                   help="idle upstream connections kept per worker (default 64)")
    p.add_argument("--refresh-interval", type=float, metavar="SECONDS", default=None,
                   help="how often the store is checked for changes (default 0.25)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false", default=None,
                   help="log only refused or failed requests")
    p.add_argument("--server", choices=("auto", "native", "granian", "uvicorn"), default=None,
                   help="HTTP server: native (permgate's own, the default and fastest), or "
                        "granian or uvicorn (ASGI)")
    p.add_argument("--demo-account", metavar="ACCT", default=None,
                   help="demo mode: the account the sample app is installed on (acct_demo)")
    p.set_defaults(func=_serve)

