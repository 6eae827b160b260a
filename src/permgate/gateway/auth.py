"""Reading the app's key and the account a request acts on, from raw header values.

A key's shape is checked before anything else is done with it (`permgate.store.keys`
defines the shapes): a value that cannot be a key is refused without being looked up,
cached or echoed, so hostile Authorization headers cost no memory.
"""

from __future__ import annotations

import base64
import binascii
import re

from permgate.store.keys import KEY_LENGTH, well_formed

_ACCOUNT = re.compile(rb"acct_[A-Za-z0-9]{1,64}")
# Longest Stripe-Account value worth caching: "acct_" + 64, with slack for surrounding
# whitespace. Longer (padded) values are still read, trimmed, but never kept.
MAX_ACCOUNT_HEADER = 5 + 64 + 32
# Longest Authorization value that can hold a well-formed key: "Basic " + base64 of
# "KEY:" is under 110 bytes; the slack allows for whitespace. Longer values are not parsed.
MAX_AUTHORIZATION = 64 + 4 * ((KEY_LENGTH + 2 + 2) // 3) + 32


BOTH_SCHEMES = frozenset({b"basic", b"bearer"})


def presented_key(authorization: bytes | None,
                  schemes: frozenset[bytes] = BOTH_SCHEMES) -> str | None:
    """The key of `Bearer KEY` or of HTTP basic `KEY:` (the key as user); None if absent.
    `schemes`: those the API's profile accepts (`auth_schemes`), lower case.

    A header that does not hold a well-formed key yields "" (present but not a key).
    """
    if authorization is None:
        return None
    if len(authorization) > MAX_AUTHORIZATION:
        return ""
    scheme, _, rest = authorization.strip().partition(b" ")
    scheme = scheme.lower()
    rest = rest.strip()
    if scheme not in schemes:
        return ""
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
    return key if well_formed(key) else ""


def account_header(value: bytes) -> str | None:
    """The account of the account header (`Stripe-Account`, or the API's own), or None when
    it is not an `acct_` id (the store's accounts are `acct_` ids, whatever the API)."""
    value = value.strip()
    return value.decode("ascii") if _ACCOUNT.fullmatch(value) else None
