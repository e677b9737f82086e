"""Listing the queued jobs of a repository, for the reconcile's safety net, at a bounded cost.

GitHub has no "queued jobs" list: the jobs are read run by run. The runs come from
``GET /repos/{owner}/{repo}/actions/runs?status=queued`` then ``?status=in_progress`` (a run
with one job started and others still waiting, a matrix beyond capacity, is ``in_progress``),
one page each of at most ``max_runs`` runs, newest first, then
``GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs`` for each run, until ``max_runs`` runs
were read: at most ``2 + max_runs`` requests (plus one per further 100 jobs of a run).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from github_api.pagination import pages
from github_api.parse import job_from_json, json_int, malformed
from github_api.retry import Retrier
from github_api.types import GitHubRepo, JobInfo, JobStatus

RUN_STATUSES = ("queued", "in_progress")


def list_queued_jobs(retrier: Retrier, path: GitHubRepo, max_runs: int) -> list[JobInfo]:
    """Return the jobs GitHub shows queued in the newest waiting runs of a repository.

    Args:
        retrier: Sends each request.
        path: The repository.
        max_runs: The most runs whose jobs are read (1 to 100).

    Returns:
        The queued jobs, newest run first.

    Raises:
        ValueError: If ``max_runs`` is out of range.
        GithubApiError: If an answer is malformed.
    """
    if not 1 <= max_runs <= 100:
        raise ValueError("max_runs must be 1 to 100")
    base = f"/repos/{quote(path.owner, safe='')}/{quote(path.repo, safe='')}/actions/runs"
    budget = retrier.budget()
    run_ids: list[int] = []
    for status in RUN_STATUSES:
        if len(run_ids) >= max_runs:
            break
        params = {
            "status": status,
            "per_page": max_runs - len(run_ids),
            "page": 1,
            "exclude_pull_requests": "true",
        }
        data = retrier.request("GET", base, path, budget, params=params)
        run_ids.extend(i for i in _run_ids(data) if i not in run_ids)
    jobs: dict[int, JobInfo] = {}
    for run_id in run_ids[:max_runs]:
        url = f"{base}/{run_id}/jobs"
        for page in pages(retrier, url, path, budget, key="jobs", parse=job_from_json):
            for job in page:
                if job.status is JobStatus.QUEUED:
                    jobs.setdefault(job.id, job)
    return list(jobs.values())


def _run_ids(data: Any) -> list[int]:
    try:
        runs = data["workflow_runs"]
        if not isinstance(runs, list):
            raise TypeError("workflow_runs is not a list")
        return [json_int(run["id"]) for run in runs]
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed("workflow runs list", exc) from exc
