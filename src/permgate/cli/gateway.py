"""`permgate serve`: the enforcing gateway (docs/gateway.md lists every setting)."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from typing import Any

from permgate.cli import EXIT_OK, CliError
from permgate.cli._common import db_url as db_url_arg
from permgate.cli._common import exit_codes, shell_command

# Flag values a setting's type alone does not check (an empty --db is refused here).
_CONVERTERS: dict[str, Callable[[str], Any]] = {"db": db_url_arg}


def _serve(args: argparse.Namespace) -> int:
    from permgate.gateway import ConfigError, resolve
    from permgate.gateway.config import SPECS, upstream_keys
    from permgate.serve import run

    flags: dict[str, Any] = {s.name: getattr(args, s.name, None) for s in SPECS if s.flag}
    try:
        settings = resolve(flags, config_path=args.config)
        _check_admin_token(settings.admin_token)
        _check_port(settings.host, settings.port)
        untagged = None
        if settings.api:
            settings, untagged = _own_api(settings)
        if settings.upstream is not None:
            if not upstream_keys(settings, untagged=untagged):
                raise CliError("--upstream needs the upstream's secret key: --upstream-key-file "
                               "PATH or PERMGATE_UPSTREAM_KEY")
            _check_store(settings.db)
            if settings.api:
                _check_tenancy(settings.db)
            run(settings)
            return EXIT_OK
    except ConfigError as e:
        raise CliError(str(e)) from None
    return _serve_demo(settings)


def _own_api(settings: Any, *, upstream: bool = True) -> tuple[Any, tuple[str, ...]]:
    """`--api DIR`: refuse a DIR that cannot be used or whose spec changed since `init`
    (with the command to run again), before anything starts; its api.toml's upstream is the
    default of --upstream. No demo mode: the API is the user's own. Also the modes an
    untagged upstream credential serves."""
    import permgate
    from permgate.api.profile import gateway_path
    from permgate.gateway import ConfigError
    from permgate.gateway.config import _check as check

    try:
        engine, profile = permgate.use_api(settings.api, check_spec=True)
    except permgate.ApiDirError as e:
        raise CliError(str(e)) from None
    shadowed = sorted({op.path for op in engine.operations if gateway_path(op.path)})
    if shadowed:
        raise CliError(f"--api {settings.api}: the gateway serves {shadowed[0]} itself (health, "
                       "metrics, admin, consent pages, OAuth or webhook ingest), so the API's "
                       f"operation there would never be reached ({len(shadowed)} such path(s)):"
                       " serve the API under a base path")
    if not profile.account_header:
        if not profile.single_tenant:
            raise CliError(
                f"--api {settings.api}: api.toml names no account header ([edge] "
                "account_header = \"\"), so every install would act on the same upstream "
                "data: set account_header to the header your API reads the account from, or "
                "say [edge] single_tenant = true if the upstream serves one tenant")
        warn_single_tenant(settings.api)
    if upstream and settings.upstream is None:
        if profile.upstream_url is None:
            raise CliError(f"--api {settings.api}: its api.toml has no [upstream] url: give "
                           "--upstream URL")
        settings = dataclasses.replace(settings, upstream=profile.upstream_url)
        try:
            check(settings)  # the replaced upstream passes the settings' own checks
        except ConfigError as e:
            raise CliError(str(e)) from None
    return settings, profile.untagged_key_modes


def warn_single_tenant(api: str) -> None:
    from permgate.cli._common import warn

    warn(f"--api {api}: single_tenant: the upstream is told no account; every install "
         "acts on the same upstream data")


def _check_tenancy(url: str | None) -> None:
    """A single-tenant API (no account header) behind a store whose installs span several
    accounts would hand each account's apps the others' data: refused."""
    import permgate
    from permgate.store import Store, StoreError

    if not permgate.api_profile().single_tenant:
        return
    try:
        with Store.open(url) as store:
            accounts = {g.account for g in store.list_installs()}
    except StoreError as e:
        raise CliError(str(e)) from None
    if len(accounts) > 1:
        raise CliError(f"the API is single_tenant (no account header) but the store holds "
                       f"installs on {len(accounts)} accounts: each would act on the others' "
                       "data; use one database per tenant")


# serve's settings that mean nothing to `permgate authz`: Envoy owns the upstream and its
# connections; the admin API, consent pages, demo and webhook ingest are a serve's.
AUTHZ_SKIPS = frozenset({
    "upstream", "connect_timeout", "upstream_timeout", "pool_size", "pool_per_app", "server",
    "demo_account", "webhook_secret", "webhook_account", "admin_token",
})


def _authz(args: argparse.Namespace) -> int:
    import permgate
    from permgate.gateway import ConfigError, resolve
    from permgate.gateway.authz import run
    from permgate.gateway.config import SPECS, upstream_keys

    flags: dict[str, Any] = {s.name: getattr(args, s.name, None) for s in SPECS
                             if s.flag and s.name not in AUTHZ_SKIPS}
    try:
        settings = resolve(flags, config_path=args.config)
        untagged = None
        if settings.api:  # the same checks as serve's; Envoy owns the upstream
            settings, untagged = _own_api(settings, upstream=False)
            header = permgate.api_profile().account_header
            if header.lower() != "stripe-account":
                from permgate.cli._common import warn

                # deploy/envoy/envoy.yaml lets Stripe-Account through: Envoy would drop the
                # account this check sets, and a restricted key's call would name none.
                warn(f"--api: Envoy's allowed_upstream_headers must list {header or '(none)'!r}"
                     " instead of stripe-account (docs/own-api.md)")
        control_port = settings.port + 1 if args.control_port is None else args.control_port
        if not 0 < control_port < 65536 or control_port == settings.port:
            raise CliError(f"--control-port must be 1..65535 and not --port, not {control_port}")
        _check_port(settings.host, settings.port)
        _check_port(settings.host, control_port)
        if not upstream_keys(settings, untagged=untagged):
            raise CliError("authz needs the upstream's secret key, which it hands Envoy for "
                           "allowed calls: --upstream-key-file PATH or PERMGATE_UPSTREAM_KEY")
        token = _check_token(args.check_token_file)
        if token is None and not _loopback(settings.host):
            # Every allowed answer carries the upstream key: off loopback, only checks
            # carrying Envoy's secret may get one.
            raise CliError(f"--host {settings.host} is not a loopback address: the check "
                           "port hands the upstream key to whoever it allows, so it needs "
                           "--check-token-file FILE (the secret Envoy adds to every check)")
        _check_store(settings.db)
        if settings.api:
            _check_tenancy(settings.db)
        run(settings, control_port, check_token=token)
    except ConfigError as e:
        raise CliError(str(e)) from None
    return EXIT_OK


def _check_token(path: str | None) -> bytes | None:
    from permgate.gateway.authz import MIN_TOKEN

    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            token = f.read(4096).strip()
    except OSError as e:
        raise CliError(f"--check-token-file {path}: {e.strerror}") from None
    if mode & 0o077:
        raise CliError(f"--check-token-file {path}: readable or writable by others (mode "
                       f"{mode & 0o777:o}): chmod 600 {path}")
    if len(token) < MIN_TOKEN or not re.fullmatch(rb"[A-Za-z0-9_.-]+", token):
        raise CliError(f"--check-token-file {path}: the token must be at least {MIN_TOKEN} "
                       "letters, digits, '-', '_' or '.' (`python -c 'import secrets; "
                       "print(secrets.token_urlsafe(32))'`)")
    return token


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


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
        url = reachable_url(settings.host, settings.port)
        print(demo.banner(url, upstream, app, db_url, shell_command()), flush=True)
        run(settings)
    finally:
        upstream.stop()
    return EXIT_OK


def reachable_url(host: str, port: int) -> str:
    """The address the banner's commands and links use: a wildcard listen address is
    reached on this machine's loopback (browsers refuse http://0.0.0.0), an IPv6 one in
    brackets (http://:::8420 is no URL)."""
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
    host = wildcard.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
    add_setting_flags(p)
    p.set_defaults(func=_serve)

    a = sub.add_parser(
        "authz", help="run as Envoy's external authorizer (HTTP ext_authz)",
        description="Decide every request Envoy's ext_authz filter asks about exactly as "
        "`permgate serve` would, and answer Envoy: on allow, the upstream key and account "
        "headers to set and the client headers to drop; otherwise Stripe's status and body "
        "for the client. Health, readiness and metrics are served on --control-port. Takes "
        "serve's settings where they apply (flags, PERMGATE_<NAME>, the config file's "
        "[gateway] table). Only Envoy may reach --port: an allowed answer carries the "
        "upstream key. See deploy/envoy/envoy.yaml and docs/scale.md.",
        epilog=exit_codes("0  stopped", "2  bad settings, an address in use, an unreadable key "
                          "file, a store that cannot be opened"),
    )
    a.add_argument("--config", metavar="PATH", default=None,
                   help="TOML config file (default: $PERMGATE_CONFIG)")
    a.add_argument("--control-port", type=int, default=None, metavar="PORT",
                   help="port of /healthz, /readyz and /metrics (default: --port + 1); never "
                   "the check port, where any 2xx answer lets a request through")
    a.add_argument("--check-token-file", metavar="PATH", default=None,
                   help="file with a secret Envoy adds to every check as the x-permgate-check "
                   "header (authorization_request.headers_to_add); checks without it are "
                   "refused; the file must be its owner's alone (chmod 600); required when "
                   "--host is not a loopback address (default: none, the check port must "
                   "then be Envoy's alone)")
    add_setting_flags(a, skip=AUTHZ_SKIPS)
    a.set_defaults(func=_authz)



def add_setting_flags(p: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> None:
    """One flag per setting that has one, as gateway/config.py declares it. Every default
    is None: a flag not given leaves the environment's or the file's value in place."""
    from permgate.gateway.config import SPECS

    for s in SPECS:
        if s.flag is None or s.name in skip:
            continue
        text = f"{s.help} (default {s.default_text}; env {s.env})"
        if s.type is bool:
            action = "store_false" if s.flag.startswith("--no-") else "store_true"
            p.add_argument(s.flag, dest=s.name, action=action, default=None, help=text)
            continue
        p.add_argument(s.flag, dest=s.name, type=_CONVERTERS.get(s.name, s.type),
                       choices=s.choices or None, metavar=s.metavar or None, default=None,
                       help=text)
