"""`permgate apps grant|revoke permission|url`, `validate`, `lint`, `diff`: the manifest.

`grant`/`revoke` at the top level are the older spelling of `apps grant`/`apps revoke`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from permgate.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, CliError
from permgate.cli._common import add_api, add_format, exit_codes

if TYPE_CHECKING:
    from permgate.manifest import Change, Manifest, ManifestError, Problem

DEFAULT_NAME = "stripe-app.json"  # permgate.manifest.DEFAULT_NAME, without importing it


def _path(raw: str | None) -> Path:
    p = Path(raw) if raw else Path(DEFAULT_NAME)
    return p / DEFAULT_NAME if p.is_dir() else p


def _load(raw: str | None) -> Manifest:
    from permgate import manifest

    path = _path(raw)
    if not path.exists() and raw is None:
        raise CliError(f"no {DEFAULT_NAME} here ({path.absolute()}): run this in your app's "
                       "folder, or name the manifest (PATH or --manifest PATH)", EXIT_USAGE)
    try:
        m = manifest.load(path)
    except manifest.ManifestError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    for w in m.warnings:
        print(f"permgate: warning: {w}", file=sys.stderr)
    return m


def _edit(args: argparse.Namespace, edit: Callable[[Manifest], Change]) -> int:
    """Load the manifest, apply one edit, write it unless nothing changed; every refusal is
    one line and leaves the file as it was."""
    from permgate import manifest
    from permgate.catalog import UnknownPermission

    m = _load(args.manifest)
    try:
        change = edit(m)
    except UnknownPermission as e:
        hint = f"; did you mean '{e.suggestion}'?" if e.suggestion else ""
        raise CliError(f"unknown permission '{e.name}'{hint} (nothing written); "
                       "`permgate permissions` lists them") from None
    except manifest.NotGranted as e:
        raise CliError(f"{e} (nothing written)", EXIT_FINDINGS) from None
    except (manifest.GrantError, manifest.ManifestError) as e:
        raise CliError(f"{e} (nothing written)") from None
    if change.action != "unchanged":
        _save(m)
    print(f"{change.message} in {m.name}")
    return EXIT_OK


def _grant(args: argparse.Namespace) -> int:
    from permgate import manifest

    return _edit(args, lambda m: manifest.grant(m, args.name, args.explanation))


def _revoke(args: argparse.Namespace) -> int:
    from permgate import manifest

    return _edit(args, lambda m: manifest.revoke(m, args.name))


def _grant_url(args: argparse.Namespace) -> int:
    from permgate import manifest

    return _edit(args, lambda m: manifest.grant_url(m, args.url, args.purpose))


def _revoke_url(args: argparse.Namespace) -> int:
    from permgate import manifest

    return _edit(args, lambda m: manifest.revoke_url(m, args.url))


def _save(m: Manifest) -> None:
    from permgate import manifest

    before = len(m.warnings)
    try:
        manifest.save(m)
    except OSError as e:
        raise CliError(f"{m.name}: could not write ({e.strerror}); the file is unchanged") from None
    for w in m.warnings[before:]:
        print(f"permgate: note: {w}", file=sys.stderr)


def _where(file: str, line: int | None, column: int | None) -> str:
    return f"{file}:{line}:{column}" if line is not None else file


MAX_FILES = 1000  # manifests one `validate` checks (a shell glob, not a crawl)


def _validate(args: argparse.Namespace) -> int:
    """One manifest or several: each is checked and reported (an unreadable one too), and the
    exit code is the worst: 2 unreadable, 1 errors, 0 all valid. JSON: one object for one
    manifest (as before), a list of them for several."""
    from permgate import manifest

    raws: list[str | None] = list(args.paths) or [None]
    if len(raws) > MAX_FILES:
        raise CliError(f"{len(raws)} manifests named; validate takes at most {MAX_FILES}")
    if raws == [None] and not _path(None).exists():
        raise CliError(f"no {DEFAULT_NAME} here ({_path(None).absolute()}): run this in your "
                       "app's folder, or name the manifests (PATH ...)")
    checked: list[tuple[Manifest, list[Problem]]] = []
    unreadable: list[ManifestError] = []
    reports: list[dict[str, Any]] = []
    for raw in raws:
        try:
            m = manifest.load(_path(raw))
        except manifest.ManifestError as e:
            unreadable.append(e)
            reports.append({"path": e.path, "valid": False, "error": {
                "message": e.reason, "line": e.line, "column": e.column}})
            if args.format == "text":
                print(f"permgate: {e}", file=sys.stderr)
            continue
        problems = manifest.validate(m)
        checked.append((m, problems))
        reports.append({
            "path": m.name, "valid": not problems, "warnings": m.warnings,
            "problems": [{
                "pointer": p.pointer, "message": p.message, "code": p.code,
                "file": p.file or m.name, "line": p.line, "column": p.column,
            } for p in problems],
        })
        if args.format == "text":
            _print_problems(m, problems)
    if args.format == "sarif":
        _print_validate_sarif(checked, unreadable)
    elif args.format == "json":
        print(json.dumps(reports[0] if len(raws) == 1 else reports, indent=2))
    if unreadable:
        return EXIT_USAGE
    return EXIT_FINDINGS if any(problems for _, problems in checked) else EXIT_OK


def _print_problems(m: Manifest, problems: list[Problem]) -> None:
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


def _print_validate_sarif(results: list[tuple[Manifest, list[Problem]]],
                          unreadable: list[ManifestError]) -> None:
    from permgate import __version__
    from permgate.manifest.validate import sarif
    from permgate.sarif import dumps

    sys.stdout.write(dumps(sarif(results, __version__, unreadable=unreadable)))


def _lint(args: argparse.Namespace) -> int:
    from permgate import __version__, manifest
    from permgate.manifest.lint import sarif
    from permgate.sarif import dumps

    ignore = _lint_ignored(args.ignore or [])
    m = _load(args.path)
    advice = [a for a in manifest.lint(m) if a.code not in ignore]
    if args.format == "sarif":
        sys.stdout.write(dumps(sarif([(m, advice)], __version__)))
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
    # Notes are advice that depends on intent ("could go", "too short"): shown, not failed.
    return EXIT_FINDINGS if any(a.severity == "warning" for a in advice) else EXIT_OK


def _lint_ignored(names: list[str]) -> frozenset[str]:
    from difflib import get_close_matches

    from permgate.manifest.lint import RULES

    for name in names:
        if name not in RULES:
            close = get_close_matches(name, RULES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CliError(f"--ignore {name!r}: no such lint rule{hint}; rules: "
                           + ", ".join(RULES), EXIT_USAGE)
    return frozenset(names)


def _diff(args: argparse.Namespace) -> int:
    from permgate import manifest

    old, new = _load(args.old), _load(args.new)
    d = manifest.diff(old, new)
    if args.format == "json":
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


EDIT_EXITS = exit_codes(
    "0  written (or already so: nothing to write)",
    "1  revoke: not granted, nothing to remove",
    "2  bad input: unknown permission, bad URL, empty purpose, unreadable manifest "
    "(nothing written)",
)


def add_edit_verbs(sub: Any, *, alias: bool = False) -> None:
    """`grant permission|url` and `revoke permission|url|connect-src` under `sub` (`apps`,
    as the Stripe CLI has them; with `alias`, the same at the top level)."""
    default = f"default ./{DEFAULT_NAME}"
    where = " (the same as `permgate apps {}`)" if alias else ""
    for verb in ("grant", "revoke"):
        helptext = ("request a permission or a connect-src URL in the app manifest"
                    if verb == "grant" else
                    "remove a permission or a connect-src URL from the app manifest")
        p = sub.add_parser(verb, help=helptext + where.format(verb),
                           description=helptext + where.format(verb) + ".")
        kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
        helptext = (f"{verb} a permission: edits `permissions` in the manifest, keeping "
                    "everything else byte for byte")
        k = kinds.add_parser("permission", help=helptext, description=helptext + ".",
                             epilog=EDIT_EXITS)
        k.add_argument("name", metavar="NAME", help="permission name, e.g. customer_read")
        if verb == "grant":
            k.add_argument("explanation", metavar="PURPOSE",
                           help="why the app needs it (shown to users who install it)")
        k.add_argument("--manifest", metavar="PATH", help=f"the manifest ({default})")
        add_api(k)
        k.set_defaults(func=_grant if verb == "grant" else _revoke)
        helptext = (f"{verb} a URL the UI extension may call: "
                    "ui_extension.content_security_policy.connect-src")
        for name in ("url",) if verb == "grant" else ("url", "connect-src"):
            u = kinds.add_parser(
                name, help=helptext if name == "url" else "the same as `revoke url`",
                description=helptext + ". Stripe's rules: https, with a path (a trailing slash "
                "allows everything under it), not a Stripe API, a wildcard only as the "
                "left-most label." + (" The purpose is shared by every URL: a new one replaces "
                                      "it." if verb == "grant" else ""),
                epilog=EDIT_EXITS)
            u.add_argument("url", metavar="URL", help="e.g. https://api.example.com/v1/")
            if verb == "grant":
                u.add_argument("purpose", metavar="PURPOSE",
                               help="why the app calls these URLs (shown at install)")
            u.add_argument("--manifest", metavar="PATH", help=f"the manifest ({default})")
            u.set_defaults(func=_grant_url if verb == "grant" else _revoke_url)


def register(sub: Any) -> None:
    default = f"default ./{DEFAULT_NAME}"
    add_edit_verbs(sub, alias=True)

    v = sub.add_parser("validate", help="check manifests: every error at once",
                       description="Check manifests against Stripe's schema and the "
                       "permission catalog; every error with its JSON pointer and line. "
                       "With several, each is checked and the worst result is the exit "
                       "code; --format json prints a list.",
                       epilog=exit_codes("0  all valid", "1  errors (listed)",
                                         "2  one is unreadable: missing file, not JSON"))
    v.add_argument("paths", nargs="*", metavar="PATH",
                   help=f"manifests or their folders ({default})")
    add_format(v, sarif=True, what="the problems (sarif: for code scanning)")
    add_api(v)
    v.set_defaults(func=_validate)

    li = sub.add_parser("lint", help="advice for a manifest",
                        description="Advice that is not an error: redundant permissions, a "
                        "missing elements_write, placeholder purposes, ... Each piece is a "
                        "warning (exit 1) or a note, advice that depends on what you intend "
                        "(a permission that could go, a short purpose: listed, exit 0).",
                        epilog=exit_codes("0  no advice, or notes only (listed)",
                                          "1  warnings (listed)",
                                          "2  unreadable: missing file, not JSON; an unknown "
                                          "--ignore rule"))
    li.add_argument("path", nargs="?", metavar="PATH", help=f"manifest ({default})")
    li.add_argument("--ignore", action="append", metavar="RULE", default=None,
                    help="leave out this rule's advice (repeatable; the rule is the code "
                    "in brackets, e.g. redundant-permission; docs/manifest.md lists them)")
    add_format(li, sarif=True, what="the advice (sarif: for code scanning)")
    add_api(li)
    li.set_defaults(func=_lint)

    d = sub.add_parser("diff", help="permission changes between two manifests",
                       description="Permissions added and removed, and whether installs "
                       "must re-approve.",
                       epilog=exit_codes("0  installs need no re-approval",
                                         "1  installs must re-approve (new permissions)",
                                         "2  unreadable"))
    d.add_argument("old", metavar="OLD", help="the manifest of the version installed now")
    d.add_argument("new", metavar="NEW", help="the manifest of the new version")
    add_format(d, what="the changes")
    add_api(d)
    d.set_defaults(func=_diff)
