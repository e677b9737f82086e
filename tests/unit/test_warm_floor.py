"""Reactive mode's warm floor: idle runners kept under on-demand ones, never past the ceiling."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import ReactiveConfig
from github_api.types import JobStatus
from manager.warm_floor import ceiling_of, consumers_for, floor_target
from reactive.consumer import ConsumerSettings, JobConsumer, Outcome
from reconcile_plan import InstanceState, InstanceView, Runner, RunnerState
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy, make_state, runner_tarball
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.fakes_reactive import FakeConsumerPool, FakeJobs

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB")
GRACE = timedelta(minutes=5)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
JOB_URL = "https://api.github.com/repos/octo/app/actions/jobs/{}"


def judged(*states: RunnerState) -> list[Runner]:
    view = InstanceView("x", InstanceState.RUNNING, NOW)
    return [Runner(f"r{i}", state, view, None) for i, state in enumerate(states)]


# --- the pure counts ----------------------------------------------------------------------------


def test_unset_max_total_keeps_virtual_machines_as_the_ceiling() -> None:
    assert ceiling_of(4, 0) == 4
    assert ceiling_of(4, 9) == 9


@pytest.mark.parametrize(
    ("states", "base", "ceiling", "desired"),
    [
        ((), 0, 5, 0),  # no floor: reactive as before, never create
        ((RunnerState.IDLE, RunnerState.STARTING), 0, 5, 2),  # ... and keep what is there
        ((RunnerState.IDLE,) * 4, 0, 2, 2),  # ... down to the ceiling
        ((), 2, 5, 2),  # the floor is created
        ((RunnerState.BUSY,) * 3, 2, 5, 5),  # on top of the busy runners
        ((RunnerState.BUSY,) * 4, 2, 5, 5),  # never past the ceiling
        ((RunnerState.BUSY,) * 5, 2, 5, 5),
        ((RunnerState.IDLE,) * 3, 2, 5, 3),  # runners made for jobs are not scaled down
        ((RunnerState.UNHEALTHY,), 1, 5, 1),  # unhealthy runners count for nothing
    ],
)
def test_floor_target(
    states: tuple[RunnerState, ...], base: int, ceiling: int, desired: int
) -> None:
    target = floor_target(judged(*states), base, ceiling)
    assert target.desired == desired
    assert target.floor == min(base, ceiling)


def test_consumers_fill_the_ceiling_only() -> None:
    assert consumers_for(5, 2) == 3
    assert consumers_for(2, 3) == 0


# --- the reconcile ------------------------------------------------------------------------------


def pooled(
    tmp_path: Path, lxd: FakeLxd, github: FakeGithub, pool: FakeConsumerPool, **options: int
) -> RunnerManager:
    state = make_state(
        reactive_config=ReactiveConfig(
            mq_uri=SecretStr("amqp://u:pw@127.0.0.1//"), queue_name="gh"
        ),
        **options,
    )
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
        reactive_config=state.reactive_config,
    )
    settings = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
        lock_timeout=0.2,
        reactive_idle_grace=GRACE,
        clone_from_template=False,  # runners counted alone: see test_runner_template
    )
    settings.runner_bin_path.parent.mkdir(parents=True)
    runner_tarball(settings.runner_bin_path)
    clients = RunnerManagerClients(
        github=github, jinja=template_environment(), lxd=lxd, repo=FakeRepoPolicy()
    )
    return RunnerManager("gh", 0, config, clients=clients, settings=settings, consumer_pool=pool)


def runner(
    lxd: FakeLxd, github: FakeGithub, name: str, age: timedelta, busy: bool = False
) -> None:
    lxd.add_instance(f"gh-0-{name}", age=age)
    github.add_record(f"gh-0-{name}", online=True, busy=busy)


def test_floor_is_created_and_consumers_fill_the_rest(tmp_path: Path) -> None:
    lxd, github, pool = FakeLxd(), FakeGithub(), FakeConsumerPool()
    manager = pooled(tmp_path, lxd, github, pool, base_virtual_machines=2)
    assert manager.reconcile(5, RES) == 2
    assert len(manager.last_report.created) == 2
    assert len(lxd.instances) == 2
    assert pool.reconciled == [3], "ceiling 5 - 2 runners alive"


def test_busy_warm_runners_are_replaced_up_to_the_ceiling(tmp_path: Path) -> None:
    lxd, github, pool = FakeLxd(), FakeGithub(), FakeConsumerPool(waiting=1)
    for n in range(3):
        runner(lxd, github, f"busy000{n}", timedelta(minutes=10), busy=True)
    manager = pooled(
        tmp_path, lxd, github, pool, base_virtual_machines=2, max_total_virtual_machines=4
    )
    manager.reconcile(1, RES)  # virtual-machines is not the ceiling once max-total is set
    assert len(manager.last_report.created) == 1, "3 busy + 2 warm would pass the ceiling of 4"
    assert len(lxd.instances) == 4
    assert pool.reconciled == [0]


def test_empty_queue_keeps_the_floor_of_idle_runners(tmp_path: Path) -> None:
    lxd, github, pool = FakeLxd(), FakeGithub(), FakeConsumerPool(waiting=0)
    for n in range(4):
        runner(lxd, github, f"stale00{n}", GRACE + timedelta(minutes=n + 1))
    manager = pooled(tmp_path, lxd, github, pool, base_virtual_machines=2)
    manager.reconcile(5, RES)
    # The oldest two go; the two youngest stay warm; nothing is created to replace them.
    assert sorted(manager.last_report.deleted) == ["gh-0-stale002", "gh-0-stale003"]
    assert sorted(lxd.instances) == ["gh-0-stale000", "gh-0-stale001"]
    assert manager.last_report.created == []
    assert pool.reconciled == [3]


def test_without_the_new_options_reactive_mode_behaves_as_before(tmp_path: Path) -> None:
    lxd, github, pool = FakeLxd(), FakeGithub(), FakeConsumerPool(waiting=0)
    runner(lxd, github, "stale000", GRACE + timedelta(minutes=1))
    runner(lxd, github, "fresh000", GRACE - timedelta(minutes=1))
    manager = pooled(tmp_path, lxd, github, pool)
    manager.reconcile(3, RES)
    assert manager.last_report.deleted == {"gh-0-stale000": "surplus"}
    assert manager.last_report.created == []
    assert pool.reconciled == [2]


# --- a job a warm runner took gets no new runner ------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.IN_PROGRESS, JobStatus.COMPLETED])
def test_job_taken_by_a_warm_runner_is_not_queued_and_gets_no_runner(status: JobStatus) -> None:
    jobs = FakeJobs(statuses={7: status})
    consumer = JobConsumer(
        "memory://",
        ConsumerSettings(queue_name="gh", supported_labels=frozenset({"self-hosted"})),
        jobs,
        jobs,
        stop=threading.Event(),
    )
    verdict = consumer.decide(f'{{"labels": ["self-hosted"], "url": "{JOB_URL.format(7)}"}}')
    assert verdict.outcome is Outcome.ALREADY_TAKEN
    assert jobs.spawned == []
