"""Reading `expand` out of a query string or a form body, as Stripe's parser would.

Deny by default. Only `expand`, `expand[]` and `expand[N]` name expansions (after one round of
percent-decoding, which is what Stripe and form parsers do: `expand%5B%5D` is `expand[]`).
A key that some other reader could take for `expand` — another case (`EXPAND[]`), extra brackets
(`[expand][]`, `expand[0][x]`), a second encoding (`expand%255B%255D`), spaces — is refused,
and so is a raw `;` in a query string (some servers split on it): no upstream can read an
expansion that was not checked.
Expansions are bounded in number and length: Stripe apps send a handful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from urllib.parse import unquote, unquote_plus

from permgate.errors import BadParam as BadParam

NO_EXPAND: tuple[str, ...] = ()
MAX_EXPANSIONS = 64  # per request; Stripe apps send a handful, and the graph has few paths
MAX_EXPAND_BYTES = 512  # per expansion path (4 steps of the longest field names fit)
_DECODE_ROUNDS = 4


def _first_word(key: str) -> str:
    """The first run of letters, digits and `_` of a fully decoded, case-folded key.

    A non-ASCII key is NFKC-normalised and folded through upper case: an upstream that
    compares names case-insensitively by upper-casing reads `ınclude` (dotless i) as
    INCLUDE, `ſ` as S and the Kelvin sign as K."""
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote_plus(key)
        if decoded == key:
            break
        key = decoded
    if not key.isascii():
        import unicodedata

        key = unicodedata.normalize("NFKC", key).upper()
    key = key.lower()
    start = 0
    while start < len(key) and not (key[start].isalnum() or key[start] == "_"):
        start += 1
    end = start
    while end < len(key) and (key[end].isalnum() or key[end] == "_"):
        end += 1
    return key[start:end]


def _key_is_expand(key: str) -> bool:
    """True for the exact spellings; raises BadParam for a key that only looks like one."""
    if key == "expand" or key == "expand[]":
        return True
    if key.startswith("expand[") and key.endswith("]") and key[7:-1].isdigit() \
            and len(key) <= 16:
        return True
    if _first_word(key) == "expand":
        raise BadParam(
            f"Invalid parameter '{_shown(key)}': expansions are sent as expand[]=field "
            "(or expand[N]=field); other spellings of 'expand' are refused."
        )
    return False


def _shown(text: str) -> str:
    safe = "".join(c if c.isprintable() and c.isascii() else "?" for c in text[:60])
    return safe + ("..." if len(text) > 60 else "")


def _add(out: list[str], value: str) -> None:
    if len(value) > MAX_EXPAND_BYTES:
        raise BadParam(f"Invalid expand[]: a path may have at most {MAX_EXPAND_BYTES} "
                       "characters.")
    if len(out) >= MAX_EXPANSIONS:
        raise BadParam(f"Invalid expand[]: at most {MAX_EXPANSIONS} expansions per request.")
    out.append(value)


def expand_from_query(query: str, where: str = "query string") -> tuple[str, ...]:
    """Expansions named in a query string or a form body. A raw `;` is refused: some servers
    still split parameters on it, and would then read keys this parser never saw. (The SDKs
    percent-encode `;` inside values.)"""
    if ";" in query:
        raise BadParam(f"Invalid {where}: ';' is not a parameter separator; use '&' "
                       "(and percent-encode ';' inside values as %3B).", param=None)
    return expand_from_form(query)


def expand_from_form(encoded: str) -> tuple[str, ...]:
    """Expansions named in an `application/x-www-form-urlencoded` string (deduplicated)."""
    if "%" not in encoded and "xpand" not in encoded.lower():
        return NO_EXPAND
    out: list[str] = []
    start, end_all = 0, len(encoded)
    while start < end_all:  # piece by piece: a huge list stops at the cap, unsplit
        end = encoded.find("&", start)
        if end < 0:
            end = end_all
        part = encoded[start:end]
        start = end + 1
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            if _first_word(key) != "expand":
                continue
            key = unquote(key.replace("+", " "))  # one round, as the upstream reads it
        elif "xpand" not in key.lower():
            continue
        if _key_is_expand(key):
            _add(out, unquote_plus(value) if ("%" in value or "+" in value) else value)
    return _dedupe(out)


def _dedupe(out: list[str]) -> tuple[str, ...]:
    if len(out) < 2:
        return tuple(out)
    return tuple(dict.fromkeys(out))


def expand_from_body(body: bytes | str | Mapping[str, object] | None) -> tuple[str, ...]:
    if body is None:
        return NO_EXPAND
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        if b"%" not in raw and b"xpand" not in raw.lower():
            return NO_EXPAND
        return expand_from_query(raw.decode("latin-1"), "form body")
    if isinstance(body, str):
        return expand_from_query(body, "form body")
    out: list[str] = []
    for key, value in body.items():
        if _key_is_expand(key):
            if isinstance(value, str):
                _add(out, value)
            elif isinstance(value, Iterable):
                for v in value:
                    _add(out, str(v))
            else:
                raise BadParam(f"Invalid value for '{key}': expected a string or a list.")
    return _dedupe(out)


def bounded_expansions(values: Iterable[str]) -> tuple[str, ...]:
    """Caller-supplied expansions (`expand=` of the engine API) under the same bounds."""
    out: list[str] = []
    for v in values:
        _add(out, v)
    return _dedupe(out)


# -- other APIs' expand styles (api.toml `expand_style`): the Stripe style is above ---------

# Parameter names that some API or framework reads as "return related objects too"
# (OData $expand, JSON:API include and fields[...], HAL/json-server _embed, Laravel with,
# Mongoose populate, sideloading...). In every style but Stripe's, a key whose first word
# (decoded, case-folded, leading/trailing `_` removed) is one of these is refused unless it
# is exactly the API's own parameter: an expansion nobody checked must not reach the
# upstream. api.toml `[edge] refuse_params` adds the API's own.
REFUSED_PARAMS = frozenset({
    "expand", "expands", "expansion", "expansions", "expand_fields", "include", "includes",
    "included", "embed", "embeds", "embedded", "with", "populate", "fields", "sideload",
    "sideloads", "side_load", "related", "join", "joins", "extend", "resolve",
})


def undeclared(query: str, declared: frozenset[str], own: str) -> str | None:
    """The first key of `query` that is neither a declared parameter nor the API's own
    expand parameter `own`, or None. A key is compared by its name before any `[`, after
    one round of decoding (as the upstream reads it): `filter[status]` is `filter`'s."""
    for part in query.split("&"):
        key = part.partition("=")[0]
        if not key:
            continue
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        base = key.partition("[")[0]
        if base not in declared and key != own:
            return key
    return None


def param_word(key: str) -> str:
    """What a parameter name is compared with `REFUSED_PARAMS` as (see `_first_word`)."""
    if key.isascii() and key.isidentifier():  # the common case: one plain word
        return key.lower().strip("_")
    return _first_word(key).strip("_")

class ExpandReader:
    """How one API names expansions: `query(text, where)` and `body(body)` return them
    (deduplicated) or raise BadParam for a key that only looks like the parameter.

    - "stripe": `expand[]=a.b` (the functions above);
    - "comma": `P=a,b` (and repeated `P=`), P the API's parameter (`expand_param`);
    - "include": the same with JSON:API's `include=a,b`;
    - "none": the API expands nothing; a key spelled like its parameter is refused (an
      upstream that did expand would then return objects nobody checked).
    In the three, a key spelled like Stripe's `expand` is refused too when the parameter is
    another (`include`): an upstream that also took it would expand unchecked.
    """

    __slots__ = ("body", "param", "query", "refused", "style")

    def __init__(self, style: str = "stripe", param: str = "expand",
                 refuse: Iterable[str] = ()) -> None:
        self.style = style
        self.param = param
        # The names refused in every key but the API's own parameter (empty for Stripe's
        # style, whose reader refuses look-alikes of `expand` itself).
        self.refused: frozenset[str] = frozenset()
        if style == "stripe":
            if param != "expand":
                raise ValueError("the stripe expand style reads only 'expand'")
            self.query = expand_from_query
            self.body = expand_from_body
        elif style in ("comma", "include", "none"):
            self.refused = REFUSED_PARAMS | {param_word(param)} | {
                param_word(r) for r in refuse}
            self.query = _list_reader(param, style == "none", self.refused)
            self.body = _list_body_reader(param, style == "none", self.query, self.refused)
        else:
            raise ValueError(f"unknown expand style {style!r}")


STRIPE_EXPAND = ExpandReader()


def _list_reader(param: str, refuse_all: bool, words: frozenset[str]
                 ) -> Callable[..., tuple[str, ...]]:
    how = (f"this API expands nothing, and parameters named like an expansion "
           f"('{param}', include, embed, ...) are refused" if refuse_all else
           f"expansions are sent as {param}=a,b; other spellings, and other parameters "
           "named like an expansion (include, embed, ...), are refused")

    def read(query: str, where: str = "query string") -> tuple[str, ...]:
        if not query:
            return NO_EXPAND
        if ";" in query:
            raise BadParam(f"Invalid {where}: ';' is not a parameter separator; use '&' "
                           "(and percent-encode ';' inside values as %3B).", param=None)
        out: list[str] = []
        for part in query.split("&"):  # a query is bounded by the head's size
            key, _, value = part.partition("=")
            if key == param and not refuse_all:
                text = unquote_plus(value)
                for item in text.split(","):
                    item = item.strip()
                    if item:
                        _add(out, item)
            elif key and param_word(key) in words:
                raise BadParam(f"Invalid parameter '{_shown(key)}': {how}.", param=param)
        return _dedupe(out)

    return read


def _list_body_reader(param: str, refuse_all: bool, read: Callable[..., tuple[str, ...]],
                      words: frozenset[str]) -> Callable[..., tuple[str, ...]]:

    def body_reader(body: bytes | str | Mapping[str, object] | None) -> tuple[str, ...]:
        if body is None:
            return NO_EXPAND
        if isinstance(body, bytes | bytearray | memoryview):
            return read(bytes(body).decode("latin-1"), "form body")
        if isinstance(body, str):
            return read(body, "form body")
        out: list[str] = []
        for key, value in body.items():
            if key == param and not refuse_all:
                items = value.split(",") if isinstance(value, str) else value
                if not isinstance(items, Iterable):
                    raise BadParam(f"Invalid value for '{key}': expected a string or a list.")
                for v in items:
                    if str(v).strip():
                        _add(out, str(v).strip())
            elif param_word(key) in words:
                raise BadParam(f"Invalid parameter '{_shown(key)}'.", param=param)
        return _dedupe(out)

    return body_reader
