"""The enforcing gateway: `permgate serve` in front of a Stripe-compatible API.

See docs/gateway.md. The gateway knows only what is below it (store, engine): the services
it serves beside the proxy are mounted by its composer, `permgate.serve` (`build(settings)`
gives the ASGI application; `run(settings)` serves it).

The call path's hot modules (`COMPILED`) may be compiled from their own source by
tools/build_compiled.py into `_compiled/`: they are imported from there while the build
matches its sources and `PERMGATE_PURE` is unset, else from their .py files (`BUILD` says
which). docs/gateway.md, "Compiled call path".
"""

from permgate.gateway._build import BUILD, COMPILED  # first: before any hot module imports
from permgate.gateway.app import Gateway, Mount
from permgate.gateway.config import ConfigError, Settings, resolve

__all__ = ["BUILD", "COMPILED", "ConfigError", "Gateway", "Mount", "Settings", "resolve"]
