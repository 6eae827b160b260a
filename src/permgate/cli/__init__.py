"""The `permgate` command: a thin shell over the layers.

Each module of this package adds its own sub-commands: it defines
`register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None`, and every
parser it adds sets `func` (parsed namespace -> exit code) with `set_defaults`.
Command modules import the layers they drive inside their handlers, so that building the
parser stays cheap and `permgate check` never loads the store, the gateway or the scanner.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator

from permgate import envvars
from permgate.errors import CliError as CliError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_DENIED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BUG = 130, 70

# Top-level command -> the module that registers it, so that `permgate check` imports and
# builds only its own module's parsers. A command missing here still works (the whole parser
# is built); tests/test_cli_docs.py checks that every entry is right.
COMMANDS: dict[str, str] = {
    "permissions": "engine", "check": "engine", "explain": "engine", "events": "events",
    "serve": "gateway", "grant": "manifest", "revoke": "manifest", "validate": "manifest",
    "lint": "manifest", "diff": "manifest", "scan": "scan", "db": "store", "apps": "store",
    "install": "store", "approve": "store", "uninstall": "store", "installs": "store",
    "keys": "store", "audit": "store", "admin": "store", "webhooks": "webhooks",
    "console": "console", "listen": "events", "trigger": "events", "init": "ownapi",
}

DEFAULT_EXITS = "exit codes:\n  0  done\n  1  failed (the message says why)\n  2  bad input"


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrap as usual; an epilog (exit codes, formats) keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` (a module of this package) just that module's
    commands: enough to parse a command line whose command it registers."""
    from permgate import __version__

    parser = argparse.ArgumentParser(
        prog="permgate",
        description="The Stripe Apps permission system: check, explain, manifests, consent, "
        "gateway, events, scan.",
        epilog="exit codes (every command lists its own):\n  0  allowed, valid, done\n"
        "  1  findings (lint, scan, validate) or refused by the store\n  2  bad input\n"
        "  3  denied (a permission is missing, or the role may not do this)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"permgate {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or (only is not None and info.name != only):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register: Callable[..., None] | None = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for _, p in walk(parser):
        p.formatter_class = HelpFormatter
        if p is not parser and p.epilog is None:
            p.epilog = DEFAULT_EXITS
    return parser


def walk(parser: argparse.ArgumentParser, name: str = "permgate"
         ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser under `parser` with its full command name, parents first; an alias
    (a second name for the same parser) is listed once, under its first name."""
    yield name, parser
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                yield from walk(sub, f"{name} {sub_name}")


def _command(argv: list[str]) -> str | None:
    """The top-level command of a command line (None for --help, --version or none)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    from typing import TextIO, cast

    from permgate.cli._output import EscapingStream

    # Names, purposes and URLs come from files and databases others write: escape control
    # characters in everything printed (terminal injection), then put the streams back.
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, EscapingStream(out))
    sys.stderr = cast(TextIO, EscapingStream(err))
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> int:
    envvars.warn_unknown(lambda message: print(f"permgate: {message}", file=sys.stderr))
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:  # the same output as argparse's, without building the parser
        from permgate import __version__

        print(f"permgate {__version__}")
        return EXIT_OK
    parser = build_parser(COMMANDS.get(_command(argv) or ""))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if hasattr(args, "api_dir"):  # a command that decides: --api DIR / PERMGATE_API
            from permgate.cli._common import select_api

            select_api(args)
        return func(args)
    except CliError as e:
        print(f"permgate: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("permgate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        # Last line of defence: a user sees one line, not a traceback (PERMGATE_DEBUG=1 shows
        # it). Every expected failure is a CliError with its own message; this is a bug.
        if envvars.DEBUG.get():
            raise
        print(f"permgate: internal error: {type(e).__name__}: {e} (this is a bug; "
              "PERMGATE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_BUG
