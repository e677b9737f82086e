"""The real charm class, driven by ops.testing, with the real RunnerManager on LXD + sandbox.

Only the host seam is a fake (``make setup`` already installed LXD, the image and the broker);
the charm builds CharmState from config (``network`` = the closed test network's bridge),
creates, counts and flushes real runners; the real policy service runs in a test host, listening
on the address the host seam reports for the runner network, as HostSystem does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops import testing

from charm import GithubRunnerCharm
from harness.local import LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from juju.policy_host import RepoPolicyEndpoint, RepoPolicyService
from juju.runner_network import RunnerNetwork
from repo_policy.service import BackgroundServer, ServiceFiles, build_app
from runner_manager import RunnerManager
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_charm import FakeSystem, charm_actions, charm_config, charm_metadata

pytestmark = [pytest.mark.lxd, pytest.mark.usefixtures("lxd_client")]


@pytest.fixture
def env(testnet: TestNet) -> Iterator[LocalEnvironment]:
    options = LocalOptions(app_name="github-runner", repo="octo/charm")
    with LocalEnvironment(options, testnet=testnet) as local:
        yield local


class HostWithPolicyService(FakeSystem):
    """The host seam, but with the real policy service in a test host on the runner network."""

    def __init__(self, env: LocalEnvironment, workdir: Path) -> None:
        super().__init__()
        self.env = env
        self.workdir = workdir
        self.server: BackgroundServer | None = None
        self.policy_host = env.add_host("policy", manager_link=True)

    def ensure_runner_network(self, network: str) -> RunnerNetwork:
        assert network == self.env.network, "the charm passes the network option"
        address = str(self.policy_host.address)
        return RunnerNetwork(network, address, own=False)

    def ensure_repo_policy(
        self, github_token: str, github_api_url: str, policy: dict[str, Any], listen: str
    ) -> RepoPolicyEndpoint:
        assert listen == str(self.policy_host.address)
        service = RepoPolicyService("github-runner/0", config_dir=self.workdir)
        token = service.service_token()
        (self.workdir / "github-token").write_text(github_token)
        (self.workdir / "policy.json").write_text(json.dumps(policy))
        if self.server is None:
            files = ServiceFiles(
                token_file=self.workdir / "service-token",
                github_token_file=self.workdir / "github-token",
                github_api_url=github_api_url,
                config_file=self.workdir / "policy.json",
            )
            self.server = self.env.serve(build_app(files), host=self.policy_host)
        return RepoPolicyEndpoint(url=self.server.url, service_token=token)


def charm_context(env: LocalEnvironment, host: FakeSystem) -> testing.Context[GithubRunnerCharm]:
    settings = env.settings()

    def real_manager(app_name: str, unit: int, config: LXDRunnerManagerConfig) -> RunnerManager:
        return RunnerManager(app_name, unit, config, settings=settings)

    class IntegrationCharm(GithubRunnerCharm):
        manager_factory = staticmethod(real_manager)
        system_factory = host.factory

    return testing.Context(
        IntegrationCharm,
        meta=charm_metadata(),
        config=charm_config(),
        actions=charm_actions(),
    )


def test_config_changed_creates_runners_and_flush_removes_them(
    env: LocalEnvironment, tmp_path: Path
) -> None:
    host = HostWithPolicyService(env, tmp_path)
    ctx = charm_context(env, host)
    config = {
        "token": env.token,
        "path": "octo/charm",
        "github-url": env.sandbox.base_url,
        "virtual-machines": 2,
        "vm-cpu": 1,
        "vm-memory": "1GiB",
        "vm-disk": "4GiB",
        "test-mode": "insecure",
        "network": env.network,
    }
    state = testing.State(config=config, storages=[testing.Storage("runner")], leader=True)
    state = ctx.run(ctx.on.config_changed(), state)
    assert len(env.instances()) == 2
    assert set(env.registrations()) == set(env.instances())
    assert state.unit_status.name == "active"
    assert state.unit_status.message.startswith("2 runners: "), state.unit_status

    env.wait_online(2, 60)
    # A push to an unprotected branch is refused by the policy gate the charm installed.
    refused = env.queue_job(
        ["echo never-$((6 * 7))"], labels=("self-hosted",), event="push", ref="refs/heads/main"
    )
    (refused,) = env.wait_jobs([refused["id"]], 90)
    assert refused["conclusion"] == "failure"
    assert "never-42" not in refused["log"]
    assert "Repository policy check refused this job" in refused["log"]
    deadline = time.monotonic() + 60
    while refused["runner_name"] in env.instances() and time.monotonic() < deadline:
        time.sleep(0.5)
    state = ctx.run(ctx.on.action("reconcile-runners"), state)  # replaces the used runner
    env.wait_online(2, 60)
    state = ctx.run(ctx.on.action("reconcile-runners"), state)
    assert state.unit_status == testing.ActiveStatus("2 runners: 2 idle, 0 busy")
    state = ctx.run(ctx.on.action("check-runners"), state)
    assert ctx.action_results is not None
    assert ctx.action_results["online"] == 2

    first = set(env.instances())
    state = ctx.run(ctx.on.action("flush-runners", params={"mode": "busy"}), state)
    assert ctx.action_results is not None
    assert ctx.action_results["flushed"] == 2
    assert first.isdisjoint(env.instances()), "the flushed runners are gone"

    state = ctx.run(
        ctx.on.config_changed(),
        testing.State(
            config={**config, "virtual-machines": 0},
            storages=[testing.Storage("runner")],
            leader=True,
            stored_states=state.stored_states,
            secrets=state.secrets,
        ),
    )
    assert env.instances() == []
    assert env.registrations() == []
    assert host.server is not None
    host.server.stop()
    assert state.unit_status == testing.ActiveStatus("0 runners: 0 idle, 0 busy")
