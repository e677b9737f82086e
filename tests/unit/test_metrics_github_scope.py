"""metrics.github.job asks GitHub only about the served repository, named as GitHub allows.

The repository comes from ``pre-job-metrics.json``, which the job itself can write: a name that
escapes ``/repos/`` (``..``) or names another repository must never reach an authenticated URL.
"""

from __future__ import annotations

import logging

import pytest

from github_api.names import is_owner_name, is_repo_name, parse_repository, serves
from github_api.types import GitHubOrg, GitHubPath, GitHubRepo, JobInfo
from metrics.github import job
from metrics.type import PreJobMetrics

SERVED = GitHubRepo("owner", "repo")


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[GitHubRepo, int]] = []

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        self.calls.append((path, run_id))
        return []


def pre(repository: str) -> PreJobMetrics:
    return PreJobMetrics(
        timestamp=1_763_884_800,
        workflow="CI",
        workflow_run_id=77,
        repository=repository,
        event="push",
    )


@pytest.mark.parametrize(
    "repository",
    [
        "../..",
        "owner/..",
        "../repo",
        "owner/.",
        "-owner/repo",
        "owner_x/repo",
        "a" * 40 + "/repo",
        "other/repo",
        "owner/other",
    ],
)
def test_a_hostile_or_foreign_repository_is_not_looked_up(
    repository: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = RecordingClient()
    with caplog.at_level(logging.WARNING, logger="metrics.github"):
        assert job(client, pre(repository), "me", served=SERVED) is None
    assert client.calls == []
    assert any(repr(repository) in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("served", "repository"),
    [
        (SERVED, "owner/repo"),
        (SERVED, "OWNER/Repo"),
        (GitHubOrg("owner"), "owner/any.thing_-1"),
        (GitHubOrg("Owner"), "owner/x"),
    ],
)
def test_the_served_repository_is_looked_up(served: GitHubPath, repository: str) -> None:
    client = RecordingClient()
    job(client, pre(repository), "me", served=served)
    assert client.calls == [(parse_repository(repository), 77)]


def test_github_name_rules() -> None:
    assert is_owner_name("a") and is_owner_name("a-b") and is_owner_name("A" * 39)
    for bad in ("", "-a", "a" * 40, "a_b", "a.b", "a/b", "a\nb", "é"):
        assert not is_owner_name(bad), bad
    assert is_repo_name("a.b_c-d") and is_repo_name(".github") and is_repo_name("x" * 100)
    for bad in ("", ".", "..", "x" * 101, "a/b", "a b", "a\n"):
        assert not is_repo_name(bad), bad
    assert serves(GitHubOrg("Org"), GitHubRepo("org", "r"))
    assert not serves(GitHubOrg("org"), GitHubRepo("org2", "r"))
    assert not serves(GitHubRepo("o", "r"), GitHubRepo("o", "r2"))
