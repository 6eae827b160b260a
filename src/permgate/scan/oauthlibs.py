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
import weakref
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from permgate.scan.common import Context
from permgate.scan.files import read_source
from permgate.scan.model import Call
from permgate.scan.modules import Modules


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    calls: tuple[tuple[str, str], ...]  # (HTTP method, path template)
    use: tuple[tuple[str, str], ...]  # the table's use fields, sorted
    registry: str = ""
    package: str = ""
    since: str = ""  # the first version that sends the calls ("": every version)
    skipped_by: str = ""  # an option of the use that, set to true, stops the calls


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
                      row["since"], row.get("skipped_by", ""))
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


_MAX_LOCKS = 100  # lock files read in one scan (a hostile tree has one in every folder)
_MAX_ASKED = 100_000  # (lock file, package) answers remembered in one scan (bounded memory)


class _Locks:
    """One scan's lock-file answers: each (lock file, package) is read once per scan, not at
    every use of the library (a tree of thousands of files naming it)."""

    def __init__(self) -> None:
        self.read = 0
        self.asked: dict[tuple[Path, str], str] = {}


_scans: weakref.WeakKeyDictionary[Modules, _Locks] = weakref.WeakKeyDictionary()


def _version(v: str) -> tuple[int, ...] | None:
    """`2.10.1` -> (2, 10, 1); None for what is no version (a component of 10+ digits: int()
    of thousands of digits raises, and no library numbers its releases so)."""
    parts = v.split(".")
    if len(parts) > 8 or any(len(p) > 9 for p in parts):
        return None
    return tuple(int(p) for p in parts if p.isdigit())


def _lock_version(modules: Modules, lock: Path, pattern: str, package: str) -> str:
    """The version of `package` that `lock` names ("" when none, or the file is not read: a
    symlink, not a regular file (a FIFO would block), over MAX_BYTES, or past the bounds)."""
    locks = _scans.setdefault(modules, _Locks())
    key = (lock, package)
    if key in locks.asked:
        return locks.asked[key]
    found = ""
    if locks.read < _MAX_LOCKS and lock.is_file() and not lock.is_symlink():
        locks.read += 1
        data = read_source(lock)
        m = re.search(pattern, data.decode("utf-8", "replace")) if isinstance(
            data, bytes) else None
        found = m.group(1) if m is not None else ""
    if len(locks.asked) < _MAX_ASKED:
        locks.asked[key] = found
    return found


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
            found = _lock_version(ctx.modules, folder / lock, pattern.format(name=name),
                                  lib.package)
            if not found:
                continue
            have, since = _version(found), _version(lib.since)
            return found if have is not None and since is not None and have < since else None
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
