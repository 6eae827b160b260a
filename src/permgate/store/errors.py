"""Errors the store raises; each carries a Stripe-style `code` and an HTTP status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StoreError(Exception):
    """A refused operation, with a one-line reason for the user."""

    status = 400
    default_code = "invalid_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class NotFound(StoreError):
    status = 404
    default_code = "resource_missing"


class Conflict(StoreError):
    status = 409
    default_code = "conflict"


class Forbidden(StoreError):
    """The actor's role may not do this (only account administrators manage installs)."""

    status = 403
    default_code = "admin_role_required"


class InvalidManifest(StoreError):
    """The manifest failed validation; `problems` are the validator's findings."""

    default_code = "invalid_manifest"

    def __init__(self, message: str, problems: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class SchemaOutOfDate(StoreError):
    """The database is not at the latest migration."""

    status = 503
    default_code = "schema_out_of_date"
