"""The enforcing gateway: `permgate serve` in front of a Stripe-compatible API.

See docs/gateway.md. The gateway knows only what is below it (store, engine): the services
it serves beside the proxy are mounted by its composer, `permgate.serve` (`build(settings)`
gives the ASGI application; `run(settings)` serves it).
"""

from permgate.gateway.app import Gateway, Mount
from permgate.gateway.config import ConfigError, Settings, resolve

__all__ = ["ConfigError", "Gateway", "Mount", "Settings", "resolve"]
