"""Terminal-safe text output: every control character a name, purpose, URL or path may carry
is written escaped, so that printing hostile data cannot drive the user's terminal.

Manifests, app ids, event types, URLs and request paths reach the CLI's output from files
and databases other people write; an ESC or BEL in them would otherwise retitle the window,
rewrite what was printed or worse. The streams escape C0 controls (but newline and tab),
DEL, C1 controls and the Unicode bidirectional overrides ("Trojan Source") as \\xNN / \\uNNNN.
JSON output is unaffected: `json.dumps` already escapes all of these.
"""

from __future__ import annotations

from typing import Any, TextIO

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (9, 10)},
    **{c: f"\\u{c:04x}" for c in _BIDI},
}


def escape(text: str) -> str:
    """The text with terminal control characters made visible."""
    return text.translate(_ESCAPES)


class EscapingStream:
    """Wraps a text stream; everything written through it is escaped. Anything else
    (encoding, fileno, isatty, buffer...) is the wrapped stream's."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, s: str) -> int:
        self.raw.write(s.translate(_ESCAPES))
        return len(s)

    @property
    def unescaped(self) -> TextIO:
        """The wrapped stream, for permgate's own terminal codes only (the progress bar,
        whose text is all ours: permgate._progress)."""
        return self.raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
