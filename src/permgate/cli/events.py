"""`permgate events check|list`: which events a grant set may receive.

With a store: `events deliveries|resend` (the outbox), `events worker` (deliver), `events poll`
(read an upstream's `GET /v1/events`), `events ingest` (serve the upstream webhook receiver).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path

import permgate
from permgate.cli import EXIT_FINDINGS, EXIT_OK, CliError
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
    _register_delivery(events)
    _register_dev_loop(sub)


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


# -- the outbox and its processes (need a store) -------------------------------------------

def _register_delivery(events: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", metavar="URL", default=None,
                    help="sqlite:///PATH or postgresql://... (default: $PERMGATE_DB)")

    d = events.add_parser("deliveries", parents=[db], help="deliveries in the outbox")
    d.add_argument("--app", metavar="APP_ID")
    d.add_argument("--status", choices=("pending", "delivered", "failed", "cancelled"))
    d.add_argument("--event", metavar="EVENT_ID")
    d.add_argument("--limit", type=int, default=None)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_deliveries)

    r = events.add_parser("resend", parents=[db],
                          help="queue an event again for an app's endpoints")
    r.add_argument("event_id", metavar="EVENT_ID")
    r.add_argument("--app", required=True, metavar="APP_ID")
    r.set_defaults(func=cmd_resend)

    w = events.add_parser("worker", parents=[db], help="deliver the outbox (runs until stopped)",
                          description="Several workers may share one PostgreSQL outbox.")
    w.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    w.add_argument("--batch", type=int, default=200, help="deliveries claimed at a time")
    w.add_argument("--concurrency", type=int, default=256,
                   help="attempts in flight at once, all endpoints together (default 256)")
    w.add_argument("--per-endpoint", type=int, default=16,
                   help="attempts in flight at once to one endpoint (default 16)")
    w.add_argument("--disable-after", type=float, default=3 * 86400.0, metavar="SECONDS",
                   help="disable an endpoint whose every attempt failed for this long "
                        "(default 3 days)")
    w.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP attempt")
    w.add_argument("--lease", type=float, default=None,
                   help="seconds a claimed attempt is reserved (default 2*timeout+30)")
    w.add_argument("--retry-first", type=float, default=60.0, metavar="SECONDS",
                   help="the first retry's delay; each later one doubles (default 60)")
    w.add_argument("--retry-horizon", type=float, default=72 * 3600.0, metavar="SECONDS",
                   help="no attempt starts later than this after the first (default 3 days)")
    w.set_defaults(func=cmd_worker)

    p = events.add_parser("poll", parents=[db], help="accept new events from GET /v1/events")
    p.add_argument("--upstream", required=True, metavar="URL")
    p.add_argument("--api-key-file", required=True, type=Path, metavar="PATH")
    p.add_argument("--account", required=True, metavar="ACCT",
                   help="the account the events belong to")
    p.add_argument("--connect", action="store_true",
                   help="send --account as Stripe-Account (polling a connected account)")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--once", action="store_true")
    p.set_defaults(func=cmd_poll)

    i = events.add_parser("ingest", parents=[db],
                          help="serve the receiver for the upstream's webhooks")
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, default=8471)
    i.add_argument("--secret-file", required=True, type=Path, metavar="PATH",
                   help="the upstream endpoint's whsec_... (one per line while rotating)")
    i.add_argument("--account", default=None, metavar="ACCT",
                   help="the account of events that name none")
    i.add_argument("--tolerance", type=int, default=300, metavar="SECONDS")
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
        found = list_deliveries(store, app_id=args.app, status=args.status,
                                event_id=args.event, limit=args.limit)
    if args.json:
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

    with open_store(args.db) as store:
        n = resend(store, args.event_id, args.app)
    print(f"queued {args.event_id} again for {n} endpoint(s) of {args.app}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events import DeliveryWorker, RetryPolicy

    policy = RetryPolicy(first_delay=args.retry_first, horizon=args.retry_horizon)
    from datetime import timedelta

    with open_store(args.db) as store, DeliveryWorker(
            store, policy=policy, batch=args.batch, concurrency=args.concurrency,
            per_endpoint=args.per_endpoint, timeout=args.timeout, lease=args.lease,
            disable_after=timedelta(seconds=args.disable_after)) as worker:
        if args.once:
            print(f"{worker.drain()} attempts")
        else:
            print(f"delivering from {store.url} (pid {os.getpid()})", flush=True)
            worker.run(_stop_on_signals())
    return EXIT_OK


def cmd_poll(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events.poller import Poller, PollError

    key = args.api_key_file.read_text("utf-8").strip()
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

    secrets = [s.strip() for s in args.secret_file.read_text("utf-8").splitlines() if s.strip()]
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
        "endpoint on exit (Ctrl-C).")
    li.add_argument("--app", required=True, metavar="APP_ID")
    li.add_argument("--forward-to", required=True, metavar="URL",
                    help="e.g. localhost:3000/webhooks (loopback only)")
    li.add_argument("--events", default="*", metavar="a,b",
                    help="event types to forward (default: every event the app may receive)")
    li.add_argument("--db", metavar="URL", default=None,
                    help="sqlite:///PATH or postgresql://... (default: $PERMGATE_DB)")
    li.add_argument("--timeout", type=float, default=10.0, help="seconds per forward")
    li.add_argument("--by", default=current_user(), metavar="USER",
                    help="who listens, for the audit trail (default: you)")
    li.set_defaults(func=cmd_listen)

    tr = sub.add_parser(
        "trigger", help="send a test event through the pipeline; who gets it, who not",
        description="Accepts a test-mode event of that type (Stripe's sample object) for "
        "the account exactly as an upstream event, and tells for each app installed there "
        "whether it receives it or which permission it lacks. Exit 0 when the app (or, "
        "without --app, any app) receives it, 3 when not.")
    tr.add_argument("event_type", metavar="EVENT")
    tr.add_argument("--account", default=None, metavar="ACCT",
                    help="default: the app's only test-mode account, else acct_demo "
                         "(the demo's)")
    tr.add_argument("--app", default=None, metavar="APP_ID", help="report on this app only")
    tr.add_argument("--db", metavar="URL", default=None,
                    help="sqlite:///PATH or postgresql://... (default: $PERMGATE_DB)")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_trigger)


def cmd_listen(args: argparse.Namespace) -> int:
    from permgate.cli._common import open_store
    from permgate.events.listen import describe, open_session, run_session

    events = [e for e in args.events.split(",") if e.strip()]
    with open_store(args.db) as store:
        new = open_session(store, args.app, args.forward_to, events, by=args.by)
        if not any(g.mode != "live" for g in store.list_installs(app_id=args.app)):
            print(f"note: {args.app} is installed in test mode nowhere yet; nothing will "
                  "arrive until an administrator installs it", flush=True)
        print(f"Ready! Forwarding {args.app}'s test events to {new.endpoint.url} "
              f"(endpoint {new.endpoint.endpoint_id}, events: "
              f"{','.join(new.endpoint.enabled_events)})", flush=True)
        print(f"Your webhook signing secret is {new.secret} (Ctrl-C to quit)", flush=True)
        run_session(store, new, _stop_on_signals(), by=args.by, timeout=args.timeout,
                    on_outcome=lambda o: print(describe(o), flush=True))
        print(f"removed {new.endpoint.endpoint_id}", flush=True)
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    from permgate.cli import EXIT_DENIED
    from permgate.cli._common import open_store
    from permgate.events.trigger import default_account, trigger

    with open_store(args.db) as store:
        account = args.account or default_account(store, args.app)
        done = trigger(store, args.event_type, account=account, app_id=args.app)
    received = any(v.allowed for v in done.verdicts)
    if args.json:
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
                  f"{ev['type']} (permgate listen --app {v.app_id} --forward-to ...)")
    if not done.verdicts:
        print(f"  no app is installed on {ev['account']} in test mode")
    return EXIT_OK if received else EXIT_DENIED
