"""Metrics GitHub knows about the job a runner ran: queue duration and conclusion."""

from __future__ import annotations

import logging
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from errors import GithubClientError
from github_api.names import parse_repository, serves
from github_api.types import GitHubPath, GitHubRepo, JobInfo
from metrics.type import PreJobMetrics

logger = logging.getLogger(__name__)


class JobsOfRunClient(Protocol):
    """The part of the GitHub client this module needs."""

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        """List the jobs of a workflow run (latest attempt, all pages).

        Args:
            path: The repository of the run.
            run_id: The workflow run id.
        """
        ...  # pragma: no cover


class GithubJobMetrics(BaseModel):
    """Metrics about a job, from GitHub.

    Attributes:
        queue_duration: Seconds the job waited between queued and started (never negative).
        conclusion: GitHub's conclusion (success, failure, cancelled...), None while running.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    queue_duration: float = Field(ge=0)
    conclusion: str | None


def job(
    github_client: JobsOfRunClient,
    pre_job_metrics: PreJobMetrics,
    runner_name: str,
    *,
    served: GitHubPath,
) -> GithubJobMetrics | None:
    """Find the job a runner ran and return its queue duration and conclusion.

    The job is the one of run ``pre_job_metrics.workflow_run_id`` in
    ``pre_job_metrics.repository`` whose ``runner_name`` is this runner. The job wrote that
    repository: GitHub is only asked when it is a name GitHub allows
    (:func:`github_api.names.parse_repository`) and the served repository or a repository of
    the served organisation; otherwise the lookup is skipped (and logged, escaped).

    Args:
        github_client: The GitHub client.
        pre_job_metrics: What the runner reported when it took the job.
        runner_name: The runner.
        served: The repository or organisation this unit serves.

    Returns:
        The job metrics, or None when the repository is refused, GitHub cannot be asked, has
        no such job, or the job has no start time (events are then issued without these
        fields).
    """
    try:
        repo = parse_repository(pre_job_metrics.repository)
    except ValueError:
        repo = None
    if repo is None or not serves(served, repo):
        logger.warning(
            "Runner %s reported repository %r, not %s: no queue time looked up",
            runner_name,
            pre_job_metrics.repository,
            served.path(),
        )
        return None
    try:
        jobs = github_client.list_jobs_of_run(repo, pre_job_metrics.workflow_run_id)
    except GithubClientError as exc:
        logger.warning(
            "Cannot list jobs of run %d in %s for %s: %s",
            pre_job_metrics.workflow_run_id,
            repo.path(),
            runner_name,
            exc,
        )
        return None
    for info in jobs:
        if info.runner_name != runner_name:
            continue
        if info.started_at is None:
            logger.info("Job %d of %s has no start time yet", info.id, runner_name)
            return None
        queued = (info.started_at - info.created_at).total_seconds()
        return GithubJobMetrics(queue_duration=max(0.0, queued), conclusion=info.conclusion)
    logger.info(
        "No job of run %d in %s ran on %s",
        pre_job_metrics.workflow_run_id,
        repo.path(),
        runner_name,
    )
    return None
