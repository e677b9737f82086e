"""A unit whose runners are OpenStack servers keeps its own disk and memory out of the runners."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ops import testing

from charm import GithubRunnerCharm
from tests.unit.fakes_charm import FakeRunnerManager, FakeSystem, base_state, reconcile_event
from tests.unit.test_juju_openstack_options import CLOUDS

STORAGE_CALLS = {"disk_space", "ensure_ram_disk", "available_memory"}


@pytest.mark.parametrize("runner_storage", ["juju-storage", "memory"])
def test_an_openstack_unit_needs_no_runner_storage(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    system: FakeSystem,
    runner_storage: str,
) -> None:
    """Without the runner storage, 40 runners of 200 GiB each: active, nothing local checked."""
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    config = {
        "backend": "openstack",
        "openstack-clouds-yaml-secret-id": secret.id,
        "openstack-flavor": "runner-small",
        "openstack-image": "github-runner-noble",
        "openstack-network": "runners",
        "runner-storage": runner_storage,
        "virtual-machines": 40,
        "vm-disk": "200GiB",
    }
    state = replace(base_state(config=config, storages=[]), secrets={secret})

    out = ctx.run(ctx.on.install(), state)
    out = ctx.run(reconcile_event(), out)

    assert out.unit_status == testing.ActiveStatus(out.unit_status.message)
    assert STORAGE_CALLS.isdisjoint(system.names())
    assert "reconcile" in manager.names()


def test_an_lxd_unit_still_needs_its_runner_storage(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    """The same unit on LXD without the storage is Blocked naming runner-storage."""
    out = ctx.run(ctx.on.install(), base_state(storages=[]))

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert "runner-storage" in out.unit_status.message
    assert "juju add-storage" in out.unit_status.message
