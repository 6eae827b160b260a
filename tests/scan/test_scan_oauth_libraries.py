"""Issue 25, error class 1: an OAuth client library that calls the Stripe API itself with the
access token it obtains (`src/permgate/scan/data/oauth_libraries.json`). Using the library is
the request: its calls count on the installing account. Each form has a control with the same
names that must not trigger: the library named but not used, and another provider."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import permgate
from permgate.scan import oauthlibs, scan
from permgate.scan.files import read_source
from permgate.scan.model import Skipped

OMNIAUTH = ("Rails.application.config.middleware.use OmniAuth::Builder do\n"
            "  provider {p}, ENV['STRIPE_CLIENT_ID'], ENV['STRIPE_SECRET_KEY']\nend\n")
GOTH = ('package main\n\nimport (\n\t"os"\n\n\t"github.com/markbates/goth"\n'
        '\t"github.com/markbates/goth/providers/github"\n'
        '\t"github.com/markbates/goth/providers/stripe"\n)\n\n'
        'var _ *stripe.Provider\nvar _ = github.New\n\n'
        'func setup() {\n\tgoth.UseProviders({p}(os.Getenv("KEY"), os.Getenv("SECRET"), '
        '"https://example.com/auth/callback"))\n}\n')
LEAGUE = ("<?php\nnamespace App\\Http;\n\nuse AdamPaterson\\OAuth2\\Client\\Provider\\Stripe;\n"
          "use League\\OAuth2\\Client\\Provider\\Github;\n\n"
          "function callback($code) {\n"
          "  $provider = new {p}(['clientId' => getenv('ID'), 'clientSecret' => getenv('S')]);\n"
          "  $token = $provider->getAccessToken('authorization_code', ['code' => $code]);\n"
          "  return $provider->{m};\n}\n")

# form -> (files with {p}, the use, the control uses: another provider, the library unused)
CASES: dict[str, tuple[dict[str, str], str, tuple[str, ...]]] = {
    "ruby-omniauth-builder": ({"config/initializers/omniauth.rb": OMNIAUTH,
                               "Gemfile": "gem 'omniauth-stripe-connect'\n"},
                              ":stripe_connect", (":github", "'stripe_connect_token'")),
    "ruby-devise": ({"config/initializers/devise.rb":
                     "Devise.setup do |config|\n  config.omniauth {p}, ENV['STRIPE_CLIENT_ID'], "
                     "ENV['STRIPE_SECRET_KEY'], scope: 'read_write'\nend\n"},
                    ":stripe_connect", (":facebook", ":stripe_connect_legacy")),
    "ruby-rack": ({"config/application.rb": "require 'omniauth-stripe-connect'\n"
                   "class Application < Rails::Application\n"
                   "  config.middleware.use OmniAuth::Strategies::{p}, ENV['ID'], ENV['S']\nend\n"},
                  "StripeConnect", ("GitHub", "StripeConnectMock")),
    "ruby-subclass": ({"lib/omniauth/stripe_mine.rb":
                       "class StripeMine < OmniAuth::Strategies::{p}\n"
                       "  option :name, 'stripe_mine'\nend\n"},
                      "StripeConnect", ("OAuth2", "GitHub")),
    "python-social-auth": ({"proj/settings.py":
                            "from social_core.backends.oauth import BaseOAuth2\n"
                            "AUTHENTICATION_BACKENDS = ('{p}',\n"
                            "    'django.contrib.auth.backends.ModelBackend')\n"
                            "SOCIAL_AUTH_STRIPE_KEY = 'ca_x'\n"},
                           "social_core.backends.stripe.StripeOAuth2",
                           ("social_core.backends.github.GithubOAuth2",
                            "social_core.backends.stripe")),
    "python-allauth": ({"proj/settings.py":
                        "INSTALLED_APPS = ['allauth', 'allauth.socialaccount', '{p}']\n"
                        "SOCIALACCOUNT_PROVIDERS = {'stripe': {'SCOPE': ['read_only']}}\n"},
                       "allauth.socialaccount.providers.stripe",
                       ("allauth.socialaccount.providers.github",
                        "allauth.socialaccount.providers.stripe_mock")),
    "python-import": ({"auth/backends.py":
                       "from {p} import StripeOAuth2\n\n"
                       "class Stripe(StripeOAuth2):\n    pass\n"},
                      "social_core.backends.stripe", ("social_core.backends.github",)),
    "php-league": ({"src/Auth.php": LEAGUE.replace("{m}", "getResourceOwner($token)")},
                   "Stripe", ("Github",)),
    "php-socialite": ({"app/Http/Login.php":
                       "<?php\nuse Laravel\\Socialite\\Facades\\Socialite;\n"
                       "class Login {\n  public function callback() {\n"
                       "    return Socialite::driver('{p}')->stateless()->user();\n  }\n"
                       "  public function go() {\n"
                       "    return Socialite::driver('stripe')->redirect();\n  }\n}\n"},
                      "stripe", ("github",)),
    "go-goth": ({"main.go": GOTH}, "stripe.New", ("github.New",)),
}


def _needed(root: Path, files: dict[str, str], p: str) -> set[str]:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body.replace("{p}", p))
    return set(scan(root, progress=False).needed)


@pytest.mark.parametrize("form", sorted(CASES))
def test_an_oauth_library_that_reads_the_account_counts_its_request(
    tmp_path: Path, form: str
) -> None:
    files, use, controls = CASES[form]
    assert _needed(tmp_path / "use", files, use) == {"connected_account_read"}
    for i, other in enumerate(controls):
        assert _needed(tmp_path / f"control{i}", files, other) == set(), other


def test_the_league_provider_requests_nothing_without_get_resource_owner(
    tmp_path: Path
) -> None:
    # the token exchange (connect.stripe.com) and the authorisation URL need no permission
    files = {"src/Auth.php": LEAGUE.replace("{m}", "getAuthorizationUrl()")}
    assert _needed(tmp_path, files, "Stripe") == set()


def test_the_library_call_says_which_library_and_account(tmp_path: Path) -> None:
    files = {"proj/settings.py": "AUTHENTICATION_BACKENDS = ['{p}']\n"
                                 "X = 'social_core.backends.stripe.StripeOAuth2'\n"}
    _needed(tmp_path, files, "social_core.backends.stripe.StripeOAuth2")
    (found,) = scan(tmp_path, progress=False).calls  # once per library and file
    call = found.call
    assert (call.file, call.line, call.method, call.path) == (
        "proj/settings.py", 1, "GET", "/v1/account")
    assert call.account == "installing"
    assert "social-auth-core" in call.reason and "access token" in call.reason


def test_every_library_fact_names_its_source_and_a_request_the_engine_knows() -> None:
    doc = json.loads(resources.files("permgate.scan").joinpath(
        "data/oauth_libraries.json").read_text("utf-8"))
    assert {row["language"] for row in doc["libraries"]} >= {"ruby", "python", "php", "go"}
    for row in doc["libraries"]:
        assert re.search(r"github\.com/\S+ \S+ at [0-9a-f]{40}", row["source"]), row["library"]
        for method, path in row["calls"]:
            d = permgate.default_engine().requirements(method, path)
            assert d.kind == "missing" and d.required, (method, path)


LOCKED = {  # form -> (lock file, its text with {v}, a version before the library's calls)
    "ruby-devise": ("Gemfile.lock", "GEM\n  specs:\n    omniauth-stripe-connect ({v})\n"
                                    "      omniauth-oauth2 (~> 1.4)\n", "2.4.0"),
    "python-social-auth": ("requirements.txt", "Django==4.2\nsocial_auth_core=={v}\n", "4.3.0"),
    "php-socialite": ("composer.lock", '{"packages": [{\n  "name": "socialiteproviders/stripe",'
                                       '\n  "version": "v{v}"}]}\n', "1.1.0"),
}


@pytest.mark.parametrize("form", sorted(LOCKED))
def test_a_locked_version_older_than_the_request_sends_nothing(tmp_path: Path, form: str) -> None:
    files, use, _ = CASES[form]
    lock, body, old = LOCKED[form]
    assert _needed(tmp_path / "old", {**files, lock: body.replace("{v}", old)}, use) == set()
    # control: a version that sends it
    assert _needed(tmp_path / "new", {**files, lock: body.replace("{v}", "9.0.0")}, use) == {
        "connected_account_read"}


# An OAuth client session sends the token it holds on the requests the app makes with it:
# requests-oauthlib's / authlib's OAuth2Session (Python), the oauth2 gem's token (Ruby).
SESSIONS = {
    "python": {"auth.py": "from requests_oauthlib import OAuth2Session\n\n"
                          "def callback(code):\n"
                          "    oauth = {p}(CLIENT_ID, redirect_uri=REDIRECT)\n"
                          "    oauth.fetch_token('https://connect.stripe.com/oauth/token', "
                          "code=code)\n"
                          "    return oauth.get('https://api.stripe.com/v1/account').json()\n"},
    "ruby": {"auth.rb": "def callback(code)\n"
                        "  client = OAuth2::Client.new(ENV['ID'], ENV['SECRET'], "
                        "site: 'https://connect.stripe.com')\n"
                        "  oauth = {p}\n"
                        "  oauth.get('https://api.stripe.com/v1/account')\nend\n"},
}
SESSION_USES = {"python": ("OAuth2Session", "requests.Session"),
                "ruby": ("client.auth_code.get_token(code)", "Faraday.new")}


@pytest.mark.parametrize("lang", sorted(SESSIONS))
def test_an_oauth_session_sends_the_token_it_holds(tmp_path: Path, lang: str) -> None:
    use, control = SESSION_USES[lang]
    assert _needed(tmp_path / "use", SESSIONS[lang], use) == {"connected_account_read"}
    # control: a plain HTTP session of unknown key is not counted (reported as unknown)
    assert _needed(tmp_path / "control", SESSIONS[lang], control) == set()


@pytest.mark.parametrize("provider", ["Stripe", "GenericProvider"])
def test_a_league_provider_sends_its_token_on_authenticated_requests(
    tmp_path: Path, provider: str
) -> None:
    opts = ("['clientId' => getenv('ID'), 'urlAuthorize' => 'https://connect.stripe.com/oauth/"
            "authorize', 'urlAccessToken' => 'https://connect.stripe.com/oauth/token', "
            "'urlResourceOwnerDetails' => 'https://api.stripe.com/v1/account']")
    files = {"src/Sync.php": "<?php\nuse AdamPaterson\\OAuth2\\Client\\Provider\\Stripe;\n"
                             "use League\\OAuth2\\Client\\Provider\\GenericProvider;\n"
                             "function sync($token) {\n"
                             f"  $provider = new {provider}({opts});\n"
                             "  $req = $provider->getAuthenticatedRequest('GET', "
                             "'{p}/v1/charges?expand[]=data.customer', $token);\n"
                             "  return $provider->getParsedResponse($req);\n}\n"}
    assert _needed(tmp_path / "api", files, "https://api.stripe.com") == {
        "charge_read", "customer_read"}
    # control: the same provider's authenticated request to another host
    assert _needed(tmp_path / "other", files, "https://example.com") == set()


# Hostile lock files and literals: the version gate and the Python name lookup stay bounded.
DEVISE = CASES["ruby-devise"][0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_lock_file_that_is_a_pipe_is_not_read(tmp_path: Path) -> None:
    # reading a FIFO blocks until a writer comes: the scan would never end
    for name, body in DEVISE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body.replace("{p}", ":stripe_connect"))
    os.mkfifo(tmp_path / "Gemfile.lock")
    done = subprocess.run([sys.executable, "-m", "permgate", "scan", str(tmp_path), "--json",
                           "--no-progress"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert "connected_account_read" in done.stdout


def test_a_version_of_thousands_of_digits_does_not_drop_the_file(tmp_path: Path) -> None:
    # int() of 5,000 digits raises ValueError: the whole file was skipped, its calls lost
    lock = "GEM\n  specs:\n    omniauth-stripe-connect (" + "9" * 5000 + ")\n"
    assert _needed(tmp_path, {**DEVISE, "Gemfile.lock": lock}, ":stripe_connect") == {
        "connected_account_read"}


def test_a_lock_file_is_read_once_per_scan(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []

    def counting(path: Path) -> bytes | Skipped:
        reads.append(path)
        return read_source(path)

    monkeypatch.setattr(oauthlibs, "read_source", counting)
    files = {f"config/initializers/s{i}.rb": DEVISE["config/initializers/devise.rb"]
             for i in range(5)}
    lock = "GEM\n  specs:\n    omniauth-stripe-connect (2.4.0)\n"
    assert _needed(tmp_path, {**files, "Gemfile.lock": lock}, ":stripe_connect") == set()
    assert reads == [tmp_path / "Gemfile.lock"]


def test_a_long_dotted_literal_is_not_split_into_every_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    find = oauthlibs.find

    def counting(language: str, field: str, value: str) -> oauthlibs.Library | None:
        asked.append(value)
        return find(language, field, value)

    monkeypatch.setattr(oauthlibs, "find", counting)
    # each prefix of a literal of n names joined: n^2 work (minutes for a 700 KB literal)
    files = {"settings.py": "X = '{p}'\nY = 'social_core.backends.stripe.StripeOAuth2'\n"}
    assert _needed(tmp_path, files, "stripe." * 3000) == {"connected_account_read"}
    assert len(asked) <= 12


# OmniAuth builds a strategy's `info` only `unless skip_info?`: omniauth-stripe-connect's and
# -express's request is then not made; omniauth-stripe's `extra` requests it regardless.
SKIP = {  # the use's options -> needed
    ", skip_info: true": set(),
    ", :skip_info => true": set(),
    ", { skip_info: true }": set(),
    ", skip_info: false": {"connected_account_read"},
    ", skip_info: ->(uid) { User.exists?(uid: uid) }": {"connected_account_read"},
}


@pytest.mark.parametrize("form", ["ruby-omniauth-builder", "ruby-devise"])
@pytest.mark.parametrize("opts", sorted(SKIP))
def test_skip_info_true_stops_the_strategys_request(tmp_path: Path, form: str,
                                                     opts: str) -> None:
    files = {name: body.replace("ENV['STRIPE_SECRET_KEY']", "ENV['STRIPE_SECRET_KEY']" + opts)
             for name, body in CASES[form][0].items()}
    assert _needed(tmp_path / "connect", files, ":stripe_connect") == SKIP[opts]
    # control: the same option on omniauth-stripe, whose `extra` reads the account anyway
    assert _needed(tmp_path / "stripe", files, ":stripe") == {"connected_account_read"}


def test_provider_outside_omniauth_builder_is_not_a_strategy(tmp_path: Path) -> None:
    # another DSL's `provider :stripe` (a payment gateway's setting) requests nothing
    files = {"config/initializers/payments.rb":
             "Payments.configure do\n  provider {p}, ENV['STRIPE_SECRET_KEY']\nend\n"}
    assert _needed(tmp_path / "other", files, ":stripe") == set()
    # control: the same line in OmniAuth::Builder's block
    assert _needed(tmp_path / "builder", {"config/initializers/omniauth.rb": OMNIAUTH},
                   ":stripe") == {"connected_account_read"}
