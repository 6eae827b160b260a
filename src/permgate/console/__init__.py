"""Consent by people: account sessions and the server-rendered consent pages.

`create_console_app(store)` serves /console/... and the OAuth endpoints; the gateway mounts
it beside the proxy (see docs/consent.md).
"""

from permgate.console.app import create_console_app, csrf_token
from permgate.console.settings import ConsoleConfigError, ConsoleSettings

__all__ = ["ConsoleConfigError", "ConsoleSettings", "create_console_app", "csrf_token"]
