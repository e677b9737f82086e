"""The runner network, as plain values: the runner NIC, its profile, the unit's bridge.

The one place that says how a runner (container or VM, production or test) is put on a network:
:class:`RunnerProfile` (NIC ``eth0`` with LXD's NIC security, root disk pool). The LXD calls that
apply it are in :mod:`lxd.resources` (``runner_profile``, ``create_bridge``, ``network_info``);
the charm's side (which network, its host address) is :mod:`juju.runner_network`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from lxd.types import Device

RUNNER_NIC = "eth0"
"""The name of a runner's NIC (device and interface inside the instance)."""

OWN_NAME_PREFIX = "ghr-"
"""Prefix of the LXD network and storage pool a unit makes for its runners."""

_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")


def unit_resource_name(app_name: str, unit: int) -> str:
    """The name of the LXD network and storage pool a unit makes for its runners.

    ``ghr-`` + 10 hex digits of ``<app>/<unit>``: unique per application and unit on a machine
    and within Linux's 15 characters of an interface name (the bridge is one).

    Args:
        app_name: The application name.
        unit: The unit number.

    Returns:
        E.g. ``ghr-1a2b3c4d5e``.
    """
    digest = hashlib.sha256(f"{app_name}/{unit}".encode()).hexdigest()
    return f"{OWN_NAME_PREFIX}{digest[:10]}"


def validate_network_name(name: str) -> None:
    """Check a name can be an LXD network (a Linux interface name: 1-15 characters).

    Args:
        name: The name.

    Raises:
        ValueError: It cannot.
    """
    if not _NETWORK_NAME.match(name):
        raise ValueError(
            f"invalid LXD network name {name!r}: use 1-15 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )


def bridge_config(address: str = "auto", *, nat: bool = True) -> dict[str, str]:
    """The config of a runner bridge the charm creates: IPv4 only, LXD's DHCP on it.

    Args:
        address: ``ipv4.address``: "auto" (LXD picks a free private /24) or ``ADDR/PREFIX``.
        nat: Whether LXD masquerades the runners' traffic leaving the host.

    Returns:
        The network config.
    """
    return {
        "ipv4.address": address,
        "ipv4.nat": "true" if nat else "false",
        "ipv6.address": "none",
    }


@dataclass(frozen=True)
class NetworkInfo:
    """An LXD network.

    Attributes:
        name: Its name.
        network_type: "bridge", "physical", "macvlan"...
        managed: Whether LXD manages it (created it).
        config: Its config.
    """

    name: str
    network_type: str
    managed: bool
    config: dict[str, str] = field(default_factory=dict)

    @property
    def lxd_dhcp(self) -> bool:
        """Whether LXD runs DHCP on it (a managed bridge with an IPv4 address of its own)."""
        address = self.config.get("ipv4.address", "")
        dhcp = self.config.get("ipv4.dhcp", "true")
        return (
            self.managed
            and self.network_type == "bridge"
            and address not in ("", "none")
            and dhcp != "false"
        )

    @property
    def host_address(self) -> str | None:
        """The host's IPv4 address on it, as LXD configured it (None: LXD gave it none)."""
        address = self.config.get("ipv4.address", "")
        if not self.managed or address in ("", "none", "auto"):
            return None
        return address.split("/", 1)[0]


@dataclass(frozen=True)
class RunnerProfile:
    """What every runner (container or VM) gets besides its limits: its NIC and its root pool.

    The one place the runner NIC is defined. Runners cannot reach or impersonate each other:

    - ``security.port_isolation``: the bridge forwards nothing between two isolated ports
      (runners); they still reach every other port (the host, test hosts, the uplink);
    - ``security.mac_filtering``: a runner cannot send with another MAC address;
    - ``security.ipv4_filtering`` (with ``ipv4_filtering``): nor with an IPv4 address LXD did
      not give it. It needs LXD's own DHCP on the network (``ipv4.address`` set): on a network
      without it (the closed test network) LXD would drop all the runner's IPv4, so it is off
      there, and port isolation with MAC filtering is what keeps runners apart.

    Attributes:
        network: The LXD network of the NIC.
        pool: The storage pool of the root disk.
        ipv4_filtering: Whether LXD filters the runner's source IPv4 addresses.
    """

    network: str
    pool: str = "default"
    ipv4_filtering: bool = False

    @property
    def name(self) -> str:
        """The profile's name, from its content (two units with the same content share it)."""
        filtering = "-ipf" if self.ipv4_filtering else ""
        return f"runner-net-{self.network}-pool-{self.pool}{filtering}"

    @property
    def devices(self) -> dict[str, Device]:
        """The runner's NIC and root disk."""
        nic: Device = {
            "type": "nic",
            "network": self.network,
            "name": RUNNER_NIC,
            "security.port_isolation": "true",
            "security.mac_filtering": "true",
        }
        if self.ipv4_filtering:
            nic["security.ipv4_filtering"] = "true"
        root: Device = {"type": "disk", "path": "/", "pool": self.pool}
        return {RUNNER_NIC: nic, "root": root}
