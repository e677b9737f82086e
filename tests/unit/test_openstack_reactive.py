"""Reactive mode on OpenStack: the consumer pool in the reconcile, one-shot creations, the rebuild.

The manager runs on the OpenStack and GitHub fakes with the consumer pool fake; the consumers'
side is the real ``reactive.manager_section`` and ``reactive.factory`` (a consumer rebuilds the
OpenstackRunnerManager from the section its config file holds).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

import errors
from config.settings import RunnerManagerSettings
from config.state import OpenstackSettings, ReactiveConfig
from juju.intake_host import intake_settings
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.observe import APP_KEY, UNIT_KEY
from reactive import runner_manager as reactive_processes
from reactive.factory import ManagerSpawner, reactive_components
from reactive.manager_section import CloudFile, manager_section, parse_manager_section
from reactive.message import unit_supported_labels
from reactive.pool import ProcessConsumerPool, consumer_pool_for
from reactive.runner_manager import ReactiveRunnerConfig
from runner_manager_type import OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_openstack import FakeOpenstack, openstack_config, unit_settings
from tests.unit.fakes_reactive import FakeConsumerPool

RES = VirtualMachineResources(cpu=1, memory="1GiB", disk="10GiB")
GRACE = timedelta(minutes=5)
OURS = {APP_KEY: "gh", UNIT_KEY: "0"}
PASSWORD = "s3cr3t-pa55"  # a test cloud's password, to show it never leaks
CLOUDS = f"""\
clouds:
  testcloud:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: runner
      password: {PASSWORD}
"""


def reactive_config() -> ReactiveConfig:
    return ReactiveConfig(mq_uri=SecretStr("amqp://u:pw@127.0.0.1//"), queue_name="gh")


def os_config(reactive: bool = True, **overrides: object) -> OpenstackRunnerManagerConfig:
    cloud = OpenstackSettings(
        cloud="testcloud",
        clouds_yaml=SecretStr(CLOUDS),
        auth_url="http://127.0.0.1:5000/v3",
        flavor="m1.small",
        image="runner-image",
        network="runners",
    )
    state = make_state(openstack=cloud, reactive_config=reactive_config() if reactive else None)
    return openstack_config(
        state, reactive_config=state.reactive_config, service_token="svc", **overrides
    )


@pytest.fixture
def settings(tmp_path: Path) -> RunnerManagerSettings:
    return unit_settings(tmp_path, reactive_idle_grace=GRACE)


@pytest.fixture
def cloud() -> FakeOpenstack:
    return FakeOpenstack()


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub()


def pooled(
    cloud: FakeOpenstack,
    github: FakeGithub,
    settings: RunnerManagerSettings,
    pool: FakeConsumerPool,
) -> OpenstackRunnerManager:
    return OpenstackRunnerManager(
        "gh", 0, os_config(), cloud, github, settings=settings, consumer_pool=pool
    )


def runner(
    cloud: FakeOpenstack, github: FakeGithub, name: str, age: timedelta, busy: bool = False
) -> None:
    created = datetime.now(timezone.utc) - age
    cloud.add_server(f"gh-0-{name}", metadata=OURS, created_at=created)
    github.add_record(f"gh-0-{name}", online=True, busy=busy)


# --- the reconcile ------------------------------------------------------------------------------


def test_reactive_reconcile_creates_nothing_and_keeps_the_ceiling_in_consumers(
    cloud, github, settings
) -> None:
    pool = FakeConsumerPool()
    assert pooled(cloud, github, settings, pool).reconcile(3, RES) == 0
    assert cloud.servers == {}
    assert pool.reconciled == [3]


def test_empty_queue_deletes_idle_servers_past_the_grace_observing_once(
    cloud, github, settings
) -> None:
    runner(cloud, github, "stale000", GRACE + timedelta(minutes=1))
    runner(cloud, github, "fresh000", GRACE - timedelta(minutes=1))  # made for a job: not yet
    runner(cloud, github, "busy0000", timedelta(hours=1), busy=True)
    pool = FakeConsumerPool(waiting=0)
    manager = pooled(cloud, github, settings, pool)
    assert manager.reconcile(5, RES) == 0
    assert manager.last_report.deleted == {"gh-0-stale000": "surplus"}
    assert sorted(s.name for s in cloud.servers.values()) == ["gh-0-busy0000", "gh-0-fresh000"]
    assert pool.reconciled == [5 - 2], "consumers = ceiling - runners alive after the change"
    assert cloud.calls.count("list_servers") == 1, "the cloud is observed once"
    assert github.calls.count("list_runners") == 1, "GitHub is observed once"
    assert pool.queue_checks == 1


def test_jobs_waiting_keep_idle_servers(cloud, github, settings) -> None:
    runner(cloud, github, "stale000", timedelta(minutes=30))
    pool = FakeConsumerPool(waiting=1)
    pooled(cloud, github, settings, pool).reconcile(3, RES)
    assert len(cloud.servers) == 1
    assert pool.reconciled == [2]


def test_the_warm_floor_is_created_by_the_reconcile(cloud, github, tmp_path, settings) -> None:
    config = os_config()
    config = replace(
        config, charm_state=config.charm_state.model_copy(update={"base_virtual_machines": 2})
    )
    pool = FakeConsumerPool()
    manager = OpenstackRunnerManager(
        "gh", 0, config, cloud, github, settings=settings, consumer_pool=pool
    )
    assert manager.reconcile(4, RES) == 2
    assert len(cloud.servers) == 2
    assert pool.reconciled == [4 - 2]


def test_quota_refusal_counts_only_created_servers_as_alive(cloud, github, settings) -> None:
    config = os_config()
    config = replace(
        config, charm_state=config.charm_state.model_copy(update={"base_virtual_machines": 3})
    )
    cloud.quota = 1
    pool = FakeConsumerPool()
    manager = OpenstackRunnerManager(
        "gh", 0, config, cloud, github, settings=settings, consumer_pool=pool
    )
    assert manager.reconcile(4, RES) == 1, "1 of 3 created: the quota stopped the others"
    assert pool.reconciled == [4 - 1]
    assert manager.quota_refusal() is not None


# --- one-shot creations (a consumer's) ---------------------------------------------------------


def test_create_runners_makes_owned_servers_without_observing(cloud, github, settings) -> None:
    manager = pooled(cloud, github, settings, FakeConsumerPool())
    names = manager.create_runners(2, RES)
    assert sorted(names) == sorted(s.name for s in cloud.servers.values())
    assert len(names) == 2
    assert "list_servers" not in cloud.calls
    assert "list_runners" not in github.calls
    for server in cloud.servers.values():
        assert server.metadata == OURS
        record = github.by_name(server.name)
        assert record is not None
        assert f"ACTIONS_RUNNER_INPUT_JITCONFIG=jit-{record.id} " in server.user_data
    assert manager.github_client is github


def test_create_runners_under_quota_returns_what_was_created(cloud, github, settings) -> None:
    cloud.quota = 0
    manager = pooled(cloud, github, settings, FakeConsumerPool())
    assert manager.create_runners(1, RES) == []
    assert github.records == {}, "the refused runner's registration is undone"


def test_the_spawner_creates_one_server_and_watches_by_the_unit_prefix(
    cloud, github, settings
) -> None:
    manager = pooled(cloud, github, settings, FakeConsumerPool())
    spawner = ManagerSpawner(manager, RES, manager.config.path)
    name = spawner.spawn_one()
    assert [s.name for s in cloud.servers.values()] == [name]
    view = spawner.watch(name)
    assert view.own.value == "waiting"
    cloud.quota = 1
    with pytest.raises(errors.RunnerCreateError):
        spawner.spawn_one()


# --- the section the consumers rebuild the manager from ------------------------------------


def clouds_file(tmp_path: Path, text: str = CLOUDS) -> CloudFile:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    return CloudFile(path, "testcloud")


def test_the_section_names_the_clouds_yaml_and_never_holds_it(tmp_path, settings) -> None:
    file = clouds_file(tmp_path)
    config = os_config(labels=("gpu",), repo_policy_url="http://198.18.0.1:8080")
    section = json.loads(json.dumps(manager_section("gh", 0, config, settings, file)))
    text = json.dumps(section)
    assert PASSWORD not in text
    assert section["backend"] == "openstack"
    assert section["openstack"]["clouds_yaml"] == str(file.clouds_yaml)
    assert section["charm_state"]["token"] == "ghp_test_token", "the consumer needs the token"
    spec = parse_manager_section(section)
    assert spec.cloud == file
    assert isinstance(spec.config, OpenstackRunnerManagerConfig)
    assert spec.config.charm_state == config.charm_state, "the clouds.yaml read back from its path"
    assert (spec.config.flavor, spec.config.image, spec.config.network) == (
        "m1.small",
        "runner-image",
        "runners",
    )
    assert tuple(spec.config.labels) == ("gpu",)
    assert spec.config.repo_policy_url == "http://198.18.0.1:8080"
    assert spec.config.service_token == "svc"
    assert spec.config.reactive_config == config.reactive_config
    assert spec.settings == settings


def test_a_changed_clouds_yaml_changes_the_section(tmp_path, settings) -> None:
    before = manager_section("gh", 0, os_config(), settings, clouds_file(tmp_path))
    after = manager_section("gh", 0, os_config(), settings, clouds_file(tmp_path, CLOUDS + "#\n"))
    assert before != after, "consumers restart with the new credentials"


def test_a_section_whose_clouds_yaml_is_gone_is_refused_without_secrets(
    tmp_path, settings
) -> None:
    file = clouds_file(tmp_path)
    section = manager_section("gh", 0, os_config(), settings, file)
    file.clouds_yaml.unlink()
    with pytest.raises(errors.ReactiveRunnerError) as caught:
        parse_manager_section(section)
    assert "clouds.yaml" in str(caught.value)
    assert "ghp_" not in str(caught.value)
    with pytest.raises(errors.ReactiveRunnerError):
        manager_section("gh", 0, os_config(), settings, None)
    with pytest.raises(errors.ReactiveRunnerError, match="backend"):
        parse_manager_section({**section, "backend": "kubernetes"})


def test_consumers_rebuild_the_openstack_manager(tmp_path, settings) -> None:
    file = clouds_file(tmp_path)
    section = json.loads(json.dumps(manager_section("gh", 0, os_config(), settings, file)))
    spawner, checker = reactive_components(section)
    assert isinstance(spawner, ManagerSpawner)
    rebuilt = spawner.manager
    assert isinstance(rebuilt, OpenstackRunnerManager)
    assert (rebuilt.app_name, rebuilt.unit, rebuilt.prefix) == ("gh", 0, "gh-0-")
    assert rebuilt.settings == settings
    assert rebuilt.cloud.clouds_yaml == file.clouds_yaml  # type: ignore[attr-defined]
    assert rebuilt.cloud.cloud == "testcloud"  # type: ignore[attr-defined]
    assert checker is rebuilt.github_client


# --- the pool -----------------------------------------------------------------------------------


def test_the_pool_needs_the_clouds_yaml_and_writes_it_by_name(tmp_path, settings) -> None:
    with pytest.raises(errors.ReactiveRunnerError, match=r"clouds\.yaml"):
        consumer_pool_for("gh", 0, os_config(), settings)
    assert consumer_pool_for("gh", 0, os_config(reactive=False), settings) is None
    file = clouds_file(tmp_path)
    pool = consumer_pool_for("gh", 0, os_config(), settings, file)
    assert isinstance(pool, ProcessConsumerPool)
    assert PASSWORD not in repr(pool)
    assert pool.reconcile(0) == 0  # writes the config file, starts nobody
    written = pool.processes.config_path
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    data = json.loads(written.read_text())
    assert PASSWORD not in written.read_text()
    assert data["runner_manager"]["backend"] == "openstack"
    labels = data["consumer"]["supported_labels"]
    assert "fast" in labels and "gh" in labels
    assert "noble" not in labels, "OpenStack runners do not register the base image's label"


def test_the_manager_builds_its_pool_from_the_clouds_yaml(tmp_path, settings, github) -> None:
    file = clouds_file(tmp_path)
    manager = OpenstackRunnerManager(
        "gh",
        0,
        os_config(),
        None,
        github,
        settings=settings,
        clouds_yaml=file.clouds_yaml,
        cloud_name=file.cloud,
    )
    assert isinstance(manager._pool, ProcessConsumerPool)
    assert manager._pool.cloud == file
    plain = OpenstackRunnerManager(
        "gh", 0, os_config(reactive=False), FakeOpenstack(), github, settings=settings
    )
    assert plain._pool is None


def test_pool_processes_config_is_the_units(tmp_path, settings) -> None:
    pool = consumer_pool_for("gh", 0, os_config(), settings, clouds_file(tmp_path))
    assert isinstance(pool, ProcessConsumerPool)
    assert isinstance(pool.processes, ReactiveRunnerConfig)
    assert pool.processes.config_path == settings.state_dir / "reactive-runner.json"
    assert reactive_processes.list_processes(pool.processes.pid_dir) == []


def test_openstack_units_route_no_base_image_label() -> None:
    lxd_state = make_state(reactive_config=reactive_config(), webhook_secret=SecretStr("w" * 32))
    os_state = os_config().charm_state.model_copy(update={"webhook_secret": SecretStr("w" * 32)})
    assert "noble" in unit_supported_labels(lxd_state)
    assert "noble" not in unit_supported_labels(os_state)
    assert {"self-hosted", "linux", "x64", "gh", "fast"} <= unit_supported_labels(os_state)
    lxd_intake, os_intake = intake_settings(lxd_state), intake_settings(os_state)
    assert lxd_intake is not None and os_intake is not None
    assert "noble" in lxd_intake.flavors[0].labels
    assert "noble" not in os_intake.flavors[0].labels, "the intake routes what the runners offer"
