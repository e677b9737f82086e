"""The real charm class, driven by ops.testing, with the real RunnerManager on LXD + sandbox.

Only the host seam is a fake (``make setup`` already installed LXD, the image and the broker);
the charm builds CharmState from config, creates, counts and flushes real runners.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from charm import GithubRunnerCharm
from harness.local import LocalEnvironment, LocalOptions
from runner_manager import RunnerManager
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_charm import FakeSystem, load_yaml

pytestmark = [pytest.mark.lxd, pytest.mark.usefixtures("lxd_client")]


@pytest.fixture
def env() -> Iterator[LocalEnvironment]:
    with LocalEnvironment(LocalOptions(app_name="github-runner", repo="octo/charm")) as local:
        yield local


def charm_context(env: LocalEnvironment) -> testing.Context[GithubRunnerCharm]:
    settings = env.settings()

    def real_manager(app_name: str, unit: int, config: LXDRunnerManagerConfig) -> RunnerManager:
        return RunnerManager(app_name, unit, config, settings=settings)

    class IntegrationCharm(GithubRunnerCharm):
        manager_factory = staticmethod(real_manager)
        system_factory = FakeSystem().factory

    return testing.Context(
        IntegrationCharm,
        meta=load_yaml("metadata.yaml"),
        config=load_yaml("config.yaml"),
        actions=load_yaml("actions.yaml"),
    )


def test_config_changed_creates_runners_and_flush_removes_them(
    env: LocalEnvironment, tmp_path: Path
) -> None:
    ctx = charm_context(env)
    config = {
        "token": env.token,
        "path": "octo/charm",
        "github-url": env.sandbox.base_url,
        "virtual-machines": 2,
        "vm-cpu": 1,
        "vm-memory": "1GiB",
        "vm-disk": "4GiB",
        "test-mode": "insecure",
    }
    state = testing.State(config=config, storages=[testing.Storage("runner")], leader=True)
    state = ctx.run(ctx.on.config_changed(), state)
    first = set(env.instances())
    assert len(first) == 2
    assert set(env.registrations()) == first
    assert state.unit_status.name == "active"
    assert state.unit_status.message.startswith("2 runners: "), state.unit_status

    env.wait_online(2, 60)
    state = ctx.run(ctx.on.action("reconcile-runners"), state)
    assert state.unit_status == testing.ActiveStatus("2 runners: 2 idle, 0 busy")
    state = ctx.run(ctx.on.action("check-runners"), state)
    assert ctx.action_results is not None
    assert ctx.action_results["online"] == 2

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
    assert state.unit_status == testing.ActiveStatus("0 runners: 0 idle, 0 busy")
