"""OAuth 2.0 for apps whose manifest says `stripe_api_access_type: "oauth"`.

- `GET /oauth/v2/authorize` (an install link) is a consent page of the console: see
  permgate.console; this module checks its parameters and builds the redirect.
- `POST /v1/oauth/token` (also `/oauth/token`, where Stripe's SDKs send it with their
  `connect` base address): authorization_code and refresh_token grants, authenticated with
  the app's secret key, answering as Stripe does and failing as RFC 6749 section 5.2 says.

The grants themselves (single-use codes, PKCE, rotation, reuse detection) are in
permgate.store.oauth; why this is not built on an OAuth server library: docs/consent.md.

Shapes as Stripe gives them (docs.stripe.com/stripe-apps/api-authentication/oauth): an
install link names the app by a `ca_...` client id, one per mode (the id carries the mode),
and an app has an external test link `/oauth/v2/chnlink_.../authorize?...` (a channel link
for testing before publication, never live); each app has these here as aliases
(`client_id_of(app, mode)`, `link_of`; the app id keeps working). The token
answer is Stripe's sample field for field, `stripe_publishable_key` included, plus
`expires_in` (docs/decisions.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from permgate.errors import PermgateError
from permgate.manifest.validate import redirect_uri_problem
from permgate.store import NotFound, Store, describe, oauth
from permgate.store.describe import VersionView

MAX_STATE = 2048
MAX_BODY = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TOKEN_PATHS = ("/v1/oauth/token", "/oauth/token")


class AuthorizeError(PermgateError):
    """An install link that cannot be trusted to redirect: shown as a page, never redirected
    (RFC 6749 section 4.1.2.1: a bad client_id or redirect_uri must not redirect)."""


class AuthorizeRedirect(PermgateError):
    """An install link whose app and redirect URI are right but whose request is not (a bad
    PKCE challenge): the error goes back to the app at `location` (RFC 6749 4.1.2.1)."""

    def __init__(self, location: str, error: oauth.OAuthError) -> None:
        super().__init__(error.description)
        self.location, self.error = location, error


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    app: VersionView
    redirect_uri: str
    state: str | None
    mode: str
    redirect_uri_sent: bool  # the link named it: the token request must repeat it
    pkce: oauth.Pkce | None

    def hidden(self) -> dict[str, str | None]:
        """The consent form's hidden fields: the link's own parameters, so that the POST is
        checked as the link was (a redirect_uri the link left out stays out)."""
        return {"client_id": self.app.app_id,
                "redirect_uri": self.redirect_uri if self.redirect_uri_sent else None,
                "state": self.state, "mode": self.mode,
                "code_challenge": self.pkce.challenge if self.pkce else None,
                "code_challenge_method": self.pkce.method if self.pkce else None}


AUTHORIZE_PARAMS = ("client_id", "redirect_uri", "state", "mode", "response_type",
                    "code_challenge", "code_challenge_method")


def _alias(kind: str, app_id: str) -> str:
    # Public identifiers, not secrets: a stable digest of the app id, so every process and
    # every restart gives an app the same ones without storing them.
    return hashlib.sha256(f"permgate {kind}\0{app_id}".encode()).hexdigest()[:32]


def client_id_of(app_id: str, mode: str = "live") -> str:
    """The app's `ca_...` client id in one mode, as Stripe gives an app one per mode (a live
    and a test one): the id carries the mode. Sandbox installs use the test one."""
    kind = "client_id" if mode == "live" else "client_id test"
    return "ca_" + _alias(kind, app_id)


def link_of(app_id: str) -> str:
    """The id of the app's external test link (`/oauth/v2/<it>/authorize`): Stripe's
    `chnlink_` channel link lets people install the app to test it before it is published.
    It is not a mode: the mode comes from the `ca_` client id (or `mode`); the link never
    installs in live mode."""
    return "chnlink_" + _alias("link", app_id)


def publishable_key_of(account: str, mode: str) -> str:
    """What the token answer's `stripe_publishable_key` carries: permgate keeps no
    publishable keys (they belong to Stripe.js, which talks to Stripe), so a stable
    placeholder of the account's mode, shaped as Stripe's (pk_live_/pk_test_)."""
    return f"pk_{'live' if mode == 'live' else 'test'}_" + _alias(f"pk {mode}", account)


_CLIENT_ID = re.compile(r"ca_[0-9a-f]{32}", re.ASCII)
_REBUILD_EVERY = 5.0  # seconds: a miss rebuilds the index at most this often per store


class _Aliases:
    """`ca_` id -> (app id, mode), built from the store's apps once and rebuilt on a miss
    at most every _REBUILD_EVERY seconds: an anonymous link with a made-up id costs a dict
    lookup, not a scan of every app."""

    def __init__(self) -> None:
        self.by_id: dict[str, tuple[str, str]] = {}
        self.built = -_REBUILD_EVERY
        self.lock = threading.Lock()

    def find(self, store: Store, client_id: str) -> tuple[str, str] | None:
        hit = self.by_id.get(client_id)
        if hit is not None:
            return hit
        with self.lock:
            now = time.monotonic()
            if now - self.built < _REBUILD_EVERY:
                return self.by_id.get(client_id)
            self.built = now
            self.by_id = {client_id_of(a.app_id, m): (a.app_id, m)
                          for a in store.list_apps() for m in ("live", "test")}
        return self.by_id.get(client_id)


_ALIASES: weakref.WeakKeyDictionary[Store, _Aliases] = weakref.WeakKeyDictionary()
_ALIASES_LOCK = threading.Lock()


def _app_of_client_id(store: Store, client_id: str) -> tuple[str, str] | None:
    """(app id, mode) of a `ca_` client id, or None."""
    if _CLIENT_ID.fullmatch(client_id) is None:
        return None
    with _ALIASES_LOCK:
        index = _ALIASES.get(store)
        if index is None:
            index = _ALIASES[store] = _Aliases()
    return index.find(store, client_id)


def check_authorize(
    store: Store, client_id: str | None, redirect_uri: str | None, state: str | None,
    mode: str | None, response_type: str | None, code_challenge: str | None = None,
    code_challenge_method: str | None = None, *, link: str | None = None,
) -> AuthorizeRequest:
    """The install link's parameters (AUTHORIZE_PARAMS, in that order), checked. Raises
    AuthorizeError (show a page) until the redirect URI is trusted, AuthorizeRedirect after.
    `link`: the id a test-mode link carries in its path (`/oauth/v2/<link>/authorize`)."""
    if not client_id:
        raise AuthorizeError("The install link names no app (client_id is missing).")
    id_mode: str | None = None  # the mode a `ca_` client id carries
    if client_id.startswith("ca_"):
        found = _app_of_client_id(store, client_id)
        if found is not None:
            client_id, id_mode = found
    try:
        app = describe.describe_latest(store, client_id)
    except NotFound:
        raise AuthorizeError("The install link names an app this platform does not know.") \
            from None
    if link is not None and link != link_of(app.app_id):
        raise AuthorizeError("The install link is not one of this app's links.")
    if id_mode is not None:
        if mode is not None and (mode == "live") != (id_mode == "live"):
            raise AuthorizeError(f"The install link's mode ({mode}) is not the mode of its "
                                 f"client_id (a {id_mode}-mode ca_ id).")
        mode = mode or id_mode
    if link is not None:
        if mode == "live":
            raise AuthorizeError("The external test link installs apps in test mode only.")
        mode = mode or "test"
    if app.access_type != "oauth":
        raise AuthorizeError("This app does not use OAuth (its manifest's "
                             "stripe_api_access_type is not \"oauth\"); install it from the "
                             "list of apps instead.")
    if not app.allowed_redirect_uris:
        raise AuthorizeError("The app's manifest lists no allowed_redirect_uris.")
    sent = redirect_uri is not None
    if redirect_uri is None:
        redirect_uri = app.allowed_redirect_uris[0]
    elif redirect_uri not in app.allowed_redirect_uris:
        # Exact match only: no prefix, no normalisation.
        raise AuthorizeError("The install link's redirect_uri is not one the app's manifest "
                             "lists in allowed_redirect_uris.")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise AuthorizeError("The app's redirect URI is not an absolute http(s) URL.")
    insecure = redirect_uri_problem(redirect_uri)
    if insecure is not None:
        # A version uploaded before `validate` refused these: no code is sent in clear.
        raise AuthorizeError(f"The app's redirect URI {insecure}. The app must upload a "
                             "version whose allowed_redirect_uris use https.")
    if response_type not in (None, "code"):
        raise AuthorizeError("Only response_type=code is supported.")
    if state is not None and (len(state) > MAX_STATE or not state.isprintable()):
        raise AuthorizeError("The install link's state is too long or not printable.")
    mode = mode or "live"
    if mode not in ("live", "test", "sandbox"):
        raise AuthorizeError("mode must be live, test or sandbox.")
    try:
        pkce = oauth.check_challenge(code_challenge, code_challenge_method)
    except oauth.OAuthError as e:
        # RFC 7636 section 4.4.1: the app learns it at its redirect URI.
        raise AuthorizeRedirect(redirect_to(redirect_uri, {
            "error": e.error, "error_description": e.description, "state": state}), e) \
            from None
    return AuthorizeRequest(app, redirect_uri, state, mode, sent, pkce)


def redirect_to(uri: str, params: dict[str, str | None]) -> str:
    """The redirect URI with `params` added to its query (its own query kept)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


REALM = 'realm="permgate"'
# A 401 names the scheme the client authenticated with (RFC 6749 sections 2.3.1 and 5.2,
# RFC 7617); a client that sent no Authorization header is told both that work.
_CHALLENGES = {"basic": f"Basic {REALM}", "bearer": f"Bearer {REALM}",
               None: f"Basic {REALM}, Bearer {REALM}"}


def _error(error: str, description: str, status: int = 400, *,
           scheme: str | None = None) -> JSONResponse:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = _CHALLENGES.get(scheme, _CHALLENGES[None])
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class _Credentials:
    scheme: str | None  # the Authorization scheme, lower-cased; None without the header
    key: str | None
    client_id: str | None  # the app id a Basic `client_id:client_secret` pair claims


def _presented_key(request: Request, form: dict[str, str]) -> _Credentials:
    """Bearer KEY; HTTP basic with KEY as the user and no password (as Stripe's SDKs and curl
    examples send it) or as RFC 6749 section 2.3.1 has it, `APP_ID:KEY` (each form-encoded);
    or the client_secret parameter."""
    header = request.headers.get("authorization")
    if header is None:
        return _Credentials(None, form.get("client_secret"), None)
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return _Credentials(scheme, rest.strip(), None)
    if scheme == "basic":
        try:
            pair = base64.b64decode(rest.strip(), validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            return _Credentials(scheme, None, None)
        user, _, password = (unquote_plus(v) for v in pair.partition(":"))
        if password:
            return _Credentials(scheme, password, user)
        return _Credentials(scheme, user, None)
    return _Credentials(None, None, None)


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
    given = _presented_key(request, form)
    if not given.key:  # Stripe's words for it (invalid_client, 401)
        return _error("invalid_client", "No authentication credentials were provided. Send "
                      "your secret API key in the Authorization header using the Bearer "
                      "authentication method", 401,
                      scheme=given.scheme)
    client = await run_in_threadpool(store.authenticate, given.key)
    if client is None or client.kind != "secret":
        return _error("invalid_client", "The key is not a valid secret key of an app.", 401,
                      scheme=given.scheme)
    if given.client_id is not None and given.client_id not in (
            client.app_id, client_id_of(client.app_id), client_id_of(client.app_id, "test")):
        return _error("invalid_client", "The client_id is not the app whose secret key was "
                      "sent.", 401, scheme=given.scheme)
    grant_type = form.get("grant_type")
    try:
        if grant_type == "authorization_code":
            code = form.get("code")
            if not code:
                return _error("invalid_request", "code is required.")
            tokens = await run_in_threadpool(
                oauth.exchange_code, store, client, code, form.get("redirect_uri"),
                form.get("code_verifier"))
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
    answer = tokens.as_json()
    answer["stripe_publishable_key"] = publishable_key_of(tokens.account, tokens.mode)
    return JSONResponse(dict(sorted(answer.items())), headers=NO_STORE)
