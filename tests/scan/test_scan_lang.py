"""Issue 25, fourth-round rules brought to PHP, Ruby and Go (what JS/TS and Python already
read): a fixed account followed to where its value comes from, and thin HTTP wrappers whose
URL is the API base plus a parameter and whose method is a parameter. Each rule has fixtures
of our own in at least two languages, each with a control (a near-miss it must not fire on).
Error classes (docs/scan.md): 1 clients not followed, 2 own traffic counted as the app's."""

from __future__ import annotations

from pathlib import Path

import pytest

from permgate.scan import scan
from permgate.scan.verdict import Verdict

GO_HEAD = ('package main\n\nimport (\n\t"os"\n\n\tstripe "github.com/stripe/stripe-go/v82"\n'
           '\t"github.com/stripe/stripe-go/v82/payout"\n)\n\nvar _ = os.Getenv\n\n')


def _scan(root: Path, files: dict[str, str]) -> Verdict:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return scan(root, progress=False)


# --- class 2: a fixed account followed through variables and the file's helpers -----------
# `$acct = getenv('PLATFORM_ACCOUNT') ?: 'acct_1'`, `def platform_account; ENV['X']; end`,
# `acct := os.Getenv("X")`: one account the operator chose, never an install's. One value
# from data among them (a record's field, a parameter) keeps it the connected account's.

FIXED = {
    "php-local": ("pay.php", "<?php\n"
                  "$stripe = new \\Stripe\\StripeClient(getenv('STRIPE_SECRET_KEY'));\n"
                  "function pay($stripe, $seller) {\n"
                  "  $acct = {v} ?: getenv('DEFAULT_ACCOUNT');\n"
                  "  return $stripe->payouts->create(['amount' => 1], "
                  "['stripe_account' => $acct]);\n}\n"
                  "pay($stripe, $s);\n"),
    "php-helper": ("pay.php", "<?php\nclass Pay {\n"
                   "  private function account() { return {v}; }\n"
                   "  public function run() {\n"
                   "    \\Stripe\\Stripe::setApiKey(getenv('STRIPE_SECRET_KEY'));\n"
                   "    return \\Stripe\\Payout::create(['amount' => 1], "
                   "['stripe_account' => $this->account()]);\n  }\n}\n"),
    "ruby-local": ("pay.rb", "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
                   "def pay(seller)\n  acct = {v} || ENV['DEFAULT_ACCOUNT']\n"
                   "  Stripe::Payout.create({amount: 1}, {stripe_account: acct})\nend\n"),
    "ruby-helper": ("pay.rb", "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\nclass Pay\n"
                    "  def platform_account\n    {v}\n  end\n\n"
                    "  def run\n    Stripe::Payout.create({amount: 1}, "
                    "stripe_account: platform_account)\n  end\nend\n"),
    "go-local": ("pay.go", GO_HEAD + "func pay(seller Seller) {\n"
                 '\tstripe.Key = os.Getenv("STRIPE_SECRET_KEY")\n'
                 "\tacct := {v}\n"
                 "\tp := &stripe.PayoutParams{Params: stripe.Params{StripeAccount: "
                 "stripe.String(acct)}}\n\tpayout.New(p)\n}\n"),
    "go-helper": ("pay.go", GO_HEAD + "func platformAccount() string {\n\treturn {v}\n}\n\n"
                  "func pay() {\n"
                  '\tstripe.Key = os.Getenv("STRIPE_SECRET_KEY")\n'
                  "\tp := &stripe.PayoutParams{}\n"
                  "\tp.SetStripeAccount(platformAccount())\n\tpayout.New(p)\n}\n"),
}
FIXED_VALUES = {  # (one fixed account of the operator, an install's account id)
    "php-local": ("getenv('PLATFORM_ACCOUNT')", "$seller->stripe_account_id"),
    "php-helper": ("'acct_1Platform'", "$this->seller->stripe_account_id"),
    "ruby-local": ("ENV['PLATFORM_ACCOUNT']", "seller.stripe_account_id"),
    "ruby-helper": ("ENV['PLATFORM_ACCOUNT']", "Seller.first.stripe_account_id"),
    "go-local": ('os.Getenv("PLATFORM_ACCOUNT")', "seller.AccountID"),
    "go-helper": ('os.Getenv("PLATFORM_ACCOUNT")', "current.AccountID"),
}


@pytest.mark.parametrize("case", sorted(FIXED))
def test_a_fixed_account_is_followed_to_where_its_value_comes_from(tmp_path: Path,
                                                                    case: str) -> None:
    name, body = FIXED[case]
    own, data = FIXED_VALUES[case]
    fixed = _scan(tmp_path / "own", {name: body.replace("{v}", own)})
    assert not fixed.needed, case
    calls = [c for c in fixed.findings.calls if c.path == "/v1/payouts"]
    assert calls and all(c.account == "own" for c in calls), calls
    # control: one value from data makes it the connected account's
    connected = _scan(tmp_path / "data", {name: body.replace("{v}", data)})
    assert "payout_write" in connected.needed, case


FIXED_BOUND_ANOTHER_WAY = {
    "php": ("pay.php", "<?php\n\\Stripe\\Stripe::setApiKey(getenv('STRIPE_SECRET_KEY'));\n"
            "function pay($sellers) {\n  $acct = getenv('PLATFORM_ACCOUNT');\n"
            "  foreach ($sellers as $acct) {\n"
            "    \\Stripe\\Payout::create(['amount' => 1], ['stripe_account' => $acct]);\n"
            "  }\n}\n"),
    "ruby": ("pay.rb", "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
             "def pay(acct)\n  acct ||= ENV['PLATFORM_ACCOUNT']\n"
             "  Stripe::Payout.create({amount: 1}, {stripe_account: acct})\nend\n"),
    "go": ("pay.go", GO_HEAD + "func pay(accts []string) {\n"
           '\tstripe.Key = os.Getenv("STRIPE_SECRET_KEY")\n'
           '\tacct := os.Getenv("PLATFORM_ACCOUNT")\n'
           "\tfor _, acct = range accts {\n"
           "\t\tp := &stripe.PayoutParams{}\n\t\tp.SetStripeAccount(acct)\n"
           "\t\tpayout.New(p)\n\t}\n}\n"),
}


@pytest.mark.parametrize("lang", sorted(FIXED_BOUND_ANOTHER_WAY))
def test_a_name_also_bound_from_data_is_not_a_fixed_account(tmp_path: Path, lang: str) -> None:
    """A loop's variable, a parameter given a configured default: data reaches the name."""
    name, body = FIXED_BOUND_ANOTHER_WAY[lang]
    assert "payout_write" in _scan(tmp_path, {name: body}).needed


# --- class 1: thin HTTP wrappers whose URL is a local and whose method is a parameter -----
# `stripe_request('GET', '/customers', $token)` around `wp_remote_request($url, ['method' =>
# strtoupper($method), 'headers' => [...]])` with `$url = STRIPE_API . $path`: each call site
# is a request, its key the call site's (or the constructor's).

PHP_FN_WRAPPER = (
    "<?php\nconst STRIPE_API = '{host}/v1';\n"
    "function stripe_request($method, $path, $token, $body = []) {\n"
    "  $url = STRIPE_API . $path;\n"
    "  $args = ['method' => strtoupper($method), 'body' => $body,\n"
    "           'headers' => ['Authorization' => 'Bearer ' . $token]];\n"
    "  return wp_remote_request($url, $args);\n}\n"
    "function sync($user) {\n"
    "  stripe_request('GET', '/customers', {key});\n"
    "  stripe_request('post', '/refunds', {key}, ['charge' => 'ch_1']);\n}\n"
)
PHP_CLASS_WRAPPER = {
    "src/StripeApi.php": (
        "<?php\nnamespace App;\nclass StripeApi {\n"
        "  const BASE = '{host}';\n  private $http;\n  private $key;\n"
        "  public function __construct($key) {\n"
        "    $this->key = $key;\n    $this->http = new \\GuzzleHttp\\Client();\n  }\n"
        "  private function call($method, $path, $params = []) {\n"
        "    $url = self::BASE . \"/v1{$path}\";\n"
        "    $opts = ['headers' => ['Authorization' => \"Bearer {$this->key}\"]];\n"
        "    if ($method === 'GET') {\n      return $this->http->get($url, $opts);\n    }\n"
        "    return $this->http->post($url, $opts + ['form_params' => $params]);\n  }\n"
        "  public function balance() { return $this->call('GET', '/balance'); }\n"
        "  public function refund($id) {\n"
        "    return $this->call('POST', '/refunds', ['charge' => $id]);\n  }\n}\n"),
    "src/Sync.php": ("<?php\nnamespace App;\nfunction sync($shop) {\n"
                     "  $api = new StripeApi({key});\n  return $api->balance();\n}\n"),
}
PHP_WRAPPER_KEYS = ("$user->stripe_access_token", "getenv('STRIPE_SECRET_KEY')")


@pytest.mark.parametrize("form", ["function", "function-post", "class"])
def test_php_wrapper_with_a_local_url_and_a_dispatched_method(tmp_path: Path, form: str) -> None:
    # `wp_remote_post($url, ['method' => ...])`: the arguments' method wins (WordPress)
    files = {"plugin.php": PHP_FN_WRAPPER.replace(
        "wp_remote_request", "wp_remote_post" if form == "function-post" else
        "wp_remote_request")} if form.startswith("function") else PHP_CLASS_WRAPPER
    form = form.split("-")[0]
    token, own = PHP_WRAPPER_KEYS
    if form == "class":
        token = token.replace("$user", "$shop")

    def run(name: str, host: str, key: str) -> Verdict:
        return _scan(tmp_path / name, {n: b.replace("{host}", host).replace("{key}", key)
                                       for n, b in files.items()})

    v = run("app", "https://api.stripe.com", token)
    want = {"function": {("GET", "/v1/customers"), ("POST", "/v1/refunds")},
            "class": {("GET", "/v1/balance"), ("POST", "/v1/refunds")}}[form]
    assert {(c.method, c.path) for c in v.findings.calls} == want
    assert all(c.account == "installing" for c in v.findings.calls), v.findings.calls
    assert set(v.needed) == ({"customer_read", "charge_write"} if form == "function"
                             else {"balance_read", "charge_write"})
    # controls: the developer's own key at the call site; the same wrapper on another host
    assert not run("own", "https://api.stripe.com", own).needed
    other = run("other", "https://api.example.com", token)
    assert not other.findings.calls and not other.findings.unresolved


PHP_UNREAD = (
    "<?php\nclass Api {\n  private $base = 'https://api.stripe.com/v1';\n"
    "  public function send($method, $path, $token) {\n"
    "    $url = $this->base . $path;\n"
    "    return wp_remote_request($url, ['method' => $method,\n"
    "        'headers' => ['Authorization' => 'Bearer ' . $token]]);\n  }\n"
    "  public function run($user, $path) {\n{body}  }\n}\n"
)


@pytest.mark.parametrize("body", ["", "    $this->send('GET', $path, $user->access_token);\n"])
def test_a_php_wrapper_with_paths_the_scan_cannot_read_is_unverified_not_unused(
        tmp_path: Path, body: str) -> None:
    """Never called in its file, or called with a run-time path: any path may be sent."""
    v = scan(_scan(tmp_path, {"api.php": PHP_UNREAD.replace("{body}", body)}).findings.root,
             ["customer_read"], "m", progress=False)
    assert not v.findings.calls and v.findings.unresolved
    assert v.unused == [] and [u.permission for u in v.unverified] == ["customer_read"]
    # control: a call site with a literal path reads as that request
    lit = PHP_UNREAD.replace("{body}", "    $this->send('GET', '/customers', $user->token);\n")
    got = _scan(tmp_path / "lit", {"api.php": lit})
    assert [(c.method, c.path) for c in got.findings.calls] == [("GET", "/v1/customers")]
    assert not got.findings.unresolved


# --- class 3: request options a helper of the file returns (as Ruby, JS/TS, Python) --------

OPTIONS_HELPER = {
    "php": ("pay.php", "<?php\n\\Stripe\\Stripe::setApiKey(getenv('STRIPE_SECRET_KEY'));\n"
            "class Pay {\n  private function opts() { return ['stripe_account' => {v}]; }\n"
            "  public function run() {\n"
            "    return \\Stripe\\Payout::create(['amount' => 1], $this->opts());\n  }\n}\n"),
    "go": ("pay.go", GO_HEAD + "type Pay struct{ seller Seller }\n\n"
           "func (s *Pay) params() *stripe.PayoutParams {\n"
           "\treturn &stripe.PayoutParams{Params: stripe.Params{StripeAccount: "
           "stripe.String({v})}}\n}\n\n"
           "func (s *Pay) run() {\n"
           '\tstripe.Key = os.Getenv("STRIPE_SECRET_KEY")\n'
           "\tpayout.New(s.params())\n}\n"),
}
OPTIONS_HELPER_VALUES = {  # (an install's account id, one fixed account of the operator)
    "php": ("$this->seller->stripe_account_id", "getenv('PLATFORM_ACCOUNT')"),
    "go": ("s.seller.AccountID", 'os.Getenv("PLATFORM_ACCOUNT")'),
}


@pytest.mark.parametrize("lang", sorted(OPTIONS_HELPER))
def test_request_options_a_helper_returns_name_the_account(tmp_path: Path, lang: str) -> None:
    name, body = OPTIONS_HELPER[lang]
    data, own = OPTIONS_HELPER_VALUES[lang]
    assert "payout_write" in _scan(tmp_path / "data", {name: body.replace("{v}", data)}).needed
    # control: the helper names the operator's own account
    assert not _scan(tmp_path / "own", {name: body.replace("{v}", own)}).needed


GO_FN_WRAPPER = (
    'package main\n\nimport (\n\t"net/http"\n\t"os"\n\t"strings"\n)\n\n'
    'var _ = os.Getenv\n\nconst apiBase = "{host}/v1"\n\n'
    "func stripeRequest(method, path, token string) (*http.Response, error) {\n"
    "\treq, err := http.NewRequest(strings.ToUpper(method), apiBase+path, nil)\n"
    "\tif err != nil {\n\t\treturn nil, err\n\t}\n"
    '\treq.Header.Set("Authorization", "Bearer "+token)\n'
    "\treturn http.DefaultClient.Do(req)\n}\n\n"
    "func sync(u User) {\n"
    '\tstripeRequest("GET", "/customers", {key})\n'
    '\tstripeRequest("post", "/refunds", {key})\n}\n'
)
GO_METHOD_WRAPPER = (
    'package main\n\nimport (\n\t"fmt"\n\t"io"\n\t"net/http"\n\t"os"\n)\n\n'
    "var _ = os.Getenv\n\n"
    "type Client struct {\n\tbaseURL string\n\tkey     string\n}\n\n"
    "func (c *Client) do(method, path string, body io.Reader) (*http.Response, error) {\n"
    '\turl := fmt.Sprintf("%s%s", c.baseURL, path)\n'
    "\tvar req *http.Request\n"
    "\tif method == http.MethodGet {\n"
    "\t\treq, _ = http.NewRequest(http.MethodGet, url, nil)\n"
    "\t} else {\n\t\treq, _ = http.NewRequest(http.MethodPost, url, body)\n\t}\n"
    '\treq.Header.Set("Authorization", fmt.Sprintf("Bearer %s", c.key))\n'
    "\treturn http.DefaultClient.Do(req)\n}\n\n"
    'func (c *Client) Balance() { c.do(http.MethodGet, "/balance", nil) }\n\n'
    'func (c *Client) Refund() { c.do("POST", "/refunds", nil) }\n\n'
    "func sync(u User) {\n"
    '\tc := &Client{baseURL: "{host}/v1", key: {key}}\n\tc.Balance()\n\tc.Refund()\n}\n'
)
GO_WRAPPER_KEYS = ("u.StripeAccessToken", 'os.Getenv("STRIPE_SECRET_KEY")')


@pytest.mark.parametrize("form", ["function", "method"])
def test_go_wrapper_with_a_local_url_and_a_dispatched_method(tmp_path: Path, form: str) -> None:
    body = GO_FN_WRAPPER if form == "function" else GO_METHOD_WRAPPER
    token, own = GO_WRAPPER_KEYS

    def run(name: str, host: str, key: str) -> Verdict:
        return _scan(tmp_path / name, {"api.go": body.replace("{host}", host).replace(
            "{key}", key)})

    v = run("app", "https://api.stripe.com", token)
    first = ("GET", "/v1/customers") if form == "function" else ("GET", "/v1/balance")
    assert {(c.method, c.path) for c in v.findings.calls} == {first, ("POST", "/v1/refunds")}
    assert all(c.account == "installing" for c in v.findings.calls), v.findings.calls
    assert not v.findings.unresolved
    # controls: the developer's own key; the same wrapper on another host
    assert not run("own", "https://api.stripe.com", own).needed
    other = run("other", "https://api.example.com", token)
    assert not other.findings.calls and not other.findings.unresolved


GO_UNREAD = (
    'package main\n\nimport "net/http"\n\nconst api = "https://api.stripe.com/v1"\n\n'
    "func send(method, path, token string) {\n"
    "\treq, _ := http.NewRequest(method, api+path, nil)\n"
    '\treq.Header.Set("Authorization", "Bearer "+token)\n'
    "\thttp.DefaultClient.Do(req)\n}\n\n"
    "func run(u User, path string) {\n{body}}\n"
)


@pytest.mark.parametrize("body", ["", '\tsend("GET", path, u.AccessToken)\n'])
def test_a_go_wrapper_with_paths_the_scan_cannot_read_is_unverified_not_unused(
        tmp_path: Path, body: str) -> None:
    root = _scan(tmp_path, {"api.go": GO_UNREAD.replace("{body}", body)}).findings.root
    v = scan(root, ["customer_read"], "m", progress=False)
    assert not v.findings.calls and v.findings.unresolved
    assert v.unused == [] and [u.permission for u in v.unverified] == ["customer_read"]
    # control: a call site with a literal path reads as that request
    lit = GO_UNREAD.replace("{body}", '\tsend("GET", "/customers", u.Token)\n')
    got = _scan(tmp_path / "lit", {"api.go": lit})
    assert [(c.method, c.path) for c in got.findings.calls] == [("GET", "/v1/customers")]
    assert not got.findings.unresolved


def test_a_go_request_to_the_api_host_takes_its_headers_account(tmp_path: Path) -> None:
    """`http.NewRequest("GET", "https://api.stripe.com/v1/balance", nil)` with the headers
    its function sets: a request of that account (control: another host is nothing)."""
    body = ('package main\n\nimport "net/http"\n\nfunc bal(u User) {\n'
            '\treq, _ := http.NewRequest("GET", "{host}/v1/balance", nil)\n'
            '\treq.Header.Set("Authorization", "Bearer "+u.AccessToken)\n'
            '\treq.Header.Set("Stripe-Account", u.AccountID)\n'
            "\thttp.DefaultClient.Do(req)\n}\n")
    v = _scan(tmp_path / "a", {"bal.go": body.replace("{host}", "https://api.stripe.com")})
    assert [(c.method, c.path, c.account) for c in v.findings.calls] == [
        ("GET", "/v1/balance", "connected")]
    assert v.needed == ["balance_read"]
    other = _scan(tmp_path / "b", {"bal.go": body.replace("{host}", "https://api.example.com")})
    assert not other.findings.calls and not other.needed


RB_FN_WRAPPER = (
    "BASE = '{host}/v1'\n\nclass StripeApi\n"
    "  def request(method, path, token, body = {})\n"
    '    url = "#{BASE}#{path}"\n'
    "    HTTParty.send(method, url, body: body,\n"
    "                  headers: { 'Authorization' => \"Bearer #{token}\" })\n  end\n\n"
    "  def sync(user)\n"
    "    request(:get, '/customers', {key})\n"
    "    self.request(:post, '/refunds', {key}, { charge: 'ch_1' })\n  end\nend\n"
)
RB_CLASS_WRAPPER = (
    "class Api\n  BASE = '{host}'\n\n"
    "  def initialize(key)\n    @key = key\n"
    "    @conn = Faraday.new(url: BASE + '/v1/')\n  end\n\n"
    "  def call(method, path)\n"
    "    headers = { Authorization: \"Bearer #{@key}\" }\n"
    "    case method\n    when :get then @conn.get(path, nil, headers)\n"
    "    else @conn.post(path, nil, headers)\n    end\n  end\n\n"
    "  def balance\n    call(:get, 'balance')\n  end\n\n"
    "  def refund\n    call(:post, 'refunds')\n  end\nend\n\n"
    "def sync(user)\n  Api.new({key}).balance\nend\n"
)
RB_WRAPPER_KEYS = ("user.stripe_access_token", "ENV['STRIPE_SECRET_KEY']")


@pytest.mark.parametrize("form", ["function", "class"])
def test_ruby_wrapper_with_a_local_url_and_a_dispatched_method(tmp_path: Path,
                                                               form: str) -> None:
    body = RB_FN_WRAPPER if form == "function" else RB_CLASS_WRAPPER
    token, own = RB_WRAPPER_KEYS

    def run(name: str, host: str, key: str) -> Verdict:
        return _scan(tmp_path / name, {"api.rb": body.replace("{host}", host).replace(
            "{key}", key)})

    v = run("app", "https://api.stripe.com", token)
    first = ("GET", "/v1/customers") if form == "function" else ("GET", "/v1/balance")
    assert {(c.method, c.path) for c in v.findings.calls} == {first, ("POST", "/v1/refunds")}
    assert all(c.account == "installing" for c in v.findings.calls), v.findings.calls
    assert not v.findings.unresolved
    # controls: the developer's own key; the same wrapper on another host
    assert not run("own", "https://api.stripe.com", own).needed
    other = run("other", "https://api.example.com", token)
    assert not other.findings.calls and not other.findings.unresolved


RB_UNREAD = (
    "class Api\n  BASE = 'https://api.stripe.com/v1'\n\n"
    "  def send_it(method, path, token)\n"
    "    RestClient::Request.execute(method: method, url: BASE + path,\n"
    "                                headers: { Authorization: \"Bearer #{token}\" })\n"
    "  end\n\n  def run(user, path)\n{body}  end\nend\n"
)


@pytest.mark.parametrize("body", ["", "    send_it(:get, path, user.access_token)\n"])
def test_a_ruby_wrapper_with_paths_the_scan_cannot_read_is_unverified_not_unused(
        tmp_path: Path, body: str) -> None:
    root = _scan(tmp_path, {"api.rb": RB_UNREAD.replace("{body}", body)}).findings.root
    v = scan(root, ["customer_read"], "m", progress=False)
    assert not v.findings.calls and v.findings.unresolved
    assert v.unused == [] and [u.permission for u in v.unverified] == ["customer_read"]
    # control: a call site with a literal path reads as that request
    lit = RB_UNREAD.replace("{body}", "    send_it(:get, '/customers', user.token)\n")
    got = _scan(tmp_path / "lit", {"api.rb": lit})
    assert [(c.method, c.path) for c in got.findings.calls] == [("GET", "/v1/customers")]
    assert not got.findings.unresolved


def test_a_ruby_request_to_the_api_host_takes_its_headers_account(tmp_path: Path) -> None:
    """`RestClient.get(url, headers)` / `HTTParty.post(url, headers: ...)` to the API host:
    a request of its header's account (control: another host is nothing)."""
    body = ("def bal(user)\n"
            "  RestClient.get('{host}/v1/balance',\n"
            "                 Authorization: \"Bearer #{user.access_token}\")\n"
            "  HTTParty.post('{host}/v1/refunds', body: { charge: 'ch_1' },\n"
            "                headers: { 'Authorization' => \"Bearer #{ENV['SK']}\" })\nend\n")
    v = _scan(tmp_path / "a", {"bal.rb": body.replace("{host}", "https://api.stripe.com")})
    assert [(c.method, c.path, c.account) for c in v.findings.calls] == [
        ("GET", "/v1/balance", "installing"), ("POST", "/v1/refunds", "own")]
    assert v.needed == ["balance_read"]
    other = _scan(tmp_path / "b", {"bal.rb": body.replace("{host}", "https://api.example.com")})
    assert not other.findings.calls and not other.needed


WRAPPER_DEFAULTS = {
    "php": ("api.php", "<?php\nclass Api {\n  private $base = 'https://api.stripe.com/';\n"
            "  public function call($req, $api = 'charges', $method = {default}) {\n"
            "    return wp_remote_post($this->base . 'v1/' . $api, ['method' => $method,\n"
            "        'headers' => ['Authorization' => 'Bearer ' . $this->token]]);\n  }\n"
            "  public function run($id) {\n    $this->call([], 'customers/' . $id);\n"
            "    $this->call([]);\n  }\n}\n"),
    "ruby": ("api.rb", "class Api\n  BASE = 'https://api.stripe.com/v1/'\n"
             "  def call(req, api = 'charges', method = {default})\n"
             "    HTTParty.send(method, BASE + api, headers: { 'Authorization' => "
             "\"Bearer #{@token}\" })\n  end\n\n"
             "  def run(id)\n    call({}, \"customers/#{id}\")\n    call({})\n  end\nend\n"),
}


@pytest.mark.parametrize("lang", sorted(WRAPPER_DEFAULTS))
def test_a_call_site_that_leaves_an_argument_out_passes_its_default(tmp_path: Path,
                                                                     lang: str) -> None:
    """`function call($req, $api = 'charges', $method = 'POST')` called as `call([])`."""
    name, body = WRAPPER_DEFAULTS[lang]
    v = _scan(tmp_path / "lit", {name: body.replace("{default}", "'POST'")})
    assert {(c.method, c.path) for c in v.findings.calls} == {
        ("POST", "/v1/customers/{param}"), ("POST", "/v1/charges")}
    assert not v.findings.unresolved
    # control: a default built at run time is not a method
    dyn = _scan(tmp_path / "dyn", {name: body.replace(
        "{default}", "self::M" if lang == "php" else "pick")})
    assert not dyn.findings.calls and len(dyn.findings.unresolved) == 2


CROSS_FILE = {
    "php": {
        "includes/api.php": ("<?php\nfunction stripe_api($method, $path, $token) {\n"
                             "  return wp_remote_request('{host}/v1' . $path, ['method' => "
                             "$method,\n    'headers' => ['Authorization' => 'Bearer ' . "
                             "$token]]);\n}\n"),
        "admin/sync.php": ("<?php\nfunction sync_all($user) {\n"
                           "  stripe_api('GET', '/customers', {key});\n}\n"),
    },
    "go": {
        "stripeapi/api.go": ('package stripeapi\n\nimport "net/http"\n\n'
                             "func Do(method, path, token string) {\n"
                             '\treq, _ := http.NewRequest(method, "{host}/v1"+path, nil)\n'
                             '\treq.Header.Set("Authorization", "Bearer "+token)\n'
                             "\thttp.DefaultClient.Do(req)\n}\n"),
        "handlers/sync.go": ('package handlers\n\nimport (\n\t"os"\n\n'
                             '\t"example.com/app/stripeapi"\n)\n\nvar _ = os.Getenv\n\n'
                             "func SyncAll(u User) {\n"
                             '\tstripeapi.Do("GET", "/customers", {key})\n}\n'),
    },
}
CROSS_KEYS = {"php": ("$user->stripe_access_token", "getenv('STRIPE_SECRET_KEY')"),
              "go": ("u.AccessToken", 'os.Getenv("STRIPE_SECRET_KEY")')}


@pytest.mark.parametrize("lang", sorted(CROSS_FILE))
def test_a_wrapper_another_file_defines_is_reached_by_its_name(tmp_path: Path,
                                                               lang: str) -> None:
    """A PHP function (global) or a Go package's function called from another file."""
    token, own = CROSS_KEYS[lang]

    def run(name: str, host: str, key: str) -> Verdict:
        return _scan(tmp_path / name, {n: b.replace("{host}", host).replace("{key}", key)
                                       for n, b in CROSS_FILE[lang].items()})

    v = run("app", "https://api.stripe.com", token)
    got = [(c.method, c.path, c.account) for c in v.findings.calls]
    assert got == [("GET", "/v1/customers", "installing")], v.findings
    assert v.needed == ["customer_read"]
    # controls: the developer's own key at the call site; another host
    assert not run("own", "https://api.stripe.com", own).needed
    other = run("other", "https://api.example.com", token)
    assert not other.findings.calls and not other.needed
