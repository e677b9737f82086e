"""The consumer looks at the unit's runners: a spawned runner that took another job, a warm one.

GitHub gives a queued job to any idle runner whose labels match. The fleet here is a fake GitHub
(jobs and runners) that is also the spawner and the watcher; each job check moves its world on
one step (``on_check``), so a test scripts what GitHub does between two looks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import errors
from github_api.types import GitHubRunnerStatus, JobInfo, JobStatus, SelfHostedRunner
from reactive.consumer import ConsumerSettings, JobConsumer, Outcome
from reactive.factory import view_of
from reactive.types import (
    GithubJobChecker,
    RunnerActivity,
    RunnerSpawner,
    RunnerView,
    RunnerWatcher,
)
from tests.unit.fakes_reactive import job_info

URL = "https://api.github.com/repos/octo/app/actions/jobs/{}"
ONLINE, OFFLINE = GitHubRunnerStatus.ONLINE, GitHubRunnerStatus.OFFLINE


@dataclass
class Fleet:
    """Jobs and runners as GitHub shows them; spawns runners; a step of the world per check."""

    jobs: dict[int, JobStatus] = field(default_factory=dict)
    runners: dict[str, SelfHostedRunner] = field(default_factory=dict)
    on_check: Callable[[Fleet, int], None] = lambda fleet, check: None
    watch_errors: int = 0
    spawned: list[str] = field(default_factory=list)
    checks: int = 0
    watches: int = 0

    def get_job_by_url(self, url: str) -> JobInfo:
        self.checks += 1
        self.on_check(self, self.checks)
        job_id = int(url.rsplit("/", 1)[1])
        return job_info(job_id, self.jobs[job_id])

    def spawn_one(self) -> str:
        name = f"app-0-{len(self.spawned)}"
        self.spawned.append(name)
        self.add(name, OFFLINE)
        return name

    def watch(self, name: str | None) -> RunnerView:
        self.watches += 1
        if self.watch_errors:
            self.watch_errors -= 1
            raise errors.GithubClientError("runners unavailable", status=503)
        return view_of(self.runners.values(), name)

    def add(self, name: str, status: GitHubRunnerStatus, busy: bool = False) -> None:
        self.runners[name] = SelfHostedRunner(len(self.runners) + 1, name, status, busy)

    def take(self, name: str, job_id: int | None) -> None:
        """Runner ``name`` starts a job (``job_id``, or one no delivery is about)."""
        self.add(name, ONLINE, busy=True)
        if job_id is not None:
            self.jobs[job_id] = JobStatus.IN_PROGRESS


_CHECKER: GithubJobChecker = Fleet()
_SPAWNER: RunnerSpawner = Fleet()
_WATCHER: RunnerWatcher = Fleet()


def consumer(fleet: Fleet, **overrides: Any) -> JobConsumer:
    values: dict[str, Any] = {
        "pickup_timeout": 30.0,
        "pickup_poll_initial": 0.01,
        "pickup_poll_max": 0.02,
        "warm_grace": 5.0,
        **overrides,
    }
    return JobConsumer("memory://", ConsumerSettings("app", **values), fleet, fleet)


def body(job_id: int) -> str:
    return json.dumps({"labels": ["self-hosted"], "url": URL.format(job_id)})


# --- the view, pure -----------------------------------------------------------------------------


def test_view_counts_the_other_runners_by_what_they_can_take() -> None:
    runners = [
        SelfHostedRunner(1, "mine", ONLINE, busy=True),
        SelfHostedRunner(2, "idle", ONLINE, busy=False),
        SelfHostedRunner(3, "booting", OFFLINE, busy=False),
        SelfHostedRunner(4, "working", ONLINE, busy=True),
    ]
    assert view_of(runners, "mine") == RunnerView(RunnerActivity.BUSY, 1, 1)
    assert view_of(runners, "booting") == RunnerView(RunnerActivity.WAITING, 1, 0)
    assert view_of(runners, "left") == RunnerView(RunnerActivity.GONE, 1, 1)
    assert view_of([], None) == RunnerView(RunnerActivity.GONE, 0, 0)


def test_taken_elsewhere_requeues() -> None:
    assert Outcome.RUNNER_TAKEN_ELSEWHERE.settlement == "requeue"


# --- the spawned runner took another job ---------------------------------------------------------


@pytest.mark.parametrize("after", ["busy", "gone"])
def test_runner_that_took_another_job_gets_the_delivery_requeued_at_once(after: str) -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 3:  # our runner came online and took a job whose webhook was lost
            fleet.take("app-0-0", None)
            if after == "gone":  # ... ran it and removed itself
                del fleet.runners["app-0-0"]

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    verdict = consumer(fleet).decide(body(1))
    assert verdict.outcome == Outcome.RUNNER_TAKEN_ELSEWHERE
    assert verdict.runner_name == "app-0-0"
    assert fleet.checks == 3  # the first look after the swap, not the 30 s pickup timeout
    assert fleet.spawned == ["app-0-0"]


def test_redelivery_after_the_swap_spawns_one_fresh_runner_that_takes_the_job() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 2:
            fleet.take("app-0-0", None)
        if check == 4:  # the fresh runner takes this job
            fleet.take("app-0-1", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    jobs = consumer(fleet)
    assert jobs.decide(body(1)).outcome == Outcome.RUNNER_TAKEN_ELSEWHERE
    assert jobs.decide(body(1)).outcome == Outcome.PICKED_UP
    assert fleet.spawned == ["app-0-0", "app-0-1"]


@pytest.mark.parametrize("other", [OFFLINE, ONLINE])
def test_a_swap_with_another_runner_waiting_spawns_nothing_more(other: GitHubRunnerStatus) -> None:
    # Jobs 1 and 2 each got a runner; GitHub gave job 2 to ours, job 1 goes to the other one.
    def world(fleet: Fleet, check: int) -> None:
        if check == 2:
            fleet.take("app-0-0", 2)
            fleet.add("app-0-9", other)
        if check == 6:
            fleet.take("app-0-9", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED, 2: JobStatus.QUEUED}, on_check=world)
    verdict = consumer(fleet, warm_grace=0).decide(body(1))
    assert verdict.outcome == Outcome.PICKED_UP
    assert fleet.spawned == ["app-0-0"]


def test_runner_listing_failures_fall_back_to_the_job_alone() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 4:
            fleet.take("app-0-0", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world, watch_errors=100)
    assert consumer(fleet).decide(body(1)).outcome == Outcome.PICKED_UP
    assert fleet.watches > 1 and fleet.spawned == ["app-0-0"]


def test_a_spawner_that_does_not_watch_keeps_the_old_rules() -> None:
    @dataclass
    class Blind:
        fleet: Fleet

        def spawn_one(self) -> str:
            return self.fleet.spawn_one()

    def world(fleet: Fleet, check: int) -> None:
        if check == 2:
            fleet.take("app-0-0", None)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    settings = ConsumerSettings("app", pickup_timeout=0.1, pickup_poll_initial=0.01)
    verdict = JobConsumer("memory://", settings, fleet, Blind(fleet)).decide(body(1))
    assert verdict.outcome == Outcome.NOT_PICKED_UP
    assert fleet.watches == 0


# --- a warm runner online ---------------------------------------------------------------------


def test_job_a_warm_runner_takes_during_the_grace_gets_no_runner() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 3:
            fleet.take("app-0-warm", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    fleet.add("app-0-warm", ONLINE)
    assert consumer(fleet).decide(body(1)).outcome == Outcome.ALREADY_TAKEN
    assert fleet.spawned == []


def test_warm_runner_taking_another_job_ends_the_grace_at_once() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 2:
            fleet.take("app-0-warm", 7)
        if check == 5:
            fleet.take("app-0-0", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED, 7: JobStatus.QUEUED}, on_check=world)
    fleet.add("app-0-warm", ONLINE)
    jobs = consumer(fleet, warm_grace=60.0)
    assert jobs.decide(body(1)).outcome == Outcome.PICKED_UP
    assert fleet.spawned == ["app-0-0"]
    assert fleet.checks == 5  # no 60 s wait: the spawn came on the look after the idle one left


def test_grace_ends_with_a_spawn_when_the_idle_runner_does_not_take_the_job() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if "app-0-0" in fleet.runners:
            fleet.take("app-0-0", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    fleet.add("app-0-stuck", ONLINE)  # online and idle, but never given the job
    verdict = consumer(fleet, warm_grace=0.1).decide(body(1))
    assert verdict.outcome == Outcome.PICKED_UP
    assert fleet.spawned == ["app-0-0"]


def test_no_idle_runner_spawns_without_a_grace() -> None:
    def world(fleet: Fleet, check: int) -> None:
        if check == 2:
            fleet.take("app-0-0", 1)

    fleet = Fleet(jobs={1: JobStatus.QUEUED}, on_check=world)
    fleet.add("app-0-booting", OFFLINE)  # made for another job: not one to wait for
    assert consumer(fleet, warm_grace=60.0).decide(body(1)).outcome == Outcome.PICKED_UP
    assert fleet.checks == 2 and fleet.spawned == ["app-0-0"]
