"""Structured logs: one JSON object per line on stderr, each request's carrying its id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any, Final, TextIO

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Final: compiled, a plain module global is a lookup in the module's dictionary at every
# read (about 130 instructions), a Final one a C static.
_HEX2: Final = tuple(f"{i:02x}" for i in range(256))  # "00" .. "ff"
_DIGITS3: Final = tuple(f"{i:03d}" for i in range(1000))  # "000" .. "999"
# The wall clock of request lines. Final: compiled, `time.time` would be a read of the time
# module's attribute at every line (about 260 instructions; callgrind).
_wall: Final = time.time


def fixed6(t: float) -> str:
    """`t` (>= 0) with six decimals, as `"%.6f" % t` writes it (the last digit may differ
    by one where the float is a hair from a half): from integers and a table, since a float
    format is a generic call costing about 1,900 instructions (`%`) to 5,000 (an f-string's
    spec) compiled, about a tenth of the whole call (callgrind)."""
    micros = int(t * 1e6 + 0.5)
    fraction = micros % 1_000_000
    return f"{micros // 1_000_000}.{_DIGITS3[fraction // 1000]}{_DIGITS3[fraction % 1000]}"


class RequestIds:
    """`req_` ids as Stripe spells them: a random per-process prefix plus a counter.

    Unique across workers and restarts without a syscall per request.
    """

    def __init__(self) -> None:
        self._prefix = "req_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
        # Counted from 16**7: always 8 hex digits or more, so no padding to format.
        self._n = 16**7 - 1
        self._head = self._prefix + hex(self._n >> 8)[2:]

    def new(self) -> str:
        # The id's text is hex(n) after the prefix; its head (all but the last two digits)
        # changes once in 256 ids, so it is made then and the last two digits come from a
        # table: one concatenation per call instead of hex(), a slice and two calls (about
        # 1,900 instructions, compiled; callgrind).
        n = self._n + 1
        self._n = n
        low = n & 255
        if low == 0:
            self._head = self._prefix + hex(n >> 8)[2:]
        return self._head + _HEX2[low]


class JsonLog:
    """Request log lines, written in batches.

    A write system call per request cost more than everything else the gateway does for it
    (measured: bench/bench_gateway.py), so lines are buffered and flushed every
    `FLUSH_SECONDS` or `FLUSH_LINES` lines, whichever comes first, and at shutdown.
    """

    FLUSH_SECONDS = 0.1
    FLUSH_LINES = 256

    def __init__(self, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        # The CLI wraps stderr to escape terminal controls (cli/_output.py). These lines are
        # JSON whose every string is escaped to ASCII already, so they go to the wrapped
        # stream: the escaping's pass over each batch cost about 1 us a line (measured).
        self.stream: TextIO = getattr(stream, "unescaped", stream)
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._ts_at = 0.0  # the fast path's timestamp text, made at most once a millisecond
        self._ts = ""
        # (path, caller, status) -> the line's text from the method to the status
        self._middles: dict[tuple[bytes, str, int], str] = {}

    def write(self, event: str, level: str = "info", **fields: Any) -> None:
        self._lines.append(_line(time.time(), level, event, fields))
        if len(self._lines) >= self.FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop to flush later: write now
                return
            self._timer = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def request(self, level: str, rec: dict[str, Any]) -> None:
        """A request's line; the common allowed call's exact fields in one format."""
        if len(rec) == 9 and "outcome" in rec and "status" in rec and "app" in rec:
            q = _cached_quote
            line = (f'{{"ts":{fixed6(_wall())},"level":"{level}","event":"request",'
                    f'"request_id":{q(rec["request_id"])},"method":{q(rec["method"])},'
                    f'"path":{q(rec["path"])},"app":{q(rec["app"])},"mode":{q(rec["mode"])},'
                    f'"account":{q(rec["account"])},"outcome":{q(rec["outcome"])},'
                    f'"status":{rec["status"]!r},"ms":{rec["ms"]!r}}}')
            self._lines.append(line)
            if len(self._lines) >= self.FLUSH_LINES:
                self.flush()
            elif self._timer is None:
                self.write_later()
            return
        self.write("request", level, **rec)

    def allowed(self, rid: str, path: bytes, caller: str, status: int, seconds: float) -> None:
        """The fast path's line: an allowed call's `request` record, the fields `request`
        writes in the same order, `caller` its app, mode, account and outcome pre-quoted.

        Written as nginx writes its log, from pre-rendered pieces: the text before the id
        (made at most once a millisecond: lines within one share its first timestamp, as
        nginx's share one per event-loop turn), the id, the text from the method to the
        status (one per path, caller and status, kept), the milliseconds."""
        now = _wall()
        if not 0.0 <= now - self._ts_at < 0.001:
            self._ts_at = now
            self._ts = (f'{{"ts":{fixed6(now)},"level":"info","event":"request",'
                        f'"request_id":"')
        key = (path, caller, status)
        middle = self._middles.get(key)
        if middle is None:
            middle = (f'","method":"GET","path":{_cached_quote(path[:256].decode("latin-1"))}'
                      f'{caller},"status":{status},"ms":')
            if len(path) <= _ALLOWED_PATH:  # bounded: longer paths are rendered each time
                if len(self._middles) >= _MIDDLES_MAX:
                    self._middles.clear()  # a scan of many paths only costs re-rendering
                self._middles[key] = middle
        # The milliseconds with three decimals ("%.3f", the caveat of `fixed6`), made in the
        # line's own text: no float format, no string of their own.
        micros = int(seconds * 1e6 + 0.5)
        thousandths = _DIGITS3[micros % 1000]
        self._lines.append(f"{self._ts}{rid}{middle}{micros // 1000}.{thousandths}}}")
        if len(self._lines) >= self.FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self.write_later()

    def write_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        # A closed or full log pipe must never fail a request.
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


_quote: Callable[[str], str] = encode_basestring_ascii  # json's C string encoder
# Keys and the short values that repeat from line to line (methods, app ids, accounts,
# modes, outcomes, most paths), quoted once. Bounded: cleared when full.
_QUOTED: dict[str, str] = {}
_KEYS: dict[str, str] = {}  # key -> ',"key":' (apart: a value may spell a key)
_QUOTED_MAX = 10_000
_QUOTABLE = 128  # longer strings are quoted each time, never kept
_MIDDLES_MAX = 4096  # the fast path's pre-rendered pieces, each of a path up to:
_ALLOWED_PATH = 256


def quoted(value: str) -> str:
    """`value` as a JSON string (ASCII, escaped)."""
    return _quote(value)


def _cached_quote(value: str) -> str:
    text = _QUOTED.get(value)
    if text is None:
        text = _quote(value)
        if len(value) <= _QUOTABLE:
            if len(_QUOTED) >= _QUOTED_MAX:
                _QUOTED.clear()
            _QUOTED[value] = text
    return text


def _line(ts: float, level: str, event: str, fields: dict[str, Any]) -> str:
    """One JSON object, as json.dumps would write it, at a fraction of its cost: request
    lines hold only strings, ints, floats and lists of them."""
    cache = _QUOTED
    parts = [f'{{"ts":{fixed6(ts)},"level":"{level}","event":"{event}"']
    for key, value in fields.items():
        qkey = _KEYS.get(key)
        if qkey is None:
            qkey = "," + _quote(key) + ":"
            if len(_KEYS) < _QUOTED_MAX:
                _KEYS[key] = qkey
        kind = type(value)
        if kind is str:
            text = cache.get(value)
            if text is None:
                text = _quote(value)
                if len(value) <= _QUOTABLE:
                    if len(cache) >= _QUOTED_MAX:
                        cache.clear()
                    cache[value] = text
        elif kind is int or kind is float:
            text = repr(value)
        else:
            text = json.dumps(value, separators=(",", ":"), default=str)
        parts.append(qkey)
        parts.append(text)
    parts.append("}")
    return "".join(parts)


class JsonFormatter(logging.Formatter):
    """For the server's and libraries' own log records, so every line is JSON."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "event": "log",
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


def log_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for uvicorn and our loggers: JSON on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "permgate": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "_granian": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "granian.access": {"handlers": [], "propagate": False},
        },
    }
