"""Endpoint signing secrets at rest: sealed (encrypted and authenticated) with a deployment key.

Delivery must sign with the secret itself, so a one-way hash cannot do; the secret is stored
encrypted instead. Only the standard library is available, so the construction is built from
HMAC-SHA256 alone: a keystream from HMAC in counter mode (a PRF, keyed separately) XORed with
the secret, then encrypt-then-MAC over nonce and ciphertext. A database dump without the key
reveals no secret and cannot be altered undetected.

The key: $PERMGATE_WEBHOOK_KEY (64 hex digits), else the file named by
$PERMGATE_WEBHOOK_KEY_FILE, else ./.permgate/webhook.key (created 0600 on first use). Every
process that registers endpoints or delivers must see the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "PERMGATE_WEBHOOK_KEY"
KEY_FILE_ENV = "PERMGATE_WEBHOOK_KEY_FILE"
DEFAULT_KEY_FILE = Path(".permgate") / "webhook.key"
_VERSION = b"pgs1"
_NONCE, _TAG = 16, 32


class SealError(Exception):
    """The key is missing or malformed, or a sealed value was made with another key."""


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"permgate-webhook-secret/" + label, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
              for i in range((length + 31) // 32))
    return b"".join(blocks)[:length]


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SealError("the webhook key must be 32 bytes (64 hex digits)")
        self._enc = _derive(key, b"enc")
        self._mac = _derive(key, b"mac")

    def seal(self, plain: str) -> str:
        data = plain.encode("utf-8")
        nonce = secrets.token_bytes(_NONCE)
        ct = bytes(a ^ b for a, b in zip(data, _keystream(self._enc, nonce, len(data)),
                                         strict=True))
        tag = hmac.new(self._mac, _VERSION + nonce + ct, hashlib.sha256).digest()
        return _VERSION.decode() + ":" + base64.urlsafe_b64encode(nonce + ct + tag).decode()

    def open(self, sealed: str) -> str:
        version, _, body = sealed.partition(":")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
        except ValueError as e:
            raise SealError("not a sealed secret") from e
        if version.encode() != _VERSION or len(raw) < _NONCE + _TAG:
            raise SealError("not a sealed secret")
        nonce, ct, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
        want = hmac.new(self._mac, _VERSION + nonce + ct, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, want):
            raise SealError("this secret was sealed with a different webhook key "
                            f"(check ${KEY_ENV} / ${KEY_FILE_ENV})")
        stream = _keystream(self._enc, nonce, len(ct))
        return bytes(a ^ b for a, b in zip(ct, stream, strict=True)).decode("utf-8")


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise SealError(f"{where}: the webhook key must be 64 hex digits") from None
    if len(key) != 32:
        raise SealError(f"{where}: the webhook key must be 64 hex digits")
    return key


def load_key() -> bytes:
    """The deployment's key, from the environment or its file (made on first use)."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _parse(text, f"${KEY_ENV}")
    path = Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)
    if not path.exists():
        if os.environ.get(KEY_FILE_ENV):
            raise SealError(f"${KEY_FILE_ENV} names {path}, which does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    return _parse(path.read_text("utf-8"), str(path))


def default_sealer() -> Sealer:
    return Sealer(load_key())
