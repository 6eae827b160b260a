"""`permgate webhooks add|list|remove|enable|rotate-secret`: an app's webhook endpoints."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from permgate.cli import EXIT_OK, CliError
from permgate.cli._common import (
    MODES,
    STORE_EXITS,
    add_api,
    add_app,
    add_db,
    add_format,
    app_of,
    current_user,
    open_store,
)


def _hours(text: str) -> timedelta:
    try:
        return timedelta(hours=float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None


def _add(args: argparse.Namespace) -> int:
    from permgate.events import add_endpoint

    events = args.events.split(",")
    with open_store(args.db) as store:
        new = add_endpoint(store, args.app_id, args.url, events, args.mode, by=args.by)
    if args.format == "json":
        print(json.dumps(new.as_json(), indent=2))
        return EXIT_OK
    ep = new.endpoint
    print(f"added {ep.endpoint_id} for {ep.app_id} ({ep.mode}): {ep.url}")
    print(f"  events: {', '.join(ep.enabled_events)}")
    print(f"  signing secret (shown only now, store it): {new.secret}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from permgate.events import list_endpoints

    with open_store(args.db) as store:
        found = list_endpoints(store, app_of(args), include_removed=args.all)
    if args.format == "json":
        print(json.dumps([e.as_json() for e in found], indent=2))
        return EXIT_OK
    for e in found:
        state = e.status
        if e.status == "disabled":
            state += f" since {e.disabled_at:%Y-%m-%d %H:%M} UTC ({e.disabled_reason}); " \
                     f"permgate webhooks enable {e.endpoint_id}"
        elif e.failing_since is not None:
            state += f", failing since {e.failing_since:%Y-%m-%d %H:%M} UTC"
        kind = "  [listen]" if e.kind == "local" else ""
        print(f"{e.endpoint_id}  {e.app_id}  {e.mode}  {e.url}  "
              f"{','.join(e.enabled_events)}  {e.secret_hint}  {state}{kind}")
    if not found:
        print("no webhook endpoints")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from permgate.events import remove_endpoint

    with open_store(args.db) as store:
        ep = remove_endpoint(store, args.endpoint_id, by=args.by)
    print(json.dumps(ep.as_json(), indent=2) if args.format == "json" else
          f"removed {ep.endpoint_id}; nothing more is delivered to {ep.url}")
    return EXIT_OK


def _enable(args: argparse.Namespace) -> int:
    from permgate.events.subscriptions import enable_endpoint

    with open_store(args.db) as store:
        ep = enable_endpoint(store, args.endpoint_id, by=args.by)
    print(json.dumps(ep.as_json(), indent=2) if args.format == "json" else
          f"enabled {ep.endpoint_id}: new events are delivered to {ep.url} again "
          "(what was cancelled while disabled: permgate events resend EVT --app APP)")
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    from permgate.events import rotate_secret

    with open_store(args.db) as store:
        new = rotate_secret(store, args.endpoint_id, by=args.by, grace=args.expire_old_in)
    if args.format == "json":
        print(json.dumps(new.as_json(), indent=2))
        return EXIT_OK
    print(f"new signing secret for {new.endpoint.endpoint_id} (shown only now): {new.secret}")
    hours = args.expire_old_in.total_seconds() / 3600
    print("the old secret stops signing " + (f"in {hours:g} h" if hours else "now"))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_db(common)
    add_format(common)
    add_api(common)
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--by", default=current_user(), metavar="USER",
                       help="who does this, for the audit trail (default: you)")

    p = sub.add_parser("webhooks", help="an app's webhook endpoints",
                       description="An app's webhook endpoints: where its events are sent.")
    w = p.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _usage(p))

    add = w.add_parser("add", parents=[common, actor], help="register an endpoint",
                       description="Refused (exit 3) when the app's current manifest cannot "
                       "receive an event type; the message names the permission to add.",
                       epilog=STORE_EXITS)
    add_app(add)
    add.add_argument("--url", required=True, help="where events are POSTed (https://...)")
    add.add_argument("--events", required=True, metavar="a,b|*",
                     help="event types, or * for every event the app may receive")
    add.add_argument("--mode", required=True, choices=MODES,
                     help="the mode whose events this endpoint receives")
    add.set_defaults(func=_add)

    ls = w.add_parser("list", parents=[common], help="list endpoints (never their secrets)",
                      epilog=STORE_EXITS)
    add_app(ls, optional=True)
    ls.add_argument("--all", action="store_true", help="include removed endpoints")
    ls.set_defaults(func=_list)

    rm = w.add_parser("remove", parents=[common, actor], help="stop delivering to an endpoint",
                      epilog=STORE_EXITS)
    rm.add_argument("endpoint_id", metavar="ENDPOINT_ID", help="we_..., as `list` shows")
    rm.set_defaults(func=_remove)

    en = w.add_parser("enable", parents=[common, actor],
                      help="deliver again to an endpoint disabled after days of failures",
                      description="Deliver new events again to an endpoint the worker "
                      "disabled after every attempt failed for days (`list` shows why).",
                      epilog=STORE_EXITS)
    en.add_argument("endpoint_id", metavar="ENDPOINT_ID", help="we_..., as `list` shows")
    en.set_defaults(func=_enable)

    rot = w.add_parser("rotate-secret", parents=[common, actor],
                       help="a new signing secret, shown once", epilog=STORE_EXITS)
    rot.add_argument("endpoint_id", metavar="ENDPOINT_ID", help="we_..., as `list` shows")
    rot.add_argument("--expire-old-in", type=_hours, default=timedelta(0), metavar="HOURS",
                     help="keep signing with the old secret too for up to 24 hours (default 0)")
    rot.set_defaults(func=_rotate)


def _usage(p: argparse.ArgumentParser) -> int:
    raise CliError(p.format_usage().strip())
