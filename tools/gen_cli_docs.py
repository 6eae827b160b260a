"""Write docs/cli.md from the `permgate` parser itself: every command's --help, in order.

    .venv/bin/python tools/gen_cli_docs.py          # rewrite docs/cli.md
    .venv/bin/python tools/gen_cli_docs.py --check  # exit 1 if docs/cli.md is not current

tests/test_cli_docs.py runs the check, so the page cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps help to $COLUMNS: fixed, so the page is the same everywhere

HEADER = """\
# The `permgate` command

Generated from the parser by `tools/gen_cli_docs.py` (do not edit by hand; a test checks that
this page is current). Conventions every command follows:

- **Output**: `--format text|json` (and `sarif` where there are findings: `validate`, `lint`,
  `scan`, one writer for all three);
  `--json` is short for `--format json`.
- **The app** is always the positional `APP` (`permgate webhooks list com.example.app`);
  filters also accept the older `--app APP`.
- **The store**: `--db URL` (`sqlite:///PATH` or `postgresql://...`), else `$PERMGATE_DB`,
  else `sqlite:///.permgate/permgate.db`. An empty `--db` is an error. Only `db upgrade`
  (and the demo `serve`) creates a database; any other command refuses a missing one and
  leaves nothing behind.
- **Exit codes**: 0 allowed / valid / done, 1 findings or a refusal by the store, 2 bad input,
  3 denied (a missing permission, or a role that may not do this); each command lists its own.
  A user never sees a traceback: an unexpected failure prints one line and exits 70
  (`PERMGATE_DEBUG=1` shows the traceback).
- **Stripe CLI verbs**: `permgate apps grant permission NAME PURPOSE`, `apps revoke permission
  NAME`, `apps grant url URL PURPOSE`, `apps revoke url URL` (Stripe: `apps revoke connect-src
  URL`, also accepted). `permgate grant ...` / `permgate revoke ...` are the same commands.
- **README blocks**: the README's ```` ```sh ```` blocks are run by `tests/test_readme.py`;
  ```` ```text ````, ```` ```console ```` and ```` ```python ```` blocks are not, nor is a
  `sh` block whose first line is `# not run: REASON`. A line ending in `# exit N` must exit N.
"""


def render() -> str:
    os.environ["COLUMNS"] = WIDTH
    sys.path.insert(0, str(ROOT / "src"))
    from permgate.cli import build_parser, walk

    parser = build_parser()
    parts = [HEADER]
    for name, p in walk(parser):
        level = "##" if name.count(" ") <= 1 else "###"
        parts.append(f"\n{level} `{name}`\n\n```text\n{p.format_help().rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is not current")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is not current: run tools/gen_cli_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
