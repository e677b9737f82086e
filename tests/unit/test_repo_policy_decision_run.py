"""Policy decisions on GitHub's record of the workflow run, not on what the runner reports.

The runner's report (event, ref, pull request number) only selects the run (``GITHUB_RUN_ID``)
and can make an answer stricter; the decision is tied to the run's head commit, and to who can
push to a fork.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import errors
from github_api.types import BranchProtection
from repo_policy.config import PolicyConfig
from repo_policy.policy import BadCheckRequestError, CheckRequest, evaluate
from tests.unit.test_repo_policy_decision import (
    REPO,
    RUN,
    FakeGithub,
    branch_run,
    check,
    fork,
    pr_run,
    pull,
)

DEFAULT = PolicyConfig()
REVIEWED = BranchProtection(required_approving_review_count=1)


def test_a_push_to_the_fork_after_the_job_was_queued_refuses_the_job() -> None:
    queued = fork("dev")
    github = FakeGithub(
        pulls={7: replace(queued, head_sha="b" * 40)},  # the head moved on since
        runs={RUN: pr_run(queued)},
        permissions={"dev": "write"},
    )
    decision = evaluate(check("pull_request"), DEFAULT, github)
    assert decision.status == 403
    assert "moved since the job's commit" in decision.reason
    assert "aaaaaaaaaaaa" in decision.reason and "bbbbbbbbbbbb" in decision.reason
    github.pulls[7] = queued
    assert evaluate(check("pull_request"), DEFAULT, github).allowed


def test_a_runner_reporting_a_push_to_a_protected_branch_is_decided_on_the_fork_run() -> None:
    """GitHub records a pull request from a stranger's fork; the runner claims a push to main."""
    github = FakeGithub(
        pulls={7: fork("eve")},
        runs={RUN: pr_run(fork("eve"))},
        permissions={"eve": "read"},
        protections={"main": REVIEWED},
    )
    decision = evaluate(check("push", "refs/heads/main"), DEFAULT, github)
    assert decision.status == 403
    assert "eve has read permission" in decision.reason
    assert "GitHub records a pull_request run; the runner reported 'push'" in decision.reason
    assert "protection main" not in github.asked


def test_a_reported_ref_other_than_the_runs_branch_refuses() -> None:
    github = FakeGithub(runs={RUN: branch_run("push", "dev")}, protections={"main": REVIEWED})
    decision = evaluate(check("push", "refs/heads/main"), DEFAULT, github)
    assert decision.status == 403
    assert "reported ref 'refs/heads/main' but workflow run 42 is on 'refs/heads/dev'" in (
        decision.reason
    )
    assert github.asked == [f"run {RUN}"]


def test_a_branch_run_reported_as_a_pull_request_follows_the_branch_rule() -> None:
    github = FakeGithub(runs={RUN: branch_run("push", "main")}, protections={"main": REVIEWED})
    decision = evaluate(check("pull_request", "refs/heads/main"), DEFAULT, github)
    assert decision.allowed and "requires approving reviews" in decision.reason
    assert "the runner reported 'pull_request'" in decision.reason


def test_a_runner_naming_a_trusted_pull_request_for_a_fork_run_is_refused() -> None:
    """GitHub links no pull request to a fork's run: the named one must match the run's head."""
    trusted = replace(fork("dev"), number=9, head_sha="c" * 40)
    github = FakeGithub(
        pulls={7: fork("eve"), 9: trusted},
        runs={RUN: pr_run(fork("eve"))},
        permissions={"dev": "admin", "eve": "read"},
    )
    decision = evaluate(check("pull_request", number=9), DEFAULT, github)
    assert decision.status == 403 and "moved since" in decision.reason
    github.pulls[9] = replace(trusted, head_sha="a" * 40)  # same commit, another fork
    decision = evaluate(check("pull_request", number=9), DEFAULT, github)
    assert decision.status == 403 and "is not on the head of pull request #9" in decision.reason


def test_the_runs_own_pull_request_wins_over_the_reported_number() -> None:
    github = FakeGithub(
        pulls={7: fork("eve"), 8: replace(pull(), number=8)},
        runs={RUN: pr_run(replace(pull(), number=8))},
        permissions={"eve": "read"},
    )
    decision = evaluate(check("pull_request", number=7), DEFAULT, github)
    assert decision.allowed and "#8 comes from a branch of the repository" in decision.reason
    github.runs[RUN] = replace(github.runs[RUN], pull_requests=(8, 11))
    decision = evaluate(check("pull_request", number=7), DEFAULT, github)
    assert decision.status == 403 and "#8, #11; the runner named #7" in decision.reason


@pytest.mark.parametrize(
    ("run_id", "runs", "fragment"),
    [
        (None, {}, "names no workflow run (GITHUB_RUN_ID)"),
        (RUN, {}, f"{REPO} has no workflow run {RUN}"),
        (RUN, {RUN: replace(branch_run(), repository="octo/other")}, "belongs to octo/other"),
        (RUN, {RUN: replace(branch_run(), status="completed")}, "is already completed"),
    ],
    ids=["no run id", "unknown run", "run of another repository", "completed run"],
)
def test_runs_that_cannot_be_decided_on_are_refused(
    run_id: int | None, runs: dict[int, Any], fragment: str
) -> None:
    github = FakeGithub(runs=runs, protections={"main": REVIEWED})
    decision = evaluate(check("push", run_id=run_id), PolicyConfig(default="allow"), github)
    assert (decision.allowed, decision.status) == (False, 403)
    assert fragment in decision.reason


def test_github_failing_on_the_run_lookup_answers_503() -> None:
    github = FakeGithub(fail=errors.GithubApiError("down", status=502))
    decision = evaluate(check("push"), DEFAULT, github)
    assert (decision.allowed, decision.status) == (False, 503)
    assert github.asked == [f"run {RUN}"]


def body(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"repository": REPO, "event": "push", "ref": "refs/heads/main"}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("value", "expected"), [("42", 42), (42, 42), (None, None), ("", None), ("007", 7)]
)
def test_check_request_reads_the_run_id(value: Any, expected: int | None) -> None:
    data = body() if value is None else body(run_id=value)
    assert CheckRequest.from_json(data).run_id == expected


@pytest.mark.parametrize("value", ["abc", -1, 0, True, 1.5, "1" * 30, "٣", [1]])
def test_malformed_run_ids(value: Any) -> None:
    with pytest.raises(BadCheckRequestError):
        CheckRequest.from_json(body(run_id=value))


def test_organization_forks_option() -> None:
    assert PolicyConfig.from_json({"allow_organization_forks": True}).allow_organization_forks
    assert not PolicyConfig().allow_organization_forks
    with pytest.raises(errors.RepoPolicyConfigError):
        PolicyConfig.from_json({"allow_organization_forks": "yes"})
