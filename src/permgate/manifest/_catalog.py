"""The default catalog: Stripe's, the one copy `permgate.engine` uses too."""

from __future__ import annotations

from permgate.catalog import Catalog, stripe_catalog


def default_catalog() -> Catalog:
    return stripe_catalog()
