"""The consent pages in a real browser: Debian's chromium driven by Selenium + chromium-driver.

Everything runs for real: localstripe, `permgate serve` with the console beside the proxy,
the official Python SDK as the app, a loopback HTTP server as the OAuth app's redirect URI,
axe-core (npm) for accessibility. Screenshots go to artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import stripe
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from tests.console.e2e import Platform, csrf_of, platform
from tests.console.support import ACCOUNT, HOSTILE, upload
from tests.gateway.procs import wait_until
from tests.needs import missing, npm_ci

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
NODE_DIR = Path(__file__).parent / "node"
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
PLATFORM_APP = "com.example.console.platform"
OAUTH_APP = "com.example.console.oauth"


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing("chromium and chromium-driver (the consent pages' browser tests)",
                "apt-get install chromium chromium-driver")
    return browser, driver


def _driver(javascript: bool) -> WebDriver:
    browser, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture(scope="module")
def axe_source() -> str:
    npm_ci(NODE_DIR, AXE)
    return AXE.read_text("utf-8")


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("consent-browser")) as p:
        yield p


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    d = _driver(javascript=True)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def nojs() -> Iterator[WebDriver]:
    d = _driver(javascript=False)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(autouse=True)
def sdk(plat: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "api_base", plat.url)
    monkeypatch.setattr(stripe, "connect_api_base", plat.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)


class Callback:
    """The OAuth app's redirect URI: a loopback server that records what it was sent."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/oauth/callback":  # not the browser's /favicon.ico
                    outer.queries.append(parse_qs(parts.query))
                body = b"<!doctype html><title>app</title><p>back at the app</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def callback() -> Iterator[Callback]:
    cb = Callback()
    try:
        yield cb
    finally:
        cb.close()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def sign_in(driver: WebDriver, plat: Platform, role: str = "admin",
            next_path: str | None = None) -> None:
    driver.delete_all_cookies()
    driver.get(plat.account_link(role=role, next_path=next_path))
    assert "/console/links/" not in driver.current_url  # the one-time URL is left at once


def main_buttons(driver: WebDriver) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "main button, main input[type=submit]")


def axe_check(driver: WebDriver, source: str, page: str) -> None:
    """No serious or critical axe-core violation, at desktop width and at 320 px."""
    driver.execute_script(source)
    for width in (1280, 320):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500})
        try:
            found = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
                " nodes: v.nodes.map(n => n.target.join(' '))}))))"
                ".catch(e => done([{id: 'axe-error', impact: 'critical', nodes: [String(e)]}]));")
            bad = [v for v in found if v["impact"] in ("serious", "critical")]
            assert bad == [], f"{page} at {width} px: {bad}"
            # Readable at 320 px: nothing wider than the viewport.
            wide = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth;")
            assert wide <= 0, f"{page} scrolls sideways by {wide} px at {width} px"
            if width == 320:
                shot(driver, f"{page}-320px")
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def sdk_client(plat: Platform, key: str, account: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(key, stripe_account=account, base_addresses={"api": plat.url},
                               max_network_retries=0)


def test_account_link_consent_install_without_javascript(
    plat: Platform, nojs: WebDriver
) -> None:
    keys = upload(plat.store, "1.0.0", ["customer_read"], app_id=PLATFORM_APP,
                  name="Invoice helper").keys
    secret = next(k.secret for k in keys if k.mode == "test")
    app = sdk_client(plat, secret, ACCOUNT)
    with pytest.raises(stripe.PermissionError, match="not installed"):
        app.v1.customers.list()
    sign_in(nojs, plat)
    assert nojs.current_url == plat.url + "/console/"
    nojs.find_element(By.PARTIAL_LINK_TEXT, "Review and install (test mode)").click()
    assert "Customers" in nojs.page_source and "Needed for customer_read." in nojs.page_source
    shot(nojs, "consent")
    # Keyboard only: Tab to the Install button and press Enter.
    body = nojs.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(40):
        active = nojs.switch_to.active_element
        if active.tag_name == "button" and active.text == "Install":
            break
        active.send_keys(Keys.TAB)
    else:
        raise AssertionError("the Install button cannot be reached with the Tab key")
    active.send_keys(Keys.ENTER)
    wait_until(lambda: "done=installed" in nojs.current_url, what="installed page")
    assert "Installed." in nojs.page_source
    shot(nojs, "installed")
    assert app.v1.customers.list().object == "list"  # the app's key works at the gateway


def test_upgrade_review_shows_only_the_new_permission(
    plat: Platform, browser: WebDriver, axe_source: str
) -> None:
    upload(plat.store, "1.1.0", ["customer_read", "invoice_read"], app_id=PLATFORM_APP,
           name="Invoice helper")
    secret = plat.store.rotate_key(PLATFORM_APP, "test", actor="tests").secret
    app = sdk_client(plat, secret, ACCOUNT)
    with pytest.raises(stripe.PermissionError, match="invoice_read"):
        app.v1.invoices.list()  # the old grant stays in force until approved
    sign_in(browser, plat)
    axe_check(browser, axe_source, "home")
    browser.find_element(By.LINK_TEXT, "Review").click()
    new = [e.find_element(By.CSS_SELECTOR, ".perm-name code").text
           for e in browser.find_elements(By.CSS_SELECTOR, ".perms.new .perm")]
    assert new == ["invoice_read"]
    assert "customer_read" not in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "review")
    axe_check(browser, axe_source, "review")
    browser.find_element(By.XPATH, "//button[text()='Approve']").click()
    wait_until(lambda: "done=approved" in browser.current_url, what="approved page")
    shot(browser, "approved")
    axe_check(browser, axe_source, "installed-app")
    assert app.v1.invoices.list().object == "list"


def test_oauth_install_link_code_token_refresh(
    plat: Platform, browser: WebDriver, callback: Callback, axe_source: str
) -> None:
    keys = upload(plat.store, "1.0.0", ["customer_read"], app_id=OAUTH_APP, access="oauth",
                  redirect_uris=[callback.url], name="OAuth helper").keys
    secret = next(k.secret for k in keys if k.mode == "test")
    link = "/oauth/v2/authorize?" + urlencode({
        "client_id": OAUTH_APP, "redirect_uri": callback.url, "state": "xyz", "mode": "test"})
    sign_in(browser, plat, next_path=link)  # the platform sends its admin straight there
    assert "OAuth helper" in browser.page_source
    shot(browser, "oauth-consent")
    axe_check(browser, axe_source, "oauth-consent")
    browser.find_element(By.XPATH, "//button[text()='Install']").click()
    wait_until(lambda: browser.current_url.startswith(callback.url), what="redirect to app")
    query = callback.queries[-1]
    assert query["state"] == ["xyz"] and query["code"][0].startswith("ac_")
    token = stripe.OAuth.token(api_key=secret, grant_type="authorization_code",
                               code=query["code"][0], redirect_uri=callback.url)
    assert token["stripe_user_id"] == ACCOUNT
    assert sdk_client(plat, token["access_token"]).v1.customers.list().object == "list"
    fresh = stripe.OAuth.token(api_key=secret, grant_type="refresh_token",
                               refresh_token=token["refresh_token"])
    assert sdk_client(plat, fresh["access_token"]).v1.customers.list().object == "list"
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        stripe.OAuth.token(api_key=secret, grant_type="refresh_token",
                           refresh_token=token["refresh_token"])
    # Cancel on a fresh link sends the person back with access_denied.
    browser.get(plat.url + link.replace("xyz", "abc"))
    browser.find_element(By.XPATH, "//button[text()='Cancel']").click()
    wait_until(lambda: len(callback.queries) == 2, what="denied redirect")
    assert callback.queries[-1]["error"] == ["access_denied"]
    assert callback.queries[-1]["state"] == ["abc"]


def test_uninstall_refuses_every_token_and_key_at_once(
    plat: Platform, browser: WebDriver, callback: Callback, axe_source: str
) -> None:
    secret = plat.store.rotate_key(OAUTH_APP, "test", actor="tests").secret
    link = "/oauth/v2/authorize?" + urlencode({
        "client_id": OAUTH_APP, "redirect_uri": callback.url, "mode": "test"})
    sign_in(browser, plat, next_path=link)
    browser.find_element(By.XPATH, "//button[text()='Continue']").click()
    wait_until(lambda: browser.current_url.startswith(callback.url), what="redirect to app")
    token = stripe.OAuth.token(api_key=secret, grant_type="authorization_code",
                               code=callback.queries[-1]["code"][0], redirect_uri=callback.url)
    access = sdk_client(plat, token["access_token"])
    platform_secret = plat.store.rotate_key(PLATFORM_APP, "test", actor="tests").secret
    platform_app = sdk_client(plat, platform_secret, ACCOUNT)
    assert access.v1.customers.list().object == "list"
    assert platform_app.v1.customers.list().object == "list"
    for app_id in (OAUTH_APP, PLATFORM_APP):
        browser.get(f"{plat.url}/console/apps/{app_id}?mode=test")
        browser.find_element(By.PARTIAL_LINK_TEXT, "Uninstall").click()
        assert "Uninstall" in browser.find_element(By.TAG_NAME, "h1").text
        shot(browser, f"uninstall-confirm-{app_id.rsplit('.', 1)[1]}")
        axe_check(browser, axe_source, "uninstall-confirm")
        browser.find_element(By.XPATH, "//button[text()='Uninstall']").click()
        wait_until(lambda: "done=uninstalled" in browser.current_url, what="uninstalled")
    with pytest.raises(stripe.AuthenticationError):
        access.v1.customers.list()
    with pytest.raises(stripe.PermissionError, match="not installed"):
        platform_app.v1.customers.list()
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        stripe.OAuth.token(api_key=secret, grant_type="refresh_token",
                           refresh_token=token["refresh_token"])


def test_non_admin_sees_no_buttons_and_a_forged_post_is_refused(
    plat: Platform, browser: WebDriver, axe_source: str
) -> None:
    app_id = "com.example.console.viewer"
    upload(plat.store, "1.0.0", ["customer_read"], app_id=app_id)
    sign_in(browser, plat, role="view_only")
    page = f"/console/apps/{app_id}/install?mode=test"
    browser.get(plat.url + page)
    assert main_buttons(browser) == []
    assert "Only an administrator" in browser.page_source
    shot(browser, "consent-view-only")
    axe_check(browser, axe_source, "consent-view-only")
    # Forged: the person's own session cookie and a valid CSRF token, outside the page.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    with httpx.Client(base_url=plat.url, cookies=cookies) as forger:
        token = csrf_of(forger.get("/console/").text)
        r = forger.post(page, data={"csrf": token})
    assert r.status_code == 403
    assert plat.store.effective_grant(app_id, ACCOUNT, "test") is None


def test_script_in_a_purpose_shows_as_text(plat: Platform, browser: WebDriver) -> None:
    app_id = "com.example.console.hostile"
    upload(plat.store, "1.0.0", ["customer_read"], app_id=app_id, purpose=HOSTILE,
           name=f"Hostile {HOSTILE}")
    sign_in(browser, plat)
    browser.get(f"{plat.url}/console/apps/{app_id}/install?mode=test")
    purpose = browser.find_element(By.CSS_SELECTOR, ".purpose").text
    assert HOSTILE in purpose
    assert HOSTILE in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_elements(By.TAG_NAME, "script") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    shot(browser, "hostile-purpose")
