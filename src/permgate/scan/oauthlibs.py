"""OAuth client libraries that call the Stripe API themselves (`data/oauth_libraries.json`).

A Connect OAuth library may read the connected account with the access token it has just
obtained (OmniAuth's `info`, social-core's `user_data`, Socialite's `user()`): the app's code
never writes that request, yet it is sent for the app, with the account's token. Each
language's extractor finds the library's use (the form the table names) and records the
library's calls there, on the installing account, as every OAuth access token is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from permgate.scan.common import Context
from permgate.scan.model import Call


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    calls: tuple[tuple[str, str], ...]  # (HTTP method, path template)
    use: tuple[tuple[str, str], ...]  # the table's use fields, sorted
    registry: str = ""
    package: str = ""
    since: str = ""  # the first version that sends the calls ("": every version)


@cache
def _table() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(resources.files("permgate.scan").joinpath(
        "data/oauth_libraries.json").read_text("utf-8"))
    return doc


@cache
def libraries(language: str) -> dict[str, Library]:
    """A language's libraries by each value of their use fields (`stripe_connect`,
    `social_core.backends.stripe.StripeOAuth2`, ...): the key an extractor looks up."""
    out: dict[str, Library] = {}
    for row in _table()["libraries"]:
        if row["language"] != language:
            continue
        lib = Library(row["library"], tuple((m, p) for m, p in row["calls"]),
                      tuple(sorted(row["use"].items())), row["registry"], row["package"],
                      row["since"])
        for field, value in lib.use:
            if field != "constructor":
                out[f"{field}:{value}"] = lib
    return out


@cache
def session_classes(language: str) -> dict[str, str]:
    """OAuth client sessions that send the token they hold on every request, by class name
    (`OAuth2Session`) -> the libraries that define it."""
    out: dict[str, list[str]] = {}
    for row in _table()["sessions"]:
        if row["language"] == language:
            out.setdefault(row["class"], []).append(row["library"])
    return {cls: " / ".join(libs) for cls, libs in out.items()}


def find(language: str, field: str, value: str) -> Library | None:
    return libraries(language).get(f"{field}:{value}")


def use(lib: Library, field: str) -> str | None:
    return dict(lib.use).get(field)


# lock files that name the version installed, by registry: (file name, pattern; {name} is
# the package's name, escaped)
_LOCKS: dict[str, tuple[tuple[str, str], ...]] = {
    "rubygems": (("Gemfile.lock", r"(?m)^ {{4}}{name} \(v?([0-9][0-9.]*)"),),
    "pypi": (("requirements.txt", r"(?mi)^{name}\s*==\s*([0-9][0-9.]*)"),
             ("poetry.lock", r'(?mi)^name = "{name}"\nversion = "([0-9][0-9.]*)"')),
    "packagist": (("composer.lock", r'"name": "{name}",\s*"version": "v?([0-9][0-9.]*)"'),),
}


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def locked_older(ctx: Context, lib: Library) -> str | None:
    """The version a lock file of the tree names for the library when it is older than the
    first that sends the calls (the nearest lock file from the using file up to the root)."""
    if not lib.since or ctx.modules is None:
        return None
    root = ctx.modules.root
    folder = (root / ctx.file).parent
    name = re.escape(lib.package).replace("\\-", "[-_]")  # pip folds - and _
    for _ in range(8):
        for lock, pattern in _LOCKS.get(lib.registry, ()):
            try:
                found = re.search(pattern.format(name=name),
                                  (folder / lock).read_text("utf-8", "replace")[:2_000_000])
            except OSError:
                continue
            if found is None:
                continue
            return found.group(1) if _version(found.group(1)) < _version(lib.since) else None
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent
    return None


def calls(ctx: Context, lib: Library, row: int, col: int, used: str) -> list[Call]:
    """The library's requests, at the line that uses it (`used`: the use, as shown); none
    when the tree locks a version that does not send them."""
    if locked_older(ctx, lib) is not None:
        return []
    why = (f"{used}: {lib.name} sends this request itself, with the OAuth access token it "
           "obtains: the installing account")
    if ctx.ui_extension:
        why = "a UI extension"
    return [Call(ctx.file, row, col, f"{lib.name} ({used})", method, path, (), "installing",
                 (), why) for method, path in lib.calls]
