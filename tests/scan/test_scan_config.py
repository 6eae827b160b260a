"""Issue 25: an account id read from the operator's configuration is one fixed account, the
operator's own (error class 2); expansions written the ways stripe-ruby sends them. Fixtures
of our own, each rule in at least two languages, each with a control (a near miss)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.scan.trees import write_tree

from permgate.scan import scan


def _needed(root: Path) -> set[str]:
    return set(scan(root, progress=False).needed)


# --- a connected account from configuration read as data: settings, a config package, Rails
# credentials, a file or the command line parsed at start-up and kept on a class or passed on

CONFIG = {
    "python": ("tap.py", "import stripe\n\n"
                         "class Context:\n    config = {}\n\n"
                         "class Sync:\n    def __init__(self, config):\n"
                         "        self.config = config\n\n"
                         "def main(path, config, args, app):\n"
                         "    return stripe.Balance.retrieve(stripe_account={v})\n"),
    "js": ("server.js", "const Stripe = require('stripe');\n"
                        "const config = require('config');\n"
                        "const stripe = Stripe(process.env.STRIPE_SECRET_KEY);\n"
                        "class Sync {\n"
                        "  constructor(settings) { this.settings = settings; }\n"
                        "  async run(shop) {\n"
                        "    return stripe.balance.retrieve({ stripeAccount: {v} });\n"
                        "  }\n}\n"),
    "ruby": ("pay.rb", "Stripe.api_key = ENV['STRIPE_SECRET_KEY']\n"
                       "class Pay\n"
                       "  def run(seller)\n"
                       "    Stripe::Balance.retrieve({ stripe_account: {v} })\n"
                       "  end\n\n"
                       "  private\n\n"
                       "  def configured_account\n"
                       "    return Rails.application.credentials.dig(:stripe, :account_id)\n"
                       "  end\n\n"
                       "  def seller_account\n"
                       "    Seller.find(1).stripe_account_id\n"
                       "  end\nend\n"),
    "php": ("Pay.php", "<?php\n\\Stripe\\Stripe::setApiKey(getenv('STRIPE_SECRET'));\n"
                       "class Pay {\n"
                       "  public function run($shop, $config) {\n"
                       "    return \\Stripe\\Balance::retrieve([], ['stripe_account' => {v}]);\n"
                       "  }\n}\n"),
    "go": ("pay.go", "package pay\n\nimport (\n\t\"os\"\n\n\t\"github.com/spf13/viper\"\n"
                     "\t\"github.com/stripe/stripe-go/v76\"\n"
                     "\t\"github.com/stripe/stripe-go/v76/balance\"\n)\n\n"
                     "func run(cfg Config, shop Shop) {\n"
                     "\tstripe.Key = os.Getenv(\"STRIPE_SECRET_KEY\")\n"
                     "\tp := &stripe.BalanceParams{Params: stripe.Params{StripeAccount: {v}}}\n"
                     "\tbalance.Get(p)\n}\n"),
}
CONFIG_VALUES = {
    # (configuration reads: the operator's), (records and tenants' settings: connected)
    "python": (("Context.config.get('account_id')", "self.config['account_id']",
                "config['account_id']", "args.config['account_id']",
                "app.config['STRIPE_ACCOUNT']", "sys.argv[1]"),
               ("shop.settings['account_id']", "args[1]", "user_settings['account_id']",
                "confirmation.account_id")),
    "js": (("config.get('stripe.accountId')", "this.settings.accountId",
            "nconf.get('stripe:account')", "appConfig.stripe.account", "process.argv[2]"),
           ("shop.settings.stripeAccountId", "userSettings.accountId",
            "conference.stripeAccountId")),
    "ruby": (("Rails.application.credentials.stripe[:account_id]", "Settings.stripe.account_id",
              "ENV.fetch('STRIPE_ACCOUNT')", "Figaro.env.stripe_account_id",
              "@config[:account_id]", "configured_account", "ARGV[0]"),
             ("seller.settings[:account_id]", "@shop.config[:account_id]", "seller_account")),
    "php": (("\\Config::get('services.stripe.account')", "$this->config['account']",
             "$config['account_id']"),
            ("$shop->settings['account']", "$shopSettings['account']")),
    "go": (("stripe.String(viper.GetString(\"stripe.account\"))",
            "stripe.String(cfg.StripeAccount)", "stripe.String(os.Args[1])"),
           ("stripe.String(shop.Settings.StripeAccount)", "stripe.String(shop.StripeAccount)")),
}


@pytest.mark.parametrize("lang", sorted(CONFIG))
def test_an_account_from_configuration_read_as_data_is_the_operators(
        tmp_path: Path, lang: str) -> None:
    name, body = CONFIG[lang]
    own, tenant = CONFIG_VALUES[lang]
    for i, v in enumerate(own):
        root = write_tree(tmp_path / f"own{i}", {name: body.replace("{v}", v)})
        assert _needed(root) == set(), v
    # control: a record's settings, a tenant's settings, a word that only starts like one
    for i, v in enumerate(tenant):
        root = write_tree(tmp_path / f"tenant{i}", {name: body.replace("{v}", v)})
        assert _needed(root) == {"balance_read"}, v


LOCAL = {
    "python": ("app.py", "import stripe\n\n"
                         "def run(shop_id):\n"
                         "    config = {v}\n"
                         "    acct = config['account_id']\n"
                         "    return stripe.Balance.retrieve(stripe_account=acct)\n",
               "json.load(open('config.json'))", "Shop.get(shop_id).settings"),
    "js": ("server.js", "const stripe = require('stripe')(process.env.STRIPE_SECRET_KEY);\n"
                        "async function run(shop) {\n"
                        "  const config = {v};\n"
                        "  return stripe.balance.retrieve({ stripeAccount: config.accountId });\n"
                        "}\n",
           "JSON.parse(fs.readFileSync('config.json'))", "await Settings.findOne({ shop })"),
    "ruby": ("pay.rb", "def run(shop_id)\n"
                       "  config = {v}\n"
                       "  Stripe::Balance.retrieve({ stripe_account: config[:account_id] })\n"
                       "end\n",
             "YAML.load_file('config/stripe.yml')", "Shop.find(shop_id).settings"),
}


@pytest.mark.parametrize("lang", sorted(LOCAL))
def test_a_local_named_config_is_configuration_only_when_filled_with_it(
        tmp_path: Path, lang: str) -> None:
    name, body, loaded, record = LOCAL[lang]
    root = write_tree(tmp_path / "loaded", {name: body.replace("{v}", loaded)})
    assert _needed(root) == set()
    # control: a local named `config` holding a tenant's record is data
    root = write_tree(tmp_path / "record", {name: body.replace("{v}", record)})
    assert _needed(root) == {"balance_read"}


# --- expand lists written the ways stripe-ruby sends them: nested arrays are flattened into
# one `expand[]` list by the SDK (`Util.flatten_params_array`), `%w[]`, `%i[]`, symbols

RUBY_EXPAND = ("def perform(account)\n"
               "  Stripe::Charge.list({ limit: 100, expand: {e} }, account.stripe_access_token)\n"
               "end\n")


@pytest.mark.parametrize("expand", [
    "[['data.invoice'], ['data.customer']]", "%w[data.invoice data.customer]",
    "[:'data.invoice', 'data.customer']", "[%w[data.invoice], %i[data.customer]]",
])
def test_ruby_expand_lists_as_the_sdk_sends_them(tmp_path: Path, expand: str) -> None:
    root = write_tree(tmp_path / "r", {"w.rb": RUBY_EXPAND.replace("{e}", expand)})
    found = scan(root, progress=False)
    assert [c.call.expand for c in found.calls] == [("data.invoice", "data.customer")]
    assert set(found.needed) == {"charge_read", "invoice_read", "customer_read"}


@pytest.mark.parametrize("expand", ["%W[data.#{field}]", "[['data.invoice'], fields]"])
def test_ruby_expand_built_at_run_time_is_not_read(tmp_path: Path, expand: str) -> None:
    # control: a part built at run time is not guessed (the call says so; grants unverified)
    root = write_tree(tmp_path / "r", {"w.rb": RUBY_EXPAND.replace("{e}", expand)})
    (call,) = scan(root, progress=False).calls
    assert call.call.expand == () and call.call.notes
