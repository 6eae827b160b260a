"""`permgate init --from-openapi SPEC --out DIR`: your own API's tables from its document."""

from __future__ import annotations

import argparse
import shlex
import sys

from permgate.cli import EXIT_OK, CliError

EPILOG = """\
writes DIR/ (atomically: complete or not at all):
  permissions.json events.json operations.json objects.json expansions.json
                   the tables the engine loads, each row with the rule that made it
  api.toml         the edge: base paths, auth, encodings, expand and error styles, upstream
  REVIEW.md        every decision a heuristic made, for a person to check
rules and extensions (x-permgate-object, -level, -implies, -expand): docs/own-api.md

exit codes:
  0  written
  2  bad input: the document is refused (one line says why), or DIR is not empty
     (or, with --force, not a DIR init wrote)"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init", help="write an API DIR (permission tables, api.toml, REVIEW.md) from an "
        "OpenAPI document",
        description="Read an OpenAPI 3.0/3.1 document (JSON or YAML; local $refs only) and "
        "write the tables permgate loads for that API, its edge settings and a review list.",
        epilog=EPILOG,
    )
    p.add_argument("--from-openapi", metavar="SPEC", required=True,
                   help="the OpenAPI document (JSON or YAML, at most 20 MB)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="the directory to write; refused if it exists and is not empty")
    p.add_argument("--permissions", choices=("auto", "scopes", "objects"), default="auto",
                   help="permission names: the API's own OAuth scopes, or <object>_read/_write "
                   "(auto: scopes when every secured operation names scopes)")
    p.add_argument("--name", metavar="NAME",
                   help="catalog name, [a-z][a-z0-9_-]{0,39} (default: from info.title)")
    p.add_argument("--force", action="store_true",
                   help="replace a DIR an earlier init wrote (never one holding other files "
                   "or the document)")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from permgate.ownapi import SpecError, init_api

    command = shlex.join(["permgate", "init", "--from-openapi", args.from_openapi, "--out",
                          args.out, "--permissions", args.permissions]
                         + (["--name", args.name] if args.name else []) + ["--force"])
    try:
        r = init_api(args.from_openapi, args.out, style=args.permissions, name=args.name,
                     force=args.force, command=command)
    except SpecError as e:
        raise CliError(str(e)) from None
    except RecursionError:
        raise CliError(f"{args.from_openapi}: the document is nested too deep") from None
    available = sum(1 for o in r.operations if o.get("permission"))
    print(f"wrote {args.out}: {len(r.operations)} operations ({available} available), "
          f"{len(r.permissions)} permissions ({r.style}), {len(r.events)} events, "
          f"{len(r.findings)} decisions to review in {args.out}/REVIEW.md", file=sys.stdout)
    return EXIT_OK
