"""Runner labels: what a runner registers with is what the unit's arch and job intake say."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import RunnerManagerSettings
from reactive.consumer import build_supported_labels
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import Arch, runner_labels
from tests.unit.fakes_core import FakeRepoPolicy, make_state, runner_tarball
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd


def registered_labels(tmp_path: Path, arch: Arch) -> tuple[str, ...]:
    """Reconcile one runner for a unit of ``arch``; return the labels GitHub recorded."""
    state = make_state(arch=arch)
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=tmp_path / "lxd",
        path=state.path,
        service_token="service-token",
        token=state.token.get_secret_value(),
    )
    github = FakeGithub()
    clients = RunnerManagerClients(
        github=github, jinja=template_environment(), lxd=FakeLxd(), repo=FakeRepoPolicy()
    )
    settings = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
    )
    settings.runner_bin_path.parent.mkdir(parents=True)
    runner_tarball(settings.runner_bin_path)
    manager = RunnerManager("gh", 0, config, clients=clients, settings=settings)
    manager.reconcile(1, state.vm_resources)
    (record,) = github.records.values()
    return record.labels


@pytest.mark.parametrize("arch", list(Arch))
def test_runner_registers_with_the_units_architecture(tmp_path: Path, arch: Arch) -> None:
    labels = registered_labels(tmp_path, arch)
    assert arch.value in labels
    assert [other.value for other in Arch if other is not arch and other.value in labels] == []


@pytest.mark.parametrize("arch", list(Arch))
def test_job_intake_accepts_exactly_the_labels_runners_carry(tmp_path: Path, arch: Arch) -> None:
    # A job whose labels the consumer accepts must be one a runner of this unit can take.
    state = make_state(arch=arch)
    supported = build_supported_labels(
        state.labels, state.app_name, state.base_image.value, state.arch.value
    )
    assert supported == {label.lower() for label in registered_labels(tmp_path, arch)}


def test_runner_labels_order_and_duplicates() -> None:
    labels = runner_labels(("gpu", "linux", "gh", "gpu"), "gh", "noble", Arch.ARM64)
    assert labels == ("self-hosted", "linux", "arm64", "gh", "noble", "gpu")
    assert runner_labels((), "gh", "", Arch.X64) == ("self-hosted", "linux", "x64", "gh")
