"""Test-mode runners are cloned from the unit's template by default; it is kept clean.

The template (``manager.runner_template``): made once per image generation, replaced when the
image changes, removed by the flushes that take busy runners down (the stop hook's among them),
and replaced after a clone from it failed (that runner launches from the image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.settings import RunnerManagerSettings
from lxd.types import InstanceStatus
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDFlushMode, LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy, make_state, runner_tarball
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB")
IMAGE = "github-runner-test"


def manager(
    tmp_path: Path, lxd: FakeLxd, test_mode: bool = True, **settings: Any
) -> RunnerManager:
    state = make_state(test_mode=test_mode)
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image=IMAGE,
        lxd_storage_path=tmp_path / "lxd",
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
    )
    unit = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
        lock_timeout=0.2,
        **settings,
    )
    unit.runner_bin_path.parent.mkdir(parents=True, exist_ok=True)
    runner_tarball(unit.runner_bin_path)
    clients = RunnerManagerClients(
        github=FakeGithub(), jinja=template_environment(), lxd=lxd, repo=FakeRepoPolicy()
    )
    return RunnerManager("gh", 0, config, clients=clients, settings=unit)


def templates(lxd: FakeLxd) -> list[str]:
    return [i.name for i in lxd.list(prefix="grt-gh-0-")]


def test_test_mode_clones_runners_from_one_template_by_default(tmp_path: Path) -> None:
    lxd = FakeLxd()
    assert RunnerManagerSettings().clone_from_template
    names = manager(tmp_path, lxd).create_runners(3, RES)
    assert len(names) == 3
    [template] = templates(lxd)
    assert template.startswith("grt-gh-0-")  # outside the runners' prefix: never judged
    assert lxd.get(template).status == InstanceStatus.STOPPED
    assert sorted(clone for _, clone in lxd.copies) == sorted(names)


def test_without_test_mode_or_when_turned_off_runners_launch_from_the_image(
    tmp_path: Path,
) -> None:
    for lxd, built in (
        (one := FakeLxd(), manager(tmp_path / "vm", one, test_mode=False)),
        (other := FakeLxd(), manager(tmp_path / "off", other, clone_from_template=False)),
    ):
        assert len(built.create_runners(2, RES)) == 2
        assert templates(lxd) == [] and lxd.copies == []


def test_a_new_image_generation_replaces_the_template(tmp_path: Path) -> None:
    lxd = FakeLxd()
    unit = manager(tmp_path, lxd)
    unit.create_runners(1, RES)
    [old] = templates(lxd)
    lxd.images[IMAGE] = "e" * 64
    unit.create_runners(1, RES)
    [new] = templates(lxd)
    assert new != old and old in lxd.deleted


@pytest.mark.parametrize(
    ("mode", "kept"),
    [
        (LXDFlushMode.FLUSH_IDLE, True),
        (LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK, True),
        (LXDFlushMode.FLUSH_BUSY, False),  # the stop hook's
        (LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK, False),
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, False),
    ],
)
def test_flushes_of_busy_runners_remove_the_template(
    tmp_path: Path, mode: LXDFlushMode, kept: bool
) -> None:
    lxd = FakeLxd()
    unit = manager(tmp_path, lxd)
    unit.create_runners(2, RES)
    unit.flush(mode)
    assert bool(templates(lxd)) == kept


def test_a_broken_template_falls_back_to_the_image_once_and_is_replaced(tmp_path: Path) -> None:
    lxd = FakeLxd()
    unit = manager(tmp_path, lxd, create_parallelism=1)
    unit.create_runners(1, RES)
    [broken] = templates(lxd)
    lxd.fail_copy = True
    [launched] = unit.create_runners(1, RES)  # from the image, and the template goes
    assert launched in lxd.instances and broken in lxd.deleted
    assert templates(lxd) == []
    lxd.fail_copy = False
    [cloned] = unit.create_runners(1, RES)
    assert templates(lxd) == [broken]  # made anew (same generation, same name)
    assert lxd.copies[-1] == (broken, cloned)


def test_a_template_still_being_made_elsewhere_is_not_cloned(tmp_path: Path) -> None:
    lxd = FakeLxd()
    unit = manager(tmp_path, lxd)
    unit.create_runners(1, RES)
    [template] = templates(lxd)
    lxd.get(template).status = InstanceStatus.RUNNING  # another process started it, not stopped
    copies = len(lxd.copies)
    assert len(unit.create_runners(1, RES)) == 1
    assert len(lxd.copies) == copies  # launched from the image
    assert templates(lxd) == [template]  # and the other process's template left alone
