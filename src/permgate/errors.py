"""Every error permgate raises on purpose, in one place, under one base: `PermgateError`.

    try:
        ...
    except permgate.PermgateError as e:   # any refusal permgate explains in its message
        print(e)

Each class stays importable where it is used (`permgate.catalog.UnknownPermission`,
`permgate.store.NotFound`, ...): those modules re-export it from here. This module imports
nothing of permgate, so every layer may raise these. Errors one service alone raises (the
gateway's `ConfigError`, `UpstreamError`; events' `SignatureError`, `SealError`, ...) are
defined where they are raised, on this base; tests/test_public_api.py checks that every
exception class of the package derives from `PermgateError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class PermgateError(Exception):
    """Base of every error permgate raises on purpose; its message is for a person."""


# -- catalog and API table -------------------------------------------------------------------

class UnknownPermission(PermgateError, ValueError):
    """A permission name the catalog does not know; carries a suggestion when one is close."""

    def __init__(self, name: str, suggestion: str | None) -> None:
        self.name = name
        self.suggestion = suggestion
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(f"unknown permission '{name}'{hint}")


class BadPath(PermgateError, ValueError):
    """A path refused before routing: it could mean something other than what it says."""


class BadParam(PermgateError, ValueError):
    """A query or form parameter that cannot be read safely (e.g. `EXPAND[]=`): HTTP 400
    naming `param` (None when no one parameter is at fault, as for a raw `;`)."""

    def __init__(self, message: str, param: str | None = "expand") -> None:
        super().__init__(message)
        self.param = param


# -- manifests -------------------------------------------------------------------------------

class ManifestError(PermgateError):
    """A manifest that cannot be read or edited; the message names the file and place."""

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        where = self.path or "<string>"
        if line is not None:
            where += f":{line}:{column}"
        super().__init__(f"{where}: {message}")


class JsonSyntaxError(PermgateError, ValueError):
    def __init__(self, message: str, text: str, offset: int) -> None:
        # line/column computed here so that this module needs nothing from the reader
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        self.offset = offset
        self.reason = message
        super().__init__(f"{message} (line {self.line}, column {self.column})")


class GrantError(PermgateError, ValueError):
    """A grant or revoke that was refused; the manifest is unchanged."""


class NotRequestable(GrantError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"'{name}' cannot be requested by an app: {reason}")


class EmptyPurpose(GrantError):
    def __init__(self) -> None:
        super().__init__(
            "the explanation is empty; say why the app needs this permission "
            "(it is shown to the people who install the app)"
        )


class NotGranted(GrantError):
    def __init__(self, name: str, manifest: str) -> None:
        self.name = name
        super().__init__(f"'{name}' is not granted in {manifest}; nothing to revoke")


class BadUrl(GrantError):
    """A connect-src URL Stripe would refuse (the rules of Stripe's `grant url` docs)."""


# -- the store -------------------------------------------------------------------------------

class StoreError(PermgateError):
    """A refused operation, with a one-line reason for the user; a Stripe-style `code` and
    the HTTP status the admin API answers with."""

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


# -- the command line ------------------------------------------------------------------------

class CliError(PermgateError):
    """A one-line reason for the user; `permgate`'s main prints it and exits with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


__all__ = [
    "BadParam", "BadPath", "BadUrl", "CliError", "Conflict", "EmptyPurpose", "Forbidden",
    "GrantError", "InvalidManifest", "JsonSyntaxError", "ManifestError", "NotFound",
    "NotGranted", "NotRequestable", "PermgateError", "SchemaOutOfDate", "StoreError",
    "UnknownPermission",
]
