"""The consent pages: server-rendered, no JavaScript, one session per person and account.

Routes (all under /console/ but the OAuth ones):
  GET  /console/links/{token}              spend a one-time account link -> session cookie
  GET  /console/                           the account's apps: installed and available
  GET  /console/apps/{app}?mode=           one install: permissions, purposes, audit trail
  GET  /console/apps/{app}/install?mode=   the consent screen;  POST: install
  GET  /console/apps/{app}/review?mode=    only what an upgrade adds;  POST: approve
  GET  /console/apps/{app}/uninstall?mode= confirmation;  POST: uninstall
  POST /console/logout
  GET  /oauth/v2/authorize                 install link of an OAuth app;  POST: allow / deny
  POST /v1/oauth/token, /oauth/token       the token endpoint (permgate.oauth)

Every response carries a CSP without inline script and `frame-ancestors 'none'`; every form
carries a CSRF token derived from the session's secret; manifest text is escaped by Jinja2's
autoescape everywhere and URLs from manifests are shown, never linked.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from permgate import events, oauth
from permgate.console.settings import ConsoleSettings
from permgate.store import Conflict, Forbidden, NotFound, Store, StoreError, describe, people
from permgate.store import oauth as store_oauth
from permgate.store.people import BrowserSession

COOKIE_SECURE = "__Host-permgate_session"  # __Host-: Secure, Path=/, no Domain
COOKIE_PLAIN = "permgate_session"
MODES = ("live", "test", "sandbox")
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{extra}; "
        "frame-ancestors 'none'; base-uri 'none'")
_ORIGIN_SAFE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
MAX_FORM = 16_384
DONE = {  # fixed messages for ?done=...: nothing from the URL is ever echoed
    "installed": "Installed. The app may now use the permissions listed below.",
    "approved": "Approved. The app may now use the new permissions.",
    "uninstalled": "Uninstalled. Every key and token of the app for this account stopped "
                   "working at once.",
}
# A refused sign-in link says why (store.people.link_refusal), so the person knows what to do.
_LINK_REFUSED = {
    "used": ("This link was already used",
             "Each sign-in link works once. Ask your platform for a new one."),
    "expired": ("This link has expired",
                "Sign-in links work for a few minutes only. Ask your platform for a new one."),
    "unknown": ("This link is not known here",
                "This server never issued this sign-in link. Check that it was made for this "
                "server (with permgate: the same database as the gateway, `--db`), or ask "
                "your platform for a new one."),
}
ACTIONS = {
    "install.created": "installed", "install.approved": "approved",
    "install.removed": "uninstalled", "oauth.code_issued": "authorized (OAuth)",
    "oauth.token_issued": "token issued", "oauth.family_revoked": "tokens revoked",
    "key.created": "key created", "key.rotated": "key rotated",
}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("permgate.console", "templates"),
        autoescape=True,  # every template, whatever its name: manifest text is hostile
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else ""
    env.globals["ACTIONS"] = ACTIONS
    return env


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else \
        host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def csrf_token(session_token: str) -> str:
    # Derived from the cookie's secret: unknowable without it, nothing to store.
    return hmac.new(session_token.encode(), b"permgate-csrf", hashlib.sha256).hexdigest()


class Console:
    def __init__(self, store: Store, settings: ConsoleSettings) -> None:
        self.store = store
        self.settings = settings
        self.env = _env()
        self.css = resources.files("permgate.console").joinpath(
            "static/console.css").read_bytes()

    # -- plumbing ---------------------------------------------------------------------------
    def secure(self, request: Request) -> bool:
        if self.settings.secure_cookie == "always":
            return True
        if self.settings.secure_cookie == "never":
            return False
        return not _is_loopback(request.headers.get("host", ""))

    def cookie_name(self, request: Request) -> str:
        return COOKIE_SECURE if self.secure(request) else COOKIE_PLAIN

    def cookie_token(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie_name(request))

    async def session(self, request: Request) -> tuple[BrowserSession, str] | None:
        token = self.cookie_token(request)
        if not token:
            return None
        found = await run_in_threadpool(
            people.find_session, self.store, token, idle=self.settings.idle_timeout)
        return None if found is None else (found, token)

    def page(self, template: str, status: int = 200, *, form_origin: str | None = None,
             **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        extra = f" {form_origin}" if form_origin else ""
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": _CSP.format(extra=extra)})

    def message(self, title: str, text: str, status: int, **context: Any) -> HTMLResponse:
        context.setdefault("who", None)
        context.setdefault("csrf", "")
        return self.page("message.html", status, title=title, text=text, **context)

    async def form(self, request: Request, token: str) -> FormData | None:
        """The POSTed form if its CSRF token is right and it came from this origin."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM:
            return None
        origin = request.headers.get("origin")
        here = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin is not None and origin != "null" and origin != here:
            return None
        form = await request.form(max_files=0, max_fields=50)
        given = form.get("csrf")
        if not isinstance(given, str) or not hmac.compare_digest(given, csrf_token(token)):
            return None
        return form

    def signed_out(self) -> HTMLResponse:
        return self.message(
            "Sign in through your platform",
            "You are not signed in, or your session ended. Open the consent pages again "
            "from your platform's dashboard: it gives you a new one-time link.", 401)

    async def acting_form(self, request: Request, s: BrowserSession,
                          token: str) -> FormData | Response:
        """The POSTed form of a person who may act on the account, or the page that refuses
        it: a form this session did not send (CSRF), or a role that only looks."""
        form = await self.form(request, token)
        if form is None:
            return self.refused_form()
        if not s.can_act:
            return self.not_admin(s, token)
        return form

    def refused_form(self) -> HTMLResponse:
        return self.message(
            "This form has expired",
            "The form was not sent from this page, or your session changed. Go back, "
            "reload the page and try again.", 403)

    def context(self, s: BrowserSession, token: str) -> dict[str, Any]:
        return {"who": s, "csrf": csrf_token(token)}

    @staticmethod
    def mode(request: Request) -> str:
        mode = request.query_params.get("mode") or "live"
        if mode not in MODES:
            raise HTTPException(400, "mode must be live, test or sandbox")
        return mode

    # -- pages ------------------------------------------------------------------------------
    async def link(self, request: Request) -> Response:
        spent = await run_in_threadpool(
            people.redeem_link, self.store, request.path_params["token"],
            lifetime=self.settings.session_lifetime)
        if spent is None:
            why = await run_in_threadpool(
                people.link_refusal, self.store, request.path_params["token"])
            title, text = _LINK_REFUSED[why]
            return self.message(title, text, 410)
        _, token, landing = spent
        response = RedirectResponse(landing or "/console/", status_code=303)
        response.set_cookie(
            self.cookie_name(request), token,
            max_age=int(self.settings.session_lifetime.total_seconds()), path="/",
            secure=self.secure(request), httponly=True, samesite="lax")
        return response

    async def home(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return self.signed_out()
        s, token = found

        def load() -> dict[str, Any]:
            installs = self.store.list_installs(account=s.account)
            installed = {g.app_id for g in installs}
            available = [a for a in self.store.list_apps() if a.app_id not in installed]
            return {"installs": installs, "available": available,
                    "names": {a.app_id: a.name for a in self.store.list_apps()}}

        data = await run_in_threadpool(load)
        return self.page("home.html", **self.context(s, token), **data,
                         done=DONE.get(request.query_params.get("done", "")))

    async def app_page(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return self.signed_out()
        s, token = found
        app_id, mode = request.path_params["app_id"], self.mode(request)

        def load() -> dict[str, Any] | None:
            grant = self.store.effective_grant(app_id, s.account, mode)
            if grant is None:
                return None
            view = describe.describe_version(self.store, app_id, grant.installed_version)
            trail = [e for e in self.store.audit(app=app_id, account=s.account)
                     if e.mode in (None, mode) and e.action in ACTIONS]
            return {"grant": grant, "app": view, "trail": trail[-50:],
                    "approved": [p for p in view.permissions if p.name in grant.approved]}

        data = await run_in_threadpool(load)
        if data is None:
            return self.message("Not installed", "This app is not installed on this account "
                                "in this mode.", 404, **self.context(s, token))
        return self.page("app.html", **self.context(s, token), **data, mode=mode,
                         done=DONE.get(request.query_params.get("done", "")), new_key=None)

    async def install(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return self.signed_out()
        s, token = found
        app_id, mode = request.path_params["app_id"], self.mode(request)
        if request.method == "POST":
            form = await self.acting_form(request, s, token)
            if isinstance(form, Response):
                return form
            try:
                result = await run_in_threadpool(
                    self.store.install, app_id, s.account, mode, by=s.actor, role=s.role,
                    via="console")
            except Conflict:
                return RedirectResponse(f"/console/apps/{_q(app_id)}?mode={mode}", 303)
            except StoreError as e:
                return self.message("Not installed", e.message, e.status,
                                    **self.context(s, token))
            await run_in_threadpool(events.on_install, self.store, result.grant)
            if result.key is None:
                return RedirectResponse(
                    f"/console/apps/{_q(app_id)}?mode={mode}&done=installed", 303)
            view = await run_in_threadpool(describe.describe_latest, self.store, app_id)
            approved = [p for p in view.permissions if p.name in result.grant.approved]
            response = self.page(
                "app.html", **self.context(s, token), grant=result.grant, app=view, mode=mode,
                trail=[], approved=approved, done=DONE["installed"], new_key=result.key.secret)
            return response
        try:
            view = await run_in_threadpool(describe.describe_latest, self.store, app_id)
        except NotFound:
            return self.message("No such app", "This platform has no app with that id.", 404,
                                **self.context(s, token))
        grant = await run_in_threadpool(self.store.effective_grant, app_id, s.account, mode)
        if grant is not None:
            return RedirectResponse(f"/console/apps/{_q(app_id)}?mode={mode}", 303)
        return self.page("consent.html", **self.context(s, token), app=view, mode=mode,
                         action=f"/console/apps/{app_id}/install?mode={mode}", hidden={},
                         installed=False, cancel="/console/")

    async def review(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return self.signed_out()
        s, token = found
        app_id, mode = request.path_params["app_id"], self.mode(request)
        if request.method == "POST":
            form = await self.acting_form(request, s, token)
            if isinstance(form, Response):
                return form
            version = form.get("version")
            try:
                await run_in_threadpool(
                    self.store.approve, app_id, s.account, mode, by=s.actor, role=s.role,
                    version=version if isinstance(version, str) else None, via="console")
            except StoreError as e:
                return self.message("Not approved", e.message, e.status,
                                    **self.context(s, token))
            return RedirectResponse(
                f"/console/apps/{_q(app_id)}?mode={mode}&done=approved", 303)
        try:
            r = await run_in_threadpool(describe.review, self.store, app_id, s.account, mode)
        except NotFound:
            return self.message("Not installed", "This app is not installed on this account "
                                "in this mode.", 404, **self.context(s, token))
        return self.page("review.html", **self.context(s, token), r=r, mode=mode)

    async def uninstall(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return self.signed_out()
        s, token = found
        app_id, mode = request.path_params["app_id"], self.mode(request)
        if request.method == "POST":
            form = await self.acting_form(request, s, token)
            if isinstance(form, Response):
                return form
            try:
                grant = await run_in_threadpool(
                    self.store.uninstall, app_id, s.account, mode, by=s.actor, role=s.role,
                    via="console")
            except StoreError as e:
                return self.message("Not uninstalled", e.message, e.status,
                                    **self.context(s, token))
            await run_in_threadpool(events.on_uninstall, self.store, grant)
            return RedirectResponse("/console/?done=uninstalled", 303)
        current = await run_in_threadpool(self.store.effective_grant, app_id, s.account, mode)
        if current is None:
            return self.message("Not installed", "This app is not installed on this account "
                                "in this mode.", 404, **self.context(s, token))
        name = (await run_in_threadpool(self.store.get_app, app_id)).name
        return self.page("uninstall.html", **self.context(s, token), grant=current, name=name,
                         mode=mode)

    async def logout(self, request: Request) -> Response:
        found = await self.session(request)
        if found is not None:
            token = found[1]
            if await self.form(request, token) is None:
                return self.refused_form()
            await run_in_threadpool(people.end_session, self.store, token)
        response = self.message("Signed out", "You are signed out of the consent pages.", 200,
                                back=found[0].return_url if found else None)
        response.delete_cookie(self.cookie_name(request), path="/",
                               secure=self.secure(request), httponly=True, samesite="lax")
        return response

    def not_admin(self, s: BrowserSession, token: str) -> HTMLResponse:
        return self.message(
            "Only administrators may do this",
            f"Your role on this account ({s.role}) lets you see apps, not install, approve "
            "or uninstall them. Ask an administrator.", 403, **self.context(s, token))

    # -- OAuth install links ----------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        found = await self.session(request)
        form: FormData | None = None
        if request.method == "POST":
            if found is None:
                return self.signed_out()
            s, token = found
            form = await self.form(request, token)
            if form is None:
                return self.refused_form()
            params = {k: form.get(k) for k in oauth.AUTHORIZE_PARAMS}
        else:
            q = request.query_params
            params = {k: q.get(k) for k in oauth.AUTHORIZE_PARAMS}
        try:
            link = request.path_params.get("link")
            ask = await run_in_threadpool(functools.partial(
                oauth.check_authorize, self.store,
                *(v if isinstance(v, str) else None for v in params.values()),
                link=link if isinstance(link, str) else None))
        except oauth.AuthorizeError as e:
            ctx = self.context(*found) if found else {}
            return self.message("This install link cannot be used", str(e), 400, **ctx)
        except oauth.AuthorizeRedirect as e:
            return RedirectResponse(e.location, 303)
        if found is None:
            return self.signed_out()
        s, token = found
        if request.method in ("GET", "HEAD"):  # Starlette routes HEAD with GET (unfurlers)
            grant = await run_in_threadpool(
                self.store.effective_grant, ask.app.app_id, s.account, ask.mode)
            hidden = ask.hidden()
            origin = _form_origin(ask.redirect_uri)
            return self.page("consent.html", **self.context(s, token), app=ask.app,
                             mode=ask.mode, action="/oauth/v2/authorize", hidden=hidden,
                             installed=grant is not None, cancel=None, oauth=True,
                             redirect_uri=ask.redirect_uri, form_origin=origin)
        if form is None:  # no other method reaches here; refuse rather than assert
            return self.message("Bad request", "This page does not take that method.", 405)
        if form.get("decision") != "allow":
            return RedirectResponse(oauth.redirect_to(ask.redirect_uri, {
                "error": "access_denied",
                "error_description": "The user denied your request", "state": ask.state}), 303)
        if not s.can_act:
            return self.not_admin(s, token)

        def allow() -> str:
            try:
                result = self.store.install(ask.app.app_id, s.account, ask.mode, by=s.actor,
                                            role=s.role, via="console")
                events.on_install(self.store, result.grant)
            except Conflict:
                pass  # installed already: authorizing again gives the app a new code
            return store_oauth.issue_code(
                self.store, app_id=ask.app.app_id, account=s.account, mode=ask.mode,
                redirect_uri=ask.redirect_uri, user_id=s.actor,
                redirect_uri_sent=ask.redirect_uri_sent, pkce=ask.pkce)

        try:
            code = await run_in_threadpool(allow)
        except (Forbidden, StoreError) as e:
            return self.message("Not installed", e.message, e.status, **self.context(s, token))
        return RedirectResponse(oauth.redirect_to(
            ask.redirect_uri, {"code": code, "state": ask.state}), 303)

    async def token_endpoint(self, request: Request) -> Response:
        return await oauth.token_endpoint(request, self.store)

    async def css_file(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _form_origin(uri: str) -> str | None:
    """The redirect's origin for CSP form-action (Chrome applies it to a form's redirects)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN_SAFE.fullmatch(origin) else None


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a one-time link never leaks through Referer
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class _Headers:
    """Security headers on every response; a CSP on those that set none; no caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {n.lower() for n, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy",
                                    _CSP.format(extra="").encode()))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def create_console_app(store: Store, settings: ConsoleSettings | None = None) -> ASGIApp:
    """The consent pages and the OAuth endpoints as one ASGI app, routed by full path."""
    c = Console(store, settings or ConsoleSettings.from_env())
    both = ["GET", "POST"]
    routes = [
        Route("/console/links/{token}", c.link, methods=["GET"]),
        Route("/console", lambda r: RedirectResponse("/console/", 303), methods=["GET"]),
        Route("/console/", c.home, methods=["GET"]),
        Route("/console/static/console.css", c.css_file, methods=["GET"]),
        Route("/console/apps/{app_id}", c.app_page, methods=["GET"]),
        Route("/console/apps/{app_id}/install", c.install, methods=both),
        Route("/console/apps/{app_id}/review", c.review, methods=both),
        Route("/console/apps/{app_id}/uninstall", c.uninstall, methods=both),
        Route("/console/logout", c.logout, methods=["POST"]),
        Route("/oauth/v2/authorize", c.authorize, methods=both),
        Route("/oauth/v2/{link}/authorize", c.authorize, methods=["GET"]),  # test-mode link
        *(Route(p, c.token_endpoint, methods=["POST"]) for p in oauth.TOKEN_PATHS),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path in oauth.TOKEN_PATHS:
            return Response(status_code=exc.status_code)
        text = {404: "There is no page here.", 405: "This page does not take that method."}
        return c.message("Not found" if exc.status_code == 404 else "Bad request",
                         text.get(exc.status_code, str(exc.detail)), exc.status_code)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.router.redirect_slashes = False
    return _Headers(app)

