"""Console settings, from PERMGATE_CONSOLE_* environment variables (docs/consent.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from permgate.errors import PermgateError
from permgate.store.people import DEFAULT_IDLE, DEFAULT_LIFETIME


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
        env = os.environ if environ is None else environ
        kw: dict[str, object] = {}
        for name, field in (("PERMGATE_CONSOLE_SESSION_LIFETIME", "session_lifetime"),
                            ("PERMGATE_CONSOLE_IDLE_TIMEOUT", "idle_timeout")):
            if name in env:
                try:
                    seconds = int(env[name])
                except ValueError:
                    raise ConsoleConfigError(f"{name} must be a number of seconds") from None
                if not 60 <= seconds <= 30 * 24 * 3600:
                    raise ConsoleConfigError(f"{name} must be between 60 s and 30 days")
                kw[field] = timedelta(seconds=seconds)
        if "PERMGATE_CONSOLE_SECURE_COOKIE" in env:
            value = env["PERMGATE_CONSOLE_SECURE_COOKIE"].strip().lower()
            if value not in ("auto", "always", "never"):
                raise ConsoleConfigError(
                    "PERMGATE_CONSOLE_SECURE_COOKIE must be auto, always or never")
            kw["secure_cookie"] = value
        settings = cls(**kw)  # type: ignore[arg-type]
        if settings.idle_timeout > settings.session_lifetime:
            raise ConsoleConfigError("the idle timeout cannot exceed the session lifetime")
        return settings
