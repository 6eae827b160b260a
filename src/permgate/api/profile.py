"""The edge of one API, as data: how its calls look on the wire (`api.toml` of an API DIR).

Stripe is one profile of this table (`STRIPE_PROFILE`, the built-in default); a platform's
own API gets its profile from the `api.toml` that `permgate init --from-openapi` writes
(the DIR format: docs/own-api.md). The gateway, the CLI and the scanner compile their
choices from a profile once, at load: nothing here runs per request.

`parse_api_toml(text, directory)` is strict: an unknown table or key, a wrong type or a
value out of its set is one clear line (`ApiDirError`). `spec_changed(profile)` says whether
the OpenAPI document the tables were made from changed since (its recorded sha256), and
`reinit_command(profile)` the command that makes them again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from permgate.errors import PermgateError

AUTH_SCHEMES = ("basic", "bearer")
BODY_ENCODINGS = ("form", "json")
EXPAND_STYLES = ("stripe", "comma", "include", "none")
ERROR_STYLES = ("stripe", "problem")
PERMISSION_STYLES = ("scopes", "objects")
KEY_MODES = ("live", "test")
MAX_API_TOML = 64 * 1024  # a hand-sized file: a larger one is a mistake, not read
# Patterns as text: compiled (and cached by `re`) only when an api.toml is read, since every
# command imports this module.
_NAME = r"[a-z][a-z0-9_-]{0,39}"
_HEADER = r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}"  # an RFC 9110 token, bounded
_PARAM = r"[A-Za-z_][A-Za-z0-9_.-]{0,39}"
_BASE_PATH = r"(/[A-Za-z0-9._~-]+){1,8}"
_SHA256 = r"[0-9a-f]{64}"
# Request headers the gateway forwards upstream as the client sent them (the gateway's
# proxy reads this set: here so that the reader below can refuse them, import-light).
# Everything else (cookies, proxies' headers, Stripe-Context, which could name another
# account) stays at the gateway.
FORWARDED_HEADERS = frozenset({
    "stripe-version", "idempotency-key", "user-agent",
    "x-stripe-client-user-agent", "accept", "accept-encoding", "accept-language",
})
# Headers the gateway reads, writes or forwards itself, and hop-by-hop and proxies'
# headers: an account header may not be one of them (its client copy would be forwarded,
# or read by a proxy, beside the gateway's own value).
_RESERVED_HEADERS = FORWARDED_HEADERS | frozenset({
    "authorization", "host", "content-type", "content-length", "content-encoding",
    "transfer-encoding", "connection", "cookie", "te", "upgrade", "expect", "keep-alive",
    "proxy-authorization", "proxy-authenticate", "proxy-connection", "trailer", "forwarded",
    "via", "request-id", "stripe-context", "stripe-account", "www-authenticate",
})
_RESERVED_PREFIXES = ("x-forwarded-", "proxy-", "sec-")

# Paths the gateway serves itself (permgate/serve.py's mounts and gateway/control.py; a test
# keeps them equal): an own API's operation there would never be reached.
GATEWAY_PATHS = ("/healthz", "/readyz", "/metrics", "/v1/oauth/token", "/webhooks/upstream")
GATEWAY_PREFIXES = ("/admin", "/console", "/oauth")


def gateway_path(template: str) -> bool:
    """Whether the gateway answers requests to `template` itself (never forwarded)."""
    return template in GATEWAY_PATHS or template in GATEWAY_PREFIXES or template.startswith(
        tuple(p + "/" for p in GATEWAY_PREFIXES))


class ApiDirError(PermgateError, ValueError):
    """An API DIR (or its api.toml) that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class ApiProfile:
    """How one API's calls look on the wire, and where its tables came from."""

    name: str = "stripe"
    title: str = "Stripe API"
    base_paths: tuple[str, ...] = ("/v1", "/v2")
    account_header: str = "Stripe-Account"  # "": the API names no account in a header
    # No account header: every install reaches the same upstream data. Only an explicit
    # `[edge] single_tenant = true` lets `serve` run so (docs/own-api.md).
    single_tenant: bool = False
    auth_schemes: tuple[str, ...] = AUTH_SCHEMES
    body_encodings: tuple[str, ...] = ("form",)  # Stripe also takes JSON on /v2 (body.py)
    expand_style: str = "stripe"
    expand_param: str = "expand"
    # More parameter names refused as expansions (beyond api/params.REFUSED_PARAMS).
    refuse_params: tuple[str, ...] = ()
    error_style: str = "stripe"
    upstream_url: str | None = None  # None: from the gateway's settings (Stripe: none here)
    upstream_auth: str = "bearer"  # how the gateway presents its own key upstream
    # The modes an upstream credential without a mode tag ("live: "/"test: ") serves: live
    # only unless api.toml says otherwise, so test-mode installs never reach production.
    untagged_key_modes: tuple[str, ...] = ("live",)
    permissions_style: str = ""
    spec: str | None = None  # the OpenAPI document (absolute), None for Stripe's curated tables
    spec_sha256: str | None = None
    directory: str | None = None  # the API DIR, None for the built-in Stripe profile
    tables_sha256: str | None = None  # the five tables' fingerprint (read_api_dir sets it)

    @property
    def stripe(self) -> bool:
        """The built-in Stripe profile (Stripe's curated tables and wire rules)."""
        return self.directory is None

    @property
    def account_header_lower(self) -> bytes:
        """The account header as the servers hand header names over (lower case bytes)."""
        return self.account_header.lower().encode("ascii")


STRIPE_PROFILE = ApiProfile()


def _fail(where: str, message: str) -> ApiDirError:
    return ApiDirError(f"{where}: {message}")


def _take(table: dict[str, Any], where: str, allowed: dict[str, type]) -> dict[str, Any]:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(allowed)})")
    for key, kind in allowed.items():
        if key in table and not isinstance(table[key], kind):
            raise _fail(where, f"{key} must be {'a list' if kind is list else 'a ' + kind.__name__}"
                        f", not {type(table[key]).__name__}")
    return table


def _need(table: dict[str, Any], where: str, key: str) -> Any:
    if key not in table:
        raise _fail(where, f"{key} is missing")
    return table[key]


def _choice(value: str, options: tuple[str, ...], where: str, key: str) -> str:
    if value not in options:
        raise _fail(where, f"{key} must be one of {', '.join(options)}, not {value[:40]!r}")
    return value


def _subset(value: list[Any], options: tuple[str, ...], where: str, key: str
            ) -> tuple[str, ...]:
    if not value:
        raise _fail(where, f"{key} must name at least one of {', '.join(options)}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _fail(where, f"{key} must be a list of strings")
        _choice(item, options, where, key)
        if item in out:
            raise _fail(where, f"{key} names {item!r} twice")
        out.append(item)
    return tuple(out)


def _url(value: str, where: str, key: str) -> str:
    """An http(s)://host[:port][/prefix] URL, re-composed from its checked parts."""
    bad = (f"{key} must be an http(s)://host[:port][/prefix] URL without credentials, "
           f"query, fragment or dot segments, not {value[:80]!r}")
    # Only RFC 3986's characters (no space, control, quote, backslash...): urlsplit would
    # silently drop a CR/LF/TAB, and a space would end up in the request line.
    if len(value) > 2048 or not re.fullmatch(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", value):
        raise _fail(where, bad)
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise _fail(where, f"{key} has a port outside 1..65535: {value[:80]!r}") from None
    segments = parts.path.split("/")[1:]
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or "@" in parts.netloc or parts.username is not None \
            or parts.password is not None or port == 0 or "?" in value or "#" in value \
            or any(s in (".", "..") for s in segments) or "%" in parts.netloc:
        raise _fail(where, bad)
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}" \
        f"{parts.path.rstrip('/')}"


def parse_api_toml(text: str, directory: str | Path, where: str = "api.toml") -> ApiProfile:
    """The profile an api.toml describes (paths relative to `directory`); ApiDirError."""
    import tomllib  # only with --api: every command imports this module

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _fail(where, f"not valid TOML ({e})") from None
    _take(doc, where, {"api": dict, "edge": dict, "upstream": dict})
    api = _take(_need(doc, where, "api"), f"{where} [api]", {
        "name": str, "title": str, "spec": str, "spec_sha256": str, "permissions_style": str})
    edge = _take(doc.get("edge", {}), f"{where} [edge]", {
        "base_paths": list, "account_header": str, "auth_schemes": list,
        "body_encodings": list, "expand_style": str, "expand_param": str, "error_style": str,
        "single_tenant": bool, "refuse_params": list})
    up = _take(doc.get("upstream", {}), f"{where} [upstream]", {
        "url": str, "auth_scheme": str, "untagged_key_modes": list})
    w = f"{where} [api]"
    name = _need(api, w, "name")
    if not re.fullmatch(_NAME, name):
        raise _fail(w, f"name must match [a-z][a-z0-9_-]{{0,39}}, not {name[:60]!r}")
    if name == "stripe":
        raise _fail(w, "name 'stripe' is the built-in profile's; name your own API otherwise")
    title = api.get("title", name)
    if not title.strip() or len(title) > 200 or not title.isprintable():
        raise _fail(w, "title must be one printable line of at most 200 characters")
    spec = _need(api, w, "spec")
    digest = _need(api, w, "spec_sha256").lower()
    if not re.fullmatch(_SHA256, digest):
        raise _fail(w, "spec_sha256 must be 64 hex digits (the sha256 of the spec's bytes)")
    spec_path = Path(spec) if Path(spec).is_absolute() else Path(directory) / spec
    style = api.get("permissions_style", "")
    if style:
        _choice(style, PERMISSION_STYLES, w, "permissions_style")
    w = f"{where} [edge]"
    base_paths: list[str] = edge.get("base_paths", [""])
    for p in base_paths:
        if not isinstance(p, str) or (p and not re.fullmatch(_BASE_PATH, p)):
            raise _fail(w, f"base_paths must be paths like \"/v1\" (or \"\" for the root), "
                        f"not {str(p)[:60]!r}")
    if not base_paths or len(set(base_paths)) != len(base_paths):
        raise _fail(w, "base_paths must be a non-empty list without repeats")
    account = edge.get("account_header", "")
    if account and (not re.fullmatch(_HEADER, account)
                    or account.lower() in _RESERVED_HEADERS
                    or account.lower().startswith(_RESERVED_PREFIXES)):
        raise _fail(w, f"account_header must be a header name the gateway does not use "
                    f"itself (or \"\" for none), not {account[:60]!r}")
    single_tenant = edge.get("single_tenant", False)
    if single_tenant and account:
        raise _fail(w, "single_tenant = true means the API names no account: set "
                    "account_header = \"\" or drop single_tenant")
    expand_style = _choice(edge.get("expand_style", "none"), EXPAND_STYLES, w, "expand_style")
    expand_param = edge.get("expand_param", "include" if expand_style == "include"
                            else "expand")
    if not re.fullmatch(_PARAM, expand_param):
        raise _fail(w, f"expand_param must be a parameter name, not {expand_param[:40]!r}")
    if expand_style == "stripe" and expand_param != "expand":
        raise _fail(w, "expand_style \"stripe\" reads expand[]=...; expand_param must be "
                    "\"expand\" (use \"comma\" for another name)")
    refuse_params: list[Any] = edge.get("refuse_params", [])
    if len(refuse_params) > 64 or not all(
            isinstance(r, str) and re.fullmatch(_PARAM, r) for r in refuse_params):
        raise _fail(w, "refuse_params must be at most 64 parameter names")
    profile = ApiProfile(
        name=name, title=title, base_paths=tuple(base_paths), account_header=account,
        single_tenant=single_tenant,
        auth_schemes=_subset(edge.get("auth_schemes", ["bearer"]), AUTH_SCHEMES, w,
                             "auth_schemes"),
        body_encodings=_subset(edge.get("body_encodings", ["json"]), BODY_ENCODINGS, w,
                               "body_encodings"),
        expand_style=expand_style, expand_param=expand_param,
        refuse_params=tuple(refuse_params),
        error_style=_choice(edge.get("error_style", "problem"), ERROR_STYLES, w,
                            "error_style"),
        upstream_url=_url(up["url"], f"{where} [upstream]", "url") if "url" in up else None,
        upstream_auth=_choice(up.get("auth_scheme", "bearer"), AUTH_SCHEMES,
                              f"{where} [upstream]", "auth_scheme"),
        untagged_key_modes=_subset(up.get("untagged_key_modes", ["live"]), KEY_MODES,
                                   f"{where} [upstream]", "untagged_key_modes"),
        permissions_style=style, spec=str(spec_path.resolve()), spec_sha256=digest,
        directory=str(Path(directory).resolve()),
    )
    return profile


def read_profile(directory: str | Path) -> ApiProfile:
    """The profile of an API DIR (its api.toml); ApiDirError naming the file."""
    d = Path(directory)
    if not d.is_dir():
        raise ApiDirError(f"--api {directory}: not a folder (make one with permgate init "
                          "--from-openapi SPEC --out DIR)")
    path = d / "api.toml"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_API_TOML + 1)
    except OSError as e:
        raise ApiDirError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > MAX_API_TOML:
        raise ApiDirError(f"{path}: larger than {MAX_API_TOML} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiDirError(f"{path}: not UTF-8") from None
    return parse_api_toml(text, d, str(path))


MAX_SPEC = 20 * 1024 * 1024  # init's limit (ownapi/spec.py MAX_BYTES): no larger spec was read


def spec_digest(path: str | Path) -> str:
    """sha256 of a regular file of at most MAX_SPEC bytes (a FIFO or /dev/zero would hang
    every command); OSError otherwise."""
    import hashlib
    import os
    import stat

    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file")
        if st.st_size > MAX_SPEC:
            raise OSError(0, f"larger than {MAX_SPEC} bytes")
        read = 0
        for chunk in iter(lambda: f.read(1 << 20), b""):
            read += len(chunk)
            if read > MAX_SPEC:
                raise OSError(0, f"larger than {MAX_SPEC} bytes")
            h.update(chunk)
    return h.hexdigest()


def reinit_command(profile: ApiProfile) -> str:
    """The command that makes the DIR again from its spec."""
    import shlex

    # the same names as before (style), and --force: init replaces a DIR it wrote itself
    style = (f" --permissions {profile.permissions_style}"
             if profile.permissions_style in ("scopes", "objects") else "")
    return (f"permgate init --from-openapi {shlex.quote(profile.spec or 'SPEC')} "
            f"--out {shlex.quote(profile.directory or 'DIR')}{style} --force")


def spec_changed(profile: ApiProfile) -> str | None:
    """Why the DIR's tables may no longer match their spec (one line), or None when the
    spec's bytes are those `init` read. Stripe's built-in profile: always None."""
    if profile.spec is None:
        return None
    try:
        digest = spec_digest(profile.spec)
    except OSError as e:
        return (f"the API's spec {profile.spec} cannot be read ({e.strerror or e}); re-run "
                f"{reinit_command(profile)}")
    if digest != profile.spec_sha256:
        return (f"the API's spec {profile.spec} changed since its tables were made; re-run "
                f"{reinit_command(profile)}")
    return None
