"""`permgate grant|revoke permission`, `validate`, `lint`, `diff`: the manifest commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from permgate import __version__, manifest
from permgate.catalog import UnknownPermission
from permgate.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, CliError
from permgate.manifest.lint import sarif


def _path(raw: str | None) -> Path:
    p = Path(raw) if raw else Path(manifest.DEFAULT_NAME)
    return p / manifest.DEFAULT_NAME if p.is_dir() else p


def _load(raw: str | None) -> manifest.Manifest:
    try:
        m = manifest.load(_path(raw))
    except manifest.ManifestError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    for w in m.warnings:
        print(f"permgate: warning: {w}", file=sys.stderr)
    return m


def _grant(args: argparse.Namespace) -> int:
    m = _load(args.manifest)
    try:
        change = manifest.grant(m, args.name, args.explanation)
    except UnknownPermission as e:
        hint = f"; did you mean '{e.suggestion}'?" if e.suggestion else ""
        raise CliError(f"unknown permission '{e.name}'{hint} (nothing written)") from None
    except (manifest.GrantError, manifest.ManifestError) as e:
        raise CliError(f"{e} (nothing written)") from None
    if change.action != "unchanged":
        _save(m)
    print(f"{change.message} in {m.name}")
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    m = _load(args.manifest)
    try:
        change = manifest.revoke(m, args.name)
    except manifest.NotGranted as e:
        raise CliError(f"{e} (nothing written)", EXIT_FINDINGS) from None
    except manifest.ManifestError as e:
        raise CliError(f"{e} (nothing written)") from None
    _save(m)
    print(f"{change.message} in {m.name}")
    return EXIT_OK


def _save(m: manifest.Manifest) -> None:
    before = len(m.warnings)
    try:
        manifest.save(m)
    except OSError as e:
        raise CliError(f"{m.name}: could not write ({e.strerror}); the file is unchanged") from None
    for w in m.warnings[before:]:
        print(f"permgate: note: {w}", file=sys.stderr)


def _where(file: str, line: int | None, column: int | None) -> str:
    return f"{file}:{line}:{column}" if line is not None else file


def _validate(args: argparse.Namespace) -> int:
    try:
        m = manifest.load(_path(args.path))
    except manifest.ManifestError as e:
        if args.json:
            print(json.dumps({"path": e.path, "valid": False, "error": {
                "message": e.reason, "line": e.line, "column": e.column}}, indent=2))
            return EXIT_USAGE
        raise CliError(str(e)) from None
    problems = manifest.validate(m)
    if args.json:
        print(json.dumps({
            "path": m.name, "valid": not problems, "warnings": m.warnings,
            "problems": [{
                "pointer": p.pointer, "message": p.message, "code": p.code,
                "file": p.file or m.name, "line": p.line, "column": p.column,
            } for p in problems],
        }, indent=2))
    else:
        for w in m.warnings:
            print(f"permgate: warning: {w}", file=sys.stderr)
        for p in problems:
            where = _where(p.file or m.name, p.line, p.column)
            print(f"{where}: {p.pointer or '/'}: {p.message} [{p.code}]")
        if problems:
            n = len(problems)
            print(f"{m.name}: {n} error{'s' if n > 1 else ''}", file=sys.stderr)
        else:
            print(f"{m.name}: valid")
    return EXIT_FINDINGS if problems else EXIT_OK


def _lint(args: argparse.Namespace) -> int:
    m = _load(args.path)
    advice = manifest.lint(m)
    if args.format == "sarif":
        print(json.dumps(sarif([(m, advice)], __version__), indent=2))
    elif args.format == "json":
        print(json.dumps({"path": m.name, "advice": [{
            "pointer": a.pointer, "message": a.message, "code": a.code,
            "severity": a.severity, "line": a.line, "column": a.column,
        } for a in advice]}, indent=2))
    else:
        for a in advice:
            print(f"{_where(m.name, a.line, a.column)}: {a.severity}: {a.message} [{a.code}]")
        if not advice:
            print(f"{m.name}: no advice")
    return EXIT_FINDINGS if advice else EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    old, new = _load(args.old), _load(args.new)
    d = manifest.diff(old, new)
    if args.json:
        print(json.dumps({"old": old.name, "new": new.name, **d.as_json()}, indent=2))
    else:
        for name in d.added:
            note = "" if name in d.widens_access else "  (no new access: already implied)"
            print(f"+ {name}{note}")
        for name in d.removed:
            print(f"- {name}")
        for name in d.purpose_changed:
            print(f"~ {name}  (purpose changed)")
        if not (d.added or d.removed or d.purpose_changed):
            print("no permission changes")
        if d.needs_approval:
            print("installs must re-approve: the new version asks for permissions the old "
                  "one did not; until an administrator approves, access stays at the old set")
        else:
            print("no re-approval needed: the new version asks for nothing new")
    return EXIT_FINDINGS if d.needs_approval else EXIT_OK


def register(sub: Any) -> None:
    default = f"default ./{manifest.DEFAULT_NAME}"
    for verb, helptext in (("grant", "request a permission in the app manifest"),
                           ("revoke", "remove a permission from the app manifest")):
        p = sub.add_parser(verb, help=helptext, description=helptext)
        kinds = p.add_subparsers(dest="kind", metavar="permission", required=True)
        k = kinds.add_parser("permission", help=helptext, description=helptext)
        k.add_argument("name", metavar="NAME", help="permission name, e.g. customer_read")
        if verb == "grant":
            k.add_argument("explanation", metavar="EXPLANATION",
                           help="why the app needs it (shown to users who install it)")
        k.add_argument("--manifest", metavar="PATH", help=f"the manifest ({default})")
        k.set_defaults(func=_grant if verb == "grant" else _revoke)

    v = sub.add_parser("validate", help="check a manifest: every error at once",
                       description="Check a manifest. Exit 0 valid, 1 errors, 2 unreadable.")
    v.add_argument("path", nargs="?", metavar="PATH", help=f"manifest ({default})")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=_validate)

    li = sub.add_parser("lint", help="advice for a manifest",
                        description="Advice that is not an error. Exit 0 clean, 1 advice, "
                        "2 unreadable.")
    li.add_argument("path", nargs="?", metavar="PATH", help=f"manifest ({default})")
    li.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    li.set_defaults(func=_lint)

    d = sub.add_parser("diff", help="permission changes between two manifests",
                       description="Permissions added and removed. Exit 0 when installs "
                       "need no re-approval, 1 when they do, 2 unreadable.")
    d.add_argument("old", metavar="OLD")
    d.add_argument("new", metavar="NEW")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=_diff)
