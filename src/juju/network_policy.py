"""The runners' network policy, enforced on the host: the denylist as the unit's nftables table.

A job runs as root in its runner, so rules inside the runner could be undone; these live in the
host's own network namespace, where a runner cannot reach them. One table of the unit's own,
``table inet github_runner_<app>_<unit>``, replaced as a whole in one ``nft -f`` transaction
(``table ... {}`` + ``delete table ...`` + the new definition: either all of it applies or
nothing changes), removed when the unit stops or the denylist is emptied.

What it does, for IPv4 packets that come in from the runner bridge (``iifname <bridge>``):

- replies of connections a denied host opened (``ct direction reply``) and related packets
  (ICMP errors) pass;
- the exempt addresses pass: GitHub, the policy service, the proxy (whatever the denylist says);
- DHCP requests pass (a runner must get its address);
- to a denied network: dropped when the packet stays on the bridge (no route back for a reject:
  the runner bridge may have no host address), rejected (ICMP administratively prohibited) when
  the host would route it out or deliver it to itself.

Traffic that stays on a bridge goes through the ``inet`` hooks only when the bridge calls them
(``br_netfilter``): the bridge's own ``nf_call_iptables`` flag is set on each apply, so no global
sysctl is changed. The ``bridge`` family is not used: it cannot name the bridge a port belongs to
or reject without the ``nft_meta_bridge``/``nft_reject_bridge`` kernel parts, which some kernels
(this machine's among them) lack, while ``br_netfilter`` and conntrack are everywhere LXD runs.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import re
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from errors import ConfigError, SubprocessError
from juju.options import DENYLIST_CONFIG_NAME

logger = logging.getLogger(__name__)

TABLE_PREFIX = "github_runner_"
NFT_TIMEOUT_SECONDS = 30
RESOLVE_TIMEOUT_SECONDS = 5.0
SYSFS_NET = Path("/sys/class/net")
IFNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

Resolver = Callable[[str], tuple[str, ...]]
"""Returns the IPv4 addresses of a host name (empty when it does not resolve)."""


@dataclass(frozen=True)
class NetworkPolicy:
    """What the unit's table enforces.

    Attributes:
        table: The nftables table name (``github_runner_<app>_<unit>``, family ``inet``).
        bridge: The runner bridge (an interface name).
        denied: Networks runners must not reach (collapsed: no two overlap).
        exempt: Addresses runners always reach (GitHub, the policy service, the proxy).
    """

    table: str
    bridge: str
    denied: tuple[IPv4Network, ...]
    exempt: tuple[IPv4Network, ...] = ()


def table_name(unit_name: str) -> str:
    """Return the unit's table name: ``github-runner/0`` -> ``github_runner_github_runner_0``."""
    return TABLE_PREFIX + re.sub(r"[^a-z0-9]", "_", unit_name.lower())


def build_policy(
    unit_name: str, bridge: str, denylist: Iterable[str], exempt: Iterable[str] = ()
) -> NetworkPolicy:
    """Build the policy of a unit from the parsed denylist.

    Args:
        unit_name: The Juju unit (``app/N``).
        bridge: The runner bridge.
        denylist: CIDRs (``juju.options.parse_denylist`` output).
        exempt: IPv4 addresses or networks always reachable.

    Returns:
        The policy.

    Raises:
        ValueError: The bridge is not an interface name.
    """
    if not IFNAME_PATTERN.match(bridge):
        raise ValueError(f"{bridge!r} is not an interface name")
    denied = ipaddress.collapse_addresses(IPv4Network(entry, strict=False) for entry in denylist)
    allowed = ipaddress.collapse_addresses(IPv4Network(entry, strict=False) for entry in exempt)
    return NetworkPolicy(table_name(unit_name), bridge, tuple(denied), tuple(allowed))


def _set(name: str, networks: tuple[IPv4Network, ...]) -> list[str]:
    lines = [f"\tset {name} {{", "\t\ttype ipv4_addr", "\t\tflags interval"]
    if networks:
        lines.append(f"\t\telements = {{ {', '.join(str(net) for net in networks)} }}")
    return [*lines, "\t}"]


def _chain(hook: str, bridge: str, deny: list[str]) -> list[str]:
    return [
        f"\tchain {hook} {{",
        f"\t\ttype filter hook {hook} priority filter; policy accept;",
        f'\t\tiifname != "{bridge}" return',
        "\t\tmeta nfproto != ipv4 return",
        "\t\tct direction reply ct state established accept",
        "\t\tct state related accept",
        "\t\tip daddr @exempt accept",
        "\t\tudp sport 68 udp dport 67 accept",
        *(f"\t\t{rule}" for rule in deny),
        "\t}",
    ]


def render_ruleset(policy: NetworkPolicy) -> str:
    """Render the ``nft -f`` script that replaces the unit's table with ``policy`` atomically.

    Args:
        policy: The policy.

    Returns:
        The script (the table is created empty if missing, deleted, then defined anew, all in
        one transaction).
    """
    reject = "ip daddr @denied counter reject with icmpx type admin-prohibited"
    table = f"inet {policy.table}"
    lines = [
        "#!/usr/sbin/nft -f",
        "# github-runner: runners must not reach the denylist (written by the charm).",
        f"table {table} {{}}",
        f"delete table {table}",
        f"table {table} {{",
        *_set("denied", policy.denied),
        *_set("exempt", policy.exempt),
        *_chain(
            "forward",
            policy.bridge,
            [f'oifname "{policy.bridge}" ip daddr @denied counter drop', reject],
        ),
        *_chain("input", policy.bridge, [reject]),
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_removal(table: str) -> str:
    """Render the ``nft -f`` script that removes a table (nothing happens when it is missing)."""
    return f"table inet {table} {{}}\ndelete table inet {table}\n"


def exempt_hosts(*urls: str | None) -> tuple[str, ...]:
    """Return the host part of each URL given (GitHub, the policy service, proxies).

    Args:
        urls: URLs; None and empty ones are skipped, so are unparsable ones.

    Returns:
        Host names or addresses, without duplicates, in order.
    """
    hosts: list[str] = []
    for url in urls:
        if not url:
            continue
        try:
            host = urlsplit(url if "://" in url else f"http://{url}").hostname
        except ValueError:
            continue
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def resolve_ipv4(host: str, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> tuple[str, ...]:
    """Return the IPv4 addresses of ``host`` (a literal is returned as it is).

    The lookup runs in a worker thread so that a slow resolver cannot hold the hook longer than
    ``timeout`` seconds; a name that does not resolve in time gives nothing.
    """
    try:
        return (str(ipaddress.IPv4Address(host)),)
    except ValueError:
        pass
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, None, socket.AF_INET, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except (OSError, concurrent.futures.TimeoutError) as exc:
        logger.warning("cannot resolve %s (%s): not exempt from the denylist", host, exc)
        return ()
    finally:
        pool.shutdown(wait=False)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


class NftPort(Protocol):
    """Runs nftables scripts on the host."""

    def run(self, script: str) -> None:
        """Apply ``script`` (``nft -f -``) in one transaction; raise SubprocessError if refused."""


class Nft:
    """The host's ``nft`` command."""

    def __init__(self, binary: str = "nft", timeout: int = NFT_TIMEOUT_SECONDS) -> None:
        """Build it.

        Args:
            binary: The nft executable.
            timeout: Seconds before a run is given up.
        """
        self._binary = binary
        self._timeout = timeout

    def run(self, script: str) -> None:
        """Apply a script with ``nft -f -``.

        Args:
            script: The script.

        Raises:
            SubprocessError: nft is missing, timed out or refused the script (nothing applied).
        """
        cmd = [self._binary, "-f", "-"]
        try:
            result = subprocess.run(
                cmd,
                input=script,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SubprocessError(cmd, -1, str(exc)) from exc
        if result.returncode != 0:
            raise SubprocessError(cmd, result.returncode, result.stderr[-2000:])


class NetworkPolicyHost:
    """The unit's network policy on the host: applies, replaces and removes its table."""

    def __init__(
        self,
        unit_name: str,
        *,
        nft: NftPort | None = None,
        sysfs: Path = SYSFS_NET,
        resolve: Resolver = resolve_ipv4,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (names the table).
            nft: Runs the scripts (the host's ``nft`` when not given).
            sysfs: Where the kernel shows interfaces (``/sys/class/net``).
            resolve: Turns exempt host names into addresses.
        """
        self.unit_name = unit_name
        self.table = table_name(unit_name)
        self._nft = nft or Nft()
        self._sysfs = sysfs
        self._resolve = resolve

    def apply(
        self, bridge: str, denylist: Iterable[str], exempt: Iterable[str] = ()
    ) -> NetworkPolicy | None:
        """Enforce ``denylist`` on ``bridge`` (replacing what was there); empty: no table.

        Args:
            bridge: The runner bridge.
            denylist: Parsed CIDRs.
            exempt: Host names or addresses runners must always reach.

        Returns:
            The policy applied; None when the denylist is empty.

        Raises:
            ConfigError: The denylist cannot be enforced (nft refused or is missing, or the
                bridge cannot pass its traffic through the filter); names the option.
        """
        denied = tuple(denylist)
        if not denied:
            self.remove()
            return None
        addresses = [address for host in exempt for address in self._resolve(host)]
        policy = build_policy(self.unit_name, bridge, denied, addresses)
        self._filter_bridged_traffic(bridge)
        try:
            self._nft.run(render_ruleset(policy))
        except SubprocessError as exc:
            raise ConfigError(
                DENYLIST_CONFIG_NAME,
                f"cannot be enforced on the host: nft failed ({exc.stderr.strip()[:300]}); "
                "install nftables or empty the option",
            ) from exc
        logger.info(
            "network policy %s: %d denied networks, %d exempt addresses on %s",
            policy.table,
            len(policy.denied),
            len(policy.exempt),
            policy.bridge,
        )
        return policy

    def remove(self) -> None:
        """Remove the unit's table; nothing happens when it is missing.

        Raises:
            SubprocessError: nft failed.
        """
        self._nft.run(render_removal(self.table))

    def _filter_bridged_traffic(self, bridge: str) -> None:
        """Make the bridge pass its bridged IPv4 traffic through the inet hooks.

        Raises:
            ConfigError: The bridge exists but its flag is missing (no ``br_netfilter``).
        """
        device = self._sysfs / bridge
        if not device.exists():
            # No bridge, no runner on it: the next apply (each converge) sets the flag.
            logger.warning("runner bridge %s does not exist yet", bridge)
            return
        flag = device / "bridge" / "nf_call_iptables"
        try:
            if flag.read_text().strip() != "1":
                flag.write_text("1")
        except OSError as exc:
            raise ConfigError(
                DENYLIST_CONFIG_NAME,
                f"cannot be enforced on bridge {bridge}: its traffic cannot be filtered "
                f"({exc.strerror}; load the br_netfilter kernel module)",
            ) from exc
