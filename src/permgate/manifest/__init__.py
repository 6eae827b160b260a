"""The app manifest (`stripe-app.json`): read, validate, lint, diff and edit it.

Edits work on the original text, so everything but the changed entry stays byte-identical;
`save` writes atomically.
"""

from __future__ import annotations

from permgate.catalog import UnknownPermission
from permgate.manifest.diff import Diff, diff
from permgate.manifest.edit import (
    BadUrl,
    EmptyPurpose,
    GrantError,
    NotGranted,
    NotRequestable,
    grant,
    grant_url,
    revoke,
    revoke_url,
    save,
)
from permgate.manifest.lint import PLACEHOLDER_PURPOSE, lint
from permgate.manifest.model import (
    DEFAULT_NAME,
    Advice,
    Change,
    Manifest,
    ManifestError,
    Problem,
    load,
    parse,
)
from permgate.manifest.validate import validate

__all__ = [
    "DEFAULT_NAME", "PLACEHOLDER_PURPOSE", "Advice", "BadUrl", "Change", "Diff", "EmptyPurpose",
    "GrantError", "Manifest", "ManifestError", "NotGranted", "NotRequestable", "Problem",
    "UnknownPermission", "diff", "grant", "grant_url", "lint", "load", "parse", "revoke",
    "revoke_url", "save", "validate",
]
