"""What request body the gateway forwards, decided before the engine sees it.

The engine reads expansions from form-encoded bodies. An upstream that also reads JSON, or
sniffs a body's type, or decodes another charset, would read parameters the engine never
saw. So the gateway forwards a body only in an encoding the engine reads the way Stripe
does, with a `Content-Type` the gateway writes itself:

- `POST` on `/v1`: `application/x-www-form-urlencoded` (an optional `charset=utf-8`);
  `multipart/form-data` only on `POST /v1/files` (Stripe's one multipart endpoint), parsed
  here so that its fields are decided on like a form's;
- `POST` on `/v2`: `application/json` (Stripe's v2 encoding), which must be one JSON
  object without duplicate keys and without an `expand` or `include` key. v2 expands with
  `include`, which the engine does not decide on: it is refused in v2 queries too;
- any other method, a body with no or another `Content-Type`, a `Content-Encoding`, two
  `Content-Type` headers, a charset other than UTF-8, a form body that is JSON or does not
  start with a parameter name (a byte-order mark, white space, `&`, `=`), a body that is not
  UTF-8: refused with a Stripe-shaped 400, never forwarded.

An empty body is no body, whatever its headers say.

That is Stripe's profile (`STRIPE_BODY`). Another API's (`body_rules(profile)`, compiled
once from api.toml's `body_encodings`) takes forms and/or JSON on any path, under the same
checks; no multipart. A JSON body is one object without duplicate keys and without a key
spelled like the API's expand parameter (the engine reads expansions from the query only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, unquote_to_bytes

from permgate.api.profile import ApiProfile
from permgate.errors import PermgateError

FORM = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"
JSON = b"application/json"
FILES_PATH = b"/v1/files"
MAX_PARTS = 1000  # form fields in one multipart body (Stripe's file upload has a handful)
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,./:=?-]{1,70}")  # RFC 2046 bchars, no space
_UTF8 = frozenset({b"utf-8", b"utf8"})
_FORM_START = re.compile(rb"[A-Za-z0-9_.~*-]|%[0-9A-Fa-f]{2}")  # what urlencode() starts with
_NAME = re.compile(rb'form-data; *name="([^"\\\r\n]*)"(?:; *filename="([^"\\\r\n]*)")?')


class BodyRefused(PermgateError, ValueError):
    """The body cannot be forwarded; the message says what the gateway accepts."""

    def __init__(self, message: str, code: str = "invalid_request_body") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Body:
    form: bytes | None  # what the engine decides on (form-encoded), None for no body
    forward: bytes  # the exact bytes sent upstream
    content_type: bytes | None  # the Content-Type sent upstream (ours, not the client's)


NO_BODY = Body(None, b"", None)


@dataclass(frozen=True, slots=True)
class BodyRules:
    """Which bodies one API takes, compiled from its profile."""

    stripe: bool = True  # Stripe's: forms on /v1 (multipart on /v1/files), JSON on /v2
    form: bool = True
    json: bool = False
    json_refused: tuple[str, ...] = ("expand", "include")  # JSON keys spelled so: refused
    accepted: str = ""  # what the refusals say is accepted
    methods: frozenset[str] = frozenset({"POST"})  # the methods that may carry a body
_ACCEPTED = (
    "This gateway forwards request bodies only as application/x-www-form-urlencoded (as "
    "Stripe's API and SDKs send them), multipart/form-data for file uploads "
    "(POST /v1/files) and application/json on /v2."
)


STRIPE_BODY = BodyRules(accepted=_ACCEPTED)
# Other APIs update with PUT/PATCH and may take a body on DELETE (OpenAPI requestBody).
OWN_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def body_rules(profile: ApiProfile) -> BodyRules:
    """Another API's rules, from its profile's `body_encodings` and expand parameter."""
    from permgate.api.params import ExpandReader

    form = "form" in profile.body_encodings
    json_ok = "json" in profile.body_encodings
    kinds = " and ".join(k for k, on in (
        ("application/x-www-form-urlencoded", form),
        ("application/json (or a +json type)", json_ok)) if on)
    refused = ExpandReader(profile.expand_style, profile.expand_param,
                           profile.refuse_params).refused
    return BodyRules(stripe=False, form=form, json=json_ok,
                     json_refused=tuple(sorted(refused)), methods=OWN_BODY_METHODS,
                     accepted=f"This gateway forwards request bodies only as {kinds} "
                     f"({profile.title} takes these).")


def _refuse(message: str, code: str = "invalid_request_body") -> NoReturn:
    raise BodyRefused(message, code)


def media_type(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """`type/subtype` (lower case) and its parameters (names lower case, quotes removed)."""
    head, _, rest = value.partition(b";")
    mt = head.strip().lower()
    if mt.count(b"/") != 1 or not all(_TOKEN.fullmatch(p) for p in mt.split(b"/")):
        _refuse(f"The Content-Type {_show(value)} is not a media type.",
                "unsupported_content_type")
    params: dict[bytes, bytes] = {}
    for item in rest.split(b";") if rest.strip() else ():
        name, eq, val = item.strip().partition(b"=")
        name = name.strip().lower()
        val = val.strip()
        if len(val) >= 2 and val[:1] == b'"' and val[-1:] == b'"':
            val = val[1:-1]
        if not eq or not _TOKEN.fullmatch(name) or name in params or b'"' in val:
            _refuse(f"The Content-Type {_show(value)} has a malformed or repeated parameter.",
                    "unsupported_content_type")
        params[name] = val
    return mt, params


def _show(value: bytes) -> str:
    text = value[:80].decode("latin-1")
    return repr("".join(c if c.isprintable() else "?" for c in text))


def header_values(values: list[bytes]) -> list[bytes]:
    """Each comma-separated value of repeated headers, commas in quoted strings kept.

    Proxies may join a repeated header into one comma-separated line (RFC 9110 5.3; Envoy
    does, in what it sends its external authorizer), so `A: x` + `A: y` and `A: x,y` must
    decide alike. For Content-Type that means two values: a comma cannot be part of one
    (a parameter value holding one must be quoted). For Content-Encoding, each coding."""
    if not any(b"," in v for v in values):
        return values  # the common case: nothing to split
    out: list[bytes] = []
    for value in values:
        if b"," not in value:
            out.append(value)
            continue
        start = 0
        quoted = escaped = False
        for i, c in enumerate(value):
            if escaped:
                escaped = False
            elif quoted and c == 0x5C:  # backslash: quoted-pair
                escaped = True
            elif c == 0x22:  # double quote
                quoted = not quoted
            elif c == 0x2C and not quoted:  # comma
                out.append(value[start:i])
                start = i + 1
        out.append(value[start:])
    return out


def decide_body(
    method: str, path: bytes, content_types: list[bytes], content_encodings: list[bytes],
    body: bytes, rules: BodyRules = STRIPE_BODY,
) -> Body:
    """The body to decide on and forward, or BodyRefused. `rules`: the API's (Stripe's
    unless told)."""
    content_types = header_values(content_types)
    content_encodings = header_values(content_encodings)
    for enc in content_encodings:
        if enc.strip().lower() not in (b"", b"identity"):
            _refuse("Request bodies must not be compressed (Content-Encoding): the gateway "
                    "must read what it forwards.", "unsupported_content_type")
    if len(content_types) > 1:
        _refuse("The request has more than one Content-Type header.",
                "unsupported_content_type")
    if not body:
        return NO_BODY
    if method not in rules.methods:
        _refuse(f"A {method} request must not have a body: "
                + ("Stripe reads its parameters from the query string." if rules.stripe else
                   "its parameters are read from the query string."))
    accepted = rules.accepted
    if not content_types:
        _refuse("A request body needs a Content-Type header. " + accepted,
                "unsupported_content_type")
    mt, params = media_type(content_types[0])
    charset = params.pop(b"charset", None)
    if charset is not None and charset.lower() not in _UTF8:
        _refuse("Request bodies must be UTF-8 (charset=utf-8), not "
                f"{charset[:40].decode('latin-1')!r}.", "unsupported_content_type")
    if mt != MULTIPART:  # a multipart body carries the file's bytes: its fields are checked
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            _refuse("The request body is not valid UTF-8.")
    if rules.stripe:
        v2 = path[:4] == b"/v2/"
        form_ok, json_ok = not v2, v2
    else:
        v2 = True  # no multipart: that is Stripe's /v1/files alone
        form_ok, json_ok = rules.form, rules.json
    if mt == FORM and form_ok:
        if params:
            _refuse("application/x-www-form-urlencoded takes no parameter but charset=utf-8.",
                    "unsupported_content_type")
        if body.lstrip()[:1] in (b"{", b"["):
            # No form parameter starts so; an upstream sniffing bodies would read JSON.
            _refuse("The form-encoded request body looks like JSON. " + accepted)
        if not _FORM_START.match(body):
            # A form starts with a parameter name. Anything else (a byte-order mark before
            # JSON, white space, a bare `&` or `=`) is what a sniffing or BOM-skipping
            # upstream could read another way.
            _refuse("The form-encoded request body must start with a parameter name "
                    "(a letter, digit, '_', '-', '.', '~', '*' or a %-escape), not "
                    f"{_show(body[:8])}. " + accepted)
        return Body(body, body, FORM)
    if mt == MULTIPART and not v2:
        if path != FILES_PATH:
            _refuse("multipart/form-data is accepted only for file uploads (POST /v1/files), "
                    "as Stripe does. " + _ACCEPTED, "unsupported_content_type")
        boundary = params.pop(b"boundary", None)
        if boundary is None or params or not _BOUNDARY.fullmatch(boundary) \
                or boundary.endswith(b" "):
            _refuse("multipart/form-data needs one valid boundary parameter and no other.",
                    "unsupported_content_type")
        form = multipart_form(body, boundary)
        return Body(form, body, MULTIPART + b"; boundary=" + boundary)
    if json_ok and (mt == JSON or (not rules.stripe and _json_suffix(mt))):
        if params:
            _refuse(f"{mt.decode('latin-1')} takes no parameter but charset=utf-8.",
                    "unsupported_content_type")
        if rules.stripe:
            check_v2_json(body, rules.json_refused)
        else:
            check_json(body, frozenset(rules.json_refused))
        return Body(None, body, mt)  # the type as sent (JSON:API's, merge-patch): lower case
    _refuse(f"The Content-Type {_show(content_types[0])} is not accepted here. " + accepted,
            "unsupported_content_type")


def _json_suffix(mt: bytes) -> bool:
    """`application/<x>+json` (RFC 6839: JSON:API's vnd.api+json, merge-patch+json)."""
    return mt.startswith(b"application/") and mt.endswith(b"+json")


def _json_doc(body: bytes, hook: Callable[[list[tuple[str, Any]]], dict[str, Any]]) -> Any:
    def constant(name: str) -> NoReturn:
        _refuse(f"The JSON body has {name}, which is not JSON.")

    try:
        # From text: json.loads would guess UTF-16 or UTF-32 from bytes.
        return json.loads(body.decode("utf-8"), object_pairs_hook=hook,
                          parse_constant=constant)
    except (ValueError, RecursionError) as e:
        if isinstance(e, BodyRefused):
            raise
        _refuse("The request body is not valid JSON.")


def check_json(body: bytes, refused: frozenset[str]) -> None:
    """Another API's JSON body: one object, no duplicate keys, and no key at any depth whose
    name reads as an expansion (`api.params.param_word` in `refused`): the engine reads
    expansions from the query only."""
    from permgate.api.params import param_word

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                _refuse(f"The JSON body repeats the key {k[:40]!r}.")
            if param_word(k) in refused:
                _refuse(f"The JSON body has the key {k[:40]!r}: expansions are read from "
                        "the query string only.", "parameter_not_allowed")
            out[k] = v
        return out

    if not isinstance(_json_doc(body, pairs), dict):
        _refuse("The JSON request body must be an object.")



def multipart_form(body: bytes, boundary: bytes) -> bytes:
    """The text fields of a multipart body, form-encoded for the engine; strict RFC 7578.

    Only `Content-Disposition: form-data; name="..."` (with `filename` for the file) and
    `Content-Type` part headers; no preamble, no transfer encodings, no nested multiparts.
    A file's content is not a parameter; a file part named like `expand` is refused.
    """
    delim = b"--" + boundary
    if not body.startswith(delim + b"\r\n"):
        _refuse("The multipart body must start with its boundary.")
    end = b"\r\n" + delim + b"--"
    close = body.find(end)
    if close < 0 or body[close + len(end):] not in (b"", b"\r\n"):
        _refuse("The multipart body must end with its closing boundary and nothing after.")
    chunks = body[len(delim) + 2:close].split(b"\r\n" + delim + b"\r\n")
    if len(chunks) > MAX_PARTS:
        _refuse(f"The multipart body has more than {MAX_PARTS} parts.")
    fields: list[str] = []
    for chunk in chunks:
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            _refuse("A multipart part has no blank line after its headers.")
        name = filename = None
        for line in head.split(b"\r\n"):
            hname, colon, value = line.partition(b":")
            hname = hname.strip().lower()
            value = value.strip()
            if not colon:
                _refuse("A multipart part has a malformed header line.")
            if hname == b"content-disposition" and name is None:
                m = _NAME.fullmatch(value)
                if m is None:
                    _refuse('A multipart part needs exactly Content-Disposition: form-data; '
                            'name="..." (and filename="..." for the file).')
                name, filename = m.group(1), m.group(2)
            elif hname == b"content-type" and filename is not None:
                continue  # a file's own type: not read
            else:
                _refuse("A multipart part has a header the gateway does not accept "
                        "(only Content-Disposition, and Content-Type for the file).")
        if name is None:
            _refuse("A multipart part has no Content-Disposition name.")
        try:
            key = name.decode("utf-8")
        except UnicodeDecodeError:
            _refuse("A multipart field name is not UTF-8.")
        if filename is not None:
            if "expand" in key.lower():
                _refuse("A file part cannot be named like expand.")
            continue
        try:
            value_text = content.decode("utf-8")
        except UnicodeDecodeError:
            _refuse(f"The multipart field {key[:40]!r} is not UTF-8 text.")
        fields.append(quote(key, safe="[]") + "=" + quote(value_text, safe=""))
    return "&".join(fields).encode("ascii")


def check_v2_json(body: bytes, refused: tuple[str, ...] = ("expand", "include")) -> None:
    """A /v2 body (or another API's JSON): one JSON object, no duplicate keys, no key
    spelled like `refused` (v2 has no `expand`; its `include` is not decided on)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                _refuse(f"The JSON body repeats the key {k[:40]!r}.")
            out[k] = v
        return out

    def constant(name: str) -> NoReturn:
        _refuse(f"The JSON body has {name}, which is not JSON.")

    try:
        # From text: json.loads would guess UTF-16 or UTF-32 from bytes.
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as e:
        if isinstance(e, BodyRefused):
            raise
        _refuse("The request body is not valid JSON.")
    if not isinstance(doc, dict):
        _refuse("The JSON request body must be an object.")
    for key in doc:
        low = key.lower()
        for word in refused:
            if word in low:
                _refuse(_V2_INCLUDE if refused == ("expand", "include") else
                        f"The JSON body has the key {key[:40]!r}: expansions are read from "
                        "the query string only.", "parameter_not_allowed")


_V2_INCLUDE = ("The gateway does not forward v2 'include' (or 'expand') parameters: it cannot "
               "yet decide which permissions the included objects need.")


def check_v2_query(query: bytes) -> None:
    """v2 expands with `include`; the engine reads v1's `expand` only: refuse both here,
    however a key is spelled or escaped (v2 is rare through the gateway: thoroughness wins)."""
    for part in query.replace(b";", b"&").split(b"&"):
        key = part.partition(b"=")[0]
        for _ in range(3):  # escaped, double-escaped, triple-escaped
            key = unquote_to_bytes(key.replace(b"+", b" "))
        key = key.lower()
        if b"include" in key or b"expand" in key:
            _refuse(_V2_INCLUDE, "parameter_not_allowed")
