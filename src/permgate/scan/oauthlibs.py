"""OAuth client libraries that call the Stripe API themselves (`data/oauth_libraries.json`).

A Connect OAuth library may read the connected account with the access token it has just
obtained (OmniAuth's `info`, social-core's `user_data`, Socialite's `user()`): the app's code
never writes that request, yet it is sent for the app, with the account's token. Each
language's extractor finds the library's use (the form the table names) and records the
library's calls there, on the installing account, as every OAuth access token is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from permgate.scan.common import Context
from permgate.scan.model import Call


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    calls: tuple[tuple[str, str], ...]  # (HTTP method, path template)
    use: tuple[tuple[str, str], ...]  # the table's use fields, sorted


@cache
def libraries(language: str) -> dict[str, Library]:
    """A language's libraries by each value of their use fields (`stripe_connect`,
    `social_core.backends.stripe.StripeOAuth2`, ...): the key an extractor looks up."""
    doc = json.loads(resources.files("permgate.scan").joinpath(
        "data/oauth_libraries.json").read_text("utf-8"))
    out: dict[str, Library] = {}
    for row in doc["libraries"]:
        if row["language"] != language:
            continue
        lib = Library(row["library"], tuple((m, p) for m, p in row["calls"]),
                      tuple(sorted(row["use"].items())))
        for field, value in lib.use:
            if field != "constructor":
                out[f"{field}:{value}"] = lib
    return out


def find(language: str, field: str, value: str) -> Library | None:
    return libraries(language).get(f"{field}:{value}")


def use(lib: Library, field: str) -> str | None:
    return dict(lib.use).get(field)


def calls(ctx: Context, lib: Library, row: int, col: int, used: str) -> list[Call]:
    """The library's requests, at the line that uses it (`used`: the use, as shown)."""
    why = (f"{used}: {lib.name} sends this request itself, with the OAuth access token it "
           "obtains: the installing account")
    if ctx.ui_extension:
        why = "a UI extension"
    return [Call(ctx.file, row, col, f"{lib.name} ({used})", method, path, (), "installing",
                 (), why) for method, path in lib.calls]
