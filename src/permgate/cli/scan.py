"""`permgate scan [PATH] [--manifest PATH] [--format text|json|sarif] [--fix]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from permgate.cli import EXIT_FINDINGS, EXIT_OK, CliError
from permgate.cli._common import add_api, add_format, exit_codes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "scan", help="read an app's code: the permissions it needs, missing and unused",
        description="Find the Stripe API calls and handled events in an app's code and compare "
        "what they need with the manifest.",
        epilog=exit_codes("0  clean", "1  findings (missing, unused, unavailable, invalid)",
                          "2  bad input"),
    )
    p.add_argument("path", nargs="?", default=".", help="app folder or file (default: .)")
    p.add_argument("--manifest", metavar="PATH",
                   help="stripe-app.json (default: PATH/stripe-app.json if any)")
    add_format(p, sarif=True, what="the verdict (sarif: for code scanning)")
    p.add_argument("--include-tests", action="store_true",
                   help="read test files too (left out by default: tests are not the app's "
                   "traffic)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (shown only on a terminal, for large trees)")
    p.add_argument("--fix", action="store_true",
                   help="grant the missing permissions with a placeholder purpose (never revokes)")
    add_api(p)
    p.set_defaults(func=run)


# permgate.manifest.DEFAULT_NAME, spelt here so that a scan without a manifest does not load
# the manifest layer (tests check the two agree).
DEFAULT_MANIFEST = "stripe-app.json"


def _manifest_path(root: Path, given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    base = root if root.is_dir() else root.parent
    candidate = base / DEFAULT_MANIFEST
    return candidate if candidate.is_file() else None


def run(args: argparse.Namespace) -> int:
    # Imports here, not at the top: `permgate scan` starts fast (only what a scan needs).
    from permgate.scan import report, scan

    root = Path(args.path)
    if not root.exists():
        raise CliError(f"{root}: no such file or folder")
    if not (root.is_dir() or root.is_file()) or not os.access(root, os.R_OK):
        raise CliError(f"{root}: not a readable file or folder")
    mpath = _manifest_path(root, args.manifest)
    manifest = None
    if mpath is not None:
        from permgate import manifest as mf

        try:
            manifest = mf.load(mpath)
        except mf.ManifestError as e:
            raise CliError(f"{mpath}: {e}") from None
    elif args.fix:
        raise CliError("--fix needs a manifest: none given and no stripe-app.json in PATH")
    granted = list(manifest.permission_names) if manifest is not None else None
    v = scan(root, granted, str(mpath) if mpath is not None else None,
             include_tests=args.include_tests, progress=False if args.no_progress else None)
    if args.fix and manifest is not None and v.missing:
        for m in v.missing:
            try:
                mf.grant(manifest, m.permission, mf.PLACEHOLDER_PURPOSE)
            except (mf.GrantError, mf.UnknownPermission) as e:
                raise CliError(f"--fix could not grant {m.permission}: {e}") from None
        mf.save(manifest)
        print(f"granted {', '.join(m.permission for m in v.missing)} in {mpath} with the "
              "placeholder purpose (`permgate lint` flags it: write the real one)", file=sys.stderr)
    if args.format == "json":
        out = report.as_json(v)
    elif args.format == "sarif":
        out = report.sarif(v, mpath)
    else:
        out = report.text(v)
    sys.stdout.write(out)
    if args.fix:
        # what --fix granted is no longer a finding; unused ones still are
        return EXIT_FINDINGS if (v.unused or v.unavailable or v.invalid) else EXIT_OK
    return EXIT_FINDINGS if v.has_findings else EXIT_OK
