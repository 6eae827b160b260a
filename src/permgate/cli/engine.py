"""`permgate permissions`, `check`, `explain`: the catalog and the decision engine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import permgate
from permgate import boundedjson
from permgate.api.expand import Expansion
from permgate.api.params import expand_from_form
from permgate.catalog import UnknownPermission
from permgate.cli import EXIT_DENIED, EXIT_OK, CliError
from permgate.decision import Decision, Engine, Grant


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("permissions", help="list the permission catalog")
    p.add_argument("--product", help="only this product (e.g. Billing, Core)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_permissions)

    p = sub.add_parser(
        "check", help="decide whether a request is allowed",
        description="Exit 0 allowed, 3 denied (or refused), 2 bad input.",
    )
    p.add_argument("method", nargs="?", help="GET, POST or DELETE")
    p.add_argument("path", nargs="?", help="request path, may carry a query string")
    p.add_argument("--expand", action="append", default=[], metavar="FIELD")
    p.add_argument("--grant", action="append", default=[], metavar="PERMISSION")
    p.add_argument("--account", help="account id named in the message")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--batch", metavar="FILE", help="JSON lines in (FILE or -), JSON lines out")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explain", help="what would allow a request, for a person")
    p.add_argument("method")
    p.add_argument("path")
    p.add_argument("--expand", action="append", default=[], metavar="FIELD")
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


def print_decision(d: Decision, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if as_json:
        print(json.dumps(decision_json(d)), file=out)
    else:
        op = f"{d.operation.method} {d.operation.path}" if d.operation else "(no operation)"
        verdict = "allowed" if d.allowed else f"denied ({d.kind})"
        print(f"{verdict}: {op}", file=out)
        if not d.allowed:
            print(d.message, file=out)
    return EXIT_OK if d.allowed else EXIT_DENIED


def cmd_check(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    if args.batch is not None:
        if args.method or args.path:
            raise CliError("--batch takes its requests from the file, not from arguments")
        return run_batch(engine, args.batch)
    if not args.method or not args.path:
        raise CliError("usage: permgate check METHOD PATH [--expand F]... [--grant P]...")
    grant = grant_from_args(engine, args.grant)
    d = engine.decide(_method(args.method), _path(args.path), None, grant,
                      expand=args.expand, account=args.account)
    return print_decision(d, args.json)


MAX_BATCH_LINE = 1 << 16  # a request line is far smaller; /dev/zero has no newline at all


def _bounded_lines(f: TextIO, source: str) -> Iterator[str]:
    number = 0
    while True:
        line = f.readline(MAX_BATCH_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_BATCH_LINE:
            raise CliError(f"{source}: line {number} is longer than {MAX_BATCH_LINE} characters")
        yield line


def _batch_lines(source: str) -> Iterator[str]:
    if source == "-":
        yield from _bounded_lines(sys.stdin, "stdin")
        return
    try:
        with open(source, encoding="utf-8") as f:
            yield from _bounded_lines(f, source)
    except OSError as e:
        raise CliError(f"cannot read batch file {source}: {e.strerror}") from None


def run_batch(engine: Engine, source: str) -> int:
    """One JSON object out per line in, in order; a bad line gets an error object."""
    out = sys.stdout
    for number, line in enumerate(_batch_lines(source), 1):
        if not line.strip():
            continue
        try:
            item = boundedjson.loads(line)
            if not isinstance(item, dict):
                raise CliError("each line must be a JSON object")
            method, path = item.get("method"), item.get("path")
            expand, grants = item.get("expand", []), item.get("grants", [])
            if not isinstance(method, str) or not isinstance(path, str):
                raise CliError("'method' and 'path' must be strings")
            if not _str_list(expand) or not _str_list(grants):
                raise CliError("'expand' and 'grants' must be lists of strings")
            d = engine.decide(_method(method), _path(path), None, grant_from_args(engine, grants),
                              expand=expand, account=item.get("account"))
            out.write(json.dumps(decision_json(d)) + "\n")
        except boundedjson.JsonRefused as e:
            out.write(json.dumps({"error": f"line {number}: invalid JSON: {e}",
                                  "line": number}) + "\n")
        except CliError as e:
            out.write(json.dumps({"error": f"line {number}: {e}", "line": number}) + "\n")
    out.flush()
    return EXIT_OK


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def cmd_explain(args: argparse.Namespace) -> int:
    engine = permgate.default_engine()
    method, target = _method(args.method), _path(args.path)
    d = engine.requirements(method, target, expand=args.expand)
    print(explain_text(engine, method, target, d, args.expand))
    return EXIT_OK if d.kind in ("allowed", "missing") else EXIT_DENIED


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
    for e in dict.fromkeys((*expand_from_form(query), *extra)):
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
    if args.json:
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

