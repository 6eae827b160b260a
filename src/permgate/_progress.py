"""Progress on stderr for long work (a large scan, migrations, benches), with tqdm.

Shown only when stderr is a terminal: never in pipes, logs, CI or tests, whose stderr is not
one; `PERMGATE_NO_PROGRESS=1` turns it off there too. tqdm is imported only when a bar is
actually shown, so a command that shows none starts as fast as if it were not installed
(CLI start-up matters: `scripts/bench cli`). It imports nothing of permgate but envvars.

tqdm, not rich: rich alone imports faster (~40 ms against ~66 ms), but once rich is installed,
`import httpx` also loads httpx's command line (`httpx._main`: click, rich, pygments), some
60 ms more for every command that touches the store or events, bar or no bar.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from permgate import envvars

T = TypeVar("T")


class Bar(Protocol):
    def advance(self, n: int = 1) -> None:
        """`n` more units done."""

    def phase(self, description: str, total: int | None = None) -> None:
        """A new stage of the same work: the bar restarts at 0 of `total` (None: unknown)."""


def terminal() -> bool:
    """Whether progress may be shown: stderr is a terminal and nobody said no."""
    if envvars.NO_PROGRESS.get():
        return False
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


class _Off:
    def advance(self, n: int = 1) -> None:
        pass

    def phase(self, description: str, total: int | None = None) -> None:
        pass


class _Tqdm:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def phase(self, description: str, total: int | None = None) -> None:
        self._bar.set_description_str(f"permgate: {description}", refresh=False)
        self._bar.reset(total=total)


@contextmanager
def progress(description: str, total: int | None = None, *,
             enabled: bool = True) -> Iterator[Bar]:
    """A bar on stderr while the block runs, gone when it ends (the output stays clean).
    Nothing at all (and no import of tqdm) unless `enabled` and `terminal()`. A bar inside
    another (a bench timing scans) takes the next line."""
    if not (enabled and terminal()):
        yield _Off()
        return
    from tqdm import tqdm

    # The CLI escapes control characters on stderr (text from files is hostile); the bar's
    # codes and text are permgate's own, so they go to the stream beneath.
    stream = getattr(sys.stderr, "unescaped", sys.stderr)
    # The size follows the terminal; one that reports none (0x0: some pseudo-terminals) would
    # get no bar at all from tqdm, so 80x24 then.
    sized = min(_size(stream)) > 0
    with tqdm(total=total, desc=f"permgate: {description}", file=stream, leave=False,
              mininterval=0.2, dynamic_ncols=sized, ncols=None if sized else 80,
              nrows=None if sized else 24) as bar:
        yield _Tqdm(bar)


def _size(stream: Any) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


def track(items: Sequence[T], description: str, *, enabled: bool = True) -> Iterator[T]:
    """`items`, one by one, with a bar that advances after each."""
    with progress(description, len(items), enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()
