"""The `permgate` command: a thin shell over the layers.

Each module of this package adds its own sub-commands: it defines
`register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None`, and every
parser it adds sets `func` (parsed namespace -> exit code) with `set_defaults`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_DENIED = 0, 1, 2, 3


class CliError(Exception):
    """A one-line reason for the user; `main` prints it and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (with `only`) just the module of that name: a command
    whose module has its name starts without importing every other layer."""
    parser = argparse.ArgumentParser(
        prog="permgate",
        description="The Stripe Apps permission system: check, explain, manifests, consent, "
        "gateway, events, scan.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or (only is not None and info.name != only):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register: Callable[..., None] | None = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _fast_parser(argv: list[str]) -> argparse.ArgumentParser | None:
    """A parser of one module when the command is named like its module (`permgate scan`)."""
    if not argv or argv[0].startswith("-") or argv[0].startswith("_"):
        return None
    if argv[0] not in {m.name for m in pkgutil.iter_modules(__path__)}:
        return None
    parser = build_parser(only=argv[0])
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return parser if sub is not None and argv[0] in sub.choices else None


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = _fast_parser(words) or build_parser()
    args = parser.parse_args(words)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except CliError as e:
        print(f"permgate: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return EXIT_OK
