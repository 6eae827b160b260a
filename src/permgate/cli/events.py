"""`permgate events check|list`: which events a grant set may receive.

With a store: `events deliveries|resend` (the outbox), `events worker` (deliver), `events poll`
(read an upstream's `GET /v1/events`), `events ingest` (serve the upstream webhook receiver).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import permgate
from permgate.cli import EXIT_FINDINGS, EXIT_OK, CliError
from permgate.cli._common import (
    STORE_EXITS,
    add_api,
    add_app,
    add_db,
    add_format,
    app_of,
    exit_codes,
    read_key_file,
)
from permgate.cli.engine import grant_from_args, print_decision

RUN_EXITS = exit_codes("0  stopped (or --once: done)", "1  the store or the upstream refused",
                       "2  bad input")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", help="event permissions (and, with a store, deliveries)",
                       description="Which events a set of permissions may receive; with a "
                       "store, the outbox and the processes that fill and empty it.")
    events = p.add_subparsers(dest="events_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _usage(p))

    c = events.add_parser("check", help="may a grant set receive this event type?",
                          description="May an app holding these permissions receive this "
                          "event type? (event_read plus one of the event's permissions)",
                          epilog=exit_codes("0  allowed", "2  bad input (unknown permission)",
                                            "3  denied (or an unknown event type)"))
    c.add_argument("event_type", metavar="EVENT_TYPE", help="e.g. invoice.paid")
    c.add_argument("--grant", action="append", default=[], metavar="PERMISSION",
                   help="a permission the app holds (repeatable)")
    add_format(c, what="the decision")
    add_api(c)
    c.set_defaults(func=cmd_check)

    ls = events.add_parser("list", help="event types and what allows each",
                           description="Every event type and the permissions it needs.",
                           epilog=exit_codes("0  listed", "2  bad input (unknown permission)"))
    ls.add_argument("--grant", action="append", default=None, metavar="PERMISSION",
                    help="only the events these permissions allow (repeatable)")
    add_format(ls, what="the events")
    add_api(ls)
    ls.set_defaults(func=cmd_list)
    _register_delivery(events)
    _register_dev_loop(sub)


def _usage(p: argparse.ArgumentParser) -> int:
    raise CliError(p.format_usage().strip())


def cmd_check(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    grant = grant_from_args(engine, args.grant)
    return print_decision(engine.decide_event(args.event_type, grant),
                          args.format == "json", subject=args.event_type)


def cmd_list(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    rules = sorted(engine.catalog.events.values(), key=lambda r: r.type)
    if args.grant is not None:
        allowed = set(engine.receivable_events(grant_from_args(engine, args.grant)))
        rules = [r for r in rules if r.type in allowed]
    if args.format == "json":
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


# -- the outbox and its processes (need a store) -------------------------------------------

def _register_delivery(events: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = argparse.ArgumentParser(add_help=False)
    add_db(db)
    add_api(db)  # routing and delivery decide on the API's event rules

    d = events.add_parser("deliveries", parents=[db], help="deliveries in the outbox",
                          description="Deliveries in the outbox: what was sent, what is pending.",
                          epilog=STORE_EXITS)
    add_app(d, optional=True)
    d.add_argument("--status", choices=("pending", "delivered", "failed", "cancelled"),
                   help="only deliveries in this state")
    d.add_argument("--event", metavar="EVENT_ID", help="only deliveries of this event (evt_...)")
    d.add_argument("--limit", type=int, default=None, metavar="N", help="at most N deliveries")
    add_format(d, what="the deliveries")
    d.set_defaults(func=cmd_deliveries)

    r = events.add_parser("resend", parents=[db],
                          help="queue an event again for an app's endpoints",
                          description="Queue an event again for an app's endpoints "
                          "(permissions are checked again).", epilog=STORE_EXITS)
    r.add_argument("event_id", metavar="EVENT_ID", help="the event, evt_...")
    add_app(r, optional=True)
    r.set_defaults(func=cmd_resend)

    w = events.add_parser("worker", parents=[db], help="deliver the outbox (runs until stopped)",
                          description="Deliver the outbox, with retries. Several workers may "
                          "share one PostgreSQL outbox.", epilog=RUN_EXITS)
    w.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    w.add_argument("--batch", type=int, default=200, metavar="N",
                   help="attempts claimed per round (default 200)")
    w.add_argument("--concurrency", type=int, default=256, metavar="N",
                   help="attempts in flight at once, all endpoints together (default 256)")
    w.add_argument("--per-endpoint", type=int, default=16, metavar="N",
                   help="attempts in flight at once to one endpoint (default 16)")
    w.add_argument("--disable-after", type=float, default=3 * 86400.0, metavar="SECONDS",
                   help="disable an endpoint whose every attempt failed for this long "
                        "(default 3 days)")
    w.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="seconds per HTTP attempt (default 10)")
    w.add_argument("--lease", type=float, default=None, metavar="SECONDS",
                   help="seconds a claimed attempt is reserved (default 2*timeout+30)")
    w.add_argument("--retry-first", type=float, default=60.0, metavar="SECONDS",
                   help="the first retry's delay; each later one doubles (default 60)")
    w.add_argument("--retry-horizon", type=float, default=72 * 3600.0, metavar="SECONDS",
                   help="no attempt starts later than this after the first (default 3 days)")
    w.set_defaults(func=cmd_worker)

    p = events.add_parser("poll", parents=[db], help="accept new events from GET /v1/events",
                          description="Accept new events from an upstream's GET /v1/events.",
                          epilog=RUN_EXITS)
    p.add_argument("--upstream", required=True, metavar="URL",
                   help="the Stripe-compatible API, e.g. https://api.stripe.com")
    p.add_argument("--api-key-file", required=True, type=Path, metavar="PATH",
                   help="file holding the upstream's secret key")
    p.add_argument("--account", required=True, metavar="ACCT",
                   help="the account the events belong to")
    p.add_argument("--connect", action="store_true",
                   help="send --account as Stripe-Account (polling a connected account)")
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between polls (default 5)")
    p.add_argument("--once", action="store_true", help="poll once, then exit")
    p.set_defaults(func=cmd_poll)

    i = events.add_parser("ingest", parents=[db],
                          help="serve the receiver for the upstream's webhooks",
                          description="Serve the receiver for the upstream's webhooks "
                          "(signatures checked).", epilog=RUN_EXITS)
    i.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    i.add_argument("--port", type=int, default=8471, help="listen port (default 8471)")
    i.add_argument("--secret-file", required=True, type=Path, metavar="PATH",
                   help="the upstream endpoint's whsec_... (one per line while rotating)")
    i.add_argument("--account", default=None, metavar="ACCT",
                   help="the account of events that name none")
    i.add_argument("--tolerance", type=int, default=300, metavar="SECONDS",
                   help="how old a signed timestamp may be (default 300)")
    i.set_defaults(func=cmd_ingest)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_deliveries(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events import list_deliveries

    with open_store(args.db) as store:
        found = list_deliveries(store, app_id=app_of(args), status=args.status,
                                event_id=args.event, limit=args.limit)
    if args.format == "json":
        print(json.dumps([d.as_json() for d in found], indent=2))
        return EXIT_OK
    for d in found:
        extra = f"  {d.last_error}" if d.last_error else ""
        print(f"{d.delivery_id}  {d.event_id}  {d.event_type}  {d.app_id}  {d.endpoint_id}  "
              f"{d.status}  attempts={d.attempts}{extra}")
    if not found:
        print("no deliveries")
    return EXIT_OK


def cmd_resend(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events import resend

    app = app_of(args, required=True)
    assert app is not None
    with open_store(args.db) as store:
        n = resend(store, args.event_id, app)
    print(f"queued {args.event_id} again for {n} endpoint(s) of {app}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events import DeliveryWorker, RetryPolicy

    policy = RetryPolicy(first_delay=args.retry_first, horizon=args.retry_horizon)
    from datetime import timedelta

    from permgate.events.sealing import reseal

    with open_store(args.db) as store, DeliveryWorker(
            store, policy=policy, batch=args.batch, concurrency=args.concurrency,
            per_endpoint=args.per_endpoint, timeout=args.timeout, lease=args.lease,
            disable_after=timedelta(seconds=args.disable_after)) as worker:
        # Secrets stored by earlier versions (pgs1) are rewritten as AES-GCM, once.
        migrated = reseal(store, worker.sealer, only_legacy=True)
        if migrated.resealed:
            print(f"re-sealed {migrated.resealed} webhook secret(s) of the earlier format",
                  file=sys.stderr)
        if args.once:
            print(f"{worker.drain()} attempts")
        else:
            print(f"delivering from {store.url} (pid {os.getpid()})", flush=True)
            worker.run(_stop_on_signals())
    return EXIT_OK


def cmd_poll(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events.poller import Poller, PollError

    key = read_key_file(args.api_key_file, "--api-key-file").strip()
    with open_store(args.db) as store:
        poller = Poller(store, args.upstream, key, account=args.account,
                        connect_header=args.connect)
        try:
            if args.once:
                r = poller.poll_once()
                print(f"fetched {r.fetched}, accepted {r.accepted}, "
                      f"duplicates {r.duplicates}, cursor {r.cursor}")
            else:
                poller.run(_stop_on_signals(), args.interval)
        except PollError as e:
            raise CliError(str(e), EXIT_FINDINGS) from None
        finally:
            poller.close()
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    import uvicorn

    from permgate.cli._common import open_store
    from permgate.events.ingest import ingest_app

    text = read_key_file(args.secret_file, "--secret-file")
    secrets = [s.strip() for s in text.splitlines() if s.strip()]
    with open_store(args.db) as store:
        app = ingest_app(store, secrets, account=args.account, tolerance=args.tolerance)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


# -- the developer's loop: listen and trigger ----------------------------------------------

def _register_dev_loop(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from permgate.cli._common import current_user

    li = sub.add_parser(
        "listen", help="forward an app's events to a local server",
        description="Registers a temporary test-mode endpoint for the app, prints its "
        "signing secret, forwards every event permgate would deliver to the app (filtered "
        "by its approved grant) to the local URL, one line per event, and removes the "
        "endpoint on exit (Ctrl-C). The local URL must be on this machine (loopback).",
        epilog=exit_codes("0  stopped (Ctrl-C or SIGTERM); the endpoint is removed",
                          "1  refused by the store (unknown app, database unreachable)",
                          "2  bad input (a --forward-to that is not on this machine)",
                          "3  the app's manifest cannot receive an event type asked for (or "
                          "it is not an event type)"))
    li.add_argument("app_id", metavar="APP", nargs="?", default=None,
                    help="the app whose events to forward, e.g. com.example.app")
    li.add_argument("--app", dest="app_flag", metavar="APP", default=None,
                    help="the same as the positional APP")
    li.add_argument("--forward-to", required=True, metavar="URL",
                    help="e.g. localhost:3000/webhooks (http:// is implied; loopback only)")
    li.add_argument("--events", default="*", metavar="a,b",
                    help="event types to forward (default: every event the app may receive)")
    add_db(li)
    li.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="seconds per forward (default 10)")
    li.add_argument("--by", default=current_user(), metavar="USER",
                    help="who listens, for the audit trail (default: you)")
    add_format(li, what="the session (json: one object per line)")
    add_api(li)
    li.set_defaults(func=cmd_listen)

    tr = sub.add_parser(
        "trigger", help="send a test event through the pipeline; who gets it, who not",
        description="Accepts a test-mode event of that type (Stripe's sample object) for "
        "the account exactly as an upstream event, and tells for each app installed there "
        "whether it receives it or which permission it lacks.",
        epilog=exit_codes("0  the app (without APP: any app) receives it",
                          "1  refused by the store (unknown app, database unreachable)",
                          "2  bad input (not an event type, or not an API version)",
                          "3  not received: the app lacks a permission, or no app is "
                          "installed there in test mode"))
    tr.add_argument("event_type", metavar="EVENT", help="an event type, e.g. customer.created")
    add_app(tr, optional=True, what="report on this app only, e.g. com.example.app")
    tr.add_argument("--account", default=None, metavar="ACCT",
                    help="default: the app's only test-mode account, else acct_demo "
                         "(the demo's)")
    tr.add_argument("--api-version", default=None, metavar="VERSION",
                    help="the event's api_version, e.g. 2024-06-20 (stripe-go and Stripe.net "
                         "refuse an event of another version than theirs; default: the "
                         "official Python library's pinned version)")
    add_db(tr)
    add_format(tr, what="the verdicts")
    add_api(tr)
    tr.set_defaults(func=cmd_trigger)


def cmd_listen(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events.listen import describe, open_session, run_session
    from permgate.events.worker import Outcome

    app = app_of(args, required=True)
    assert app is not None
    as_json = args.format == "json"

    def say(data: dict[str, object], text: str) -> None:
        print(json.dumps(data) if as_json else text, flush=True)

    def outcome(o: Outcome) -> None:
        say({"type": o.event_type, "id": o.event_id, "account": o.account,
             "status": o.status, "http_status": o.http_status, "error": o.error},
            describe(o))

    events = [e for e in args.events.split(",") if e.strip()]
    with open_store(args.db) as store:
        new = open_session(store, app, args.forward_to, events, by=args.by)
        ep = new.endpoint
        if not any(g.mode != "live" for g in store.list_installs(app_id=app)) \
                and not as_json:
            print(f"note: {app} is installed in test mode nowhere yet; nothing will "
                  "arrive until an administrator installs it", flush=True)
        say({"ready": True, "app_id": app, "endpoint": ep.as_json(), "secret": new.secret},
            f"Ready! Forwarding {app}'s test events to {ep.url} (endpoint "
            f"{ep.endpoint_id}, events: {','.join(ep.enabled_events)})")
        if not as_json:
            print(f"Your webhook signing secret is {new.secret} (Ctrl-C to quit)", flush=True)
        run_session(store, new, _stop_on_signals(), by=args.by, timeout=args.timeout,
                    on_outcome=outcome)
        say({"removed": ep.endpoint_id}, f"removed {ep.endpoint_id}")
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    from permgate.cli import EXIT_DENIED, EXIT_USAGE
    from permgate.cli._common import open_store
    from permgate.events.trigger import (
        BadApiVersion,
        UnknownEvent,
        check_api_version,
        default_account,
        trigger,
    )

    app = app_of(args)
    if args.api_version is not None:
        try:
            check_api_version(args.api_version)
        except BadApiVersion as e:
            raise CliError(f"--api-version: {e.message}", EXIT_USAGE) from None
    with open_store(args.db) as store:
        account = args.account or default_account(store, app)
        try:
            done = trigger(store, args.event_type, account=account, app_id=app,
                           api_version=args.api_version)
        except UnknownEvent as e:  # a typo in the command line: bad input
            raise CliError(e.message, EXIT_USAGE) from None
    received = any(v.allowed for v in done.verdicts)
    if args.format == "json":
        print(json.dumps(done.as_json(), indent=2))
        return EXIT_OK if received else EXIT_DENIED
    ev = done.event
    print(f"triggered {ev['type']} {ev['id']} on {ev['account']} (test mode)")
    for v in done.verdicts:
        if not v.allowed:
            print(f"  {v.app_id} ({v.mode}): not received. {v.message}")
        elif v.endpoints:
            print(f"  {v.app_id} ({v.mode}): received; queued for {', '.join(v.endpoints)}")
        else:
            print(f"  {v.app_id} ({v.mode}): allowed, but no endpoint of it subscribes to "
                  f"{ev['type']} (permgate listen {v.app_id} --forward-to ...)")
    if not done.verdicts:
        print(f"  no app is installed on {ev['account']} in test mode")
    return EXIT_OK if received else EXIT_DENIED
