"""Gateway settings: defaults < config file (TOML, `[gateway]` table) < PERMGATE_* env < flags.

Every setting is declared once in `FIELDS`; flags, env names and docs/gateway.md follow it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "PERMGATE_"
CONFIG_ENV = "PERMGATE_CONFIG"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and its source."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8420
    db: str | None = None
    upstream: str | None = None  # None: demo mode (localstripe as upstream)
    upstream_key_file: str | None = None
    upstream_key: str | None = None  # env or config file only: never a flag (ps shows flags)
    workers: int = 1
    report_only: bool = False
    body_limit: int = 1_048_576
    connect_timeout: float = 5.0
    upstream_timeout: float = 80.0
    pool_size: int = 64
    refresh_interval: float = 0.25
    admin_token: str | None = None
    access_log: bool = True
    # "native" (permgate's protocol server, native.py), "granian", "uvicorn" (ASGI), or
    # "auto" (native).
    server: str = "auto"
    demo_account: str = "acct_demo"
    # The upstream's webhook signing secret(s), comma-separated while rotating; set: the
    # gateway receives the upstream's events at /webhooks/upstream (env or file only).
    webhook_secret: str | None = None
    webhook_account: str | None = None  # account of events that name none
    # Bearer token for /metrics (env or file only); the admin token is accepted too.
    metrics_token: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


_TYPES: dict[str, type] = {
    "host": str, "port": int, "db": str, "upstream": str, "upstream_key_file": str,
    "upstream_key": str, "workers": int, "report_only": bool, "body_limit": int,
    "connect_timeout": float, "upstream_timeout": float, "pool_size": int,
    "refresh_interval": float, "admin_token": str, "access_log": bool,
    "server": str, "demo_account": str,
    "webhook_secret": str, "webhook_account": str, "metrics_token": str,
}
FIELDS: tuple[str, ...] = tuple(_TYPES)
SERVERS = ("auto", "native", "granian", "uvicorn")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _coerce(name: str, value: Any, source: str) -> Any:
    want = _TYPES[name]
    if want is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif want is int and not isinstance(value, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    elif want is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif want is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: {name} must be {want.__name__}, not {value!r}")


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    table = doc.get("gateway", {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [gateway] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in _TYPES:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        out[name] = _coerce(name, value, f"config file {path}")
    return out


def load_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            out[name] = _coerce(name, environ[key], f"environment {key}")
    return out


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge the sources; `flags` holds only the flags the user actually gave."""
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    path = config_path or env.get(CONFIG_ENV)
    if path:
        merged.update(load_file(path))
    merged.update(load_env(env))
    merged.update({k: v for k, v in flags.items() if v is not None})
    settings = Settings(**merged)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"port must be 1..65535, not {s.port}")
    if s.workers < 1:
        raise ConfigError("workers must be at least 1")
    if s.body_limit < 1024:
        raise ConfigError("body_limit must be at least 1024 bytes")
    for name in ("connect_timeout", "upstream_timeout", "refresh_interval"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if s.pool_size < 1:
        raise ConfigError("pool_size must be at least 1")
    if s.server not in SERVERS:
        raise ConfigError("server must be 'auto', 'native', 'granian' or 'uvicorn'")
    if s.metrics_token is not None and len(s.metrics_token) < 32:
        raise ConfigError("metrics_token must be at least 32 characters (a random value: "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    if s.upstream is not None and not s.upstream.startswith(("http://", "https://")):
        raise ConfigError(f"upstream must be an http:// or https:// URL, not {s.upstream!r}")


def upstream_keys(s: Settings) -> dict[str, str]:
    """Mode ("live"/"test") -> the upstream secret key used for that mode's requests.

    The key file holds one key per line (blank lines and # comments skipped); a key's mode
    is read from its prefix, as Stripe does.
    """
    lines: list[str] = []
    if s.upstream_key:
        lines.append(s.upstream_key)
    if s.upstream_key_file:
        try:
            text = Path(s.upstream_key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"upstream_key_file {s.upstream_key_file}: {e.strerror}") from None
        lines.extend(text.splitlines())
    keys: dict[str, str] = {}
    for raw in lines:
        key = raw.strip()
        if not key or key.startswith("#"):
            continue
        mode = key_mode(key)
        if mode is None:
            raise ConfigError(
                "upstream key must start with sk_live_, sk_test_, rk_live_ or rk_test_")
        keys.setdefault(mode, key)
    return keys


def key_mode(key: str) -> str | None:
    if key.startswith(("sk_live_", "rk_live_")):
        return "live"
    if key.startswith(("sk_test_", "rk_test_")):
        return "test"
    return None
