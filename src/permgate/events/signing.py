"""Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(t.payload)>`."""

from __future__ import annotations

import hmac
import secrets
import string
import time
from collections.abc import Callable, Iterable

from permgate.errors import PermgateError

DEFAULT_TOLERANCE = 300  # seconds; Stripe's SDKs use the same default
_ALPHABET = string.ascii_letters + string.digits


def new_secret() -> str:
    return "whsec_" + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def secret_hint(secret: str) -> str:
    return f"whsec_...{secret[-4:]}"


def _mac(secret: str, timestamp: int, payload: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, several times cheaper than an hmac.new object.
    return hmac.digest(secret.encode("utf-8"), b"%d.%s" % (timestamp, payload),
                       "sha256").hex()


def sign(payload: bytes, secrets_: Iterable[str], timestamp: int | None = None) -> str:
    """The header value; one `v1` per secret (two while a rotated-out secret is still valid)."""
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={_mac(s, t, payload)}" for s in secrets_)])


def signer(secrets_: Iterable[str], timestamp: int) -> Callable[[bytes], str]:
    """`sign` with the secrets and timestamp fixed: the keys encoded and the header's constant
    parts built once, for a worker signing many payloads with one endpoint's secrets."""
    keys = [s.encode("utf-8") for s in secrets_]
    head = f"t={timestamp}"
    prefix = b"%d." % timestamp
    digest = hmac.digest
    if len(keys) == 1:
        [key] = keys
        head_v1 = head + ",v1="
        return lambda payload: head_v1 + digest(key, prefix + payload, "sha256").hex()
    return lambda payload: ",".join(
        [head, *(f"v1={digest(k, prefix + payload, 'sha256').hex()}" for k in keys)])


class SignatureError(PermgateError):
    """A `Stripe-Signature` header that does not verify; the message says why."""


def verify(
    payload: bytes, header: str | None, secrets_: Iterable[str], *,
    tolerance: int = DEFAULT_TOLERANCE, now: float | None = None,
) -> int:
    """Check a `Stripe-Signature` header; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError("no Stripe-Signature header")
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the signature's timestamp is not a number") from None
        elif key == "v1":
            given.append(value)
    if timestamp is None or not given:
        raise SignatureError("the Stripe-Signature header lacks t= or v1=")
    expected = [_mac(s, timestamp, payload) for s in secrets_]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise SignatureError("no signature matches the payload")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        # Outside the window a captured request could be replayed; refuse it.
        raise SignatureError(f"the signature's timestamp is outside the {tolerance} s tolerance")
    return timestamp
