"""The LXD network runners get their NIC on, as the charm sets it up (no ``ops`` here).

By default each unit makes its own managed bridge, ``ghr-`` + 10 hex digits of ``<app>/<unit>``
(:func:`lxd.network.unit_resource_name`): IPv4 only, ``ipv4.address=auto`` (LXD picks a free
private /24 and runs DHCP and DNS on it), ``ipv4.nat=true`` (runners reach GitHub through the
host's uplink), no IPv6. The ``network`` option names an existing LXD network instead (the
charm then changes nothing on it). Either way the host must have an IPv4 address on it: the
pre-job policy service listens there, and only there, for the runners.

The runner NIC itself (port isolation, MAC and IPv4 filtering) is :class:`lxd.RunnerProfile`.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import errors
from lxd import NetworkInfo, bridge_config, unit_resource_name

logger = logging.getLogger(__name__)

NETWORK_OPTION = "network"


class NetworkResources(Protocol):
    """The LXD calls this module makes (:class:`lxd.LxdResources` has them)."""

    def network_exists(self, name: str) -> bool:
        """Whether a network exists."""

    def network_info(self, name: str) -> NetworkInfo:
        """Describe a network (:class:`errors.LXDNotFoundError` if missing)."""

    def create_bridge(self, name: str, config: Mapping[str, str], description: str = "") -> bool:
        """Create a managed bridge unless a network of that name exists."""


@dataclass(frozen=True)
class RunnerNetwork:
    """The network runners are on.

    Attributes:
        name: The LXD network.
        host_address: The host's IPv4 address on it (where the policy service listens).
        own: Whether the unit made it (its own bridge) rather than the ``network`` option.
    """

    name: str
    host_address: str
    own: bool


def ensure_runner_network(
    resources: NetworkResources, option: str, app_name: str, unit: int
) -> RunnerNetwork:
    """Make the unit's bridge (unless ``option`` names a network) and find the host's address.

    Args:
        resources: LXD.
        option: The ``network`` option ("" for the unit's own bridge).
        app_name: The application name.
        unit: The unit number.

    Returns:
        The network.

    Raises:
        ConfigError: The named network does not exist, or the host has no IPv4 address on it.
        LXDError: LXD refused to create the bridge.
    """
    own = not option
    name = option or unit_resource_name(app_name, unit)
    if own:
        resources.create_bridge(
            name, bridge_config(), f"github-runner: runners of {app_name}/{unit}"
        )
    elif not resources.network_exists(name):
        raise errors.ConfigError(
            NETWORK_OPTION,
            f"LXD network {name!r} does not exist: create it (`lxc network create {name}`) "
            "or unset the option to let the charm make its own bridge",
        )
    info = resources.network_info(name)
    address = info.host_address or interface_address(name)
    if address is None:
        raise errors.ConfigError(
            NETWORK_OPTION,
            f"the host has no IPv4 address on LXD network {name!r}: runners could not reach "
            "the policy service; give the host an address on it or unset the option",
        )
    return RunnerNetwork(name=name, host_address=address, own=own)


def interface_address(interface: str) -> str | None:
    """The first IPv4 address of a host interface (a bridge LXD does not manage), if any.

    Args:
        interface: The interface name.

    Returns:
        The address, or None.
    """
    try:
        result = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", interface],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for field in result.stdout.split():
        if "/" in field and field.count(".") == 3:
            return field.split("/")[0]
    return None
