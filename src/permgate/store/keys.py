"""Key material: Stripe-shaped secrets, and the only form in which they are stored.

Secrets are 64 base62 characters from the OS CSPRNG (about 381 bits), so an unsalted SHA-256
is enough: nothing can be guessed or precomputed, and the hash stays an exact, indexable
lookup value. A slow password hash would only add latency to every gateway request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 64
PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_")
# The one definition of what a presented key may look like: a prefix of PREFIXES and
# exactly SECRET_LENGTH base62 characters. Everything that accepts keys (the gateway before
# it parses, caches or looks anything up; the store; OAuth access tokens, minted in the
# restricted-key shape) asks `well_formed`. Anything else is refused unread.
KEY_LENGTH = len(PREFIXES[0]) + SECRET_LENGTH
_SHAPE = re.compile(rf"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{{{SECRET_LENGTH}}}", re.ASCII)


def well_formed(secret: str) -> bool:
    """True when `secret` has the shape of a key this system mints (not that it exists)."""
    return len(secret) == KEY_LENGTH and _SHAPE.fullmatch(secret) is not None


def prefix(kind: str, mode: str) -> str:
    """`sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`: sandboxes use test keys."""
    return f"{'sk' if kind == 'secret' else 'rk'}_{'live' if mode == 'live' else 'test'}_"


def new_secret(kind: str, mode: str) -> str:
    return prefix(kind, mode) + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hint(secret: str) -> str:
    """What a listing shows, as Stripe's dashboard does: the prefix and the last 4."""
    head, _, _ = secret.rpartition("_")
    return f"{head}_...{secret[-4:]}"


def new_id(kind: str) -> str:
    return f"{kind}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
