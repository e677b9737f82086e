"""The reconcile's safety net: queued jobs no webhook brought are enqueued once, bounded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import errors
from github_api.queued_jobs import list_queued_jobs
from github_api.types import GitHubOrg, GitHubRepo, JobInfo, JobStatus
from manager.job_safety_net import JobSafetyNet, SafetyNetSettings
from reactive.message import JobDetails
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.fakes_reactive import FakeConsumerPool
from tests.unit.test_warm_floor import RES, pooled

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
API = "https://api.github.com"
REPO = GitHubRepo(owner="octo", repo="app")


@dataclass
class MemoryLedger:
    """The ledger contract (``intake.ledger.JobLedger``) in memory."""

    claimed: set[int] = field(default_factory=set)
    released: list[int] = field(default_factory=list)
    confirmed: set[int] = field(default_factory=set)

    def claim(self, job_id: int, delivery_id: str | None = None) -> bool:
        if job_id in self.claimed:
            return False
        self.claimed.add(job_id)
        return True

    def confirm(self, job_id: int) -> None:
        assert job_id in self.claimed
        self.confirmed.add(job_id)

    def release(self, job_id: int) -> None:
        self.claimed.discard(job_id)
        self.released.append(job_id)


@dataclass
class Broker:
    """Records published messages; fails the next ``failures`` publishes."""

    published: list[tuple[str, JobDetails]] = field(default_factory=list)
    failures: int = 0

    def __call__(
        self, mq_uri: str, queue_name: str, message: JobDetails, timeout: float = 10.0
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise errors.QueueError("broker did not confirm")
        self.published.append((queue_name, message))


def job(
    job_id: int,
    age: timedelta,
    labels: tuple[str, ...] = ("self-hosted", "fast"),
    status: JobStatus = JobStatus.QUEUED,
) -> JobInfo:
    return JobInfo(
        id=job_id,
        status=status,
        conclusion=None,
        created_at=NOW - age,
        started_at=None,
        runner_name=None,
        labels=labels,
    )


def ours(labels: Sequence[str]) -> bool:
    return {label.lower() for label in labels} <= {"self-hosted", "linux", "x64", "fast"}


def net(github: FakeGithub, ledger: MemoryLedger, broker: Broker, **kw: object) -> JobSafetyNet:
    return JobSafetyNet(
        github=github,
        path=kw.pop("path", REPO),  # type: ignore[arg-type]
        api_url=API,
        ledger=ledger,
        publish=broker,
        mq_uri="amqp://u:pw@127.0.0.1//",
        queue_name="gh",
        routes=ours,
        settings=SafetyNetSettings(grace=timedelta(seconds=30), max_runs=2),
        clock=lambda: NOW,
    )


def test_old_unseen_routed_jobs_are_enqueued_once() -> None:
    github, ledger, broker = FakeGithub(), MemoryLedger(), Broker()
    github.jobs[1] = [
        job(11, timedelta(minutes=2)),
        job(12, timedelta(seconds=5)),  # young: its webhook normally wins
        job(13, timedelta(minutes=2), labels=("self-hosted", "gpu")),  # another flavor's
        job(14, timedelta(minutes=2), status=JobStatus.IN_PROGRESS),
    ]
    ledger.claimed.add(15)  # the intake enqueued it
    github.jobs[2] = [job(15, timedelta(minutes=3))]
    sweeper = net(github, ledger, broker)
    report = sweeper.sweep()
    assert report.enqueued == [11]
    assert (report.young, report.unrouted, report.seen) == (1, 1, 1)
    urls = sorted(message.url for _, message in broker.published)
    assert urls == [f"{API}/repos/octo/app/actions/jobs/11"]  # 15 was the intake's
    assert broker.published[0][0] == "gh"
    assert list(broker.published[0][1].labels) == ["self-hosted", "fast"]
    again = sweeper.sweep()
    assert again.enqueued == [] and again.seen == 2, "a job is enqueued once"
    assert len(broker.published) == 1


def test_failed_publish_releases_the_claim_and_the_next_sweep_retries() -> None:
    github, ledger, broker = FakeGithub(), MemoryLedger(), Broker(failures=1)
    github.jobs[1] = [job(21, timedelta(minutes=2))]
    sweeper = net(github, ledger, broker)
    assert sweeper.sweep().failed == [21]
    assert ledger.released == [21] and 21 not in ledger.claimed
    assert sweeper.sweep().enqueued == [21]


def test_cost_is_bounded_by_max_runs() -> None:
    github, ledger, broker = FakeGithub(), MemoryLedger(), Broker()
    for run in range(1, 6):
        github.jobs[run] = [job(100 + run, timedelta(minutes=5))]
    report = net(github, ledger, broker).sweep()
    assert sorted(report.enqueued) == [104, 105], "the newest max_runs=2 runs only"


def test_organisation_path_sweeps_nothing() -> None:
    github, ledger, broker = FakeGithub(), MemoryLedger(), Broker()
    github.jobs[1] = [job(31, timedelta(minutes=2))]
    org = GitHubOrg(org="octo", group="default")
    assert net(github, ledger, broker, path=org).sweep().listed == 0
    assert "list_queued_jobs" not in github.calls


def test_reconcile_sweeps_before_judging_the_queue(tmp_path: Path) -> None:
    github, ledger, broker = FakeGithub(), MemoryLedger(), Broker()
    github.jobs[1] = [job(41, timedelta(minutes=2))]
    manager = pooled(tmp_path, FakeLxd(), github, FakeConsumerPool())
    manager._reactive.net = net(github, ledger, broker)  # type: ignore[union-attr]
    manager.reconcile(2, RES)
    assert [m.url for _, m in broker.published] == [f"{API}/repos/octo/app/actions/jobs/41"]


def test_github_failure_does_not_fail_the_reconcile(tmp_path: Path) -> None:
    github, pool = FakeGithub(), FakeConsumerPool()
    manager = pooled(tmp_path, FakeLxd(), github, pool)
    manager._reactive.net = net(github, MemoryLedger(), Broker())  # type: ignore[union-attr]
    calls = 0

    def failing(path: GitHubRepo, max_runs: int = 10) -> list[JobInfo]:
        nonlocal calls
        calls += 1
        raise errors.GithubApiError("GET runs: 502", status=502)

    github.list_queued_jobs = failing  # type: ignore[method-assign]
    manager.reconcile(2, RES)
    assert calls == 1
    assert pool.reconciled == [2]


@pytest.mark.parametrize("max_runs", [0, 101])
def test_client_refuses_unbounded_sweeps(max_runs: int) -> None:
    with pytest.raises(ValueError, match="max_runs"):
        list_queued_jobs(None, REPO, max_runs)  # type: ignore[arg-type]
