"""Reading `expand` out of a query string or a form body, as Stripe's parser would.

Deny by default: any key that decodes to `expand` or `expand[...]` counts, however it was
percent-encoded, so an encoded key cannot smuggle an expansion past the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

from permgate.errors import BadParam as BadParam

NO_EXPAND: tuple[str, ...] = ()


def _key_is_expand(key: str) -> bool:
    if key == "expand" or key == "expand[]":
        return True
    if key.startswith("expand["):
        if key.endswith("]") and key[7:-1].isdigit():
            return True
        raise BadParam(f"Invalid parameter '{key}': expand takes a list (expand[]=field).")
    return False


def expand_from_form(encoded: str) -> tuple[str, ...]:
    """Expansions named in an `application/x-www-form-urlencoded` string."""
    if "expand" not in encoded and "%" not in encoded:
        return NO_EXPAND
    out: list[str] = []
    for part in encoded.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if not key.startswith("expand"):
            continue
        if _key_is_expand(key):
            out.append(unquote_plus(value) if ("%" in value or "+" in value) else value)
    return tuple(out)


def expand_from_body(body: bytes | str | Mapping[str, object] | None) -> tuple[str, ...]:
    if body is None:
        return NO_EXPAND
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        if b"expand" not in raw and b"%" not in raw:
            return NO_EXPAND
        return expand_from_form(raw.decode("latin-1"))
    if isinstance(body, str):
        return expand_from_form(body)
    out: list[str] = []
    for key, value in body.items():
        if key.startswith("expand") and _key_is_expand(key):
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, Iterable):
                out.extend(str(v) for v in value)
            else:
                raise BadParam(f"Invalid value for '{key}': expected a string or a list.")
    return tuple(out)
