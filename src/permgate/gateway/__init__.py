"""The enforcing gateway: `permgate serve` in front of a Stripe-compatible API.

See docs/gateway.md. The gateway knows only what is below it (store, engine): the services
it serves beside the proxy are mounted by its composer, `permgate.serve` (`build(settings)`
gives the ASGI application; `run(settings)` serves it).

The call path's modules (`COMPILED`, full names) may be compiled from their own source by
tools/build_compiled.py: `permgate` (permgate/_build.py) imports them compiled while the
build matches its sources and `PERMGATE_PURE` is unset, else from their .py files (`BUILD`
says which). docs/gateway.md, "Compiled call path".
"""

from permgate._build import BUILD, COMPILED
from permgate.gateway.app import Gateway, Mount
from permgate.gateway.config import ConfigError, Settings, resolve

__all__ = ["BUILD", "COMPILED", "ConfigError", "Gateway", "Mount", "Settings", "resolve"]
