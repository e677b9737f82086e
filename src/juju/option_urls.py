"""URL-shaped option values, checked part by part and rebuilt from the parts.

An accepted URL comes back re-serialised from what :func:`urllib.parse.urlsplit` found (scheme,
host, port, path; credentials only for the model proxy, percent-encoded): nothing beyond those
parts reaches a runner's env file, a systemd unit or a shell script, whatever the raw text
held. Every refusal is a :class:`errors.ConfigError` naming the option; messages never echo a
value that may hold credentials.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from errors import ConfigError

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
"""A DNS name (lower case, as urlsplit returns it) or a dotted IPv4 address."""
_PATH = re.compile(r"^(?:[A-Za-z0-9._~/-]|%[0-9A-Fa-f]{2})*$")
_USERINFO = re.compile(r"^(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*$")
_NO_PROXY_ENTRY = re.compile(r"^[A-Za-z0-9.*:/_\[\]-]{1,255}$")
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_NO_PROXY_ENTRIES = 256


@dataclass(frozen=True)
class UrlRules:
    """What one URL option may hold.

    Attributes:
        schemes: Allowed schemes.
        example: An example shown in messages.
        loopback_schemes: Schemes allowed only for a loopback host or a closed test network
            host in 198.18.0.0/15 (``http`` for a local GitHub stand-in).
        userinfo: Whether credentials may be given (the model proxy only).
        path: Whether a path may be given.
        default_scheme: Scheme assumed when the value has none (``proxy:3128``).
    """

    schemes: tuple[str, ...]
    example: str
    loopback_schemes: tuple[str, ...] = ()
    userinfo: bool = False
    path: bool = True
    default_scheme: str | None = None


LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# RFC 2544's benchmarking range: the closed test network's hosts (harness/testnet.py), never a
# real GitHub; a local stand-in there may be plain http like one on loopback.
TEST_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")


def _local_stand_in(host: str) -> bool:
    """Whether a host is loopback or a test host of the closed test network."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host) in TEST_NETWORK
    except ValueError:
        return False


def parse_url(name: str, value: str, rules: UrlRules) -> str:
    """Check a URL option part by part and return it rebuilt from its parts.

    Args:
        name: The option, as the user types it.
        value: Its value (surrounding blanks and a trailing slash are ignored).
        rules: What it may hold.

    Returns:
        ``scheme://[user[:password]@]host[:port][/path]``: lower-case scheme and host, no
        default port, credentials percent-encoded, no trailing slash.

    Raises:
        ConfigError: If any part is not allowed; the message names the option.
    """
    shown = "the value" if "@" in value else repr(value[:200])  # never echo credentials
    credentials = " with credentials" if rules.userinfo else " (no credentials)"
    kind = " or ".join(rules.schemes)
    error = ConfigError(name, f"{shown} is not an {kind} URL like {rules.example}{credentials}")
    url = value.strip(" ")
    if _UNSAFE.search(url) or "\\" in url:
        raise error
    if "://" not in url and rules.default_scheme:
        url = f"{rules.default_scheme}://{url}"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise error from exc
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if parts.query or parts.fragment or "?" in url or "#" in url or port == 0:
        raise error
    userinfo, _, _ = parts.netloc.rpartition("@")
    if ("@" in parts.netloc and not rules.userinfo) or not _USERINFO.match(userinfo):
        raise error
    shown_host = _host(host, parts.netloc, error)
    if scheme not in rules.schemes and not (
        scheme in rules.loopback_schemes and _local_stand_in(host)
    ):
        raise error
    path = parts.path.rstrip("/")
    if not _PATH.match(path) or (path and not rules.path):
        raise error
    netloc = shown_host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{shown_host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{_encode_userinfo(userinfo)}@{netloc}"
    return f"{scheme}://{netloc}{path}"


def _host(host: str, netloc: str, error: ConfigError) -> str:
    """Return the host as it is written in a URL (IPv6 in brackets), or raise ``error``."""
    if "[" in netloc:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise error from None
    if not HOSTNAME.match(host):
        raise error
    return host


def _encode_userinfo(userinfo: str) -> str:
    """Percent-encode user and password: the same credentials, no special character."""
    user, colon, password = userinfo.partition(":")
    encoded = quote(unquote(user), safe="")
    return f"{encoded}:{quote(unquote(password), safe='')}" if colon else encoded


PROXY_RULES = UrlRules(
    schemes=("http", "https"),
    example="http://proxy.example.com:3128 (set with `juju model-config`)",
    userinfo=True,
    path=False,
    default_scheme="http",
)


def parse_proxy(name: str, value: str | None) -> str | None:
    """Parse a model proxy URL (``JUJU_CHARM_HTTP(S)_PROXY``); empty: no proxy."""
    if value is None or not value.strip():
        return None
    return parse_url(name, value, PROXY_RULES)


def parse_no_proxy(name: str, value: str | None) -> str | None:
    """Parse the model's no-proxy list: hosts, domains, ``*.domain``, addresses, CIDRs."""
    if value is None or not value.strip():
        return None
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not _NO_PROXY_ENTRY.match(entry):
            raise ConfigError(
                name,
                f"{entry[:100]!r} is not a host, domain, address or network "
                "(set with `juju model-config`)",
            )
        if entry not in entries:
            entries.append(entry)
    if len(entries) > MAX_NO_PROXY_ENTRIES:
        raise ConfigError(name, f"has {len(entries)} entries, at most {MAX_NO_PROXY_ENTRIES}")
    return ",".join(entries) or None
