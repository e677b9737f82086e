"""OpenstackRunnerManager on the OpenStack and GitHub fakes: reconcile, ownership, quota, flush."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.settings import RunnerManagerSettings
from errors import (
    ConfigError,
    GithubApiError,
    OpenstackBadRequestError,
    OpenstackNotFoundError,
)
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.observe import APP_KEY, UNIT_KEY
from openstack_backend.seam import ACTIVE, ERROR, SHUTOFF
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_openstack import FakeOpenstack, openstack_config, unit_settings

RESOURCES = VirtualMachineResources(cpu=1, memory="1GiB", disk="10GiB")
OURS = {APP_KEY: "gh", UNIT_KEY: "0"}
OLD = datetime.now(timezone.utc) - timedelta(hours=1)


@pytest.fixture
def cloud() -> FakeOpenstack:
    return FakeOpenstack()


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub()


@pytest.fixture
def settings(tmp_path: Path) -> RunnerManagerSettings:
    return unit_settings(tmp_path, busy_delete_wait=0.2)


def make_config(**overrides: object) -> OpenstackRunnerManagerConfig:
    return openstack_config(
        make_state(),
        labels=("gpu",),
        dockerhub_mirror="https://mirror.example:5000",
        **overrides,
    )


def make_manager(
    cloud: FakeOpenstack,
    github: FakeGithub,
    settings: RunnerManagerSettings,
    **overrides: object,
) -> OpenstackRunnerManager:
    return OpenstackRunnerManager(
        "gh", 0, make_config(**overrides), cloud, github, settings=settings
    )


def come_online(cloud: FakeOpenstack, github: FakeGithub) -> None:
    """Nova boots the servers and their runners register as online on GitHub."""
    cloud.boot()
    for server in cloud.servers.values():
        record = github.by_name(server.name)
        if record is not None and server.status == ACTIVE:
            record.online = True


def test_reconcile_creates_owned_servers_with_jit_user_data(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    delta = manager.reconcile(3, RESOURCES)
    assert delta == 3
    assert len(cloud.servers) == 3
    assert cloud.calls.count("list_servers") == 1
    token = make_state().token.get_secret_value()
    for server in cloud.servers.values():
        assert server.name.startswith("gh-0-")
        assert len(server.name) == len("gh-0-") + 8
        assert server.metadata == OURS
        assert "github-runner" in server.tags
        assert (server.image, server.flavor, server.network) == ("img-1", "flv-1", "net-1")
        record = github.by_name(server.name)
        assert record is not None
        assert "gpu" in record.labels
        assert "fast" in record.labels  # the charm's labels option
        assert f"ACTIONS_RUNNER_INPUT_JITCONFIG=jit-{record.id} " in server.user_data
        assert token not in server.user_data
        assert "mirror.example" in server.user_data
    assert "get_registration_token" not in github.calls
    assert sorted(manager.last_report.created) == sorted(s.name for s in cloud.servers.values())


def test_steady_state_lists_once_and_changes_nothing(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    manager.reconcile(2, RESOURCES)
    come_online(cloud, github)
    cloud.calls.clear()
    github.calls.clear()
    assert manager.reconcile(2, RESOURCES) == 0
    assert cloud.calls == ["list_servers"]
    assert github.calls == ["list_runners"]


def test_other_units_servers_are_never_touched(cloud, github, settings) -> None:
    other_unit = cloud.add_server("gh-1-aaaa0000", metadata={APP_KEY: "gh", UNIT_KEY: "1"})
    impostor = cloud.add_server("gh-0-bbbb0000", metadata={APP_KEY: "other", UNIT_KEY: "0"})
    impostor_record = github.add_record(impostor.name, online=False)
    unlabelled = cloud.add_server("gh-0-cccc0000", status=ERROR, created_at=OLD)
    manager = make_manager(cloud, github, settings)
    manager.reconcile(0, RESOURCES)
    manager.flush(LXDFlushMode.FLUSH_BUSY)
    assert {other_unit.id, impostor.id, unlabelled.id} <= set(cloud.servers)
    assert impostor_record.id in github.records
    assert "delete_server" not in cloud.calls


def test_server_in_error_is_replaced_and_its_fault_logged(cloud, github, settings, caplog) -> None:
    broken = cloud.add_server(
        "gh-0-deadbeef", status=ERROR, metadata=OURS, fault="No valid host was found."
    )
    github.add_record(broken.name, online=False)
    manager = make_manager(cloud, github, settings)
    with caplog.at_level(logging.WARNING):
        delta = manager.reconcile(1, RESOURCES)
    assert delta == 1
    assert broken.id not in cloud.servers
    assert github.by_name(broken.name) is None
    assert len(cloud.servers) == 1
    assert manager.last_report.deleted == {broken.name: "unhealthy"}
    assert "No valid host was found." in caplog.text


def test_finished_runner_powered_off_is_deleted(cloud, github, settings) -> None:
    done = cloud.add_server("gh-0-0000d0e0", status=SHUTOFF, metadata=OURS, created_at=OLD)
    manager = make_manager(cloud, github, settings)
    manager.reconcile(1, RESOURCES)
    assert done.id not in cloud.servers
    assert len(cloud.servers) == 1


def test_young_server_whose_record_is_gone_is_replaced_at_once(cloud, github, settings) -> None:
    """A kill between deregistration and deletion leaves a server that never comes online."""
    manager = make_manager(cloud, github, settings)
    manager.reconcile(1, RESOURCES)
    (left,) = cloud.servers.values()
    github.records.clear()  # the record went, the process died before deleting the server
    manager.reconcile(1, RESOURCES)
    assert manager.last_report.deleted == {left.name: "orphan-instance"}
    assert left.id not in cloud.servers
    assert len(cloud.servers) == 1


def test_quota_gives_fewer_creations_and_a_report_not_a_crash(cloud, github, settings) -> None:
    cloud.quota = 2
    manager = make_manager(cloud, github, settings)
    delta = manager.reconcile(5, RESOURCES)
    assert delta == 2, "what happened: 2 created, not the 5 planned"
    assert len(cloud.servers) == 2
    report = manager.last_report
    assert report.quota_exceeded is not None
    assert "Quota exceeded" in report.quota_exceeded
    assert report.not_attempted == 3
    assert len(report.created) == 2
    assert cloud.calls.count("create_server") == 3  # stopped at the first refusal
    refusal = manager.quota_refusal()
    assert refusal is not None
    assert refusal.startswith("OpenStack quota exceeded: 3 runners not created (")
    # The refused runner's JIT registration is undone: no orphan record is left.
    assert {r.name for r in github.records.values()} == {s.name for s in cloud.servers.values()}
    # Once quota frees up, the next reconcile creates the rest.
    cloud.quota = None
    come_online(cloud, github)
    assert manager.reconcile(5, RESOURCES) == 3
    assert len(cloud.servers) == 5
    assert manager.last_report.quota_exceeded is None
    assert manager.quota_refusal() is None


def test_quota_with_parallel_creations(cloud, github, settings) -> None:
    cloud.quota = 3
    manager = make_manager(cloud, github, replace(settings, create_parallelism=4))
    manager.reconcile(8, RESOURCES)
    assert len(cloud.servers) == 3
    report = manager.last_report
    assert len(report.created) == 3
    assert report.not_attempted == 5
    assert report.failed == []


def test_reconcile_returns_what_happened_when_creations_fail(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    cloud.fail_create = OpenstackBadRequestError("no valid host", 400, "create_server")
    assert manager.reconcile(2, RESOURCES) == 0, "nothing was created"
    assert len(manager.last_report.failed) == 2
    cloud.fail_create = None
    assert manager.reconcile(2, RESOURCES) == 2
    come_online(cloud, github)
    assert manager.reconcile(1, RESOURCES) == -1, "a scale-down is what happened too"
    assert len(cloud.servers) == 1


def test_racing_creates_past_quota_go_to_error_and_are_cleaned(cloud, github, settings) -> None:
    cloud.quota = 2
    cloud.racy_quota = 1  # Nova accepts one extra and sends it to ERROR
    manager = make_manager(cloud, github, settings)
    manager.reconcile(3, RESOURCES)
    errored = [s for s in cloud.servers.values() if s.status == ERROR]
    assert len(errored) == 1
    come_online(cloud, github)
    manager.reconcile(2, RESOURCES)
    assert errored[0].id not in cloud.servers
    assert github.by_name(errored[0].name) is None
    assert all(s.status == ACTIVE for s in cloud.servers.values())


def test_flush_idle_spares_busy_runners_and_flush_busy_takes_them(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    manager.reconcile(3, RESOURCES)
    come_online(cloud, github)
    busy_name = next(iter(cloud.servers.values())).name
    busy = github.by_name(busy_name)
    assert busy is not None
    busy.busy = True
    assert manager.flush(LXDFlushMode.FLUSH_IDLE) == 2
    assert [s.name for s in cloud.servers.values()] == [busy_name]
    assert "delete_runner" in github.calls
    assert manager.flush(LXDFlushMode.FLUSH_BUSY) == 1
    assert cloud.servers == {}


def test_flush_deletes_on_github_before_the_server(cloud, github, settings) -> None:
    order: list[str] = []
    manager = make_manager(cloud, github, settings)
    manager.reconcile(1, RESOURCES)
    come_online(cloud, github)
    real_delete_runner, real_delete_server = github.delete_runner, cloud.delete_server

    def delete_runner(path, runner_id, runner_name=""):  # type: ignore[no-untyped-def]
        order.append("github")
        real_delete_runner(path, runner_id, runner_name)

    def delete_server(server):  # type: ignore[no-untyped-def]
        order.append("server")
        real_delete_server(server)

    github.delete_runner = delete_runner  # type: ignore[method-assign]
    cloud.delete_server = delete_server  # type: ignore[method-assign]
    manager.flush(LXDFlushMode.FLUSH_IDLE)
    assert order == ["github", "server"]


def test_force_flush_without_github_deletes_the_servers(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    manager.reconcile(2, RESOURCES)
    foreign = cloud.add_server("gh-0-ffff0000", metadata={APP_KEY: "x", UNIT_KEY: "0"})
    github.fail_list = GithubApiError("down", status=503)
    with pytest.raises(GithubApiError):
        manager.flush(LXDFlushMode.FLUSH_BUSY)
    assert manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK) == 2
    assert list(cloud.servers) == [foreign.id]


def test_delete_is_idempotent(cloud, github, settings) -> None:
    server = cloud.add_server("gh-0-11112222", metadata=OURS, status=SHUTOFF, created_at=OLD)
    cloud.delete_server(server.id)
    cloud.delete_server(server.id)  # already gone: success
    cloud.delete_server("gh-0-not-there")
    manager = make_manager(cloud, github, settings)
    github.add_record("gh-0-11112222", online=False)  # record left, server gone
    manager.reconcile(0, RESOURCES)
    assert github.records == {}
    assert manager.last_report.deleted == {"gh-0-11112222": "orphan-record"}


def test_bad_flavor_is_a_clear_error_after_deletions(cloud, github, settings) -> None:
    done = cloud.add_server("gh-0-0000d0e1", status=SHUTOFF, metadata=OURS, created_at=OLD)
    manager = make_manager(cloud, github, settings, flavor="m1.huge")
    with pytest.raises(OpenstackNotFoundError, match=r"m1\.huge"):
        manager.reconcile(1, RESOURCES)
    assert done.id not in cloud.servers
    assert "create_server" not in cloud.calls


def test_image_methods(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    assert manager.has_runner_image()
    manager.build_runner_image()  # exists: nothing to do
    manager.schedule_build_runner_image()
    missing = make_manager(cloud, github, settings, image="no-such-image")
    assert not missing.has_runner_image()
    with pytest.raises(OpenstackNotFoundError, match="upload a runner image to Glance"):
        missing.build_runner_image()


def test_github_info_and_runner_binary(cloud, github, settings) -> None:
    manager = make_manager(cloud, github, settings)
    manager.reconcile(1, RESOURCES)
    info = list(manager.get_github_info())
    assert [i.name for i in info] == [s.name for s in cloud.servers.values()]
    assert manager.get_latest_runner_bin_url().filename.startswith("actions-runner-linux")
    assert not manager.check_runner_bin()
    assert manager.runner_bin_version() is None
    assert manager.runner_bin_path.is_relative_to(settings.state_dir)


def test_construction_needs_a_cloud_or_its_clouds_yaml(github, settings, tmp_path) -> None:
    with pytest.raises(ConfigError):
        OpenstackRunnerManager("gh", 0, make_config(), None, github, settings=settings)
    manager = OpenstackRunnerManager(
        "gh",
        0,
        make_config(),
        github=github,
        settings=settings,
        clouds_yaml=tmp_path / "clouds.yaml",
        cloud_name="test",
    )
    assert manager.prefix == "gh-0-"
