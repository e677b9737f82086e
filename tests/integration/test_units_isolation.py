"""Two units of one application on one host (real LXD, sandbox GitHub): flushes stay per unit.

Units 1 and 10 are chosen on purpose: runner names are ``<app>-<unit>-<hex>``, so unit 1's
prefix ``it-units-1-`` must not match unit 10's runners (``it-units-10-...``), and unit 0 (the
environment's own manager) must not match either. Each unit keeps one idle runner; unit 1's idle
flush and force flush, and unit 0's force flush, remove only their own runners, on LXD and on
GitHub.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from runner_manager import RunnerManager
from runner_manager_type import LXDFlushMode

pytestmark = [pytest.mark.lxd, pytest.mark.usefixtures("lxd_client")]

APP = "it-units"


def unit_manager(env: LocalEnvironment, unit: int) -> RunnerManager:
    """The manager of another unit of the environment's application (own runner binary)."""
    saved = env.options.unit
    env.options.unit = unit
    try:
        manager = env.build_manager()
    finally:
        env.options.unit = saved
    manager.update_runner_bin(manager.get_latest_runner_bin_url())
    return manager


def names(manager: RunnerManager) -> tuple[set[str], set[str]]:
    """The unit's LXD instances and GitHub records."""
    instances = {i.name for i in manager._clients.lxd.list(prefix=manager.prefix)}
    return instances, {r.name for r in manager.get_github_info()}


@pytest.fixture
def env(testnet: TestNet) -> Iterator[LocalEnvironment]:
    with LocalEnvironment(LocalOptions(app_name=APP, repo="octo/units"), testnet=testnet) as e:
        yield e


def test_a_units_flush_never_removes_another_units_runner(env: LocalEnvironment) -> None:
    one, ten = unit_manager(env, 1), unit_manager(env, 10)
    try:
        (mine,) = one.create_runners(1, RESOURCES)
        (theirs,) = ten.create_runners(1, RESOURCES)
        assert names(one) == ({mine}, {mine})
        assert names(ten) == ({theirs}, {theirs})

        assert one.flush(LXDFlushMode.FLUSH_IDLE) == 1
        assert names(one) == (set(), set())
        assert names(ten) == ({theirs}, {theirs})

        one.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)  # unit 0
        assert names(ten) == ({theirs}, {theirs})
    finally:
        ten.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        one.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    assert names(ten) == (set(), set())
