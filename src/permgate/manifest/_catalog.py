"""The default catalog, loaded once on first use."""

from __future__ import annotations

import functools

from permgate.catalog import Catalog, load_catalog


@functools.cache
def default_catalog() -> Catalog:
    return load_catalog()
