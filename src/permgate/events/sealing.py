"""Endpoint signing secrets at rest: AES-256-GCM under a key ring, bound to their endpoint.

Delivery must sign with the secret itself, so a one-way hash cannot do; the secret is stored
encrypted instead, with `cryptography`'s AES-GCM. A sealed value is

    pgs2:<key id>:<base64url(12-byte nonce | ciphertext | 16-byte tag)>

and its associated data is the key id and the **endpoint id**: a value copied onto another
endpoint's row does not open. The key id says which key of the ring sealed it, so keys can
rotate: the first key of the ring seals, every key opens, and `permgate keys rotate-sealing`
adds a key, re-seals every stored secret under it and then drops the keys nothing uses.

Where the ring comes from (first that is set):
1. `$PERMGATE_WEBHOOK_KEY`: `kid:hex[,kid:hex...]` (the first seals) or 64 hex digits (one
   key, its id derived from it; the format of earlier versions).
2. `$PERMGATE_WEBHOOK_KEY_FILE`: a key ring file, one `kid hex` per line, the first seals
   (a file with one bare 64-hex line, as earlier versions wrote, is a ring of one).
3. With a SQLite store: `sealing.keys` in the database's folder (by default
   beside the default database, store/engine.py `default_database`), created 0600 on first use
   with a notice. The key lives with the data it protects there, which is what a local
   SQLite deployment is; `permgate serve`'s demo and a newcomer's first `webhooks add` work
   without configuration.
4. Otherwise (PostgreSQL) nothing is guessed: SealError asks for 1 or 2.

Values of the earlier construction (`pgs1:`, an HMAC-SHA256 keystream with encrypt-then-MAC)
still open, with any key of the ring or the earlier default file `./.permgate/webhook.key`;
`reseal` (run by `permgate events worker` at start and by `keys rotate-sealing`) rewrites
them as `pgs2`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from permgate import envvars
from permgate.errors import PermgateError
from permgate.store.engine import sqlite_file

if TYPE_CHECKING:
    from permgate.store import Store

log = logging.getLogger("permgate.events.sealing")

KEY_ENV = envvars.WEBHOOK_KEY.name
KEY_FILE_ENV = envvars.WEBHOOK_KEY_FILE.name
RING_FILE_NAME = "sealing.keys"
LEGACY_KEY_FILE = Path(".permgate") / "webhook.key"  # what earlier versions created
_V2, _V1 = "pgs2", "pgs1"
_NONCE = 12
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_HEADER = ("# permgate webhook sealing keys (AES-256-GCM), one 'id hex' per line.\n"
           "# The first key seals; the others only open. Keep this file secret and backed up.\n")


class SealError(PermgateError):
    """The key is missing or malformed, or a sealed value was made with another key."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    secret: bytes  # 32 bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise SealError("a sealing key must be 32 bytes (64 hex digits)")
        if not _KID.match(self.kid):
            raise SealError(f"a key id is 1 to 40 of A-Z a-z 0-9 _ . -, not {self.kid!r}")


def derived_kid(secret: bytes) -> str:
    """The id of a key given without one: stable, and reveals nothing of the key."""
    return "k" + hashlib.sha256(b"permgate-sealing-kid/" + secret).hexdigest()[:12]


def new_key() -> Key:
    secret = secrets.token_bytes(32)
    return Key(derived_kid(secret), secret)


def _aad(kid: str, endpoint_id: str) -> bytes:
    return f"permgate/webhook-secret/{_V2}/{kid}/{endpoint_id}".encode()


# -- the earlier construction, kept to open (never to seal) values stored before -----------

def _legacy_open(key: bytes, sealed: str) -> str | None:
    body = sealed.partition(":")[2]
    try:
        raw = base64.urlsafe_b64decode(body.encode())
    except ValueError:
        return None
    if len(raw) < 16 + 32:
        return None
    enc = hmac.new(key, b"permgate-webhook-secret/enc", hashlib.sha256).digest()
    mac = hmac.new(key, b"permgate-webhook-secret/mac", hashlib.sha256).digest()
    nonce, ct, tag = raw[:16], raw[16:-32], raw[-32:]
    want = hmac.new(mac, _V1.encode() + nonce + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, want):
        return None
    stream = b"".join(hmac.new(enc, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
                      for i in range((len(ct) + 31) // 32))
    try:
        return bytes(a ^ b for a, b in zip(ct, stream, strict=False)).decode("utf-8")
    except UnicodeDecodeError:
        return None


# -- key rings ------------------------------------------------------------------------------

def parse_ring(text: str, where: str) -> list[Key]:
    """Keys from ring text: lines (or comma-separated items) of `kid hex`, `kid:hex` or a
    bare 64-hex key; `#` starts a comment line."""
    keys: list[Key] = []
    items = [item.strip() for line in text.splitlines() if not line.lstrip().startswith("#")
             for item in line.split(",")]
    for line in items:
        if not line:
            continue
        parts = re.split(r"[\s:]+", line)
        if len(parts) == 1:
            kid, hexkey = "", parts[0]
        elif len(parts) == 2:
            kid, hexkey = parts
        else:
            raise SealError(f"{where}: expected 'id hex' per line, got {len(parts)} fields")
        try:
            secret = bytes.fromhex(hexkey)
        except ValueError:
            raise SealError(f"{where}: a sealing key must be 64 hex digits") from None
        if len(secret) != 32:
            raise SealError(f"{where}: a sealing key must be 64 hex digits")
        key = Key(kid or derived_kid(secret), secret)
        if any(k.kid == key.kid for k in keys):
            raise SealError(f"{where}: key id {key.kid!r} appears twice")
        keys.append(key)
    if not keys:
        raise SealError(f"{where}: no sealing key in it")
    return keys


def format_ring(keys: Sequence[Key]) -> str:
    return _HEADER + "".join(f"{k.kid} {k.secret.hex()}\n" for k in keys)


def write_ring(path: Path, keys: Sequence[Key]) -> None:
    """Replace the ring file atomically, 0600 from the start (never readable by others)."""
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(format_ring(keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Sealer:
    """Seals with the ring's first key, opens with any. `Sealer(key_bytes)` is a ring of one.
    A ring read from a file is re-read when the file changes (a rotation by another
    process), so long-running workers follow `keys rotate-sealing`."""

    def __init__(self, keys: bytes | Sequence[Key], *, path: Path | None = None,
                 legacy: Sequence[bytes] = ()) -> None:
        ring = [Key(derived_kid(keys), keys)] if isinstance(keys, bytes) else list(keys)
        if not ring:
            raise SealError("a sealer needs at least one key")
        self._ring = ring
        self._path = path
        self._stamp = self._file_stamp()
        self._legacy = tuple(legacy)
        self._lock = threading.Lock()

    # -- the ring -----------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def keys(self) -> list[Key]:
        self._follow_file()
        return list(self._ring)

    @property
    def current(self) -> Key:
        return self.keys[0]

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _follow_file(self) -> None:
        if self._path is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp or stamp is None:
            return
        with self._lock:
            ring = parse_ring(self._path.read_text("utf-8"), str(self._path))
            self._ring, self._stamp = ring, stamp

    # -- sealing --------------------------------------------------------------------------
    def seal(self, plain: str, endpoint_id: str) -> str:
        key = self.current
        nonce = secrets.token_bytes(_NONCE)
        ct = AESGCM(key.secret).encrypt(nonce, plain.encode("utf-8"), _aad(key.kid, endpoint_id))
        return f"{_V2}:{key.kid}:" + base64.urlsafe_b64encode(nonce + ct).decode()

    def open(self, sealed: str, endpoint_id: str) -> str:
        version, _, rest = sealed.partition(":")
        if version == _V1:
            return self._open_legacy(sealed)
        kid, _, body = rest.partition(":")
        if version != _V2 or not kid or not body:
            raise SealError("not a sealed secret")
        key = next((k for k in self.keys if k.kid == kid), None)
        if key is None:
            raise SealError(f"this secret was sealed with key {kid!r}, which is not in the "
                            f"key ring (check ${KEY_ENV} / ${KEY_FILE_ENV})")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            plain = AESGCM(key.secret).decrypt(raw[:_NONCE], raw[_NONCE:],
                                               _aad(kid, endpoint_id))
        except (ValueError, InvalidTag):
            raise SealError("this sealed secret does not open for this endpoint (altered, "
                            "or moved from another endpoint's row)") from None
        return plain.decode("utf-8")

    def _open_legacy(self, sealed: str) -> str:
        for secret in (*(k.secret for k in self.keys), *self._legacy):
            plain = _legacy_open(secret, sealed)
            if plain is not None:
                return plain
        raise SealError("this secret was sealed (pgs1) with a key that is not in the key ring "
                        f"(add the old key to ${KEY_FILE_ENV}, or keep {LEGACY_KEY_FILE})")

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{_V2}:{self.current.kid}:")


def kid_of(sealed: str) -> str:
    """The key id a value was sealed with ('pgs1' for the earlier construction)."""
    version, _, rest = sealed.partition(":")
    return rest.partition(":")[0] if version == _V2 else version


# -- where the ring comes from ----------------------------------------------------------------

def _legacy_keys(*folders: Path) -> list[bytes]:
    out: list[bytes] = []
    for folder in folders:
        path = folder / LEGACY_KEY_FILE.name
        try:
            keys = parse_ring(path.read_text("utf-8"), str(path))
        except (OSError, SealError):
            continue
        out.extend(k.secret for k in keys if k.secret not in out)
    return out


def ring_path(store_url: str | None) -> Path | None:
    """The key ring file that applies: $PERMGATE_WEBHOOK_KEY_FILE, else `sealing.keys`
    beside a SQLite database, else None (nothing is guessed for other databases)."""
    named = envvars.WEBHOOK_KEY_FILE.get()
    if named:
        return Path(named)
    if not store_url or not store_url.startswith("sqlite:"):
        return None
    # Parsed, not sliced: a rendered URL escapes some characters of the path (`'` as %27),
    # and a query is not part of the file's name.
    try:
        path = sqlite_file(make_url(store_url))
    except ArgumentError:
        return None
    return None if path is None else path.parent / RING_FILE_NAME


def load_sealer(store_url: str | None = None, *, create: bool = True) -> Sealer:
    """The deployment's sealer (see the module's docstring for where its keys come from)."""
    legacy = _legacy_keys(LEGACY_KEY_FILE.parent)
    text = envvars.WEBHOOK_KEY.get()
    if text:
        return Sealer(parse_ring(text, f"${KEY_ENV}"), legacy=legacy)
    path = ring_path(store_url)
    if path is None:
        raise SealError(
            f"no webhook sealing key configured: set ${KEY_FILE_ENV} to a key file (created "
            f"0600 on first use) or ${KEY_ENV} to 64 hex digits; with PostgreSQL permgate does "
            "not choose a place for the key")
    legacy += [k for k in _legacy_keys(path.parent) if k not in legacy]
    if not path.exists():
        if not create:
            raise SealError(f"the webhook key file {path} does not exist")
        # Earlier versions' key, if there is one, stays readable in the new ring.
        keys = [new_key(), *(Key(derived_kid(k), k) for k in legacy)]
        try:
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as e:
            raise SealError(f"cannot create the webhook key file {path}: {e.strerror}") from None
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(format_ring(keys))
            log.warning("created the webhook sealing key file %s (0600); back it up: "
                        "without it, stored signing secrets cannot be opened", path)
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise SealError(f"cannot read the webhook key file {path}: {e.strerror}") from None
    return Sealer(parse_ring(text, str(path)), path=path, legacy=legacy)


def default_sealer(store: Store | None = None) -> Sealer:
    return load_sealer(store.url if store is not None else None)


# -- re-sealing: rotation and the earlier format ------------------------------------------------

@dataclass(frozen=True, slots=True)
class Resealed:
    resealed: int  # values rewritten under the current key
    current: int  # values already under it
    kids_in_use: frozenset[str]  # key ids still used afterwards (a concurrent write may add)
    unreadable: tuple[str, ...] = ()  # endpoints whose value no key of the ring opens


def reseal(store: Store, sealer: Sealer, *, only_legacy: bool = False,
           batch: int = 200) -> Resealed:
    """Rewrite every stored secret not sealed under the current key (with `only_legacy`:
    only `pgs1` values). A row changed meanwhile (a secret rotated) is left as the other
    writer made it: the update matches the exact value that was read."""
    import sqlalchemy as sa

    from permgate.events.db import writing
    from permgate.events.schema import webhook_endpoints as we

    done = current = 0
    unreadable: list[str] = []
    after = ""
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(we.c.endpoint_id, we.c.secret_sealed, we.c.previous_secret_sealed)
                .where(we.c.endpoint_id > after).order_by(we.c.endpoint_id).limit(batch)).all()
        if not rows:
            break
        after = rows[-1].endpoint_id
        with writing(store) as conn:
            for endpoint_id, sealed, previous in rows:
                for column, value in (("secret_sealed", sealed),
                                      ("previous_secret_sealed", previous)):
                    if value is None:
                        continue
                    stale = kid_of(value) == _V1 if only_legacy else not sealer.is_current(
                        value)
                    if not stale:
                        current += 1
                        continue
                    try:
                        plain = sealer.open(value, endpoint_id)
                    except SealError as e:
                        # One bad row must not stop the others (nor a worker from starting);
                        # its key id stays "in use", so rotation keeps that key.
                        log.warning("cannot re-seal the secret of %s: %s", endpoint_id, e)
                        unreadable.append(endpoint_id)
                        continue
                    fresh = sealer.seal(plain, endpoint_id)
                    col = we.c[column]
                    conn.execute(we.update().where(we.c.endpoint_id == endpoint_id,
                                                   col == value).values({column: fresh}))
                    done += 1
    with store.engine.connect() as conn:
        used: set[str] = set()
        for sealed, previous in conn.execute(sa.select(we.c.secret_sealed,
                                                       we.c.previous_secret_sealed)):
            used.add(kid_of(sealed))
            if previous is not None:
                used.add(kid_of(previous))
    return Resealed(done, current, frozenset(used), tuple(unreadable))


def rotate(store: Store, sealer: Sealer, *, keep_old: bool = False) -> tuple[Key, Resealed]:
    """`keys rotate-sealing`: a new key first in the ring file, every stored secret
    re-sealed under it, then the old keys dropped from the file unless a value still uses
    one (or `keep_old`). Old keys stay readable until the re-sealing has finished; an
    interrupted rotation is finished by running it again."""
    path = sealer.path
    if path is None:
        raise SealError(
            f"the keys come from ${KEY_ENV}, which permgate cannot rewrite: put the new key "
            f"first there ('newid:hex,oldid:hex'), restart, run `permgate keys rotate-sealing` "
            "again to re-seal, then drop the old key")
    old = sealer.keys
    key = new_key()
    write_ring(path, [key, *old])
    sealer._follow_file()
    if sealer.current.kid != key.kid:
        raise SealError(f"{path} changed while rotating; run the rotation again")
    result = reseal(store, sealer)
    if not keep_old:
        keep = [k for k in old if k.kid in result.kids_in_use]
        write_ring(path, [key, *keep])
        sealer._follow_file()
    return key, result
