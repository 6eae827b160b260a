"""Reading the app's key and the account a request acts on, from raw header values."""

from __future__ import annotations

import base64
import binascii
import re

_ACCOUNT = re.compile(rb"acct_[A-Za-z0-9]{1,64}")


def presented_key(authorization: bytes | None) -> str | None:
    """The key of `Bearer KEY` or of HTTP basic `KEY:` (the key as user); None if absent.

    An unparsable header yields "" (present but not a key), which no store will know.
    """
    if authorization is None:
        return None
    scheme, _, rest = authorization.strip().partition(b" ")
    scheme = scheme.lower()
    rest = rest.strip()
    if scheme == b"bearer":
        raw = rest
    elif scheme == b"basic":
        try:
            raw = base64.b64decode(rest, validate=True).partition(b":")[0]
        except (binascii.Error, ValueError):
            return ""
    else:
        return ""
    try:
        key = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return key if key.isprintable() and " " not in key else ""


def account_header(value: bytes) -> str | None:
    """The account of a `Stripe-Account` header, or None when it is not an `acct_` id."""
    value = value.strip()
    return value.decode("ascii") if _ACCOUNT.fullmatch(value) else None
