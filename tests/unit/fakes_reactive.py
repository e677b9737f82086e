"""Fakes of the reactive seams: the consumer pool, and a consumer's GitHub jobs and spawner."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from config.settings import RunnerManagerSettings
from errors import GithubClientError, GithubNotFoundError
from github_api.types import JobInfo, JobStatus
from reactive.manager_section import manager_section
from reactive.pool import ConsumerPool
from reactive.types import GithubJobChecker, RunnerSpawner
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_core import make_state

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


class FakeConsumerPool:
    """Records what the reconcile asks of the consumers; the queue is as the test sets it.

    Attributes:
        waiting: Jobs waiting in the queue.
        consumers: The consumer count the last reconcile kept.
        reconciled: Every consumer count asked for, in order.
        queue_checks: How many times the queue was looked at.
    """

    def __init__(self, waiting: int = 0) -> None:
        self.waiting = waiting
        self.consumers = 0
        self.reconciled: list[int] = []
        self.queue_checks = 0

    def queue_empty(self) -> bool:
        self.queue_checks += 1
        return self.waiting == 0

    def reconcile(self, quantity: int) -> int:
        delta = quantity - self.consumers
        self.consumers = quantity
        self.reconciled.append(quantity)
        return delta


def job_info(job_id: int, status: JobStatus, runner: str | None = None) -> JobInfo:
    return JobInfo(
        id=job_id,
        status=status,
        conclusion=None,
        created_at=NOW,
        started_at=NOW if status != JobStatus.QUEUED else None,
        runner_name=runner,
    )


@dataclass
class FakeJobs:
    """GitHub's jobs and a runner spawner in one (a ``GithubJobChecker`` and a ``RunnerSpawner``).

    Jobs by id; a spawned runner takes the last checked job after ``pickup_after`` checks; the
    checks fail with ``errors`` first, in order.
    """

    statuses: dict[int, JobStatus] = field(default_factory=dict)
    errors: list[GithubClientError] = field(default_factory=list)
    pickup_after: int | None = 1
    checks: list[str] = field(default_factory=list)
    spawned: list[str] = field(default_factory=list)
    _pending: dict[int, int] = field(default_factory=dict)
    _last_id: int = 0

    def get_job_by_url(self, url: str) -> JobInfo:
        self.checks.append(url)
        if self.errors:
            raise self.errors.pop(0)
        job_id = int(url.rsplit("/", 1)[1])
        self._last_id = job_id
        if job_id not in self.statuses:
            raise GithubNotFoundError("no such job", status=404)
        if job_id in self._pending:
            self._pending[job_id] -= 1
            if self._pending[job_id] <= 0:
                del self._pending[job_id]
                self.statuses[job_id] = JobStatus.IN_PROGRESS
        return job_info(job_id, self.statuses[job_id])

    def spawn_one(self) -> str:
        name = f"runner-{len(self.spawned)}"
        self.spawned.append(name)
        if self.pickup_after is not None:
            self._pending[self._last_id] = self.pickup_after
        return name


def real_section(state_dir: Path) -> dict[str, Any]:
    """What a reconcile writes for the consumers: they rebuild a real RunnerManager from it."""
    state = make_state()
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=state_dir / "lxd",
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
    )
    settings = RunnerManagerSettings(
        state_dir=state_dir,
        metrics_storage_dir=state_dir / "stores",
        quarantine_dir=state_dir / "quarantine",
        runner_log_dir=state_dir / "logs",
    )
    return manager_section("test-app", 0, config, settings)


def write_consumer_config(path: Path, section: Any = None, **extra: Any) -> Path:
    """Write a consumers' config file: quick consumer settings and ``section`` (a marker)."""
    data = {
        "consumer": {"receive_timeout": 0.2, "poll_interval": 0.1},
        "runner_manager": {"marker": "ok"} if section is None else section,
        **extra,
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# mypy checks that the fakes satisfy the seams.
_POOL: ConsumerPool = FakeConsumerPool()
_CHECKER: GithubJobChecker = FakeJobs()
_SPAWNER: RunnerSpawner = FakeJobs()
