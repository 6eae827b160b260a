"""OAuth 2.0 for apps whose manifest says `stripe_api_access_type: "oauth"`.

- `GET /oauth/v2/authorize` (an install link) is a consent page of the console: see
  permgate.console; this module checks its parameters and builds the redirect.
- `POST /v1/oauth/token` (also `/oauth/token`, where Stripe's SDKs send it with their
  `connect` base address): authorization_code and refresh_token grants, authenticated with
  the app's secret key, answering as Stripe does and failing as RFC 6749 section 5.2 says.

The grants themselves (single-use codes, rotation, reuse detection) are in
permgate.store.oauth; why this is not built on an OAuth server library: docs/consent.md.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from permgate.errors import PermgateError
from permgate.store import NotFound, Store, describe, oauth
from permgate.store.describe import VersionView

MAX_STATE = 2048
MAX_BODY = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TOKEN_PATHS = ("/v1/oauth/token", "/oauth/token")


class AuthorizeError(PermgateError):
    """An install link that cannot be trusted to redirect: shown as a page, never redirected
    (RFC 6749 section 4.1.2.1: a bad client_id or redirect_uri must not redirect)."""


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    app: VersionView
    redirect_uri: str
    state: str | None
    mode: str


def check_authorize(
    store: Store, client_id: str | None, redirect_uri: str | None, state: str | None,
    mode: str | None, response_type: str | None,
) -> AuthorizeRequest:
    if not client_id:
        raise AuthorizeError("The install link names no app (client_id is missing).")
    try:
        app = describe.describe_latest(store, client_id)
    except NotFound:
        raise AuthorizeError("The install link names an app this platform does not know.") \
            from None
    if app.access_type != "oauth":
        raise AuthorizeError("This app does not use OAuth (its manifest's "
                             "stripe_api_access_type is not \"oauth\"); install it from the "
                             "list of apps instead.")
    if not app.allowed_redirect_uris:
        raise AuthorizeError("The app's manifest lists no allowed_redirect_uris.")
    if redirect_uri is None:
        redirect_uri = app.allowed_redirect_uris[0]
    elif redirect_uri not in app.allowed_redirect_uris:
        # Exact match only: no prefix, no normalisation.
        raise AuthorizeError("The install link's redirect_uri is not one the app's manifest "
                             "lists in allowed_redirect_uris.")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise AuthorizeError("The app's redirect URI is not an absolute http(s) URL.")
    if response_type not in (None, "code"):
        raise AuthorizeError("Only response_type=code is supported.")
    if state is not None and (len(state) > MAX_STATE or not state.isprintable()):
        raise AuthorizeError("The install link's state is too long or not printable.")
    mode = mode or "live"
    if mode not in ("live", "test", "sandbox"):
        raise AuthorizeError("mode must be live, test or sandbox.")
    return AuthorizeRequest(app, redirect_uri, state, mode)


def redirect_to(uri: str, params: dict[str, str | None]) -> str:
    """The redirect URI with `params` added to its query (its own query kept)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _error(error: str, description: str, status: int = 400) -> JSONResponse:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="permgate"'
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status, headers=headers)


def _presented_key(request: Request, form: dict[str, str]) -> str | None:
    """Bearer KEY, HTTP basic with KEY as the user (as Stripe's SDKs send it), or the
    client_secret parameter."""
    header = request.headers.get("authorization")
    if header is None:
        return form.get("client_secret")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(rest.strip(), validate=True).decode("ascii").partition(
                ":")[0]
        except (binascii.Error, ValueError):
            return None
    return None


async def token_endpoint(request: Request, store: Store) -> Response:
    """POST /v1/oauth/token: exchange a code, or rotate a refresh token."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return _error("invalid_request", "The request body is too large.", 413)
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error("invalid_request", "The request body is too large.", 413)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and ctype != "application/x-www-form-urlencoded":
        return _error("invalid_request",
                      "Send the parameters form-encoded (application/x-www-form-urlencoded).")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return _error("invalid_request", "The request body could not be read.")
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:  # RFC 6749 section 3.2: parameters must not repeat
            return _error("invalid_request", f"The parameter {k} was sent twice.")
        form[k] = v
    secret = _presented_key(request, form)
    if not secret:
        return _error("invalid_client", "Authenticate with the app's secret key "
                      "(Authorization: Bearer sk_...).", 401)
    client = await run_in_threadpool(store.authenticate, secret)
    if client is None or client.kind != "secret":
        return _error("invalid_client", "The key is not a valid secret key of an app.", 401)
    grant_type = form.get("grant_type")
    try:
        if grant_type == "authorization_code":
            code = form.get("code")
            if not code:
                return _error("invalid_request", "code is required.")
            tokens = await run_in_threadpool(
                oauth.exchange_code, store, client, code, form.get("redirect_uri"))
        elif grant_type == "refresh_token":
            refresh = form.get("refresh_token")
            if not refresh:
                return _error("invalid_request", "refresh_token is required.")
            tokens = await run_in_threadpool(oauth.refresh, store, client, refresh)
        elif not grant_type:
            return _error("invalid_request", "grant_type is required.")
        else:
            return _error("unsupported_grant_type",
                          "grant_type must be authorization_code or refresh_token.")
    except oauth.OAuthError as e:
        return _error(e.error, e.description, e.status)
    return JSONResponse(tokens.as_json(), headers=NO_STORE)
