"""The enforcing gateway: `permgate serve` in front of a Stripe-compatible API.

See docs/gateway.md. `build(settings)` gives the ASGI application; `run(settings)` serves it.
"""

from permgate.gateway.app import Gateway
from permgate.gateway.config import ConfigError, Settings, resolve
from permgate.gateway.server import build, run

__all__ = ["ConfigError", "Gateway", "Settings", "build", "resolve", "run"]
