"""Errors the store raises; each carries a Stripe-style `code` and an HTTP status.

Defined in permgate.errors (one house for every error); re-exported here.
"""

from permgate.errors import (
    Conflict,
    Forbidden,
    InvalidManifest,
    NotFound,
    SchemaOutOfDate,
    StoreError,
)

__all__ = ["Conflict", "Forbidden", "InvalidManifest", "NotFound", "SchemaOutOfDate",
           "StoreError"]
