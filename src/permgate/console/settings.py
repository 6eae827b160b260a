"""Console settings, from PERMGATE_CONSOLE_* environment variables (declared in
permgate/envvars.py; docs/consent.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from permgate import envvars
from permgate.errors import PermgateError
from permgate.store.people import DEFAULT_IDLE, DEFAULT_LIFETIME

T = TypeVar("T")


class ConsoleConfigError(PermgateError, ValueError):
    """A console setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    session_lifetime: timedelta = DEFAULT_LIFETIME
    idle_timeout: timedelta = DEFAULT_IDLE
    # "auto": Secure cookies unless the page is served to a loopback host (http dev setups);
    # "always" / "never" force it.
    secure_cookie: str = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleSettings:
        def read(var: envvars.Var[T]) -> T:
            return var.get(environ, error=ConsoleConfigError)

        settings = cls(
            session_lifetime=timedelta(seconds=read(envvars.CONSOLE_SESSION_LIFETIME)),
            idle_timeout=timedelta(seconds=read(envvars.CONSOLE_IDLE_TIMEOUT)),
            secure_cookie=read(envvars.CONSOLE_SECURE_COOKIE))
        if settings.idle_timeout > settings.session_lifetime:
            raise ConsoleConfigError("the idle timeout cannot exceed the session lifetime")
        return settings
