"""The policy decision as a table: event x pull request / permissions / protection x config."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import errors
from github_api.types import BranchProtection, GitHubRepo, PullRequestInfo, WorkflowRunInfo
from repo_policy.config import PolicyConfig
from repo_policy.policy import CheckRequest, evaluate

REPO = "octo/app"
RUN = 42
REVIEWED = BranchProtection(required_approving_review_count=1)
NO_REVIEWS = BranchProtection(required_approving_review_count=None)


def pull(
    author: str = "dev",
    head_repo: str | None = REPO,
    head_owner: str | None = "octo",
    owner_type: str = "Organization",
    base_repo: str = REPO,
) -> PullRequestInfo:
    return PullRequestInfo(
        number=7,
        state="open",
        author=author,
        head_repo=head_repo,
        head_owner=head_owner,
        head_owner_type=owner_type if head_owner else None,
        head_ref="feature",
        head_sha="a" * 40,
        base_repo=base_repo,
        base_ref="main",
    )


def fork(author: str, owner: str | None = None, owner_type: str = "User") -> PullRequestInfo:
    owner = owner or author
    return pull(author, f"{owner}/app", owner, owner_type)


def pr_run(
    pr: PullRequestInfo, event: str = "pull_request", status: str = "in_progress"
) -> WorkflowRunInfo:
    """GitHub's record of a run of the pull request's head (forks' runs name no pull request)."""
    return WorkflowRunInfo(
        id=RUN,
        repository=REPO,
        event=event,
        status=status,
        head_branch=pr.head_ref,
        head_sha=pr.head_sha,
        head_repository=pr.head_repo,
        head_owner_type=pr.head_owner_type,
        pull_requests=() if pr.is_fork else (pr.number,),
    )


def branch_run(event: str = "push", branch: str | None = "main") -> WorkflowRunInfo:
    """GitHub's record of a run on a branch (or a tag: GitHub names it as head_branch too)."""
    return WorkflowRunInfo(
        id=RUN,
        repository=REPO,
        event=event,
        status="in_progress",
        head_branch=branch,
        head_sha="d" * 40,
        head_repository=REPO,
        head_owner_type="Organization",
    )


def run_for(event: str, ref: str, pulls: dict[int, PullRequestInfo]) -> WorkflowRunInfo:
    """The run GitHub records for a job the runner reports honestly."""
    if event in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        if 7 in pulls:
            return pr_run(pulls[7], event)
        return WorkflowRunInfo(RUN, REPO, event, "in_progress", "feature", "a" * 40, REPO, None)
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return branch_run(event, ref[len(prefix) :])
    return branch_run(event, None)


@dataclass
class FakeGithub:
    """GitHub as data; ``fail`` raises that error on any question."""

    permissions: dict[str, str] = field(default_factory=dict)
    protections: dict[str, BranchProtection] = field(default_factory=dict)
    pulls: dict[int, PullRequestInfo] = field(default_factory=dict)
    runs: dict[int, WorkflowRunInfo] = field(default_factory=dict)
    fail: Exception | None = None
    asked: list[str] = field(default_factory=list)

    def _maybe_fail(self, what: str) -> None:
        self.asked.append(what)
        if self.fail is not None:
            raise self.fail

    def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
        self._maybe_fail(f"permission {username}")
        assert path == GitHubRepo("octo", "app")
        if username not in self.permissions:
            raise errors.GithubNotFoundError("no such user", status=404)
        return self.permissions[username]

    def get_branch_protection(self, path: GitHubRepo, branch: str) -> BranchProtection | None:
        self._maybe_fail(f"protection {branch}")
        return self.protections.get(branch)

    def get_pull_request(self, path: GitHubRepo, number: int) -> PullRequestInfo:
        self._maybe_fail(f"pull {number}")
        if number not in self.pulls:
            raise errors.GithubNotFoundError("no such pull", status=404)
        return self.pulls[number]

    def get_workflow_run(self, path: GitHubRepo, run_id: int) -> WorkflowRunInfo:
        self._maybe_fail(f"run {run_id}")
        assert path == GitHubRepo("octo", "app")
        if run_id not in self.runs:
            raise errors.GithubNotFoundError("no such run", status=404)
        return self.runs[run_id]


def check(
    event: str, ref: str = "refs/heads/main", number: int | None = 7, run_id: int | None = RUN
) -> CheckRequest:
    return CheckRequest(
        repository=REPO, event=event, ref=ref, pull_request_number=number, run_id=run_id
    )


DEFAULT = PolicyConfig()
PERMISSIVE = PolicyConfig(
    allow_pull_request_target=True, allow_unprotected_branches=True, default="allow"
)

# (name, event, ref, github, config, expected status, reason fragment)
TABLE: list[tuple[str, str, str, FakeGithub, PolicyConfig, int, str]] = [
    ("pr same repo", "pull_request", "", FakeGithub(pulls={7: pull()}), DEFAULT, 200, "branch of"),
    *[
        (
            f"fork pr, user with {level}",
            "pull_request",
            "",
            FakeGithub(pulls={7: fork("eve")}, permissions={"eve": level}),
            DEFAULT,
            status,
            fragment,
        )
        for level, status, fragment in [
            ("admin", 200, "write permission"),
            ("maintain", 200, "write permission"),
            ("write", 200, "write permission"),
            ("triage", 403, "eve has triage permission"),
            ("read", 403, "eve has read permission"),
            ("none", 403, "eve has none permission"),
        ]
    ],
    (
        "fork pr, unknown user",
        "pull_request",
        "",
        FakeGithub(pulls={7: fork("ghost")}),
        DEFAULT,
        403,
        "ghost has none",
    ),
    (
        "fork pr: collaborator opens it from a stranger's fork",
        "pull_request",
        "",
        FakeGithub(pulls={7: fork("dev", "eve")}, permissions={"dev": "write", "eve": "read"}),
        DEFAULT,
        403,
        "eve has read",
    ),
    (
        "fork pr: stranger opens it from a collaborator's fork",
        "pull_request",
        "",
        FakeGithub(pulls={7: fork("eve", "dev")}, permissions={"dev": "write", "eve": "read"}),
        DEFAULT,
        403,
        "eve has read",
    ),
    (
        "fork pr: another organisation's fork, collaborator author (its members push unchecked)",
        "pull_request",
        "",
        FakeGithub(
            pulls={7: fork("dev", "partner", "Organization")}, permissions={"dev": "write"}
        ),
        PERMISSIVE,
        403,
        "owned by the organisation partner, whose members can all push",
    ),
    (
        "fork pr: another organisation's fork allowed by configuration",
        "pull_request",
        "",
        FakeGithub(
            pulls={7: fork("dev", "partner", "Organization")}, permissions={"dev": "write"}
        ),
        PolicyConfig(allow_organization_forks=True),
        200,
        "allowed by configuration; partner owns this one",
    ),
    (
        "fork pr: organisation fork allowed by configuration still needs a writer author",
        "pull_request",
        "",
        FakeGithub(pulls={7: fork("eve", "partner", "Organization")}, permissions={"eve": "read"}),
        PolicyConfig(allow_organization_forks=True),
        403,
        "eve has read",
    ),
    (
        "fork pr: a fork owned by the repository's own organisation",
        "pull_request",
        "",
        FakeGithub(pulls={7: pull("dev", "octo/app-fork", "octo")}, permissions={"dev": "write"}),
        DEFAULT,
        200,
        "the repository's own organisation",
    ),
    (
        "fork pr: deleted head repository",
        "pull_request",
        "",
        FakeGithub(pulls={7: pull("dev", None, None)}, permissions={"dev": "admin"}),
        DEFAULT,
        403,
        "deleted repository",
    ),
    (
        "pr targeting another repository",
        "pull_request",
        "",
        FakeGithub(pulls={7: pull(base_repo="octo/other")}),
        DEFAULT,
        403,
        "does not target",
    ),
    ("pr unknown to GitHub", "pull_request", "", FakeGithub(), DEFAULT, 403, "no pull request #7"),
    (
        "fork pr ignores permissive config",
        "pull_request",
        "",
        FakeGithub(pulls={7: fork("eve")}, permissions={"eve": "read"}),
        PERMISSIVE,
        403,
        "eve has read",
    ),
    (
        "pr review events follow the pull request rule",
        "pull_request_review",
        "",
        FakeGithub(pulls={7: fork("eve")}, permissions={"eve": "read"}),
        PERMISSIVE,
        403,
        "eve has read",
    ),
    (
        "pr target refused",
        "pull_request_target",
        "",
        FakeGithub(),
        DEFAULT,
        403,
        "allow-pull-request-target",
    ),
    (
        "pr target allowed",
        "pull_request_target",
        "",
        FakeGithub(),
        PERMISSIVE,
        200,
        "configuration",
    ),
    *[
        (
            f"{event} reviewed branch",
            event,
            "refs/heads/main",
            FakeGithub(protections={"main": REVIEWED}),
            DEFAULT,
            200,
            "requires approving",
        )
        for event in ("push", "workflow_dispatch", "schedule")
    ],
    *[
        (
            f"{event} unprotected branch",
            event,
            "refs/heads/dev",
            FakeGithub(protections={"main": REVIEWED}),
            DEFAULT,
            403,
            "not protected",
        )
        for event in ("push", "workflow_dispatch", "schedule")
    ],
    (
        "push protected without reviews",
        "push",
        "refs/heads/main",
        FakeGithub(protections={"main": NO_REVIEWS}),
        DEFAULT,
        403,
        "does not require",
    ),
    (
        "push zero reviews",
        "push",
        "refs/heads/main",
        FakeGithub(protections={"main": BranchProtection(0)}),
        DEFAULT,
        403,
        "does not require",
    ),
    (
        "push of a tag",
        "push",
        "refs/tags/v1",
        FakeGithub(),
        DEFAULT,
        403,
        "reported ref 'refs/tags/v1' but workflow run 42 is on 'refs/heads/v1'",
    ),
    (
        "push slash branch",
        "push",
        "refs/heads/release/1.0",
        FakeGithub(protections={"release/1.0": REVIEWED}),
        DEFAULT,
        200,
        "protected",
    ),
    (
        "push of a dot-dot ref",
        "push",
        "refs/heads/../protection",
        FakeGithub(protections={"main": REVIEWED}),
        DEFAULT,
        403,
        "not a valid branch ref",
    ),
    (
        "push unprotected allowed",
        "push",
        "refs/heads/dev",
        FakeGithub(),
        PERMISSIVE,
        200,
        "configuration",
    ),
    (
        "other event, default deny",
        "issue_comment",
        "",
        FakeGithub(),
        DEFAULT,
        403,
        "repo-policy-default",
    ),
    ("other event, default allow", "release", "", FakeGithub(), PERMISSIVE, 200, "default policy"),
]


@pytest.mark.parametrize(
    ("event", "ref", "github", "config", "status", "fragment"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(
    event: str, ref: str, github: FakeGithub, config: PolicyConfig, status: int, fragment: str
) -> None:
    github.runs.setdefault(RUN, run_for(event, ref, github.pulls))
    decision = evaluate(check(event, ref), config, github)
    assert decision.status == status, decision
    assert decision.allowed is (status == 200)
    assert fragment in decision.reason


@pytest.mark.parametrize(
    "error",
    [
        errors.GithubApiError("boom", status=502),
        errors.GithubApiError("timeout"),
        errors.GithubRateLimitError(None),
        errors.GithubTokenError(),
        errors.GithubPermissionError("octo/app"),
    ],
    ids=["5xx", "timeout", "rate-limit", "bad-token", "forbidden"],
)
@pytest.mark.parametrize(
    ("event", "config"),
    [("pull_request", DEFAULT), ("push", DEFAULT), ("workflow_dispatch", DEFAULT)],
)
def test_github_errors_never_allow(event: str, config: PolicyConfig, error: Exception) -> None:
    github = FakeGithub(
        pulls={7: fork("eve")}, permissions={"eve": "admin"}, protections={"main": REVIEWED}
    )
    github.fail = error
    decision = evaluate(check(event), config, github)
    assert (decision.allowed, decision.status) == (False, 503)
    assert decision.reason.endswith("retry later")
    assert github.asked  # GitHub was asked, and its failure refused the job


def test_errors_on_the_permission_call_refuse_too() -> None:
    class Flaky(FakeGithub):
        def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
            raise errors.GithubApiError("boom", status=500)

    github = Flaky(pulls={7: fork("eve")}, runs={RUN: pr_run(fork("eve"))})
    decision = evaluate(check("pull_request"), DEFAULT, github)
    assert (decision.allowed, decision.status) == (False, 503)


def test_fork_pull_request_without_number_is_refused_after_the_run_only() -> None:
    github = FakeGithub(runs={RUN: pr_run(fork("eve"))})
    decision = evaluate(check("pull_request", number=None), DEFAULT, github)
    assert decision.status == 403 and "names no pull request" in decision.reason
    assert github.asked == [f"run {RUN}"]


def test_permissive_config_asks_github_only_the_run_for_branches() -> None:
    github = FakeGithub(runs={RUN: branch_run("push", "x")})
    assert evaluate(check("push", "refs/heads/x"), PERMISSIVE, github).allowed
    assert github.asked == [f"run {RUN}"]
