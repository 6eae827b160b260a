"""`permgate events check|list`: which events a grant set may receive."""

from __future__ import annotations

import argparse
import json

import permgate
from permgate.cli import EXIT_OK, CliError
from permgate.cli.engine import grant_from_args, print_decision


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", help="event permissions (and, with a store, deliveries)")
    events = p.add_subparsers(dest="events_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _usage(p))

    c = events.add_parser("check", help="may a grant set receive this event type?",
                          description="Exit 0 allowed, 3 denied, 2 bad input.")
    c.add_argument("event_type")
    c.add_argument("--grant", action="append", default=[], metavar="PERMISSION")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)

    ls = events.add_parser("list", help="event types and what allows each")
    ls.add_argument("--grant", action="append", default=None, metavar="PERMISSION",
                    help="only the events these permissions allow")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def _usage(p: argparse.ArgumentParser) -> int:
    raise CliError(p.format_usage().strip())


def cmd_check(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    grant = grant_from_args(engine, args.grant)
    return print_decision(engine.decide_event(args.event_type, grant), args.json)


def cmd_list(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    rules = sorted(engine.catalog.events.values(), key=lambda r: r.type)
    if args.grant is not None:
        allowed = set(engine.receivable_events(grant_from_args(engine, args.grant)))
        rules = [r for r in rules if r.type in allowed]
    if args.json:
        print(json.dumps([
            {"type": r.type, "permissions": list(r.permissions),
             "event_read_only": r.event_read_only, "source": r.source, "note": r.note}
            for r in rules
        ], indent=1))
        return EXIT_OK
    for r in rules:
        if r.event_read_only:
            needs = "event_read"
        elif r.permissions:
            needs = "event_read + one of " + ", ".join(r.permissions)
        else:
            needs = "not receivable"
        tag = "" if r.source == "documented" else "  [derived]"
        print(f"{r.type}: {needs}{tag}")
    return EXIT_OK
