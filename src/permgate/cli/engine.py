"""`permgate permissions`, `check`, `explain`: the catalog and the decision engine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO

import permgate
from permgate import boundedjson
from permgate.api.expand import Expansion
from permgate.catalog import UnknownPermission
from permgate.cli import EXIT_DENIED, EXIT_OK, EXIT_USAGE, CliError
from permgate.cli._common import (
    MODES,
    add_api,
    add_app,
    add_db,
    add_format,
    app_of,
    exit_codes,
)
from permgate.decision import Decision, Engine, Grant

BATCH_KEYS = ("method", "path", "grants", "expand", "account", "body")
BATCH_HELP = """\
--batch FILE (or - for stdin): one JSON object per line, for example
  {"method": "GET", "path": "/v1/charges/ch_1?expand[]=customer", "grants": ["charge_read"]}
keys: method, path (required); grants, expand (lists of strings); account, body (strings:
the account named in the message, a form-encoded request body). Any other key is an error
on that line. Out: one JSON object per line, in order: the decision, or {"error", "line"}.
"""
CHECK_EXITS = exit_codes(
    "0  allowed (--batch: every line allowed)",
    "2  bad input (--batch: some line is invalid)",
    "3  denied or refused (--batch: some line is denied, none invalid)",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("permissions", help="list the permission catalog",
                       description="Every permission Stripe documents, with its product, "
                       "implications and source.",
                       epilog=exit_codes("0  listed", "2  no such product"))
    p.add_argument("--product", metavar="PRODUCT",
                   help="only this product (e.g. Billing, Core); an unknown one lists them")
    add_format(p, what="the catalog")
    add_api(p)
    p.set_defaults(func=cmd_permissions)

    p = sub.add_parser(
        "check", help="decide whether a request is allowed",
        description="Decide one API request (or a batch of them) against a set of granted "
        "permissions, as the gateway would.",
        epilog=BATCH_HELP + "\n" + CHECK_EXITS,
    )
    p.add_argument("method", nargs="?", metavar="METHOD", help="GET, POST or DELETE")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="the request path, e.g. '/v1/charges/ch_1?expand[]=customer' "
                   "(quote it: ? and [] mean something to the shell)")
    p.add_argument("--expand", action="append", default=[], metavar="FIELD",
                   help="an expansion, as expand[]=FIELD would ask (repeatable)")
    p.add_argument("--grant", action="append", default=[], metavar="PERMISSION",
                   help="a permission the app holds (repeatable; none: the app holds nothing)")
    p.add_argument("--account", metavar="ACCT", help="account id named in the message")
    add_format(p, what="the decision")
    p.add_argument("--batch", metavar="FILE", help="decide JSON lines from FILE (- for stdin); "
                   "the line format is below")
    add_api(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explain", help="what would allow a request, for a person",
                       description="The operation a request maps to, what each expansion "
                       "reaches, and the permissions that would allow it.",
                       epilog=exit_codes("0  the request maps to an operation apps may use",
                                         "2  bad input",
                                         "3  refused: unknown path, unavailable to apps, or a "
                                         "bad expansion"))
    p.add_argument("method", metavar="METHOD", help="GET, POST or DELETE")
    p.add_argument("path", metavar="PATH", help="the request path, may carry a query string")
    p.add_argument("--expand", action="append", default=[], metavar="FIELD",
                   help="an expansion, as expand[]=FIELD would ask (repeatable)")
    add_app(p, optional=True, what="also decide for this app's install (with --account): "
            "what it may do now, and whether a version awaiting approval asks for what is "
            "missing")
    p.add_argument("--account", metavar="ACCT", default=None, help="the install's account")
    p.add_argument("--mode", choices=MODES, default="live", help="the install's mode "
                   "(default live)")
    add_db(p)
    add_format(p, what="the explanation")
    add_api(p)
    p.set_defaults(func=cmd_explain)


def grant_from_args(engine: Engine, names: Iterable[str]) -> Grant:
    try:
        return engine.grant(names)
    except UnknownPermission as e:
        raise CliError(str(e)) from None


def _method(raw: str) -> str:
    if not raw.isascii() or not raw.isalpha():
        raise CliError(f"invalid HTTP method {raw!r}")
    return raw.upper()


def _path(raw: str) -> str:
    if not raw.startswith("/"):
        raise CliError(f"the path must start with '/': {raw!r}")
    return raw


def decision_json(d: Decision) -> dict[str, Any]:
    return d.as_dict()


def print_decision(d: Decision, as_json: bool, out: TextIO | None = None,
                   hint: str | None = None, subject: str | None = None) -> int:
    out = out or sys.stdout
    if as_json:
        data = decision_json(d)
        if hint:
            data["hint"] = hint
        print(json.dumps(data), file=out)
    else:
        op = (f"{d.operation.method} {d.operation.path}" if d.operation
              else subject or "(no operation)")
        verdict = "allowed" if d.allowed else f"denied ({d.kind})"
        print(f"{verdict}: {op}", file=out)
        if not d.allowed:
            print(d.message, file=out)
        if hint:
            print(f"hint: {hint}", file=out)
    return EXIT_OK if d.allowed else EXIT_DENIED


def path_hint(engine: Engine, method: str, target: str, d: Decision) -> str | None:
    """For an unknown path that the API knows under its base path (Stripe's /v1): say so
    (the commonest slip)."""
    profile = permgate.api_profile()
    bases = [b for b in profile.base_paths if b]
    if d.kind != "unknown" or not bases or target.startswith(tuple(b + "/" for b in bases)):
        return None
    fixed = bases[0] + target
    try:
        known = engine.route(method, fixed.partition("?")[0]) is not None
    except ValueError:
        return None
    return (f"{profile.title} paths start with {bases[0]}: did you mean {fixed}?" if known
            else None)


def cmd_check(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    if args.batch is not None:
        if args.method or args.path:
            raise CliError("--batch takes its requests from the file, not from arguments")
        return run_batch(engine, args.batch)
    if not args.method or not args.path:
        raise CliError("usage: permgate check METHOD PATH [--expand F]... [--grant P]...")
    grant = grant_from_args(engine, args.grant)
    method, target = _method(args.method), _path(args.path)
    d = engine.decide(method, target, None, grant, expand=args.expand, account=args.account)
    return print_decision(d, args.format == "json", hint=path_hint(engine, method, target, d))


MAX_BATCH_LINE = 1 << 16  # a request line is far smaller; /dev/zero has no newline at all


def _bounded_lines(f: BinaryIO, source: str) -> Iterator[str]:
    number = 0
    while True:
        raw = f.readline(MAX_BATCH_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_BATCH_LINE:
            raise CliError(f"{source}: line {number} is longer than {MAX_BATCH_LINE} bytes")
        yield raw.decode("utf-8", errors="replace")


def _batch_lines(source: str) -> Iterator[str]:
    # Bytes decoded line by line: a line that is not UTF-8 becomes that line's error (its
    # replacement characters are not JSON), not the end of the batch.
    if source == "-":
        yield from _bounded_lines(sys.stdin.buffer, "stdin")
        return
    try:
        with open(source, "rb") as f:
            yield from _bounded_lines(f, source)
    except OSError as e:
        raise CliError(f"cannot read batch file {source}: {e.strerror}") from None


def run_batch(engine: Engine, source: str) -> int:
    """One JSON object out per line in, in order; a bad line gets an error object.

    Exit 2 when any line is invalid, else 3 when any line is denied, else 0."""
    out = sys.stdout
    invalid = denied = False
    for number, line in enumerate(_batch_lines(source), 1):
        if not line.strip():
            continue
        try:
            d = _batch_decision(engine, line)
            denied = denied or not d.allowed
            out.write(json.dumps(decision_json(d)) + "\n")
        except boundedjson.JsonRefused as e:
            invalid = True
            out.write(json.dumps({"error": f"line {number}: invalid JSON: {e}",
                                  "line": number}) + "\n")
        except CliError as e:
            invalid = True
            out.write(json.dumps({"error": f"line {number}: {e}", "line": number}) + "\n")
    out.flush()
    return EXIT_USAGE if invalid else EXIT_DENIED if denied else EXIT_OK


def _batch_decision(engine: Engine, line: str) -> Decision:
    item = boundedjson.loads(line)
    if not isinstance(item, dict):
        raise CliError("each line must be a JSON object")
    unknown = sorted(set(item) - set(BATCH_KEYS))
    if unknown:
        hints = {"grant": "grants", "permissions": "grants", "expansions": "expand",
                 "url": "path", "verb": "method"}
        named = ", ".join(f"'{k}'" + (f" (did you mean '{hints[k]}'?)" if k in hints else "")
                          for k in unknown)
        raise CliError(f"unknown key {named}; the keys are {', '.join(BATCH_KEYS)}")
    method, path = item.get("method"), item.get("path")
    expand, grants = item.get("expand", []), item.get("grants", [])
    account, body = item.get("account"), item.get("body")
    if not isinstance(method, str) or not isinstance(path, str):
        raise CliError("'method' and 'path' must be strings")
    if not _str_list(expand) or not _str_list(grants):
        raise CliError("'expand' and 'grants' must be lists of strings")
    if not isinstance(account, str | None) or not isinstance(body, str | None):
        raise CliError("'account' and 'body' must be strings")
    return engine.decide(_method(method), _path(path), body, grant_from_args(engine, grants),
                         expand=expand, account=account)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def cmd_explain(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    method, target = _method(args.method), _path(args.path)
    app = app_of(args)
    if (app is None) != (args.account is None):
        raise CliError("APP and --account go together: the install to decide for")
    d = engine.requirements(method, target, expand=args.expand)
    hint = path_hint(engine, method, target, d)
    install = None if app is None else _install_decision(engine, args, app, method, target)
    if args.format == "json":
        data = decision_json(d)
        if hint:
            data["hint"] = hint
        if install is not None:
            data["install"] = install
        print(json.dumps(data, indent=2))
    else:
        print(explain_text(engine, method, target, d, args.expand))
        if hint:
            print(f"hint: {hint}")
        if install is not None:
            print(f"for {install['app']} on {install['account']} ({install['mode']}), "
                  f"{install['status']}: " + ("allowed" if install["allowed"] else
                                              f"denied: {install['message']}"))
            if install["pending_hint"]:
                print(f"pending approval: {install['pending_hint']}")
    return EXIT_OK if d.kind in ("allowed", "missing") else EXIT_DENIED


def _install_decision(engine: Engine, args: argparse.Namespace, app: str, method: str,
                      target: str) -> dict[str, Any]:
    """The request decided on the install's approved grant, as the gateway decides it, with
    the gateway's pending-approval hint (store EffectiveGrant.pending_hint)."""
    from permgate.cli._common import open_store

    with open_store(args.db) as store:
        grant = store.effective_grant(app, args.account, args.mode)
    if grant is None:
        raise CliError(f"{app} is not installed on {args.account} in {args.mode} mode",
                       EXIT_DENIED)
    d = engine.decide(method, target, None, engine.grant(grant.approved),
                      expand=args.expand, account=args.account)
    return {"app": grant.app_id, "account": grant.account, "mode": grant.mode,
            "status": grant.status, "allowed": d.allowed,
            "message": None if d.allowed else d.message,
            "pending_hint": None if d.kind != "missing" else grant.pending_hint(d.missing)}


def explain_text(engine: Engine, method: str, target: str, d: Decision, extra: list[str]) -> str:
    cat = engine.catalog
    lines = [f"{method} {target}"]
    op = d.operation
    if d.kind in ("bad_request", "unknown", "unavailable"):
        if op is not None:
            lines.append(f"  operation: {op.method} {op.path}")
        lines.append(f"  refused ({d.kind}): {d.message}")
        return "\n".join(lines)
    assert op is not None and op.permission is not None
    lines.append(f"  operation: {op.method} {op.path}" + (" (list)" if op.is_list else ""))
    lines.append(f"  needs {op.permission}" + (f"  ({op.rule})" if op.rule else ""))
    query = target.partition("?")[2]
    try:
        named = engine.expand_reader.query(query) if query else ()
    except ValueError:
        named = ()  # refused already: d says why
    for e in dict.fromkeys((*named, *extra)):
        lines.append(f"  expand {e}:")
        lines += ["    " + line for line in expansion_steps(engine.expansion(op, e))]
    lines.append("  allowed by any grant that holds, for each line below, one of:")
    for group in d.required:
        first = cat.permissions[group[0]]
        lines.append(f"    {', '.join(group)}   [{first.product} / {first.title}]")
    return "\n".join(lines)


def expansion_steps(exp: Expansion) -> list[str]:
    """One line per step of an expansion path: walked, expanded (object, permission) or
    includable (the equivalent request and what it needs)."""
    out = []
    for i, step in enumerate(exp.steps):
        reached = ", ".join(step.types)
        needs = ", ".join(step.needs)
        listed = i + 1 < len(exp.steps) and exp.steps[i + 1].field == "data" \
            and exp.steps[i + 1].kind == "walked"
        if step.kind == "walked":
            into = f" into {'a list of ' if listed else ''}{reached}" if reached else ""
            out.append(f"{step.field}: walked{into} (nothing of its own)")
        elif step.kind == "includable":
            out.append(f"{step.field}: includable{' list' if listed else ''}, needs what "
                       f"{step.request} needs: {needs}")
        elif step.reads and step.reads[0][0] == "*":
            out.append(f"{step.field}: expanded to {reached}, needs the field's own "
                       f"permission {needs}")
        else:
            out.append(f"{step.field}: expanded to " + ", ".join(
                f"{t} (needs {p}" + (f", read through its owner as {via} reads it)" if via
                                     else ")")
                for t, p, via in step.reads))
        if step.versions:
            out[-1] += f"; API versions that have it: {', '.join(step.versions)}"
    if exp.error is not None:
        out.append(f"refused ({exp.error}): {exp.message}")
    return out


def cmd_permissions(args: argparse.Namespace) -> int:
    cat = permgate.default_engine().catalog
    rows = sorted(cat.permissions.values(), key=lambda p: (p.product or "~", p.title, p.name))
    if args.product:
        want = args.product.lower()
        rows = [p for p in rows if p.product.lower() == want]
        if not rows:
            products = sorted({p.product for p in cat.permissions.values() if p.product})
            raise CliError(f"no product {args.product!r}; products: {', '.join(products)}")
    if args.format == "json":
        print(json.dumps([
            {"name": p.name, "level": p.level, "product": p.product, "resource": p.title,
             "description": p.description, "implies": list(p.implies),
             "also_request": [a.permission for a in p.also_request], "sources": list(p.sources),
             "requestable": p.requestable, "refused": p.refused}
            for p in rows
        ], indent=1))
        return EXIT_OK
    width = max(len(p.name) for p in rows)
    for p in rows:
        notes = []
        if p.implies:
            notes.append("implies " + ", ".join(p.implies))
        if not p.requestable:
            notes.append("not requestable")
        if "reference" not in p.sources:
            notes.append("source: " + ", ".join(p.sources))
        tail = f"  ({'; '.join(notes)})" if notes else ""
        print(f"{p.name:<{width}}  {p.product or '-'} / {p.title}{tail}")
    return EXIT_OK

