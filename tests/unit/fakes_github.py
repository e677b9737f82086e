"""Fake of the GitHub seam (``github_api.seam.GithubPlatform``): records, JIT configs, jobs."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import errors
from github_api.types import (
    GitHubPath,
    GitHubRepo,
    GitHubRunnerStatus,
    JITConfig,
    JobInfo,
    JobStatus,
    RegistrationToken,
    RunnerApplication,
    SelfHostedRunner,
)


@dataclass
class FakeRecord:
    id: int
    name: str
    labels: tuple[str, ...]
    online: bool = False
    busy: bool = False


class FakeGithub:
    """Holds runner records like GitHub, with switchable failures (a ``GithubPlatform``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[int, FakeRecord] = {}
        self._ids = itertools.count(1)
        self.calls: list[str] = []
        self.fail_list: Exception | None = None
        self.fail_jit: Exception | None = None
        self.jobs: dict[int, list[JobInfo]] = {}
        self.jobs_by_url: dict[str, JobInfo] = {}
        self.version = "2.330.0"

    def _call(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)

    def list_runners(self, path: GitHubPath, prefix: str) -> list[SelfHostedRunner]:
        self._call("list_runners")
        if self.fail_list:
            raise self.fail_list
        return [
            SelfHostedRunner(
                id=r.id,
                name=r.name,
                status=GitHubRunnerStatus.ONLINE if r.online else GitHubRunnerStatus.OFFLINE,
                busy=r.busy,
                labels=r.labels,
            )
            for r in self.records.values()
            if r.name.startswith(prefix)
        ]

    def by_name(self, name: str) -> FakeRecord | None:
        return next((r for r in self.records.values() if r.name == name), None)

    def add_record(self, name: str, online: bool = True, busy: bool = False) -> FakeRecord:
        rec = FakeRecord(next(self._ids), name, ("self-hosted",), online, busy)
        self.records[rec.id] = rec
        return rec

    def delete_runner(self, path: GitHubPath, runner_id: int, runner_name: str = "") -> None:
        self._call("delete_runner")
        with self.lock:
            rec = self.records.get(runner_id)
            if rec is None:
                return
            if rec.busy:
                raise errors.RunnerBusyError(runner_name or rec.name)
            del self.records[runner_id]

    def get_jit_config(self, path: GitHubPath, name: str, labels: Iterable[str]) -> JITConfig:
        self._call("get_jit_config")
        if self.fail_jit:
            raise self.fail_jit
        with self.lock:
            if any(r.name == name for r in self.records.values()):
                raise errors.GithubConflictError("exists", status=409)
            rec = FakeRecord(next(self._ids), name, tuple(labels))
            self.records[rec.id] = rec
        return JITConfig(runner_id=rec.id, encoded_jit_config=f"jit-{rec.id}")

    def get_registration_token(self, path: GitHubPath) -> RegistrationToken:
        self._call("get_registration_token")
        return RegistrationToken("reg-token", datetime.now(timezone.utc) + timedelta(hours=1))

    def get_runner_application(
        self, path: GitHubPath, os_name: str = "linux", arch: str = "x64"
    ) -> RunnerApplication:
        self._call("get_runner_application")
        return RunnerApplication(
            os=os_name,
            architecture=arch,
            download_url="http://127.0.0.1:1/runner.tar.gz",
            filename=f"actions-runner-{os_name}-{arch}-{self.version}.tar.gz",
        )

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        self._call("list_jobs_of_run")
        return self.jobs.get(run_id, [])

    def list_queued_jobs(self, path: GitHubRepo, max_runs: int = 10) -> list[JobInfo]:
        self._call("list_queued_jobs")
        if self.fail_list:
            raise self.fail_list
        runs = [self.jobs[run_id] for run_id in sorted(self.jobs, reverse=True)][:max_runs]
        return [job for jobs in runs for job in jobs if job.status is JobStatus.QUEUED]

    def get_job_by_url(self, url: str) -> JobInfo:
        self._call("get_job_by_url")
        info = self.jobs_by_url.get(url)
        if info is None:
            raise errors.GithubNotFoundError(f"GET {url}: not found", status=404)
        return info
