"""Reactive mode in the RunnerManager: the consumer pool seam, the stale-idle rule, the rebuild."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import errors
from config.settings import RunnerManagerSettings
from config.state import ReactiveConfig
from reactive.consumer import publish_job
from reactive.factory import reactive_components
from reactive.manager_section import (
    manager_section,
    parse_manager_section,
    settings_from_json,
    settings_to_json,
)
from reactive.pool import ConsumerPool, ProcessConsumerPool, reactive_runner_config
from reactive.runner_manager import ReactiveRunnerConfig
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy, make_state, runner_tarball
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeInstance, FakeLxd
from tests.unit.fakes_reactive import FakeConsumerPool

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB")
GRACE = timedelta(minutes=5)


def manager_config(reactive: bool = True) -> LXDRunnerManagerConfig:
    state = make_state(
        reactive_config=ReactiveConfig(
            mq_uri=SecretStr("amqp://u:pw@127.0.0.1//"), queue_name="gh"
        )
        if reactive
        else None
    )
    return LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
        reactive_config=state.reactive_config,
    )


def manager(tmp_path: Path, reactive: bool = True) -> RunnerManager:
    settings = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        runner_network="tnab12",
        bootstrap_timeout=timedelta(seconds=90),
    )
    return RunnerManager("gh", 3, manager_config(reactive), settings=settings)


class CountingLxd(FakeLxd):
    """The LXD fake, counting how often the unit's instances are listed."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = 0

    def list(self, *args: Any, **kwargs: Any) -> list[FakeInstance]:
        self.lists += 1
        return super().list(*args, **kwargs)


@pytest.fixture
def lxd() -> CountingLxd:
    return CountingLxd()


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub()


def pooled_manager(
    tmp_path: Path, lxd: FakeLxd, github: FakeGithub, pool: FakeConsumerPool
) -> RunnerManager:
    settings = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
        lock_timeout=0.2,
        reactive_idle_grace=GRACE,
    )
    settings.runner_bin_path.parent.mkdir(parents=True)
    runner_tarball(settings.runner_bin_path)
    clients = RunnerManagerClients(
        github=github, jinja=template_environment(), lxd=lxd, repo=FakeRepoPolicy()
    )
    return RunnerManager(
        "gh", 0, manager_config(), clients=clients, settings=settings, consumer_pool=pool
    )


def runner(
    lxd: FakeLxd, github: FakeGithub, name: str, age: timedelta, busy: bool = False
) -> None:
    lxd.add_instance(f"gh-0-{name}", age=age)
    github.add_record(f"gh-0-{name}", online=True, busy=busy)


# --- the seam ---------------------------------------------------------------------------------


def test_process_pool_matches_the_seam() -> None:
    for name in ("queue_empty", "reconcile"):
        expected = inspect.signature(getattr(ConsumerPool, name))
        assert inspect.signature(getattr(ProcessConsumerPool, name)) == expected


@pytest.mark.parametrize("manager_module", ["runner_manager", "openstack_backend.manager"])
def test_runner_managers_never_import_the_consumer_factory(manager_module: str) -> None:
    # A manager imports the pool, downwards; what imports the manager back is not loaded.
    code = f"import sys, {manager_module}; print(' '.join(sorted(sys.modules)))"
    env_path = [p for p in sys.path if p]
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path!r}; {code}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(result.stdout.split())
    assert "reactive.pool" in loaded
    assert "reactive.factory" not in loaded
    assert "reactive.runner" not in loaded


def test_manager_builds_the_process_pool_only_in_reactive_mode(tmp_path: Path) -> None:
    pool = manager(tmp_path)._pool
    assert isinstance(pool, ProcessConsumerPool)
    assert pool.processes.queue_name == "gh"
    assert "pw" not in repr(pool)
    assert "ghp_" not in repr(pool)
    assert manager(tmp_path, reactive=False)._pool is None


def process_pool(tmp_path: Path, mq_uri: str, queue: str) -> ProcessConsumerPool:
    processes = ReactiveRunnerConfig(mq_uri, queue, user=None)
    settings = RunnerManagerSettings(state_dir=tmp_path)
    return ProcessConsumerPool(processes, "gh", 3, manager_config(), settings)


def test_process_pool_reads_the_queue(tmp_path: Path) -> None:
    pool = process_pool(tmp_path, "memory://", "pool-test-queue")
    assert pool.queue_empty()
    publish_job("memory://", "pool-test-queue", b"{}")
    assert not pool.queue_empty()


def test_process_pool_keeps_idle_runners_when_the_broker_is_down(tmp_path: Path) -> None:
    pool = process_pool(tmp_path, "amqp://guest:guest@127.0.0.1:9//", "gh")  # nothing listens
    assert pool.queue_empty() is False, "unknown means not empty: idle runners are kept"


# --- reconcile with a pool --------------------------------------------------------------------


def test_reactive_reconcile_creates_nothing_and_keeps_the_ceiling_in_consumers(
    tmp_path: Path, lxd: CountingLxd, github: FakeGithub
) -> None:
    pool = FakeConsumerPool()
    assert pooled_manager(tmp_path, lxd, github, pool).reconcile(3, RES) == 0
    assert lxd.instances == {}
    assert pool.reconciled == [3]


def test_jobs_waiting_keep_idle_runners(
    tmp_path: Path, lxd: CountingLxd, github: FakeGithub
) -> None:
    runner(lxd, github, "stale000", timedelta(minutes=30))
    runner(lxd, github, "stale001", timedelta(minutes=30))
    pool = FakeConsumerPool(waiting=1)
    pooled_manager(tmp_path, lxd, github, pool).reconcile(3, RES)
    assert len(lxd.instances) == 2
    assert pool.reconciled == [1]


def test_empty_queue_deletes_idle_runners_past_the_grace_observing_once(
    tmp_path: Path, lxd: CountingLxd, github: FakeGithub
) -> None:
    runner(lxd, github, "stale000", GRACE + timedelta(minutes=1))
    runner(lxd, github, "fresh000", GRACE - timedelta(minutes=1))  # made for a job: not yet
    runner(lxd, github, "busy0000", timedelta(hours=1), busy=True)
    lxd.add_instance("gh-0-booting0", age=timedelta(seconds=10))  # not registered yet
    pool = FakeConsumerPool(waiting=0)
    manager = pooled_manager(tmp_path, lxd, github, pool)
    assert manager.reconcile(5, RES) == 0
    assert manager.last_report.deleted == {"gh-0-stale000": "surplus"}
    assert sorted(lxd.instances) == ["gh-0-booting0", "gh-0-busy0000", "gh-0-fresh000"]
    assert pool.reconciled == [5 - 3], "consumers = ceiling - runners alive after the change"
    assert github.calls.count("list_runners") == 1, "GitHub is observed once"
    assert lxd.lists == 1, "LXD is observed once"
    assert pool.queue_checks == 1


def test_lowered_ceiling_starts_no_consumer_beyond_it(
    tmp_path: Path, lxd: CountingLxd, github: FakeGithub
) -> None:
    for n in range(3):
        runner(lxd, github, f"fresh00{n}", timedelta(minutes=1))
    pool = FakeConsumerPool(waiting=1)
    manager = pooled_manager(tmp_path, lxd, github, pool)
    assert manager.reconcile(1, RES) == -2
    assert len(lxd.instances) == 1
    assert pool.reconciled == [0], "1 runner alive under a ceiling of 1: no consumer"


def test_consumer_failure_is_not_hidden(
    tmp_path: Path, lxd: CountingLxd, github: FakeGithub
) -> None:
    class FailingPool(FakeConsumerPool):
        def reconcile(self, quantity: int) -> int:
            raise errors.ReactiveRunnerError("cannot start a reactive runner")

    with pytest.raises(errors.ReactiveRunnerError):
        pooled_manager(tmp_path, lxd, github, FailingPool()).reconcile(1, RES)


# --- what the consumers rebuild the manager from ----------------------------------------------


def test_settings_round_trip(tmp_path: Path) -> None:
    settings = RunnerManagerSettings(
        state_dir=tmp_path, runner_network="tn1", reactive_idle_grace=timedelta(seconds=42)
    )
    data = settings_to_json(settings)
    json.dumps(data)  # plain JSON types
    assert settings_from_json(data) == settings


def test_consumers_rebuild_the_same_manager(tmp_path: Path) -> None:
    original = manager(tmp_path)
    section = json.loads(json.dumps(manager_section("gh", 3, original.config, original.settings)))
    assert section["charm_state"]["token"] == "ghp_test_token", "the consumer needs the token"
    spawner, checker = reactive_components(section)
    rebuilt = spawner.manager  # type: ignore[attr-defined]
    assert (rebuilt.app_name, rebuilt.unit, rebuilt.prefix) == ("gh", 3, "gh-3-")
    assert rebuilt.settings == original.settings
    assert rebuilt.config.charm_state == original.config.charm_state
    assert rebuilt.config.reactive_config == original.config.reactive_config
    assert checker is rebuilt.github_client
    assert "pw" not in repr(rebuilt.config)


@pytest.mark.parametrize("broken", ["image", "charm_state", "settings"])
def test_a_broken_section_is_refused_without_its_secrets(tmp_path: Path, broken: str) -> None:
    original = manager(tmp_path)
    section = manager_section("gh", 3, original.config, original.settings)
    if broken == "image":
        del section["image"]
    elif broken == "charm_state":
        section["charm_state"] = {**section["charm_state"], "path": 5}
    else:
        section["settings"] = {**section["settings"], "lock_timeout": "soon"}
    with pytest.raises(errors.ReactiveRunnerError) as caught:
        parse_manager_section(section)
    assert "ghp_" not in str(caught.value)


def test_reactive_config_only_in_reactive_mode(tmp_path: Path) -> None:
    settings = RunnerManagerSettings(state_dir=tmp_path / "state")
    assert reactive_runner_config(manager_config(reactive=False), settings) is None
    config = reactive_runner_config(manager_config(), settings)
    assert config is not None
    assert (config.queue_name, config.user) == ("gh", None)
    assert config.config_path == tmp_path / "state" / "reactive-runner.json"
    assert "pw" not in repr(config)
