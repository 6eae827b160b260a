"""Every environment variable permgate reads, declared once.

Each `Var` states its name, how its text is read (`parse`), its default, who reads it, what
it is for (`kind`: a user's setting, local development only, set by permgate for its own
worker processes, read only by the test suite and benches, or by `scripts/`) and one line
of description. Modules read their variable through it (`DB.get()`), never through
`os.environ`: tests/test_envvars.py checks that, and that docs/settings.md, generated from
this table by tools/gen_cli_docs.py, is current.

The gateway's settings keep their own declaration (gateway/config.py `Settings`: loader,
flags, file keys) and are listed here by name only (`GATEWAY_SETTINGS`), so that a command
knows every name without importing the gateway (it costs ~0.4 s); the docs table takes their
type, default and description from the gateway's declaration, and a test checks the names
agree. `PERMGATE_DB` and `PERMGATE_ADMIN_TOKEN` are gateway settings read by other layers
too: they are declared here in full, with `setting` naming the gateway's field.

`unknown(environ)` lists the `PERMGATE_*` variables nobody declared, with a close name when
there is one; every command warns about them once at start (cli/__init__.py). This module
imports nothing of permgate but errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from permgate.errors import PermgateError

PREFIX = "PERMGATE_"
KINDS = ("setting", "dev", "internal", "test", "script")
T = TypeVar("T")


class EnvVarError(PermgateError, ValueError):
    """An environment variable whose value cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Var(Generic[T]):
    """One environment variable. `parse` turns its text into the value or raises ValueError
    with the reason ("must be ..."); an absent variable is `default`."""

    name: str
    parse: Callable[[str], T]
    default: T
    reader: str  # who reads it
    help: str  # one line, for docs/settings.md
    form: str = "text"  # the values it takes, as the docs show them ("": a gateway setting
    # declared by name only, whose own declaration says)
    kind: str = "setting"
    shown: str = ""  # the default as the docs show it ("" : derived from `default`)
    setting: str = ""  # the gateway setting of the same name, if it is one

    def get(self, environ: Mapping[str, str] | None = None, *,
            error: Callable[[str], Exception] = EnvVarError) -> T:
        """The value (`environ`: the process's environment when None). A malformed value
        raises `error` (EnvVarError unless the reader has its own class) naming the
        variable."""
        text = (os.environ if environ is None else environ).get(self.name)
        if text is None:
            return self.default
        try:
            return self.parse(text)
        except ValueError as e:
            raise error(f"{self.name} {e}") from None

    def require(self, environ: Mapping[str, str] | None = None) -> T:
        """The value of a variable that must be set (one permgate sets for its workers)."""
        if self.name not in (os.environ if environ is None else environ):
            raise EnvVarError(f"{self.name} is not set ({self.help})")
        return self.get(environ)

    def put(self, text: str) -> None:
        """Set it in this process's environment, for the worker processes it starts."""
        os.environ[self.name] = text

    @property
    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if self.default is None or self.default is False or self.default == "":
            return "unset"
        return str(self.default)


# -- how values are read: each raises ValueError("must be ...") for a value it refuses --------

def text(value: str) -> str | None:
    """Any text; empty is the same as unset."""
    return value or None


def _nonempty_switch(value: str) -> bool:
    return value != ""


def _switch(value: str) -> bool:
    return value not in ("", "0")


def _choice(*options: str, unset: str = "") -> Callable[[str], str]:
    """One of `options`, case and surrounding space ignored; `unset` (and its spellings
    in `off`) reads as itself."""
    def parse(value: str) -> str:
        word = value.strip().lower()
        if word in options:
            return word
        names = [f"'{o}'" for o in options if o != unset]
        listed = " or ".join(names) if len(names) < 3 else (
            ", ".join(names[:-1]) + " or " + names[-1])
        raise ValueError(f"must be {listed}{' (or unset)' if unset in options else ''}, "
                         f"not {value!r}")
    return parse


def _dev_webhooks(value: str) -> str:
    word = value.strip().lower()
    return "" if word in ("0", "no", "off", "false") else _choice("", "test", "all")(value)


def _seconds(low: int, high: int, span: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            seconds = int(value)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not low <= seconds <= high:
            raise ValueError(f"must be between {span}")
        return seconds
    return parse


def _json_object(value: str) -> str:
    """The text of a JSON object, checked (its reader decodes it)."""
    import json  # only a worker process of the gateway reads one

    try:
        ok = isinstance(json.loads(value), dict)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be a JSON object")
    return value


def _count(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, not {value!r}") from None


# -- the declaration -----------------------------------------------------------------------

DB: Var[str | None] = Var(
    "PERMGATE_DB", text, None, "store (every command); gateway setting `db`",
    "the store's URL when a command has no `--db`", form="sqlite:///PATH or postgresql://...",
    shown="the nearest .permgate/permgate.db up from the current folder, else "
    "$XDG_DATA_HOME/permgate/permgate.db", setting="db")
API: Var[str | None] = Var(
    "PERMGATE_API", text, None, "every command that decides; gateway setting `api`",
    "the API DIR commands decide for when they have no `--api` (`permgate init "
    "--from-openapi` makes one)", form="path", shown="Stripe's built-in tables",
    setting="api")
ADMIN_TOKEN: Var[str | None] = Var(
    "PERMGATE_ADMIN_TOKEN", text, None, "admin (`permgate admin serve`); gateway setting "
    "`admin_token`", "the admin API's bearer token (at least 256 bits of entropy)",
    form="secret", setting="admin_token")
CONFIG: Var[str | None] = Var(
    "PERMGATE_CONFIG", text, None, "gateway (`permgate serve`)",
    "TOML file whose `[gateway]` table holds settings, when `--config` is not given",
    form="path")
PUBLIC_URL: Var[str | None] = Var(
    "PERMGATE_PUBLIC_URL", text, None, "admin (account sessions)",
    "base of the URLs account sessions return, when people reach permgate through a proxy",
    form="URL", shown="the request's host")
CONSOLE_SESSION_LIFETIME: Var[int] = Var(
    "PERMGATE_CONSOLE_SESSION_LIFETIME", _seconds(60, 30 * 24 * 3600, "60 s and 30 days"),
    12 * 3600, "console", "seconds from sign-in to the end of a consent-page session",
    form="seconds, 60 to 2592000", shown="43200 (12 h)")
CONSOLE_IDLE_TIMEOUT: Var[int] = Var(
    "PERMGATE_CONSOLE_IDLE_TIMEOUT", _seconds(60, 30 * 24 * 3600, "60 s and 30 days"),
    30 * 60, "console", "seconds without a request that end a consent-page session (at most "
    "the lifetime)", form="seconds, 60 to 2592000", shown="1800 (30 min)")
CONSOLE_SECURE_COOKIE: Var[str] = Var(
    "PERMGATE_CONSOLE_SECURE_COOKIE", _choice("auto", "always", "never"), "auto", "console",
    "the session cookie's `Secure`: auto is Secure unless the page is served to a loopback "
    "host (`127.0.0.1`, `localhost`, `::1`: the http dev setup)", form="auto, always or never")
WEBHOOK_KEY: Var[str | None] = Var(
    "PERMGATE_WEBHOOK_KEY", text, None, "events (sealing)",
    "the webhook sealing key ring itself; wins over the key file",
    form="kid:hex[,kid:hex...] or 64 hex digits")
WEBHOOK_KEY_FILE: Var[str | None] = Var(
    "PERMGATE_WEBHOOK_KEY_FILE", text, None, "events (sealing)",
    "the webhook sealing key ring file (created 0600 on first use)", form="path",
    shown="sealing.keys beside a SQLite database; none for PostgreSQL")
NO_PROGRESS: Var[bool] = Var(
    "PERMGATE_NO_PROGRESS", _switch, False, "progress bars (scan, migrations, benches)",
    "no progress bars even on a terminal", form="set and not 0: on")
DEBUG: Var[bool] = Var(
    "PERMGATE_DEBUG", _nonempty_switch, False, "cli",
    "an unexpected error shows its traceback instead of one line", form="set and non-empty: on")
DEV_PRIVATE_WEBHOOKS: Var[str] = Var(
    "PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS", _dev_webhooks, "", "events (endpoint targets)",
    "lets webhook endpoints use http:// and private addresses: `test` for test and sandbox "
    "endpoints, `all` for every mode (local development only)", form="test or all",
    kind="dev")
GATEWAY_RESOLVED: Var[str] = Var(
    "PERMGATE_GATEWAY_RESOLVED", _json_object, "", "gateway (server)",
    "set by `permgate serve` for its worker processes: the resolved settings as JSON",
    form="JSON", kind="internal")
METRICS_DIR: Var[str | None] = Var(
    "PERMGATE_METRICS_DIR", text, None, "gateway (metrics)",
    "set by `permgate serve --workers N` for its workers: where each writes its counts",
    form="path", kind="internal")
PURE: Var[bool] = Var(
    "PERMGATE_PURE", _switch, False, "gateway (its modules)",
    "run the gateway's pure-Python call path even where its compiled build is current "
    "(scripts/test's pure leg)", form="set and not 0: on", kind="dev")
TEST_PG: Var[str] = Var(
    "PERMGATE_TEST_PG", str, "postgresql://postgres@127.0.0.1:5432/test", "tests, benches",
    "the PostgreSQL server the benches use; the tests use it only when it is set (unset: they "
    "start a throwaway cluster, tests/pg.py)", form="postgresql://...",
    kind="test")
FUZZ_SEED: Var[int] = Var(
    "PERMGATE_FUZZ_SEED", _count, 20261202, "tests (gateway fuzz)",
    "seed of the gateway's fuzz test", form="integer", kind="test")
FUZZ_COUNT: Var[int] = Var(
    "PERMGATE_FUZZ_COUNT", _count, 250, "tests (gateway fuzz)",
    "requests the gateway's fuzz test makes", form="integer", kind="test")
LOCK: Var[str | None] = Var(
    "PERMGATE_LOCK", text, None, "scripts/_venv",
    "which lock file the scripts' venv installs: `serve` (runtime and demo) or `dev` "
    "(everything the tests and benches need)", form="serve or dev",
    shown="serve for scripts/permgate, dev for scripts/test and scripts/bench", kind="script")

# The gateway's settings (gateway/config.py `Settings`), by field name; each is read from
# PERMGATE_<NAME> by the gateway's own loader. tests/test_envvars.py checks this list.
GATEWAY_SETTINGS: tuple[str, ...] = (
    "host", "port", "db", "api", "upstream", "upstream_key_file", "upstream_key", "workers",
    "report_only", "body_limit", "connect_timeout", "upstream_timeout", "pool_size",
    "pool_per_app", "refresh_interval", "admin_token", "access_log", "server", "demo_account",
    "webhook_secret", "webhook_account", "max_connections", "keep_alive", "head_timeout",
    "drain_timeout", "metrics_token",
)

_OWN: tuple[Var[Any], ...] = tuple(v for v in globals().values() if isinstance(v, Var))
_SHARED = {v.setting for v in _OWN if v.setting}
# Every variable: those above, then the gateway's (parsed by the gateway's own loader).
VARS: tuple[Var[Any], ...] = _OWN + tuple(
    Var(PREFIX + name.upper(), text, None, "gateway (`permgate serve`)",
        f"the gateway's `{name}` setting (docs/gateway.md)", form="", setting=name)
    for name in GATEWAY_SETTINGS if name not in _SHARED)
BY_NAME: dict[str, Var[Any]] = {v.name: v for v in VARS}


def user_data_home(environ: Mapping[str, str] | None = None) -> str:
    """The user's data folder, as the XDG Base Directory spec says: $XDG_DATA_HOME when it
    is an absolute path (a relative one is ignored, as the spec requires), else
    ~/.local/share. Not a permgate variable: the default database's fallback place."""
    env = os.environ if environ is None else environ
    named = env.get("XDG_DATA_HOME", "")
    if os.path.isabs(named):
        return named
    return os.path.join(os.path.expanduser("~"), ".local", "share")


def environ() -> Mapping[str, str]:
    """The whole environment, for a reader with its own declaration (the gateway's settings
    loader takes a mapping, so that tests can hand it one)."""
    return os.environ


def unknown(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per variable named like permgate's (`PERMGATE_`, any case) that is not
    declared, with the closest declared name when one is close."""
    env = os.environ if environ is None else environ
    found = sorted(k for k in env if k.upper().startswith(PREFIX) and k not in BY_NAME)
    if not found:
        return []
    import difflib  # only when there is something to say: every command calls this

    tails = {v.name[len(PREFIX):]: v.name for v in VARS}
    out = []
    for name in found:
        close = difflib.get_close_matches(name[len(PREFIX):].upper(), tails, n=1, cutoff=0.75)
        hint = f" (did you mean {tails[close[0]]}?)" if close else ""
        out.append(f"unknown environment variable {name}{hint}")
    return out


_warned = False


def warn_unknown(write: Callable[[str], object], environ: Mapping[str, str] | None = None
                 ) -> None:
    """`write` each message of `unknown`, the first time a process asks (a test calling the
    CLI's main many times, or the serve command's workers, see it once)."""
    global _warned
    if _warned:
        return
    _warned = True
    for message in unknown(environ):
        write(message)
