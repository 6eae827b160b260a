"""Gateway settings: defaults < config file (TOML, `[gateway]` table) < PERMGATE_* env < flags.

Every setting is declared once, as a field of `Settings` (name, type, default) with its
metadata (help, flag, docs text): `SPECS` reads them back, and the loader (file keys, env
names, types), `permgate serve`'s flags (cli/gateway.py) and the settings table of
docs/gateway.md (tools/gen_cli_docs.py) all come from it. tests/gateway/test_settings.py
checks that they agree.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from permgate import envvars
from permgate.errors import PermgateError

ENV_PREFIX = envvars.PREFIX
CONFIG_ENV = envvars.CONFIG.name
SERVERS = ("auto", "native", "granian", "uvicorn")
OPTIONAL_SERVERS = ("granian",)  # pyproject.toml's `servers` extra, not a runtime dependency
_T = TypeVar("_T")


class ConfigError(PermgateError, ValueError):
    """A setting that cannot be used; the message names it and its source."""


def _setting(
    default: _T, help: str, *, flag: str | None = "", no_flag: str = "", metavar: str = "",
    choices: tuple[str, ...] = (), more: str = "", shown: str = "",
) -> _T:
    """One setting's declaration. `help`: the flag's help and the start of the docs' text
    (`more` continues it there); `flag`: "" derives `--name-with-dashes`, None means none
    (then `no_flag` says why); `shown`: the default as the docs and help show it."""
    if flag is None and not no_flag:
        raise TypeError("a setting without a flag says why (no_flag=...)")
    meta = {"help": help, "flag": flag, "no_flag": no_flag, "metavar": metavar,
            "choices": choices, "more": more, "shown": shown}
    out: _T = dataclasses.field(default=default, metadata=meta)
    return out


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("127.0.0.1", "listen address")
    port: int = _setting(8420, "listen port")
    db: str | None = _setting(
        None, "the store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB", metavar="URL",
        shown="the nearest .permgate/permgate.db up from the current folder, else "
              "$XDG_DATA_HOME/permgate/permgate.db",
        more="Shared with the other commands. Outside demo mode the schema must be current "
             "(`permgate db upgrade`): `serve` checks before it starts")
    api: str | None = _setting(
        None, "the API DIR to enforce (`permgate init --from-openapi` makes one)",
        metavar="DIR", shown="Stripe's built-in tables",
        more="Its tables, and its api.toml's edge (account header, auth schemes, bodies, "
             "expand and error styles, upstream URL): see [own-api.md](own-api.md). "
             "Refused when the OpenAPI document changed since the DIR was made. Shared with "
             "the other commands (`--api`)")
    upstream: str | None = _setting(
        None, "the Stripe-compatible API to forward to, e.g. https://api.stripe.com",
        metavar="URL", shown="none: demo mode with localstripe",
        more="Written `http(s)://host[:port][/prefix]`")
    upstream_key_file: str | None = _setting(
        None, "file with the upstream secret key(s), one per line (live and/or test)",
        metavar="PATH", more="`#` comments and blank lines are skipped")
    upstream_key: str | None = _setting(
        None, "one upstream secret key, instead of or beside the file", flag=None,
        no_flag="a secret; flags show in `ps`")
    workers: int = _setting(1, "worker processes", metavar="N")
    report_only: bool = _setting(
        False, "decide and log, but forward denied calls too", more="See below")
    body_limit: int = _setting(
        1_048_576, "largest request body accepted, in bytes (at least 1024)",
        metavar="BYTES", shown="1048576 (1 MiB)")
    connect_timeout: float = _setting(
        5.0, "seconds to open an upstream connection, else 504", metavar="SECONDS")
    upstream_timeout: float = _setting(
        80.0, "seconds to wait for the upstream's answer before a 504", metavar="SECONDS",
        more="The whole upstream exchange: waiting for a pooled connection, the answer's "
             "head and its whole body, until our client has taken it (time spent waiting "
             "for a slow client counts); one deadline per request, not reset by each read. "
             "Passed before the head: 504; after: the streamed answer is cut off. Stripe's "
             "SDKs wait 80 s")
    pool_size: int = _setting(
        64, "upstream connections per worker, busy and idle together (HTTP/1.1 keep-alive)",
        metavar="N", more="A request finding all busy waits, first come first "
             "served, within its deadline")
    pool_per_app: int | None = _setting(
        None, "upstream connections one app may hold at once, of the pool_size", metavar="N",
        shown="half of pool_size (at least 1)",
        more="So that one app whose calls hang (a slow upstream for it, clients that never "
             "read its answers) cannot take the pool from the others. An app's call beyond "
             "it waits, first come first served among that app's calls, within its "
             "deadline (`upstream_timeout`), then 504. Larger than pool_size: pool_size. "
             "Counted per worker, by the app of the calling key")
    refresh_interval: float = _setting(
        0.25, "seconds between checks of the store's change counter", metavar="SECONDS")
    admin_token: str | None = _setting(
        None, "enables the admin API under /admin with this bearer token", flag=None,
        no_flag="a secret")
    access_log: bool = _setting(
        True, "a log line per request (off: only refused and failed ones)",
        flag="--no-access-log")
    server: str = _setting(
        "auto", "HTTP server: native (permgate's own, the fastest), granian or uvicorn "
        "(ASGI servers); auto is native", choices=SERVERS,
        more="See \"Servers and processes\"")
    demo_account: str = _setting(
        "acct_demo", "demo mode: the account the sample app is installed on", metavar="ACCT")
    webhook_secret: str | None = _setting(
        None, "the upstream webhook endpoint's signing secret (whsec_...; two, "
        "comma-separated, while rotating)", flag=None, no_flag="a secret",
        more="Set: the gateway receives the upstream's events at `POST /webhooks/upstream`, "
             "verifies `Stripe-Signature` (300 s tolerance), writes them to the events "
             "outbox and answers 200 (see [events.md](events.md))")
    webhook_account: str | None = _setting(
        None, "the account of received events that name none (a platform's own events, "
        "localstripe's)", flag=None, no_flag="set beside webhook_secret")
    max_connections: int = _setting(
        0, "client connections one worker holds at once (native server); 0 derives it from "
        "the open-file limit", metavar="N", shown="0 (the open-file limit less a reserve)",
        more="0: `RLIMIT_NOFILE` less `pool_size` and 256 descriptors for the store, logs and "
             "refusals. A connection past the cap gets 503 `connections_exhausted` and is "
             "closed (`permgate_connections_refused_total`)")
    keep_alive: float = _setting(
        75.0, "seconds a client connection may stay idle between requests (native server)",
        metavar="SECONDS", more="Stray empty lines between requests do not reset the clock")
    head_timeout: float = _setting(
        15.0, "seconds from the first byte of a request to the end of its headers (native "
        "server)", metavar="SECONDS",
        more="Any byte starts the clock, a stray empty line too; the whole request (its body "
             "too) must arrive within 60 s of its start")
    drain_timeout: float = _setting(
        30.0, "seconds a client may leave the gateway's answer unread before it is closed "
              "(native server)", metavar="SECONDS",
        more="Counted while the connection's write buffer is full; an upstream answer in "
             "flight is then read to its end and released")
    metrics_token: str | None = _setting(
        None, "bearer token for /metrics (at least 32 characters); the admin token is "
        "accepted too", flag=None, no_flag="a secret",
        more="Neither set: `/metrics` answers 404")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class Spec:
    """A setting as its declaration in `Settings` states it."""

    name: str
    type: type  # str, int, float or bool (None is "not set" for any of them)
    default: Any
    help: str
    flag: str | None
    no_flag: str
    metavar: str
    choices: tuple[str, ...]
    more: str
    shown: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


def _base_type(hint: Any) -> type:
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1
        hint = args[0]
    assert hint in (str, int, float, bool), hint
    return typing.cast(type, hint)


def _specs() -> tuple[Spec, ...]:
    hints = typing.get_type_hints(Settings)
    out = []
    for f in dataclasses.fields(Settings):
        m = f.metadata
        flag = m["flag"]
        out.append(Spec(
            name=f.name, type=_base_type(hints[f.name]), default=f.default, help=m["help"],
            flag="--" + f.name.replace("_", "-") if flag == "" else flag,
            no_flag=m["no_flag"], metavar=m["metavar"], choices=m["choices"], more=m["more"],
            shown=m["shown"]))
    return tuple(out)


SPECS: tuple[Spec, ...] = _specs()
_TYPES: dict[str, type] = {s.name: s.type for s in SPECS}
FIELDS: tuple[str, ...] = tuple(_TYPES)
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
    env = envvars.environ() if environ is None else environ
    merged: dict[str, Any] = {}
    path = config_path or envvars.CONFIG.get(env)
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
    if s.max_connections < 0:
        raise ConfigError("max_connections must be 0 (derived) or positive")
    for name in ("connect_timeout", "upstream_timeout", "refresh_interval", "keep_alive",
                 "head_timeout", "drain_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if s.pool_size < 1:
        raise ConfigError("pool_size must be at least 1")
    if s.pool_per_app is not None and s.pool_per_app < 1:
        raise ConfigError("pool_per_app must be at least 1")
    if s.server not in SERVERS:
        raise ConfigError("server must be 'auto', 'native', 'granian' or 'uvicorn'")
    if s.server in OPTIONAL_SERVERS and not server_installed(s.server):
        raise ConfigError(
            f"server {s.server!r} needs the optional {s.server} package, not installed: "
            "pip install 'permgate[servers]' (in a checkout: PERMGATE_LOCK=dev "
            "scripts/permgate ...), or pick --server native or uvicorn")
    if s.metrics_token is not None and len(s.metrics_token) < 32:
        raise ConfigError("metrics_token must be at least 32 characters (a random value: "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    if s.upstream is not None and not s.upstream.startswith(("http://", "https://")):
        raise ConfigError(f"upstream must be an http:// or https:// URL, not {s.upstream!r}")


def server_installed(name: str) -> bool:
    """Whether an optional server's package can be imported (looked up, not imported)."""
    return importlib.util.find_spec(name) is not None


def upstream_keys(s: Settings, *, untagged: tuple[str, ...] | None = None
                  ) -> dict[str, str]:
    """Mode ("live"/"test") -> the upstream secret key used for that mode's requests.

    The key file holds one key per line (blank lines and # comments skipped); a key's mode
    is read from its prefix, as Stripe does. `untagged` (another API than Stripe: its
    api.toml's `untagged_key_modes`): a line `live: KEY` or `test: KEY` is that mode's
    credential, and a key with neither a tag nor Stripe's prefixes serves the `untagged`
    modes only (live, unless api.toml says otherwise: a test-mode install must not reach
    production data with a production credential).
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
        if mode is None and untagged is not None:
            # "live: KEY" / "test: KEY" (a space after the colon: "live:pw" stays a
            # user:password credential).
            tag, sep, rest = key.partition(":")
            tagged = bool(sep) and tag in ("live", "test") and rest[:1] in ("", " ", "\t")
            modes = (tag,) if tagged else untagged
            if tagged:
                key = rest.strip()
            if not key or len(key) > 4096 or not key.isprintable():
                raise ConfigError("upstream key must be one printable line")
            for m in modes:
                keys.setdefault(m, key)
            continue
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
