"""Where webhooks may be delivered: one policy for endpoint URLs and the addresses behind them.

An endpoint URL is chosen by whoever registers it, and the worker then makes requests to it
from inside the deployment's network: without a policy that is server-side request forgery
(loopback services, the cloud metadata service at 169.254.169.254, private networks). So:

- **The URL**: `https://host[:port]/path[?query]`, printable ASCII only (no spaces, no control
  characters, no backslash), at most 2,048 characters, no fragment, **no userinfo**
  (`https://user:pw@...` would be sent as Basic auth and shown in listings). A numeric host
  must be four decimal numbers (`127.1`, `0x7f000001`, `2130706433` are refused: resolvers
  read them as loopback), IPv6 in brackets without a zone.
- **The addresses**: every address the host resolves to must be public (`ipaddress`'s
  `is_global`, and for IPv6 forms that embed an IPv4 address — mapped, NAT64, 6to4, Teredo —
  the embedded one too). Cloud metadata names and addresses, link-local, multicast,
  unspecified and reserved addresses are refused always. The check runs at registration
  **and at every connection**: the worker resolves once, checks, and connects to exactly the
  address it checked (DNS rebinding cannot swap it), with TLS verified against the host name.
- **Local development**: `PERMGATE_DEV_ALLOW_PRIVATE_WEBHOOKS=test` lets endpoints in `test`
  and `sandbox` mode use `http://` and loopback or private addresses (`all`: every mode, for
  test suites and demos on one machine; never in production). Metadata and link-local
  addresses and userinfo stay refused even then.
- **`permgate listen` endpoints** (`local=True`, kind "local", test mode): `http://` and
  loopback without the setting (forwarding to the developer's own server is the point), but
  loopback only: the host must be `localhost` or a loopback address, and every address it
  resolves to must be loopback.

API: `TargetPolicy.from_env()`, `policy.check_registration(url, mode, local=...)`
(registration), `policy.check_url(...)` and `policy.addresses(...)` (the delivery transport,
events/transport.py, runs both for every request and connection), `redact(url)` (listings).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from permgate import envvars
from permgate.store import MODES, StoreError

DEV_SETTING = envvars.DEV_PRIVATE_WEBHOOKS.name
MAX_URL = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that reach a cloud provider's instance metadata service (credentials live there).
METADATA_NAMES = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal", "metadata.tencentyun.com",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192",
    "169.254.169.123",
))
# Suffixes that name no public host (RFC 6761, RFC 8375, ICANN's .internal).
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".intranet",
                     ".corp", ".private")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")
_ALLOWED_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no space

Resolver = Callable[[str, int], list[str]]


class TargetRefused(StoreError):
    """An endpoint URL or address webhooks may not go to; the message says why."""

    default_code = "url_invalid"


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address literal (brackets allowed): this machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The dev setting's values (envvars.DEV_PRIVATE_WEBHOOKS reads them) -> the modes it opens.
_DEV_MODES = {"": frozenset(), "test": frozenset({"test", "sandbox"}), "all": frozenset(MODES)}


def _bad_setting(message: str) -> TargetRefused:
    return TargetRefused(message, "bad_setting")


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed the syntax checks."""

    url: str
    scheme: str
    host: str  # lower case, no brackets, no trailing dot
    port: int
    address: IPAddress | None  # the host, when it is an address literal


def redact(url: str) -> str:
    """The URL for display: a password (or any userinfo) replaced by '***'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return SplitResult(parts.scheme, "***@" + host, parts.path, parts.query,
                       parts.fragment).geturl()


def _embedded_v4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if any(ip in net for net in _NAT64):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why webhooks may not go to this address, or None."""
    for inner in _embedded_v4(ip):
        problem = address_problem(inner, allow_private=allow_private)
        if problem is not None:
            return f"{problem} (embedded in {ip})"
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return f"{ip} is not a unicast address a webhook may reach (link-local, multicast, " \
               "unspecified or reserved)"
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address(
            "255.255.255.255"):
        return f"{ip} is the broadcast address"
    if ip.is_global:
        return None
    if allow_private:
        return None
    kind = "a loopback" if ip.is_loopback else "a private (non-public)"
    return f"{ip} is {kind} address"


def _host_form(host: str) -> IPAddress | None:
    """The address a literal host names, None for a name; refuses ambiguous numeric forms."""
    if ":" in host:
        if "%" in host:
            raise TargetRefused("an IPv6 address with a zone is not a webhook target")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused(f"{host!r} is not an IPv6 address") from None
    last = host.rsplit(".", 1)[-1]
    if _NUMERIC_HOST.match(host) and (last.isdigit() or last.startswith("0x")):
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise TargetRefused(
                f"{host!r} is a numeric host in a form resolvers read differently (127.1, "
                "0x7f000001, 2130706433, octal parts): write an address as four decimal "
                "numbers, or use a name") from None
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise TargetRefused(f"{host!r} is not a valid host name (letters, digits and '-' in "
                            "dot-separated labels; internationalised names in punycode)")
    return None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """What endpoints may be. `private_modes`: modes whose endpoints may use http:// and
    loopback or private addresses (the local-development setting); `resolver` is the DNS
    lookup (None: the system's, `system_resolve`)."""

    private_modes: frozenset[str] = frozenset()
    resolver: Resolver | None = field(default=None, compare=False)

    def resolve(self, host: str, port: int) -> list[str]:
        return (self.resolver or system_resolve)(host, port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TargetPolicy:
        setting = envvars.DEV_PRIVATE_WEBHOOKS.get(environ, error=_bad_setting)
        return cls(private_modes=_DEV_MODES[setting])

    def allows_private(self, mode: str) -> bool:
        return mode in self.private_modes

    def check_url(self, url: str, mode: str, *, local: bool = False) -> Target:
        """Syntax and host form (no DNS): the checks every URL must pass at every use.
        `local`: a `permgate listen` endpoint, which must be on this machine."""
        allow_private = local or self.allows_private(mode)
        if not isinstance(url, str) or not url:
            raise TargetRefused("the endpoint URL is empty")
        if len(url) > MAX_URL:
            raise TargetRefused(f"the endpoint URL is longer than {MAX_URL} characters")
        if not _ALLOWED_CHARS.match(url):
            raise TargetRefused("the endpoint URL may contain only printable ASCII: no spaces "
                                "or control characters (percent-encode them; internationalised "
                                "host names in punycode)")
        if "\\" in url:
            raise TargetRefused("the endpoint URL may not contain a backslash")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise TargetRefused(f"the endpoint URL cannot be read: {e}") from None
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and allow_private):
            extra = "" if scheme != "http" else (
                f" (http:// only for {', '.join(sorted(self.private_modes))} endpoints under "
                f"${DEV_SETTING})" if self.private_modes else
                f" (http:// is for local development only: ${DEV_SETTING}=test)")
            raise TargetRefused(f"the endpoint URL must start with https://{extra}")
        if "@" in parts.netloc:
            raise TargetRefused("the endpoint URL may not carry a user name or password "
                                "(they would be sent in clear to every delivery and shown in "
                                "listings); receivers authenticate deliveries by the "
                                "Stripe-Signature header")
        if parts.fragment or url.endswith("#"):
            raise TargetRefused("the endpoint URL may not have a #fragment (it is never sent)")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise TargetRefused("the endpoint URL has no host")
        if port == 0:
            raise TargetRefused("the endpoint URL's port must be 1 to 65535")
        if local and not is_loopback_host(host):
            # Exempt from the public-address rule because it is the developer's own machine;
            # it may point nowhere else.
            raise TargetRefused(f"a local (listen) endpoint must target this machine "
                                f"(localhost, 127.0.0.1 or ::1), not {host!r}",
                                "url_not_local")
        address = _host_form(host)
        if address is not None:
            problem = address_problem(address, allow_private=allow_private)
            if problem is not None:
                raise TargetRefused(f"webhooks may not go to {problem}", "url_not_public")
        else:
            if host in METADATA_NAMES:
                raise TargetRefused(f"webhooks may not go to {host} (a cloud metadata name)",
                                    "url_not_public")
            if not allow_private and ("." not in host or host == "localhost"
                                      or host.endswith(_PRIVATE_SUFFIXES)):
                raise TargetRefused(f"webhooks may not go to {host}: not a public host name",
                                    "url_not_public")
        return Target(url, scheme, host, port or (443 if scheme == "https" else 80), address)

    def addresses(self, host: str, port: int, mode: str, *, local: bool = False) -> list[str]:
        """The addresses to connect to: the host resolved once, every address checked.
        Refused as a whole when any address is not allowed (a name that also points
        inside must not be used, whichever address a client would pick). `local`: every
        address must be loopback."""
        allow_private = local or self.allows_private(mode)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = self.resolve(host, port)
            except (OSError, UnicodeError) as e:
                raise TargetRefused(f"cannot resolve {host}: {e}", "url_unresolvable") from None
        if not found:
            raise TargetRefused(f"{host} resolves to no address", "url_unresolvable")
        for text in found:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                raise TargetRefused(f"{host} resolved to {text!r}, not an address",
                                    "url_not_public") from None
            problem = address_problem(ip, allow_private=allow_private)
            if problem is None and local and not ip.is_loopback:
                problem = f"{ip} is not a loopback address (a local endpoint's only kind)"
            if problem is not None:
                raise TargetRefused(f"webhooks may not go to {host}: {problem}",
                                    "url_not_public")
        return found

    def check_registration(self, url: str, mode: str, *, local: bool = False) -> str:
        """The URL if an endpoint may be registered at it (syntax, then DNS); else
        TargetRefused saying why."""
        target = self.check_url(url, mode, local=local)
        self.addresses(target.host, target.port, mode, local=local)
        return url
