"""`permgate console link`: a one-time sign-in link to the consent pages, from the shell.

The platform's backend normally asks for these through the admin API
(`POST /admin/v1/account_sessions`); this is the same for operators and the demo.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from permgate.cli import EXIT_OK
from permgate.cli._common import (
    STORE_EXITS,
    add_api,
    add_db,
    add_format,
    current_user,
    open_store,
)


def _link(args: argparse.Namespace) -> int:
    from permgate.store import people

    with open_store(args.db) as store:
        link = people.create_link(
            store, account=args.account, user_id=args.user,
            display_name=args.name or args.user, role=args.role,
            actor=f"cli:{current_user()}", return_url=args.return_url, next_path=args.next,
            ttl=timedelta(seconds=args.expires_in))
    url = f"{args.url.rstrip('/')}/console/links/{link.secret}"
    if args.format == "json":
        print(json.dumps({"url": url, "account": link.account, "user_id": link.user_id,
                          "role": link.role, "expires_at": link.expires_at.isoformat()}))
    else:
        print(url)
        print(f"(single use; expires {link.expires_at:%H:%M:%S} UTC; signs {link.user_id} in "
              f"as {link.role} on {link.account})")
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="the consent pages: sign-in links",
                       description="The consent pages (served by `permgate serve` under "
                       "/console/). See docs/consent.md.")
    s = p.add_subparsers(dest="console_command", metavar="COMMAND", required=True)
    link = s.add_parser(
        "link", help="print a one-time link that signs a person in to one account",
        description="Print a single-use link that opens a browser session on the consent "
        "pages for one user on one account. Only roles admin and super_admin may install, "
        "approve or uninstall; other roles see, read-only.", epilog=STORE_EXITS)
    link.add_argument("--account", required=True, metavar="ACCT", help="acct_...")
    link.add_argument("--user", required=True, metavar="ID", help="the platform's user id")
    link.add_argument("--name", default=None, help="display name (default: the user id)")
    link.add_argument("--role", required=True,
                      help="the user's role on the account (admin, super_admin, view_only...)")
    link.add_argument("--url", default="http://127.0.0.1:8420",
                      help="where the gateway serves the pages (default http://127.0.0.1:8420)")
    link.add_argument("--next", default=None, metavar="PATH",
                      help="land here after signing in, e.g. an /oauth/v2/authorize link")
    link.add_argument("--return-url", default=None, metavar="URL",
                      help="the platform page the console links back to")
    link.add_argument("--expires-in", type=int, default=300, metavar="SECONDS",
                      help="how long the link may wait to be opened (default 300, max 1800)")
    add_db(link)
    add_format(link, what="the link")
    add_api(link)
    link.set_defaults(func=_link)
