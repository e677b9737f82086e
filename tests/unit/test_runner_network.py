"""juju.runner_network: the unit's own bridge or the ``network`` option's; the host address."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

import errors
from juju import runner_network
from juju.runner_network import NetworkResources, RunnerNetwork, ensure_runner_network
from lxd.network import NetworkInfo, unit_resource_name


@dataclass
class FakeNetworks:
    """LXD's networks, as the module sees them; a bridge LXD creates gets 198.18.44.1/24."""

    networks: dict[str, NetworkInfo] = field(default_factory=dict)
    created: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    def network_exists(self, name: str) -> bool:
        return name in self.networks

    def network_info(self, name: str) -> NetworkInfo:
        if name not in self.networks:
            raise errors.LXDNotFoundError(f"no network {name}", "get-network")
        return self.networks[name]

    def create_bridge(self, name: str, config: Mapping[str, str], description: str = "") -> bool:
        if name in self.networks:
            return False
        self.created.append((name, dict(config), description))
        resolved = {**config, "ipv4.address": "198.18.44.1/24"}
        self.networks[name] = NetworkInfo(name, "bridge", True, resolved)
        return True


def _conforms(fake: FakeNetworks) -> NetworkResources:
    return fake


def test_the_unit_makes_its_own_nat_bridge_once() -> None:
    lxd = FakeNetworks()
    own = unit_resource_name("ci", 2)
    assert ensure_runner_network(lxd, "", "ci", 2) == RunnerNetwork(own, "198.18.44.1", True)
    assert lxd.created == [
        (
            own,
            {"ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none"},
            "github-runner: runners of ci/2",
        )
    ]
    assert ensure_runner_network(lxd, "", "ci", 2).name == own
    assert len(lxd.created) == 1, "an existing bridge is left as it is"


def test_the_option_names_an_existing_network_the_charm_leaves_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lxd = FakeNetworks(
        {"lxdbr1": NetworkInfo("lxdbr1", "bridge", True, {"ipv4.address": "198.18.5.1/24"})}
    )
    assert ensure_runner_network(lxd, "lxdbr1", "ci", 0) == RunnerNetwork(
        "lxdbr1", "198.18.5.1", False
    )
    assert lxd.created == []
    lxd.networks["br0"] = NetworkInfo("br0", "bridge", False, {})  # a Linux bridge
    monkeypatch.setattr(runner_network, "interface_address", lambda name: "198.18.6.1")
    assert ensure_runner_network(lxd, "br0", "ci", 0).host_address == "198.18.6.1"


def test_a_missing_network_or_one_without_host_address_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lxd = FakeNetworks({"tn1": NetworkInfo("tn1", "bridge", True, {"ipv4.address": "none"})})
    with pytest.raises(errors.ConfigError) as missing:
        ensure_runner_network(lxd, "nope", "ci", 0)
    assert str(missing.value).startswith("network: LXD network 'nope' does not exist")
    monkeypatch.setattr(runner_network, "interface_address", lambda name: None)
    with pytest.raises(errors.ConfigError) as bare:
        ensure_runner_network(lxd, "tn1", "ci", 0)
    assert "no IPv4 address on LXD network 'tn1'" in str(bare.value)
    assert str(bare.value).startswith("network: ")


def test_interface_address_of_loopback() -> None:
    assert runner_network.interface_address("lo") == "127.0.0.1"
    assert runner_network.interface_address("no-such-if0") is None
