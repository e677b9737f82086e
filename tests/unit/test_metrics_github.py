"""metrics.github.job: find the runner's job among the jobs of the run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from errors import GithubApiError
from github_api.types import GitHubRepo, JobInfo, JobStatus
from metrics.github import GithubJobMetrics, job
from metrics.type import PreJobMetrics

SERVED = GitHubRepo("owner", "repo")
CREATED = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
PRE = PreJobMetrics(
    timestamp=1_763_884_800,
    workflow="CI",
    workflow_run_id=77,
    repository="owner/repo",
    event="push",
)


def job_info(job_id: int, runner: str | None, started: timedelta | None) -> JobInfo:
    return JobInfo(
        id=job_id,
        status=JobStatus.COMPLETED,
        conclusion="success",
        created_at=CREATED,
        started_at=CREATED + started if started is not None else None,
        runner_name=runner,
    )


class FakeClient:
    def __init__(self, jobs: list[JobInfo] | None = None, error: Exception | None = None) -> None:
        self.jobs = jobs or []
        self.error = error
        self.calls: list[tuple[GitHubRepo, int]] = []

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        self.calls.append((path, run_id))
        if self.error:
            raise self.error
        return self.jobs


def test_finds_the_runners_job() -> None:
    client = FakeClient(
        [job_info(1, "other", timedelta(seconds=1)), job_info(2, "me", timedelta(seconds=12.5))]
    )
    assert job(client, PRE, "me", served=SERVED) == GithubJobMetrics(
        queue_duration=12.5, conclusion="success"
    )
    assert client.calls == [(GitHubRepo("owner", "repo"), 77)]


def test_negative_queue_duration_is_clamped() -> None:
    client = FakeClient([job_info(2, "me", timedelta(seconds=-3))])
    result = job(client, PRE, "me", served=SERVED)
    assert result is not None and result.queue_duration == 0.0


def test_not_found() -> None:
    assert job(FakeClient([job_info(1, "other", timedelta(1))]), PRE, "me", served=SERVED) is None


def test_not_started() -> None:
    assert job(FakeClient([job_info(1, "me", None)]), PRE, "me", served=SERVED) is None


def test_github_error() -> None:
    assert (
        job(FakeClient(error=GithubApiError("boom", status=502)), PRE, "me", served=SERVED) is None
    )


def test_the_real_client_fits_the_protocol() -> None:
    import inspect

    from github_api.client import GithubClient
    from metrics.github import JobsOfRunClient

    expected = inspect.signature(JobsOfRunClient.list_jobs_of_run)
    actual = inspect.signature(GithubClient.list_jobs_of_run)
    assert list(actual.parameters) == list(expected.parameters)
