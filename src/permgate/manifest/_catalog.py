"""The default catalog: that of the API this process decides for (Stripe's, the one copy
`permgate.engine` uses, unless `permgate.use_api` chose another)."""

from __future__ import annotations

from permgate.catalog import Catalog


def default_catalog() -> Catalog:
    import permgate

    return permgate.default_engine().catalog
