"""The consent pages in process: sessions, consent, review, uninstall, roles, CSRF, escaping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.console.support import (
    ACCOUNT,
    ADMIN_TOKEN,
    APP,
    HOSTILE,
    Browser,
    platform_app,
    serve,
    upload,
)

from permgate.console import ConsoleSettings, csrf_token
from permgate.console.app import Console
from permgate.events.schema import events
from permgate.store import Store, people

INSTALL = f"/console/apps/{APP}/install?mode=live"
PAGE = f"/console/apps/{APP}?mode=live"
NewBrowser = Callable[..., Browser]


@pytest.fixture
def browser(store: Store) -> Iterator[NewBrowser]:
    opened: list[Browser] = []

    def new(**kw: object) -> Browser:
        opened.append(Browser(store, url, **kw))  # type: ignore[arg-type]
        return opened[-1]

    with serve(platform_app(store)) as url:
        yield new
        for b in opened:
            b.close()


def _path(link: str) -> str:
    return "/console/" + link.split("/console/", 1)[1]


def test_account_link_starts_one_session_for_that_account(
    store: Store, browser: NewBrowser
) -> None:
    b = browser()
    link = b.account_link()
    assert "/console/links/acl_" in link
    r = b.console.get(_path(link))
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # loopback http: the dev setting
    home = b.get("/console/")
    assert home.status_code == 200 and ACCOUNT in home.text and "Ann" in home.text
    assert b.console.get(_path(link)).status_code == 410  # single use
    other = browser()
    assert other.get("/console/").status_code == 401  # no session without the link


def test_a_refused_link_says_whether_it_is_used_expired_or_unknown(
    store: Store, browser: NewBrowser
) -> None:
    from permgate.store.consent_schema import account_links

    b = browser()
    used = _path(b.account_link())
    assert b.console.get(used).status_code == 303
    expired = _path(b.account_link(user="vic"))
    with store.engine.begin() as conn:  # as if its minutes had passed
        conn.execute(account_links.update().where(account_links.c.user_id == "vic")
                     .values(expires_at=store.now()))
    unknown = "/console/links/acl_" + "x" * 43  # e.g. made against another database
    for path, says, not_says in (
        (used, "already used", ("expired", "not known")),
        (expired, "has expired", ("already used", "not known")),
        (unknown, "not known here", ("already used", "expired")),
        ("/console/links/nonsense", "not known here", ("already used", "expired")),
    ):
        r = b.console.get(path)
        assert r.status_code == 410 and says in r.text, (path, r.text)
        assert not any(s in r.text for s in not_says), path
    assert "same database as the gateway" in b.console.get(unknown).text


def test_consent_pages_speak_to_an_administrator(store: Store, browser: NewBrowser) -> None:
    """Reviewed against Stripe's install-link page, GitHub's app install/authorize pages and
    Shopify's install screen: who made it, how it connects, what each permission lets it see
    or change, which events it will get, and where the data goes (its servers too)."""
    import html
    import re

    def text_of(page: str) -> str:
        return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))

    upload(store, "1.0.0", ["customer_write", "invoice_read", "event_read"], access="oauth",
           redirect_uris=["https://app.example/back"])
    b = browser()
    b.sign_in()
    page = text_of(b.get(INSTALL).text)
    assert "Developer dev@app.example" in page
    assert "signs in to your account with OAuth" in page and "API access" not in page
    assert "oauth" not in page.replace("OAuth", "")  # no raw access type
    assert "Can create and change Customers" in page  # a write: what it lets the app change
    assert "Can see Invoices, without changing them" in page
    assert "Grants access to" not in page
    # event_read: what will be delivered (customers' and invoices' events), not "all Events"
    assert "all Events" not in page
    delivered = re.search(r"only about what it may see: (\d+) kinds \(([^)]*)\)", page)
    assert delivered, page
    assert "customer.created" in delivered.group(2) and "charge." not in delivered.group(2)
    # where data goes: an OAuth app's own servers receive what it reads
    assert ("Its developer's servers receive what the app reads" in page
            and "its own servers hold the access token" in page)
    assert "connect-src" not in page and "outside domains" not in page
    assert "Its screens in your Dashboard may also send data to" in page


def test_an_upload_that_names_no_developer_is_not_shown_as_a_unix_user(
    store: Store, browser: NewBrowser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    from tests.console.support import manifest_text

    from permgate.cli import main

    path = tmp_path / "stripe-app.json"
    path.write_text(manifest_text("1.0.0", ["customer_read"]))
    assert main(["apps", "upload", str(path), "--db", store.url]) == 0
    b = browser()
    b.sign_in()
    page = b.get(INSTALL).text
    # com.example.console's domain, but the manifest is the developer's own claim
    assert ("<dt>Developer</dt><dd>example.com (unconfirmed: taken from its app id)</dd>"
            in page)
    assert f"<dd>{getpass.getuser()}</dd>" not in page
    path.write_text(manifest_text("1.0.1", ["customer_read"]))
    assert main(["apps", "upload", str(path), "--developer", "Example Ltd",
                 "--db", store.url]) == 0
    assert "<dt>Developer</dt><dd>Example Ltd</dd>" in b.get(INSTALL).text
    # Whatever the uploader names is text, never markup.
    path.write_text(manifest_text("1.0.2", ["customer_read"]))
    hostile = '<img src=x onerror="alert(1)">&amp; Co'
    assert main(["apps", "upload", str(path), "--developer", hostile, "--db", store.url]) == 0
    page = b.get(INSTALL).text
    assert hostile not in page and "<img" not in page
    assert ("<dd>&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;amp; Co</dd>" in page)
    capsys.readouterr()


def test_a_manifest_cannot_name_its_developer_as_a_confirmed_one() -> None:
    from permgate.store.describe import default_developer

    assert default_developer("com.stripe.payments", "Stripe") == (
        "stripe.com (unconfirmed: taken from its app id)")
    assert default_developer("payments", "Stripe") == (
        "Stripe (unconfirmed: taken from its manifest)")


def test_cookies_are_secure_off_loopback(store: Store, browser: NewBrowser) -> None:
    b = browser(host="consent.platform.example")
    r = b.console.get(_path(b.account_link()))
    assert r.headers["set-cookie"].startswith("__Host-permgate_session=")
    assert "Secure" in r.headers["set-cookie"]


def test_every_page_forbids_framing_and_inline_script(
    store: Store, browser: NewBrowser
) -> None:
    upload(store, "1.0.0", ["customer_read"])
    b = browser()
    b.sign_in()
    for path in ("/console/", INSTALL, "/console/nowhere", "/console/links/acl_x"):
        r = b.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "<script" not in r.text.lower()


def test_consent_install_and_audit(store: Store, browser: NewBrowser) -> None:
    upload(store, "1.0.0", ["customer_read", "invoice_write", "credit_note_read"])
    b = browser()
    b.sign_in()
    page = b.get(INSTALL).text
    for text in ("Console example", "1.0.0", "dev@app.example", "Can see and change",
                 "Can see only", "Invoices", "Needed for invoice_write.",
                 "https://api.app.example/v1/", "Sends invoice totals", "So it can also see"):
        assert text in page, text
    assert (page.index("Can see and change") < page.index("invoice_write")
            < page.index("Can see only"))
    r = b.post(INSTALL, {})
    assert r.status_code == 303 and r.headers["location"].endswith("done=installed")
    grant = store.effective_grant(APP, ACCOUNT, "live")
    assert grant is not None and grant.approved == {
        "customer_read", "invoice_write", "credit_note_read"}
    entry = next(e for e in store.audit(app=APP) if e.action == "install.created")
    assert (entry.actor, entry.detail["via"], entry.detail["role"]) == ("ann", "console", "admin")
    with store.engine.connect() as conn:
        fired = conn.execute(sa.select(events.c.type).where(events.c.account == ACCOUNT)
                             ).scalars().all()
    assert "account.application.authorized" in fired
    shown = b.get(PAGE).text
    assert "Audit trail" in shown and "installed" in shown and "console (admin)" in shown


def test_forms_without_the_csrf_token_change_nothing(
    store: Store, browser: NewBrowser
) -> None:
    upload(store, "1.0.0", ["customer_read"])
    b = browser()
    b.sign_in()
    assert b.console.post(INSTALL, data={}).status_code == 403
    assert b.post(INSTALL, {}, csrf="0" * 64).status_code == 403
    other = browser()
    other.sign_in()
    stolen = other.csrf(INSTALL)  # another session's token is not this session's
    assert b.post(INSTALL, {}, csrf=stolen).status_code == 403
    r = b.console.post(INSTALL, data={"csrf": b.csrf(INSTALL)},
                       headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert store.effective_grant(APP, ACCOUNT, "live") is None


@pytest.mark.parametrize("role", ["view_only", "developer", "analyst"])
def test_other_roles_see_no_buttons_and_cannot_post(
    store: Store, browser: NewBrowser, role: str
) -> None:
    upload(store, "1.0.0", ["customer_read"])
    b = browser()
    b.sign_in(role=role)
    page = b.get(INSTALL).text
    assert "Only an administrator" in page
    assert 'type="submit" class="primary"' not in page and "/install?mode=live\"" not in page
    token = b.csrf("/console/")  # the sign-out form's: a valid token for this session
    r = b.post(INSTALL, {}, csrf=token)
    assert r.status_code == 403 and "Only administrators" in r.text
    assert store.effective_grant(APP, ACCOUNT, "live") is None


def test_upgrade_review_shows_only_what_is_new(store: Store, browser: NewBrowser) -> None:
    upload(store, "1.0.0", ["customer_read"])
    b = browser()
    b.sign_in()
    b.post(INSTALL, {})
    upload(store, "1.1.0", ["customer_read", "invoice_read"])
    home = b.get("/console/").text
    assert "Pending approval" in home
    review = f"/console/apps/{APP}/review?mode=live"
    page = b.get(review).text
    assert "invoice_read" in page and "customer_read" not in page
    assert "New permissions" in page and "stays as it is" in page
    grant = store.effective_grant(APP, ACCOUNT, "live")
    assert grant is not None and grant.approved == {"customer_read"}  # old grant in force
    r = b.post(review, {"version": "1.1.0"})
    assert r.status_code == 303
    grant = store.effective_grant(APP, ACCOUNT, "live")
    assert grant is not None and grant.approved == {"customer_read", "invoice_read"}
    # A version uploaded after the page was read is not approved blindly.
    upload(store, "1.2.0", ["customer_read", "invoice_read", "charge_read"])
    stale = b.post(review, {"version": "1.1.0"})
    assert stale.status_code == 409


def test_uninstall_asks_first_then_revokes(store: Store, browser: NewBrowser) -> None:
    upload(store, "1.0.0", ["customer_read"], access="restricted_api_key")
    b = browser()
    b.sign_in()
    done = b.post(INSTALL, {})
    assert done.status_code == 200 and "shown only this once" in done.text
    key = done.text.split('<code class="key">')[1].split("<")[0]
    assert store.authenticate(key) is not None
    uninstall = f"/console/apps/{APP}/uninstall?mode=live"
    confirm = b.get(uninstall).text
    assert "Uninstall Console example?" in confirm and "Keep it" in confirm
    assert store.effective_grant(APP, ACCOUNT, "live") is not None  # a GET changes nothing
    r = b.post(uninstall, {})
    assert r.status_code == 303 and "done=uninstalled" in r.headers["location"]
    assert store.effective_grant(APP, ACCOUNT, "live") is None
    assert store.authenticate(key) is None
    with store.engine.connect() as conn:
        fired = conn.execute(sa.select(events.c.type).where(events.c.account == ACCOUNT)
                             ).scalars().all()
    assert sorted(fired) == ["account.application.authorized",
                             "account.application.deauthorized"]


def test_manifest_text_is_escaped_everywhere(store: Store, browser: NewBrowser) -> None:
    upload(store, "1.0.0", ["customer_read"], purpose=HOSTILE, name=f"App {HOSTILE}")
    b = browser()
    b.sign_in()
    for path in ("/console/", INSTALL):
        page = b.get(path).text
        assert HOSTILE not in page
        assert "&lt;script&gt;alert(" in page
    b.post(INSTALL, {})
    assert HOSTILE not in b.get(PAGE).text


def test_sign_out_ends_the_session(store: Store, browser: NewBrowser) -> None:
    b = browser()
    b.sign_in()
    r = b.post("/console/logout", {}, from_page="/console/")
    assert r.status_code == 200 and "https://platform.example/settings" in r.text
    assert b.get("/console/").status_code == 401


def test_admin_api_serves_the_screen_data(store: Store, browser: NewBrowser) -> None:
    upload(store, "1.0.0", ["customer_read"])
    b = browser()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    view = b.admin.get(f"/v1/apps/{APP}/versions/1.0.0", headers=auth).json()
    assert view["permissions"][0]["title"] == "Customers"
    assert view["permissions"][0]["purpose"] == "Needed for customer_read."
    store.install(APP, ACCOUNT, "live", by="ann", role="admin")
    upload(store, "1.1.0", ["customer_read", "invoice_read"])
    diff = b.admin.get(f"/v1/installs/{APP}/{ACCOUNT}/live/review", headers=auth).json()
    assert [p["permission"] for p in diff["new"]] == ["invoice_read"]
    assert diff["needs_approval"] is True
    bad = b.admin.post("/v1/account_sessions", headers=auth, json={
        "account": ACCOUNT, "user_id": "x", "role": "admin", "next": "https://evil.example"})
    assert bad.status_code == 400


def test_every_real_world_manifest_that_uploads_has_a_consent_screen(tmp_path: Path) -> None:
    from tests.realworld import REAL_WORLD, require

    from permgate import manifest
    from permgate.store import InvalidManifest, describe

    require()
    shown = 0
    with Store.open(f"sqlite:///{tmp_path}/rw.db", upgrade=True) as store:
        console = Console(store, ConsoleSettings())
        found = people.redeem_link(store, people.create_link(
            store, account=ACCOUNT, user_id="ann", display_name="Ann", role="admin",
            actor="t").secret)
        assert found is not None
        session, token, _ = found
        for path in REAL_WORLD:
            try:
                m = manifest.parse(path.read_text("utf-8"), path.name)
                up = store.upload_version(m, actor="rw")
            except (manifest.ManifestError, InvalidManifest):
                continue  # refused with its reasons: the store's and manifest's tests
            view = describe.describe_version(store, up.version.app_id, up.version.version)
            assert {p.name for p in view.permissions} == set(up.version.permissions)
            page = console.env.get_template("consent.html").render(
                who=session, csrf=csrf_token(token), app=view, mode="live", hidden={},
                action="/x", installed=False, cancel="/console/")
            assert view.name in page or "&" in view.name or "<" in view.name
            shown += 1
    assert shown >= 20  # 44 of the 69 upload today


def test_a_singular_title_is_it_not_them() -> None:
    from permgate.store.describe import PermissionView

    def can(title: str, level: str) -> str:
        return PermissionView("x", level, title, "", "", ()).can

    assert can("Balance", "read") == "Can see Balance, without changing it."
    assert can("Quote", "write").endswith("and see it.")
    assert can("Customers", "read") == "Can see Customers, without changing them."
    assert can("Customers", "write").endswith("and see them.")
