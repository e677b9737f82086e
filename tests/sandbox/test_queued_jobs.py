"""The safety net's GitHub question against the sandbox: queued jobs, at a bounded request count.

``GithubClient.list_queued_jobs`` reads ``GET /repos/{o}/{r}/actions/runs?status=...`` (checked
against sandbox/openapi/policy-subset.json) and the jobs of each run (runners-subset.json).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from github_api.client import GithubClient
from github_api.types import GitHubRepo, JobStatus
from sandbox.server import SandboxServer
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN, RO_TOKEN, queue_job
from tests.sandbox.test_policy_endpoints import PolicyChecker

REPO = GitHubRepo(owner="canonical", repo="demo")


@pytest.fixture
def checker() -> PolicyChecker:
    return PolicyChecker()


@pytest.fixture
def sandbox(checker: PolicyChecker) -> Iterator[SandboxServer]:
    server = SandboxServer(token=ADMIN_TOKEN, readonly_token=RO_TOKEN, port=0)
    server.observers.append(checker.observe)
    with server:
        yield server
    assert not checker.errors, "responses not matching the subsets:\n" + "\n".join(checker.errors)


def test_queued_jobs_of_the_newest_runs(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    first = queue_job(sandbox)
    queue_job(sandbox, run_id=first["run_id"])  # a second job of the same run
    cancelled = queue_job(sandbox)
    requests.post(
        f"{sandbox.base_url}/_sandbox/jobs/{cancelled['id']}/cancel", timeout=5
    ).raise_for_status()
    newest = queue_job(sandbox)
    queue_job(sandbox, repository="canonical/other")  # another repository's
    client = GithubClient(ADMIN_TOKEN, sandbox.api_url, timeout=5, max_wait=10)

    jobs = client.list_queued_jobs(REPO, max_runs=10)
    assert sorted(j.id for j in jobs) == sorted([first["id"], first["id"] + 1, newest["id"]])
    assert all(j.status is JobStatus.QUEUED for j in jobs)
    assert all("self-hosted" in j.labels for j in jobs)
    # 2 run lists (queued, in_progress) + the jobs of the 2 queued runs.
    assert checker.policy_validated == 2
    assert checker.validated == 4, "4 requests in all"

    bounded = client.list_queued_jobs(REPO, max_runs=1)
    assert [j.id for j in bounded] == [newest["id"]], "the newest run only"


def test_a_job_a_runner_took_is_not_queued(sandbox: SandboxServer) -> None:
    taken = queue_job(sandbox)
    client = GithubClient(ADMIN_TOKEN, sandbox.api_url, timeout=5, max_wait=10)
    url = f"{sandbox.api_url}/repos/canonical/demo/actions/jobs/{taken['id']}"
    assert client.get_job_by_url(url).status is JobStatus.QUEUED
    requests.post(
        f"{sandbox.base_url}/_sandbox/jobs/{taken['id']}/cancel", timeout=5
    ).raise_for_status()
    assert client.list_queued_jobs(REPO) == []
