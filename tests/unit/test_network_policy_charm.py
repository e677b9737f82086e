"""The charm enforces the denylist on the host at install and each converge; stop removes it."""

from __future__ import annotations

from pathlib import Path

from ops import testing

import errors
from charm import GithubRunnerCharm
from juju.host import HostSystem
from juju.network_policy import NetworkPolicyHost
from juju.policy_host import RepoPolicyEndpoint
from juju.runner_network import RunnerNetwork
from tests.unit.fakes_charm import FakeSystem, base_state
from tests.unit.fakes_core import make_state
from tests.unit.fakes_network import FakeNft

BRIDGE = "ghr-0123456789"


def _with_config(state: testing.State, **config: str) -> testing.State:
    return testing.State(
        config={**state.config, **config},
        storages=state.storages,
        stored_states=state.stored_states,
        secrets=state.secrets,
    )


def test_install_enforces_the_denylist_on_the_runner_bridge(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    ctx.run(ctx.on.install(), base_state(config={"denylist": "10.0.0.0/8, 192.0.2.0/24"}))
    assert system.network_policy == (BRIDGE, ("10.0.0.0/8", "192.0.2.0/24"))
    names = system.names()
    assert names.index("ensure_runner_network") < names.index("apply_network_policy")


def test_config_change_reapplies_and_stop_removes(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    state = ctx.run(ctx.on.install(), base_state(config={"denylist": "10.0.0.0/8"}))
    state = ctx.run(ctx.on.config_changed(), _with_config(state, denylist="172.16.0.0/12"))
    assert system.network_policy == (BRIDGE, ("172.16.0.0/12",))
    ctx.run(ctx.on.stop(), state)
    assert system.network_policy is None
    assert system.names()[-2] == "remove_network_policy"


def test_bad_cidr_blocks_naming_the_option_and_applies_nothing(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = ctx.run(ctx.on.config_changed(), base_state(config={"denylist": "10.0.0.0/33"}))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith("denylist: '10.0.0.0/33'")
    assert "apply_network_policy" not in system.names()


def test_unenforceable_denylist_blocks(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    system.fail["apply_network_policy"] = errors.ConfigError(
        "denylist", "cannot be enforced on the host: nft failed"
    )
    out = ctx.run(ctx.on.config_changed(), base_state(config={"denylist": "10.0.0.0/8"}))
    assert out.unit_status == testing.BlockedStatus(
        "denylist: cannot be enforced on the host: nft failed"
    )


def test_host_exempts_github_the_policy_service_the_host_and_the_proxy(tmp_path: Path) -> None:
    nft = FakeNft()
    (tmp_path / BRIDGE / "bridge").mkdir(parents=True)
    (tmp_path / BRIDGE / "bridge" / "nf_call_iptables").write_text("1\n")
    policy_host = NetworkPolicyHost("gh/0", nft=nft, sysfs=tmp_path, resolve=lambda h: (h,))
    host = HostSystem("gh/0", network_policy=policy_host)
    state = make_state().model_copy(
        update={"denylist": ("10.0.0.0/8",), "github_url": "http://10.9.9.9:8080"}
    )
    network = RunnerNetwork(BRIDGE, "10.20.30.1", own=True)
    host.apply_network_policy(state, network, RepoPolicyEndpoint("http://10.20.30.1:8567", "t"))
    script = nft.scripts[-1]
    assert "elements = { 10.9.9.9/32, 10.20.30.1/32 }" in script
    assert f'iifname != "{BRIDGE}" return' in script
    host.remove_network_policy()
    assert nft.scripts[-1].endswith("delete table inet github_runner_gh_0\n")
