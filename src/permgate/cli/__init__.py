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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permgate",
        description="The Stripe Apps permission system: check, explain, manifests, consent, "
        "gateway, events, scan.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register: Callable[..., None] | None = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


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
    parser = build_parser()
    args = parser.parse_args(argv)
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
