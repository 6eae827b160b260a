"""Helpers every language extractor shares: raw URLs, account heuristics, event literals."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl

from permgate.scan.model import Account
from permgate.scan.redact import MASK

if TYPE_CHECKING:
    from permgate.scan.modules import Modules

API_HOSTS = ("https://api.stripe.com", "https://files.stripe.com", "http://api.stripe.com")
HTTP_VERBS = frozenset({"get", "post", "delete", "put", "patch"})
# A piece of a string built at run time (an interpolation or a variable): None.
Piece = str | None

# Key expressions that name a per-install credential (restricted key minted for the install,
# OAuth access token) rather than the developer's own secret key.
_INSTALL_KEY = re.compile(
    r"install|restricted|\brak\b|_rak|rak_|access_?token|accesstoken|oauth|connected|merchant",
    re.I,
)
_OWN_KEY = re.compile(
    r"process\.env|import\.meta\.env|os\.environ|getenv|ENV\[|\bsk_(test|live)_|secret_?key|"
    r"api_?key|STRIPE_|"
    r"^(?:\\?\w+::)?(?:env|config)\(",  # the configuration helpers (Laravel `env()`, `config()`)
    re.I,
)
# Request options passed as one value named after the connected-account option
# (`create(params, stripeAccount)`, `options=stripe_account_opts`): issue 25.
OPTIONS_ACCOUNT = re.compile(r"(?i)stripe_?account_?(?:options|opts)?")
# Parameters whose value is followed when handed on to another function (`outer(client)` ->
# `inner(client)`): names that say they hold a client (bounded work: not every parameter)
FORWARDED = re.compile(r"(?i)stripe|client|\bapi\b|\bsdk\b")
_EVENT_LITERAL = re.compile(r"""["'`]([a-z][a-z0-9_]*(?:\.[a-z0-9_]+){1,4})["'`]""")


@dataclass(frozen=True, slots=True)
class Context:
    file: str  # as reported (relative to the scanned root)
    ui_extension: bool
    event_types: frozenset[str]
    project: Project | None = None
    modules: Modules | None = None  # the tree's files, for imports resolved by path


_P = TypeVar("_P")
_N = TypeVar("_N")


@dataclass(frozen=True, slots=True)
class Wrapper:
    """A function of the app that sends a relative path to the Stripe API (`get('/x')`)."""

    prefix: str  # the literal after the host, e.g. "/v1"
    path_index: int  # which argument is the path
    method: str | None  # fixed HTTP method, or None when an argument gives it
    method_index: int | None
    account: Account
    reason: str
    defined: str  # file:line
    # where the key comes from when a call site decides it: ("arg", i) the wrapper's own
    # argument i, ("init", i) argument i of the constructor of the object it is called on
    key_from: tuple[str, int] | None = None
    # the rest of the path after argument path_index: literals and other arguments' indexes
    # (`f"/{resource}/{obj_id}"` -> ("/", 3)); empty when that argument ends it
    path_parts: tuple[str | int, ...] = ()

    def path_pieces(self, args: Sequence[Sequence[_P] | None]) -> list[_P | str | None]:
        """The path a call site gives, from the pieces of its arguments (None: not given)."""
        def given(i: int) -> list[_P | str | None]:
            found = args[i] if i < len(args) else None
            return [None] if found is None else list(found)

        out = given(self.path_index)
        for part in self.path_parts:
            out += [part] if isinstance(part, str) else given(part)
        return out


@dataclass(slots=True)
class Project:
    """What a light project-wide pass finds: functions that build or return a configured
    client (factories), module-level clients, and thin HTTP wrappers, by name."""

    factories: dict[str, tuple[Account, str]] = field(default_factory=dict)
    clients: dict[str, tuple[Account, str]] = field(default_factory=dict)
    wrappers: dict[str, Wrapper] = field(default_factory=dict)
    # (function name, parameter index) -> the client its callers pass there
    params: dict[tuple[str, int], tuple[Account, str]] = field(default_factory=dict)
    # `stripe.api_key = ...` (Python) / `Stripe.api_key = ...` (Ruby) set somewhere in the
    # project: module-level SDK calls anywhere use it. None: never set; unknown: set apart.
    module_key: tuple[Account, str] | None = None
    # factories whose key is one of their parameters: name -> its index (the caller's key
    # decides the account of each client they build)
    key_params: dict[str, int] = field(default_factory=dict)
    # functions and classes whose parameters hold a client or key: files that call them are
    # read even if they never say "stripe" (what they pass decides the account)
    wanted: set[str] = field(default_factory=set)

    def param(self, file: str, name: str, idx: int, lang: str = "") -> tuple[Account, str] | None:
        """What the project's call sites pass to parameter `idx` of `name` defined in `file`:
        call sites whose import of `name` was resolved by path first, then by name only."""
        return self.params.get((f"{file}:{name}", idx)) or self.params.get((lang + name, idx))

    def merge(self, other: Project) -> None:
        if other.module_key is not None:
            if self.module_key is None:
                self.module_key = other.module_key
            elif self.module_key[0] != other.module_key[0]:
                self.module_key = ("unknown", "the SDK's global key is set to keys of "
                                   "different accounts in the project")
        for mine, theirs in ((self.factories, other.factories), (self.clients, other.clients)):
            for k, v in theirs.items():
                if k in mine and mine[k][0] != v[0]:  # two definitions disagree: unknown
                    mine[k] = ("unknown", f"{k} is defined more than once with different keys")
                else:
                    mine.setdefault(k, v)
        for k, w in other.wrappers.items():
            # a file read again knows more (its class's callers): a known account wins
            if k not in self.wrappers or self.wrappers[k].account == "unknown":
                self.wrappers[k] = w
        for k, idx in other.key_params.items():
            self.key_params.setdefault(k, idx)
        self.wanted |= other.wanted
        for key, fact in other.params.items():
            old = self.params.get(key)
            if old is not None and old[0] != fact[0]:
                self.params[key] = ("unknown", f"{key[0]}() is passed clients of different "
                                    "accounts")
            else:
                self.params.setdefault(key, fact)


_K = TypeVar("_K")


def bind_value(table: dict[_K, tuple[Account, str]], key: _K, value: tuple[Account, str],
               disagree: str) -> None:
    """Record the client or key a name holds (a variable, a field, a factory's return, a
    parameter's callers); a value of another account makes it unknown, `disagree` says why:
    the scan never picks one of two accounts."""
    old = table.get(key)
    table[key] = value if old is None or old[0] == value[0] else ("unknown", disagree)


_OAUTH_KEY = re.compile(r"access_?token|accesstoken|oauth", re.I)
_LITERAL = re.compile(r"""(?s)[rbuRBU]?(?:"[^"\\]*"|'[^'\\]*'|`[^`$\\]*`)""")
# A key read from a tenant's record (`user.secret_key`, `$shop->stripe_key`,
# `current_user.stripe_api_key`): stored per user or account, so not the developer's own secret
# (which comes from the environment, config or the code); the record is named at the start.
_TENANT_FIELD = re.compile(
    # the record may be the request's (`req.user.secretKey`, `request.user.profile.stripe_key`,
    # `ctx.state.user.key`, `Auth::user()->stripe_key`, `$request->user()->key`): the signed-in
    # user, team or shop is a tenant; the key may sit a field or two below it
    r"(?:this\.|self\.|@|\$)?(?:(?:req|request|ctx|context|state|locals|g|session|event)"
    r"[!?]?(?:\.|->))*(?:\\?auth\(\)->|\\?Auth::)?"
    r"(?:[A-Za-z]+_)?(?:user|account|merchant|shop|seller|store|vendor|"
    r"tenant|team|org|organi[sz]ation|workspace|install(?:ation)?|creator|owner|partner|member|"
    r"business|company)s?(?:\(\))?[!?]?(?:\.|->|\[)\s*"
    # a field or two below it, not its configuration (`store.config.apiKey`)
    r"(?:(?!['\"]?(?:conf|config|settings?|env|options)\b)[\w'\"]+(?:\]|\(\))?[!?]?(?:\.|->|\[)\s*){0,2}"
    r"[\w'\"]*(?:key|secret|token)",
    re.I,
)
# A key the request carries (issue 25): a form field, a body or query value, a header, a
# route parameter; the person sending it pastes in their own account's key, so its traffic is
# that account's, never the developer's. Written at the key (`req.body.apiKey`,
# `request.data.get('api_key')`, `$_POST['key']`, `$request->input('key')`, Rails
# `params[:secret_key]`, Go `r.FormValue("key")`); a local the request was copied into first
# (`data = request.data`) is a record like any other (unknown).
_REQUEST_INPUT = re.compile(
    r"(?:\(?await\s+)?(?:"
    r"(?:ctx\.|c\.)?req(?:uest)?[!?]?\.(?:body|query|query_params|headers?|params|cookies|data|json|"
    r"form|args|values|POST|GET|FILES|get_json\(|json\(|formData\(|header\(|param\(|query\()"
    r"|ctx\.(?:query|params|headers|request\.body)"
    r"|\$_(?:POST|GET|REQUEST|COOKIE)\b|\$_SERVER\[\s*['\"]HTTP_"
    r"|\$(?:this->)?request->(?:input|get|post|query|header|json|all|validated|string)\("
    r"|\\?request\(\)->(?:input|get|post|query|header)\(|\\?request\(\s*['\"]"
    r"|\$this->input->(?:post|get|get_post|cookie)\("
    r"|\\?(?:Input|Request)::(?:get|input|post|query|header)\("
    r"|params\[:\w+\]|params\.(?:require|fetch|permit)\(|request\.(?:headers|params)\["
    r"|(?:form|form_?data|formData|cleaned_data)(?:\.get\(|\[)"
    r"|(?:r|req)\.(?:FormValue|PostFormValue|Header\.Get|URL\.Query\(\)\.Get)\("
    r")",
)
# The reason of a key the request carries, and what it becomes in a Stripe App's tree
PASTED_KEY = "a key from the request"


def pasted_in_app(account: Account, reason: str) -> tuple[Account, str]:
    """In a Stripe App's tree (a manifest, a UI extension) a key a user sends in the request
    is their own full secret key, which no permission of the app gates (the app acts for an
    installing account with its own credentials: the UI's session, a per-install key, an
    OAuth token, `stripeAccount`): its calls are not the app's traffic, and whose they are
    the scan cannot tell, so unknown (unverified, never unused). Outside an app (a backend
    acting for its users) such a key is its user's account: connected, as `key_account_why`
    reads it. The same line as events in a tree that is not an app (`handlers.finish`)."""
    if PASTED_KEY not in reason or account != "connected":
        return account, reason
    return "unknown", (f"{reason}; in a Stripe App a key the user pastes in is gated by none "
                       "of the app's permissions")


# One record among many (issue 25): a key read from a row of a list (`rows[0].api_key`,
# `connections[0].get('api_key')`; a loop's item is read as `xs[i]` by the extractors) is
# one of many accounts' keys, a tenant's. Not a list of settings or of keys (`keys[0]`,
# `stripe_keys[mode]`: the operator's keys by mode), nor the command line (`argv[1]`).
_ITEM_FIELD = re.compile(
    r"(?:this\.|self\.|@|\$this->|\$)?([A-Za-z_]\w*)\[(?:\d+|i)\]\s*(?:\??\.|->|\[)")
_NOT_RECORDS = re.compile(r"(?i)key|secret|token|cred|setting|conf|option|pref|env|mode|"
                          r"^(?:args?|argv|opts?|params?)$")
# A key read from a record's field: `restaurant.stripeSecretKey`, `$row->secret_key`,
# `req.body.apiKey`, `this.clinic.key` (group 1: the record, after any `this.`/`self.`).
_RECORD_FIELD = re.compile(
    r"(?:this\.|self\.|@|\$this->|\$)?([A-Za-z_]\w*)(?:\??\.|->|\[|::)")
# Records that hold the operator's configuration, not data: a key read from them is the
# developer's own (when its name says so); from any other record it is data whose owner the
# name cannot tell.
_CONFIG_RECORD = re.compile(
    r"(?i)process|import|os|deno|bun|env|environ|_env|_server|\w*conf(?:ig)?\w*|\w*settings?|"
    r"rails|app|current_app|secrets?|credentials?|constants?|consts?|keys|globalthis|window|"
    r"functions|stripe|params?|(?-i:[A-Z][A-Z0-9_]*)")
# The installing account's credential by its name (a value, never a string that mentions one).
_STRIPE_CREDENTIAL = re.compile(r"access_?token|oauth|restricted_?key|\brak\b", re.I)
# Callees that only record or route a value (a token logged, a route named after a token):
# handing them a credential is not code outside the project acting with it.
_NOT_A_CONSUMER = re.compile(
    r"^(?:console|logger|log|logging|debug|winston|pino|bunyan|sentry|Sentry|router|app|"
    r"print|warnings)$|^(?:log|info|warn|warning|error|debug|trace|fatal|exception|critical|"
    r"get|post|put|patch|delete|route|use|all|redirect|render|send|json)$")

# HTTP clients: their `post`/`get`/`send` sends the value to another service, which can act
# with it (a router's `post` only names a route).
_HTTP_CLIENT = re.compile(
    r"^(?:axios|got|ky|superagent|needle|request|requests|httpx|aiohttp|urllib3|http|https|"
    r"undici|ofetch|session|client|Faraday|HTTParty|Net|GuzzleHttp|Http|wp_remote_\w+)$")


def credential_escape(callee: Sequence[str], arg: str, is_value: bool) -> Account | None:
    """Whether handing `arg` (its source text) to the package function `callee` gives code
    outside the project the app's credential: the account that credential acts for, else None.

    Only a value counts (a name or a field, not a string literal that mentions a token), with
    a name that says Stripe and a token; only a consumer counts (not a logger or a router), and
    only a credential of the app's accounts keeps grants (the developer's own key uses none)."""
    if not is_value or len(arg) >= 80 or not callee:
        return None
    if not (_STRIPE_CREDENTIAL.search(arg) and re.search(r"stripe", arg, re.I)):
        return None
    if _NOT_A_CONSUMER.match(callee[0]) or (
            len(callee) > 1 and _NOT_A_CONSUMER.match(callee[-1])
            and not _HTTP_CLIENT.match(callee[0])):
        return None
    acc = key_account(arg)
    return acc if acc in ("installing", "connected") else None


# Where a fixed account id comes from: the environment or the operator's configuration.
_FIXED_SOURCE = re.compile(
    r"process\.env|import\.meta\.env|os\.environ|getenv|\bENV\[|\benv\(|\bconfig\(|"
    r"\bos\.(?:Getenv|LookupEnv)\(|"  # Go's environment
    r"^settings\.|Rails\.(?:configuration|application)|^[A-Z][A-Z0-9_]*$",
)


# The operator's configuration read as data (issue 25): a field of a configuration object
# the app holds once, filled by whoever runs it: settings (`settings.X`, `app.config['X']`,
# `Config::get('x')`, `config('x')`), Rails credentials and secrets, a config package
# (`config.get('stripe.account')`, `nconf.get(...)`, `Settings.stripe.account`), a file or
# command line parsed at start-up and kept on a class or passed on (`Context.config.get('x')`,
# `self.config['x']`, `args.config['x']`, `cfg['x']`). Reached only through holders of one
# such object: `this`/`self`/`@`, a class or module (Capitalised), the app; never a record
# (`shop.settings.x`, `req.config`), nor a tenant's settings (`userSettings`, `shop_config`).
_CONFIG_HOLDER = (r"(?:this|self|\$this|app|application|current_app|args|opts|options|global|"
                  r"globalThis|window|[A-Z]\w*)(?:\?\.|&\.|\.|->|::)")
_CONFIG_NAME = (r"(?!(?i:user|account|merchant|shop|seller|store|vendor|tenant|team|org|"
                r"organi[sz]ation|workspace|install(?:ation)?|customer|member|company|business|"
                r"partner|creator|owner)s?_?(?i:conf|setting|cred|secret))"
                # the word ends at the access: not `confirmation.x`, `conference.x`
                r"(?i:\w*?(?:conf(?:ig(?:uration)?)?|settings?|credentials|secrets|cfg)"
                r"(?:s|_for|_\w+)?|_?env|environ(?:ment)?|viper)")
_CONFIG_READ = re.compile(
    rf"\\?(?:{_CONFIG_HOLDER})*[@$]?{_CONFIG_NAME}(?:\?\.|&\.|\.|->|::|\[|\()")


# The command line of the program (`sys.argv[1]`, `process.argv[2]`, `ARGV[0]`, `$argv[1]`,
# `os.Args[1]`): given by whoever runs it, as a configuration file is.
_COMMAND_LINE = re.compile(r"(?:sys\.|process\.|os\.)?(?:argv|ARGV|Args)\[|\$argv\[")


def config_read(value_text: str) -> bool:
    """Whether an expression reads the operator's configuration (`_CONFIG_READ`) or the
    command line: one value for the whole program, chosen by whoever runs it, not data of
    one of its accounts."""
    v = value_text.strip()
    return len(v) <= 120 and (_CONFIG_READ.match(v) is not None or (
        _COMMAND_LINE.match(v) is not None))


# How a local configuration object is filled at start-up: a file parsed (`json.load(f)`,
# `yaml.safe_load(f)`, `JSON.parse(fs.readFileSync(p))`), the command line (`parse_args()`),
# a dotenv file. Not `json.loads(body)`: a request's body is data.
_CONFIG_LOAD = re.compile(
    r"^(?:await\s+)?(?:\w+\.)*(?:(?i:json|yaml|toml|tomllib|tomli|json5)\.(?:safe_|full_)?"
    r"load(?:_file)?|parse_args|dotenv_values|JSON\.parse\((?:await\s+)?(?:\w+\.)*"
    r"(?:readFileSync|read)|readFileSync|require)\(")


def config_source(value_text: str) -> bool:
    """Whether a local name that a configuration read starts from (`config` of
    `config['account_id']`) was filled with configuration: read from it, the environment, or
    loaded at start-up (`_CONFIG_LOAD`); a record loaded from data (`shop.settings`) is not."""
    v = value_text.strip()
    return config_read(v) or _FIXED_SOURCE.search(v) is not None or (
        _CONFIG_LOAD.match(v) is not None)


def fixed_account(value_text: str | None) -> str | None:
    """Why a connected-account value (`stripeAccount: X`, `stripe_account=X`) names one fixed
    account of the operator rather than an install's, else None: a literal `acct_` id, a
    constant, or a value read from the environment or configuration. An install's account id
    is data (a record's field, a parameter), never written in the code or its settings."""
    if not value_text:
        return None
    v = value_text.strip()
    if len(v) > 120:
        return None
    if _LITERAL.fullmatch(v):
        return f"a connected account written in the code ({v}): one fixed account, the operator's"
    if _FIXED_SOURCE.search(v) or config_read(v):
        return (f"a connected account from the environment or configuration ({v}): one fixed "
                "account, the operator's")
    return None


# How a language reads one value of an account expression for `fixed_origin`: ("null", ())
# names no account; ("values", vs) every value it can hold (a variable's assignments, the two
# sides of a fallback or conditional), all of which must be fixed; ("call", vs) a call of the
# file's own function: fixed by its text (`getenv(...)`) or else by the values it returns;
# ("leaf", ()) judged by its text alone.
OriginRead = tuple[str, Sequence[_N]]


def fixed_origin(value: _N, read: Callable[[_N], OriginRead[_N]],
                 show: Callable[[_N], str],
                 configured: Callable[[_N], bool] | None = None) -> str | None:
    """Why an account value names one fixed account of the operator when followed to where
    it comes from in the file (issue 25: a variable, a helper's return, fallbacks): every
    value it can hold is a literal or read from the environment or configuration (`null`
    names none). One value from data (a parameter, a record's field) or one the scan cannot
    follow makes it None (connected). At most 64 values looked at, 8 deep, 16 kept: values
    that fan out cannot make the work grow. `configured` is the language's test that a
    configuration read starts from configuration (`config[:acct]` with `config` filled by
    `config_source` values, not `config = shop.settings`); without it the name decides."""
    out: list[str] = []
    steps = [0]

    def walk(node: _N, depth: int) -> bool:
        steps[0] += 1
        if depth > 8 or len(out) > 16 or steps[0] > 64:
            return False
        kind, values = read(node)
        if kind == "null":
            return True
        if kind in ("call", "leaf"):
            t = show(node)
            if fixed_account(t) is not None and (configured is None or configured(node)):
                out.append(t if len(t) <= 60 else t[:57] + "...")
                return True
            if kind == "leaf":
                return False
        return bool(values) and all(walk(v, depth + 1) for v in values)

    if not walk(value, 0) or not out:
        return None
    return (f"a connected account from the environment or configuration ({out[0]}, through "
            f"{show(value)[:40]}): one fixed account, the operator's")


def key_account(key_text: str | None) -> Account:
    """Whose account a client built with this key expression acts on."""
    return key_account_why(key_text)[0]


# A literal in a key expression that looks random (long, letters and digits): a key of any
# format. Names (`'STRIPE_SECRET'`, `'stripe_access_token'`, `'services.stripe.secret'`) stay.
_KEY_LITERAL = re.compile(r"""(["'`])(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[a-z])"""
                          r"""(?![a-z0-9]+(?:[_-][a-z0-9]+)+\1)"""  # a snake_case name
                          r"""[A-Za-z0-9_-]{12,}\1""")


def _shown(key_text: str) -> str:
    """A key expression as the verdict quotes it: short, literal keys masked (issue 25)."""
    # masked before it is cut: a cut literal has no closing quote to be found by
    masked = _KEY_LITERAL.sub(lambda m: m.group(1) + MASK + m.group(1), key_text)
    return masked if len(masked) <= 60 else masked[:57] + "..."


_FALLBACK = re.compile(r"\|\||\?\?|\?:|\bor\b")


def _alternatives(key_text: str) -> list[str]:
    """The values of a key expression with fallbacks (`a || b`, `a ?? b`, `a or b`, `a ?: b`)
    at its top level (not inside brackets or strings); one item when it has none."""
    if not _FALLBACK.search(key_text) or len(key_text) > 200:
        return [key_text]
    out, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(key_text):
        ch = key_text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (m := _FALLBACK.match(key_text, i)):
            out.append(key_text[start:i].strip())
            start = i = m.end()
            continue
        i += 1
    out.append(key_text[start:].strip())
    return [a for a in out if a]


def fallback_key(found: Sequence[tuple[Account, str]], short: str) -> tuple[Account, str]:
    """The account of a key with fallbacks (`a or b`) from its values' accounts: the app's
    account when any of them is an install's credential (its traffic counts); the developer's
    own only when every one is; otherwise unknown (a configured default says nothing of the
    first value)."""
    for acc, why in found:
        if acc in ("installing", "connected"):
            return acc, why
    if all(acc == "own" for acc, _ in found):
        return "own", f"the developer's own key ({short})"
    return "unknown", f"a key of unknown origin with a fallback ({short})"


def key_account_why(key_text: str | None) -> tuple[Account, str]:
    """Whose account a key expression acts on, and why (for the verdict line)."""
    if key_text is None:
        return "unknown", "no API key the scan can see"
    alternatives = _alternatives(key_text)
    if len(alternatives) > 1:
        # a key with fallbacks acts for whichever value is set: the app's account when any of
        # them is an install's credential (its traffic counts); the developer's own only when
        # every one is; otherwise unknown (a configured default says nothing of the first value)
        short = _shown(key_text)
        found = [key_account_why(a) for a in alternatives]
        return fallback_key([(acc, why.replace(f"({alt})", f"({short})", 1)) for alt, (
            acc, why) in zip(alternatives, found, strict=True)], short)
    short = _shown(key_text)
    if _LITERAL.fullmatch(key_text.strip()):
        # an install's credential is never written in the code: a literal (a pasted key, an
        # empty placeholder) is the developer's own
        return "own", f"a key written in the code ({short}): the developer's own"
    if _OAUTH_KEY.search(key_text):
        return "installing", (f"an OAuth access token as the API key ({short}): the "
                              "installing account")
    if _INSTALL_KEY.search(key_text):
        return "connected", f"a per-install key ({short})"
    if _REQUEST_INPUT.match(key_text.strip()):
        return "connected", f"{PASTED_KEY} ({short}): the account of whoever sends it"
    if _TENANT_FIELD.match(key_text.strip()):
        return "connected", f"a key stored on a user's or account's record ({short})"
    item = _ITEM_FIELD.match(key_text.strip())
    if item is not None and not _CONFIG_RECORD.fullmatch(item.group(1)) and not (
            _NOT_RECORDS.search(item.group(1))):
        return "connected", (f"a key read from one record of a list ({short}): one of many "
                             "accounts' keys, a tenant's")
    record = _RECORD_FIELD.match(key_text.strip())
    if record is not None and not _CONFIG_RECORD.fullmatch(record.group(1)) and not (
            re.match(r"(?:this\.|self\.|@|\$this->)\w+$", key_text.strip())):
        # a data record the tenant list does not name: owned by whom, the name cannot tell;
        # "own" would call the grants its calls use unused (a reviewer deletes those)
        return "unknown", f"a key read from a record ({short}): whose, the scan cannot tell"
    if _OWN_KEY.search(key_text):
        return "own", f"the developer's own key ({short})"
    return "unknown", f"a key of unknown origin ({short})"


# A read of one row from a database or ORM (issue 25): a model class
# (`Restaurant.objects.get(...)`, `Shop.findById(...)`, `Team.find(...)`, `Shop::find(...)`)
# or a database handle (`db.query(...).filter(...).first()`, `prisma.team.findUnique(...)`,
# `session.get(Model, id)`, `db.collection("x").find_one(...)`), or Django's shortcut.
_ROW_METHOD = (r"(?:get|find|find_?by\w*|find_?one|findOne|findUnique(?:OrThrow)?|"
               r"findFirst(?:OrThrow)?|findByPk|findById|first|one|one_or_none|scalar_one|single|"
               r"maybeSingle|get_or_404|first_or_404|first_or_fail|firstOrFail|findOrFail)\s*\(")
_ROW_READ = re.compile(
    r"(?:^|\b)(?:get_object_or_404|get_list_or_404)\(|"
    r"^(?:await\s+)?(?:\(?\s*await\s+)?(?:(?:\$this->|this\.|self\.|\$)?\w+(?:\.|->|::))*?(?:"
    # a model class's own lookup (`Shop.find(id)`, `Shop::find($id)`), not a builtin's
    r"(?!(?:Object|Array|JSON|Math|Promise|Map|Set|Reflect|Number|String|Date|Buffer|Stripe|"
    r"Intl|URL)\b)[A-Z][a-z]\w*(?:\.|->|::)" + _ROW_METHOD + "|"
    # an ORM's or a database handle's query (`Shop.objects.get(...)`, `db.query(M)...first()`)
    r"(?:objects|query|db|prisma|repo|repository|collection|model|knex|supabase|firestore|"
    r"table|where|filter|filter_by)\b[^;]{0,200}?(?:\.|->|::)" + _ROW_METHOD + ")")
# Tables of the operator's settings: a row read from them is the operator's configuration.
_SETTINGS_TABLE = re.compile(r"(?i)setting|config|option|preference|\bconstants?\b")
_HTTP_READ = re.compile(r"(?i)^(?:await\s+)?(?:requests|httpx|axios|fetch|got|http|https|"
                        r"urllib\w*|aiohttp|\w*client|\w*session\.(?:get|post))\b")


def row_key(record: str, bound_to: str) -> tuple[Account, str] | None:
    """Whose a key read from `record` is, from the one value its function binds the record to
    (`bound_to`, source text), when the key's text alone cannot tell (issue 25): a row read by
    a value the code holds (an id, a filter on a variable) from a table that is not settings
    is one tenant's row among many; a row of a settings table is the operator's. None: the
    binding says nothing (a read by literals only, an HTTP response, anything else)."""
    v = bound_to.strip()
    if len(v) > 300 or not _ROW_READ.search(v) or _HTTP_READ.match(v):
        return None
    if _SETTINGS_TABLE.search(v.split("(", 1)[0]):
        return "own", (f"a key read from a settings row ({record} = {_shown(v)}): the "
                       "operator's configuration")
    args = _LITERAL.sub("", v.split("(", 1)[1])
    # the names the lookup filters on are keys (`pk=`, `where:`), not values it holds
    args = re.sub(r"\b\w+\s*(?:=(?!=)|:(?!:))|=>|\b(?:None|True|False|null|undefined|nil|"
                  r"true|false)\b", " ", args)
    if not re.search(r"(?<![\w$])(?![A-Z0-9_]+\b)[A-Za-z_$]\w*", args):
        return None  # literals and constants only (`Cache.get(CACHE_KEY)`): no tenant's id
    return "connected", (f"a key read from a row loaded by id ({record} = {_shown(v)}): one "
                         "tenant's record among many")


# A name that says it holds a credential (`api_key`, `saved_key`, `stripeSecret`, `token`)
KEY_NAMED = re.compile(r"(?i)key|secret|token")


def own_by_name(key_text: str) -> bool:
    """Whether `key_account_why` calls a key the developer's own only because of its name
    (`api_key`, `secretKey`): not a literal, not read from the environment or configuration.
    Such a name is a guess; where the code binds it, its values decide (issue 25)."""
    t = key_text.strip()
    if len(t) > 100 or _LITERAL.fullmatch(t) or _FIXED_SOURCE.search(t) or re.search(
            r"process\.env|import\.meta\.env|os\.environ|getenv|\bsk_(?:test|live)_", t):
        return False
    record = _RECORD_FIELD.match(t)
    if record is not None and _CONFIG_RECORD.fullmatch(record.group(1)):
        return False  # `settings.stripe_key`, `config.stripe.secret`: the operator's settings
    return key_account_why(t)[0] == "own"


def bound_key(name: str, found: Sequence[tuple[Account, str]]) -> tuple[Account, str]:
    """The account of a key name from the values the code binds it to: one account when all
    agree (each value's own reason), else unknown (the scan never picks one of two)."""
    if not found:
        return "unknown", f"a key ({name}) bound to no value the scan can read"
    if all(acc == found[0][0] for acc, _ in found):
        return found[0][0], f"{name} bound to {found[0][1]}"
    return "unknown", f"a key ({name}) bound to keys of different origins"


def unread_call_key(call_text: str) -> tuple[Account, str]:
    """A key returned by a call the scan does not read (`load_api_key(user)`): own only when
    the call itself reads the environment or configuration, never by the call's name."""
    acc, why = key_account_why(call_text)
    if acc == "own" and own_by_name(call_text):
        return "unknown", f"a key returned by {_shown(call_text)}: a call the scan cannot read"
    return acc, why


def is_ui_extension(rel_path: str, text: str) -> bool:
    parts = rel_path.replace("\\", "/").split("/")
    in_views = any(a == "src" and b == "views" for a, b in itertools.pairwise(parts))
    return in_views or "@stripe/ui-extension-sdk" in text


def event_literals(text: str, event_types: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(offset of the opening quote, event type) for each quoted known event type."""
    for m in _EVENT_LITERAL.finditer(text):
        if m.group(1) in event_types:
            yield m.start(), m.group(1)


@dataclass(frozen=True, slots=True)
class RawTarget:
    path: str  # template, parameters as {param}
    expand: tuple[str, ...]
    dynamic_query: bool


def api_where() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hosts and base paths raw HTTP calls reach the API at: Stripe's (API_HOSTS, /v1
    and /v2), or another API's (`--api DIR`: its api.toml's upstream URL and base_paths)."""
    import permgate

    profile = permgate.api_profile()
    if profile.stripe or profile.upstream_url is None:
        return API_HOSTS, ("/v1", "/v2")
    return (profile.upstream_url.rstrip("/"),), profile.base_paths


_USERINFO = re.compile(r"^(https?://)[^/@?#]*@")


def raw_target(pieces: Sequence[Piece], *, require_host: bool) -> RawTarget | None:
    """The API path a URL or path built from `pieces` names, or None if it is not one.

    `require_host`: the pieces must start with the API host (fetch, requests); SDK raw
    requests take a bare `/v1/...` path.
    """
    if not pieces or pieces[0] is None:
        return None
    marker = "\x00"
    text = pieces[0] + "".join(marker if p is None else p for p in pieces[1:])
    # the host however it is spelt: without a scheme (`//api.stripe.com`), or with
    # credentials in the URL (`https://KEY:@api.stripe.com`, the key maybe computed)
    if text.startswith("//"):
        text = "https:" + text
    text = _USERINFO.sub(r"\1", text, count=1)
    hosts, bases = api_where()
    for host in hosts:
        if text.startswith(host):
            text = text[len(host):]
            break
    else:
        if require_host:
            return None
    # the API's base path is written, not computed
    head = text.split(marker, 1)[0]
    if not head.startswith(tuple(b + "/" for b in bases)) and head not in bases:
        return None
    path, _, query = text.partition("?")
    dynamic_query = marker in query
    segments = path.split("/")
    if path.split(marker, 1)[0] in bases:
        # `API_BASE + endpoint`: a path unknown at scan time, never a query on the base
        head, _, rest = path.partition(marker)
        segments = f"{head}/{marker}{rest}".split("/")
    if segments[-1].endswith(marker) and segments[-1] != marker and marker not in segments[-1][:-1]:
        # `'/v1/customers' + qs`: a run-time suffix glued to a literal segment is a query.
        segments[-1] = segments[-1].rstrip(marker)
        dynamic_query = True
    segments = ["{param}" if marker in s else s for s in segments]
    expand = tuple(
        v for k, v in parse_qsl(query.replace(marker, ""), keep_blank_values=False)
        if re.fullmatch(r"expand\[\d*\]", k)
    )
    return RawTarget("/".join(segments).rstrip("/") or "/", expand, dynamic_query)


# The unresolved line of a wrapper's request when its own file never calls the wrapper:
# callers the scan does not see may pass any path (its grants stay unverified, never unused)
UNCALLED_WRAPPER = ("the request of a wrapper not called in its own file: the paths its "
                    "callers pass are read where the scan sees them")

# A parameter's whole value inside a wrapper's URL, written as a marked literal so that the
# extractors' `pieces` carry it through constants and concatenation (`param_mark(2)`).
_PARAM_MARK = re.compile("\x01(\\d+)\x01")


def param_mark(index: int) -> str:
    return f"\x01{index}\x01"


def unmarked(pieces: Sequence[Piece]) -> list[str | int | None]:
    """`pieces` with each marked parameter as its index: literals, parameters, and None for
    anything else built at run time."""
    out: list[str | int | None] = []
    for piece in pieces:
        if piece is None:
            out.append(None)
            continue
        for i, text in enumerate(_PARAM_MARK.split(piece)):
            if i % 2:
                out.append(int(text))
            elif text and out and isinstance(out[-1], str):
                out[-1] += text
            elif text:
                out.append(text)
    return out


def wrapper_path(prefix: str, sym: Sequence[str | int | None]
                 ) -> tuple[str, int, tuple[str | int, ...]] | None:
    """(prefix, path argument, the rest) of a wrapper whose request goes to the API base
    (`prefix`, then literals up to the version) plus one of its parameters (`sym`, from
    `unmarked`): `f"{BASE}{path}"`, `f"/{resource}/{obj_id}"`. Not a wrapper when a literal
    resource path comes first (`f"/customers/{cid}"` is that request) or a part is built
    another way."""
    first = next((i for i, p in enumerate(sym) if not isinstance(p, str)), None)
    if first is None or not isinstance(sym[first], int):
        return None
    lead = "".join(str(p) for p in sym[:first])
    # after a client's or an inner wrapper's prefix only slashes; after the host, the version
    to_base = not lead.strip("/") if prefix else lead.rstrip("/") in ("", "/v1", "/v2")
    if not to_base:
        return None
    rest = sym[first + 1:]
    if any(p is None for p in rest):
        return None
    return prefix + lead, int(sym[first] or 0), tuple(p for p in rest if p is not None)


def wrapper_request(w: Wrapper, pieces: Sequence[Piece] | None,
                    method_text: str | None) -> tuple[RawTarget, str] | str:
    """(target, method) a call to the app's wrapper `w` sends, given the path argument's
    `pieces` and the method argument's text (when `w` takes one); else what was built at
    run time, for the unresolved line (issue 25: unreadable traffic, never unused)."""
    if not pieces or pieces[0] is None:
        return "path built at run time"
    target = wrapper_target(w.prefix, pieces)
    method = w.method
    if method is None and w.method_index is not None:
        method = (method_text or "").upper() or None
    if target is None or method is None:
        return "path or method built at run time"
    return target, method


def wrapper_target(prefix: str, pieces: Sequence[Piece]) -> RawTarget | None:
    """The request an app's wrapper sends for the path a call site gives it (`pieces`, led by
    a literal): the wrapper's prefix (`/v1` of its base URL) joined on, `/v1` when neither
    names the API's version."""
    head = str(pieces[0])
    if prefix.endswith("/") and head.startswith("/"):  # `urljoin(BASE + "/", path)`
        head = head[1:]
    lead = prefix + ("" if prefix.endswith("/") or head.startswith("/") else "/") + head
    if not lead.startswith(("/v1/", "/v2/")) and lead not in ("/v1", "/v2"):
        lead = "/v1" + lead
    return raw_target([lead, *pieces[1:]], require_host=False)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
