"""`permgate apps|install|approve|uninstall|installs|keys|audit|db|admin`: the store's shell."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from permgate.cli import EXIT_OK, EXIT_USAGE, CliError
from permgate.cli._common import (
    MODES,
    STORE_EXITS,
    add_api,
    add_app,
    add_db,
    add_format,
    app_of,
    current_user,
    emit,
    exit_codes,
    open_store,
)

if TYPE_CHECKING:
    from permgate.store import EffectiveGrant, Store

Handler = Callable[[argparse.Namespace], int]
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """`0`, `90s`, `30m`, `24h`, `7d`."""
    if text == "0":
        return timedelta(0)
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 0, 30m, 24h, 7d)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def since(text: str) -> datetime:
    """An ISO date/time (UTC unless it says otherwise) or a duration back from now (`24h`)."""
    try:
        return datetime.now(UTC) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use an ISO date such as 2025-01-31 or a duration like 24h)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def _store(args: argparse.Namespace, *, upgrade: bool = False) -> Iterator[Store]:
    with open_store(args.db, upgrade=upgrade) as store:
        yield store


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> int:
    emit(args, data, text)
    return EXIT_OK


def _sorted(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"


def _grant_text(g: EffectiveGrant) -> str:
    lines = [
        f"{g.app_id} on {g.account} ({g.mode}): {g.status}",
        f"  install:           {g.install_id}",
        f"  installed version: {g.installed_version}",
        f"  approved version:  {g.approved_version}",
        f"  effective:         {_sorted(g.approved)}",
    ]
    if g.pending:
        lines.append(f"  pending approval:  {_sorted(g.pending)}")
    return "\n".join(lines)


# -- handlers --------------------------------------------------------------------------------

def _db_upgrade(args: argparse.Namespace) -> int:
    # Progress on stderr while migrations run, if stderr is a terminal.
    from permgate.store.migrate import head as schema_head

    with open_store(args.db, upgrade=True, progress=True) as store:
        before, head = store.upgraded_from, schema_head()
        if before is None:
            print(f"database {store.url} created at the latest schema")
        elif before == head:
            print(f"database {store.url} is already at the latest schema")
        else:
            print(f"database {store.url} upgraded from {before} to the latest schema ({head})")
    return EXIT_OK


def _db_check(args: argparse.Namespace) -> int:
    with _store(args) as store:
        print(f"database {store.url} is at the latest schema")
    return EXIT_OK


def _apps_upload(args: argparse.Namespace) -> int:
    from permgate import manifest

    try:
        m = manifest.load(args.path)
    except (manifest.ManifestError, OSError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    from permgate.store.describe import default_developer

    # The uploader is who the consent pages name as the app's developer: never the Unix
    # user by default, but the manifest's (the app id's domain, else the app's name).
    app_id, name = m.data.get("id"), m.data.get("name")
    actor = args.developer or args.by or default_developer(
        app_id if isinstance(app_id, str) else "", name if isinstance(name, str) else "")
    with _store(args) as store:
        result = store.upload_version(m, actor=actor)

    def text() -> str:
        v = result.version
        lines = [f"uploaded {v.app_id} version {v.version} "
                 f"({len(v.permissions)} permissions, {v.access_type})"]
        if result.keys:
            lines.append("created the app; its secret keys are shown only now, store them:")
            lines += [f"  {k.mode:<5} {k.secret}" for k in result.keys]
        return "\n".join(lines)

    return _emit(args, result.as_json(), text)


def _apps_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        found = store.list_apps()
    return _emit(args, [a.as_json() for a in found], lambda: "\n".join(
        f"{a.app_id}  {a.latest.version}  {a.latest.access_type}  "
        f"{len(a.latest.permissions)} permissions  {a.name}" for a in found) or "no apps")


def _apps_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        app = store.get_app(args.app_id)

    def text() -> str:
        lines = [f"{app.app_id}: {app.name}", f"  access type: {app.latest.access_type}",
                 f"  created:     {app.created_at.isoformat()} by {app.created_by}",
                 "  versions:"]
        lines += [f"    {v.version:<12} {v.uploaded_at.isoformat()} by {v.uploaded_by}: "
                  f"{_sorted(v.permissions)}" for v in app.versions]
        return "\n".join(lines)

    return _emit(args, app.as_json(), text)


def _install(args: argparse.Namespace) -> int:
    from permgate import events

    with _store(args) as store:
        result = store.install(args.app_id, args.account, args.mode, by=args.by, role=args.role)
        events.on_install(store, result.grant)  # account.application.authorized

    def text() -> str:
        out = "installed " + _grant_text(result.grant)
        if result.key:
            out += (f"\nrestricted key for this install (shown only now): {result.key.secret}")
        return out

    return _emit(args, result.as_json(), text)


def _approve(args: argparse.Namespace) -> int:
    with _store(args) as store:
        grant = store.approve(args.app_id, args.account, args.mode, by=args.by, role=args.role,
                              version=args.version)
    return _emit(args, grant.as_json(), lambda: "approved " + _grant_text(grant))


def _uninstall(args: argparse.Namespace) -> int:
    from permgate import events

    with _store(args) as store:
        grant = store.uninstall(args.app_id, args.account, args.mode, by=args.by, role=args.role)
        events.on_uninstall(store, grant)  # deauthorized; queued deliveries cancelled
    data = {"uninstalled": True, **grant.as_json()}
    return _emit(args, data, lambda: f"uninstalled {grant.app_id} from {grant.account} "
                 f"({grant.mode}); its grants and restricted keys are revoked")


def _installs_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        found = store.list_installs(app_id=app_of(args), account=args.account, mode=args.mode)
    return _emit(args, [g.as_json() for g in found], lambda: "\n".join(
        f"{g.app_id}  {g.account}  {g.mode}  {g.status}  v{g.installed_version}"
        + (f"  pending: {_sorted(g.pending)}" if g.pending else "")
        for g in found) or "no installs")


def _installs_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        grant = store.get_install(args.app_id, args.account, args.mode)
    return _emit(args, grant.as_json(), lambda: _grant_text(grant))


def _keys_rotate(args: argparse.Namespace) -> int:
    from permgate.store import DEFAULT_GRACE

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    with _store(args) as store:
        key = store.rotate_key(args.app_id, args.mode, grace=grace, actor=args.by,
                               account=args.account)
    when = "at once" if not grace else f"in {grace}"
    return _emit(args, {**key.as_json(), "old_keys_expire_in_seconds":
                        int(grace.total_seconds())},
                 lambda: f"new {key.kind} key {key.key_id} (shown only now): {key.secret}\n"
                         f"the previous key stops working {when}")


def _keys_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        found, now = store.list_keys(args.app_id), store.now()
    return _emit(args, [k.as_json(now) for k in found], lambda: "\n".join(
        f"{k.key_id}  {k.hint}  {k.kind}  {k.mode}  {k.account or '-'}  "
        + ("usable" if k.usable(now) else "revoked" if k.revoked_at else "expired")
        + (f" until {k.expires_at.isoformat()}" if k.expires_at and k.usable(now) else "")
        for k in found) or "no keys")


def _keys_rotate_sealing(args: argparse.Namespace) -> int:
    from permgate.events.sealing import default_sealer, rotate

    with _store(args) as store:
        sealer = default_sealer(store)
        before = [k.kid for k in sealer.keys]
        key, result = rotate(store, sealer, keep_old=args.keep_old_keys)
        after = [k.kid for k in sealer.keys]
    dropped = [k for k in before if k not in after]
    kept = [k for k in after if k != key.kid]
    data = {"key_file": str(sealer.path), "new_key_id": key.kid, "resealed": result.resealed,
            "dropped_key_ids": dropped, "kept_key_ids": kept,
            "unreadable_endpoints": list(result.unreadable)}
    return _emit(args, data, lambda: "\n".join([
        f"new sealing key {key.kid} in {sealer.path}",
        f"re-sealed {result.resealed} stored webhook secret(s) under it",
        "dropped old key(s): " + (", ".join(dropped) or "none"),
        *([f"kept (still readable): {', '.join(kept)}"] if kept else []),
        *([f"could not open (left as they are): {', '.join(result.unreadable)}"]
          if result.unreadable else [])]))


def _audit(args: argparse.Namespace) -> int:
    with _store(args) as store:
        found = store.audit(app=app_of(args), account=args.account, since=args.since,
                            limit=args.limit)
    from permgate.admin.app import redacted_audit

    return _emit(args, [redacted_audit(e.as_json()) for e in found], lambda: "\n".join(
        f"{e.at.isoformat()}  {e.actor}  {e.action}  "
        + " ".join(f"{k}={v}" for k, v in (("app", e.app_id), ("account", e.account),
                                            ("mode", e.mode), ("version", e.version),
                                            ("via", e.detail.get("via"))) if v)
        for e in found) or "no audit entries")


def _admin_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from permgate.admin import create_admin_app, token_from_env
    from permgate.admin.app import WeakToken, check_token

    try:
        token = check_token(token_from_env())
    except WeakToken as e:
        raise CliError(str(e)) from None
    with _store(args) as store:
        uvicorn.run(create_admin_app(store, token), host=args.host, port=args.port,
                    log_level="info")
    return EXIT_OK


# -- parsers ---------------------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_db(p)
    add_format(p)
    add_api(p)
    return p


def _install_args(p: argparse.ArgumentParser, *, with_actor: bool = True) -> None:
    p.add_argument("app_id", metavar="APP", help="the app's id, e.g. com.example.app")
    p.add_argument("--account", required=True, metavar="ACCT",
                   help="the account it is installed on: acct_...")
    p.add_argument("--mode", required=True, choices=MODES,
                   help="live, test or sandbox: an install in live and in test is two installs")
    if with_actor:
        p.add_argument("--by", required=True, metavar="USER",
                       help="who does this (recorded in the audit trail)")
        p.add_argument("--role", required=True, metavar="ROLE",
                       help="the user's role on the account; only admin may do this")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from permgate.cli.manifest import add_edit_verbs

    common = _common()

    def add(parent: Any, name: str, func: Handler, help_: str,
            parents: list[argparse.ArgumentParser] | None = None,
            epilog: str = STORE_EXITS) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, help=help_, description=help_[0].upper() + help_[1:] + ".",
            parents=[common] if parents is None else parents, epilog=epilog)
        p.set_defaults(func=func)
        return p

    db = sub.add_parser("db", help="the store's database: create it, upgrade it, check it",
                        description="The store's database schema.")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    add(db_sub, "upgrade", _db_upgrade, "create the database, or bring it to the latest schema",
        epilog=exit_codes("0  at the latest schema", "1  the database cannot be reached",
                          "2  bad --db"))
    add(db_sub, "check", _db_check, "fail unless the schema is at the latest migration",
        epilog=exit_codes("0  at the latest schema",
                          "1  not set up, out of date or unreachable", "2  bad --db"))

    apps = sub.add_parser("apps", help="an app: its manifest (grant, revoke) and its "
                          "uploaded versions",
                          description="Edit an app's manifest as the Stripe CLI does "
                          "(`apps grant permission NAME PURPOSE`, `apps grant url URL PURPOSE`) "
                          "and upload it to the store as a new version.")
    apps_sub = apps.add_subparsers(dest="apps_command", metavar="COMMAND", required=True)
    add_edit_verbs(apps_sub)
    p = add(apps_sub, "upload", _apps_upload,
            "upload a manifest as a new version (first upload prints the app's keys once)")
    p.add_argument("path", metavar="PATH", help="the manifest, e.g. stripe-app.json")
    p.add_argument("--developer", default=None, metavar="NAME",
                   help="the developer's name, as administrators see it on the consent pages "
                   "and in the audit trail (default: the domain of a reverse-DNS app id, "
                   "com.example.app -> example.com, else the app's name, either shown as "
                   "unconfirmed)")
    p.add_argument("--by", default=None, metavar="NAME",
                   help="the same as --developer (its older spelling)")
    add(apps_sub, "list", _apps_list, "list apps")
    add(apps_sub, "show", _apps_show, "an app and its versions").add_argument(
        "app_id", metavar="APP", help="the app's id, e.g. com.example.app")

    _install_args(add(sub, "install", _install,
                      "install an app on an account: accepts its current permission set"))
    p = add(sub, "approve", _approve,
            "approve the permission set of the app's latest version for an install")
    _install_args(p)
    p.add_argument("--version", default=None, metavar="V",
                   help="the version being approved; refused if a newer one exists")
    _install_args(add(sub, "uninstall", _uninstall, "uninstall: revokes every grant at once"))

    inst = sub.add_parser("installs", help="installs and their effective grants",
                          description="Installs and their effective grants.")
    inst_sub = inst.add_subparsers(dest="installs_command", metavar="COMMAND", required=True)
    p = add(inst_sub, "list", _installs_list, "list installs")
    add_app(p, optional=True)
    p.add_argument("--account", metavar="ACCT", help="only installs on this account")
    p.add_argument("--mode", choices=MODES, help="only installs in this mode")
    _install_args(add(inst_sub, "show", _installs_show,
                      "installed version, approved set, pending additions"), with_actor=False)

    keys = sub.add_parser("keys", help="an app's API keys", description="An app's API keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = add(keys_sub, "rotate", _keys_rotate,
            "new secret key (or an install's restricted key with --account); the old one "
            "expires after --grace")
    p.add_argument("app_id", metavar="APP", help="the app's id, e.g. com.example.app")
    p.add_argument("--mode", required=True, choices=MODES, help="the key's mode")
    p.add_argument("--account", metavar="ACCT", help="rotate this install's restricted key")
    p.add_argument("--grace", type=duration, default=None, metavar="DURATION",
                   help="how long the old key keeps working: 0, 30m, 24h (default), up to 7d")
    p.add_argument("--by", default=current_user(), metavar="USER",
                   help="who does this, for the audit trail (default: you)")
    add(keys_sub, "list", _keys_list, "an app's keys (never their secrets)").add_argument(
        "app_id", metavar="APP", help="the app's id, e.g. com.example.app")
    p = add(keys_sub, "rotate-sealing", _keys_rotate_sealing,
            "a new key for webhook signing secrets at rest: every stored secret is re-sealed "
            "under it, then old keys leave the key file (docs/events.md)")
    p.add_argument("--keep-old-keys", action="store_true",
                   help="keep the old keys in the key file (readable, never used to seal)")

    p = add(sub, "audit", _audit, "the audit trail, oldest first")
    add_app(p, optional=True)
    p.add_argument("--account", metavar="ACCT", help="only entries about this account")
    p.add_argument("--since", type=since, metavar="WHEN", help="ISO time or a duration (24h)")
    p.add_argument("--limit", type=int, metavar="N", help="only the newest N entries")

    admin = sub.add_parser("admin", help="the admin HTTP API",
                           description="The admin HTTP API.")
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    admin_db = argparse.ArgumentParser(add_help=False)
    add_db(admin_db)
    add_api(admin_db)  # uploads and version views use the API's catalog
    p = add(admin_sub, "serve", _admin_serve,
            "serve the admin API alone (bearer token: $PERMGATE_ADMIN_TOKEN)", parents=[admin_db],
            epilog=exit_codes("0  stopped", "1  the store refused to open", "2  bad input "
                              "(no token, bad --db)"))
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="listen port (default 8765)")
