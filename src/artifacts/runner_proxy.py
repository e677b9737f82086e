"""How a runner reaches the model's proxy: plain settings, or aproxy (transparent redirection).

Pure values for the files :mod:`artifacts.runner_files` renders. With
``experimental-use-aproxy`` the runner's outbound TCP to ports 80 and 443 is redirected by
nftables rules inside the runner to Debian's ``redsocks``, which forwards it to the proxy as
``CONNECT`` tunnels (the proxy must allow CONNECT to ports 80 and 443); local and private
networks, the proxy itself and the no-proxy networks are reached directly. The rules run inside
the runner, so a root job could take them out: it would only lose its way out, since the
denylist is enforced on the host (:mod:`juju.network_policy`) and the direct path is the site's
firewall's business.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Network
from urllib.parse import unquote, urlsplit

from errors import ConfigError
from runner_type import ProxySetting

USE_APROXY_CONFIG_NAME = "experimental-use-aproxy"  # the option (juju.options names it too)
APROXY_HTTP_PORT = 12380
APROXY_HTTPS_PORT = 12443
APROXY_TABLE = "github_runner_aproxy"
REDSOCKS_USER = "redsocks"
# Reached directly, never through the proxy: this host, link-local, private and multicast ranges.
DIRECT_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
)
_UNSAFE = frozenset('"\\') | {chr(c) for c in range(32)} | {chr(127)}


@dataclass(frozen=True)
class ProxyEndpoint:
    """The proxy redsocks forwards to.

    Attributes:
        host: Its IPv4 address or name (redsocks resolves a name when it starts).
        port: Its port.
        login: The user of its Basic authentication, if any.
        password: Its password, if any. Secret.
    """

    host: str
    port: int
    login: str | None = None
    password: str | None = None


def aproxy_endpoint(proxies: ProxySetting) -> ProxyEndpoint:
    """Return the proxy aproxy forwards to: the HTTP proxy, else the HTTPS one.

    Args:
        proxies: The model's proxy settings (checked by ``juju.options.proxy_from_env``).

    Returns:
        The endpoint.

    Raises:
        ConfigError: No proxy, or one redsocks cannot use (not ``http://``, IPv6, credentials
            with quotes, backslashes or control characters); names the aproxy option.
    """
    url = proxies.http or proxies.https
    if not url:
        raise ConfigError(USE_APROXY_CONFIG_NAME, "needs the model proxy, which is not set")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise ConfigError(USE_APROXY_CONFIG_NAME, "needs an http:// model proxy")
    if ":" in host:
        raise ConfigError(USE_APROXY_CONFIG_NAME, "needs an IPv4 or named model proxy, not IPv6")
    login = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    for value in (login, password):
        if value is not None and (_UNSAFE & set(value) or not value.isascii()):
            raise ConfigError(
                USE_APROXY_CONFIG_NAME,
                "cannot pass the proxy credentials to redsocks (quote, backslash, control or "
                "non-ASCII character)",
            )
    return ProxyEndpoint(host, parts.port or 80, login, password)


def direct_networks(endpoint: ProxyEndpoint, no_proxy: str | None) -> tuple[IPv4Network, ...]:
    """Return the networks the runner reaches without the proxy.

    Args:
        endpoint: The proxy (its address, when it is one, is reached directly).
        no_proxy: The model's no-proxy list: its IPv4 addresses and networks count (names
            cannot be told apart at the packet level).

    Returns:
        The networks, collapsed.
    """
    networks = [IPv4Network(net) for net in DIRECT_NETWORKS]
    for entry in [endpoint.host, *(no_proxy or "").split(",")]:
        try:
            networks.append(IPv4Network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(ipaddress.collapse_addresses(networks))


def render_aproxy_rules(direct: tuple[IPv4Network, ...]) -> str:
    """Render the runner's nftables rules that send outbound 80/443 to redsocks.

    Args:
        direct: Networks reached directly.

    Returns:
        An ``nft -f`` script replacing the runner's aproxy table in one transaction.
    """
    elements = ", ".join(str(net) for net in direct)
    redirects = [
        f"\t\ttcp dport 80 redirect to :{APROXY_HTTP_PORT}",
        f"\t\ttcp dport 443 redirect to :{APROXY_HTTPS_PORT}",
    ]
    lines = [
        "#!/usr/sbin/nft -f",
        "# github-runner aproxy: outbound 80/443 to redsocks, which forwards to the proxy.",
        f"table ip {APROXY_TABLE} {{}}",
        f"delete table ip {APROXY_TABLE}",
        f"table ip {APROXY_TABLE} {{",
        "\tset direct {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        f"\t\telements = {{ {elements} }}",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        f'\t\tmeta skuid "{REDSOCKS_USER}" return',
        "\t\tip daddr @direct return",
        *redirects,
        "\t}",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority -100; policy accept;",
        "\t\tfib daddr type local return",
        "\t\tip daddr @direct return",
        *redirects,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
