"""The decision: may this job run on a self-hosted runner? Pure, apart from the GitHub seam.

The runner reports the job (``GITHUB_RUN_ID``, ``GITHUB_EVENT_NAME``, ``GITHUB_REF``, the event
payload's pull request number), but a report is only a pointer: the workflow run is looked up on
GitHub by its id (``GET /repos/{owner}/{repo}/actions/runs/{run_id}``) and the decision is taken
on GitHub's record of it: its event, head branch, head commit, head repository and pull
requests. What the runner reports can only select the run, or make the answer stricter (a
reported ref that is not the run's branch refuses a branch event); it never allows a job.

Rules, by the event GitHub recorded for the run:

* ``pull_request`` (and ``pull_request_review``, ``pull_request_review_comment``, which run the
  same head code): the pull request (one of the run's, or for a fork, whose runs GitHub links to
  no pull request, the one the payload names) is read from GitHub. It must target the checked
  repository, and its head must still be the run's commit, branch and repository: a decision is
  tied to the head SHA, so a push after the job was queued refuses the job (the new commit gets
  its own run and its own check). A pull request from a branch of the repository itself is
  allowed (only users with write access push branches there). A pull request from a fork, or
  from a deleted repository, is allowed only when its author has write, maintain or admin
  permission on the repository and so has everyone who can push to the fork: for a fork owned
  by a user, that user; a fork owned by an organisation lets all its members push, people the
  policy cannot enumerate, so it is refused unless the organisation owns the checked repository
  too (its members are then the repository's own organisation) or ``allow_organization_forks``.
* ``pull_request_target``: refused unless ``allow_pull_request_target`` (it runs with the
  repository's secrets and is often used to check out untrusted code).
* ``push``, ``workflow_dispatch``, ``schedule``: the run's branch must be protected with at
  least one required approving review; otherwise refused unless ``allow_unprotected_branches``.
* any other event: ``default`` (deny unless configured ``allow``).

Whenever GitHub cannot be asked (5xx, timeouts, rate limits, a token that cannot read), the
answer is 503 "retry later": an error never lets a job run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from errors import GithubClientError, GithubNotFoundError, GithubRateLimitError
from github_api.types import BranchProtection, GitHubRepo, PullRequestInfo, WorkflowRunInfo
from repo_policy.config import ALLOW, PolicyConfig

_REPOSITORY = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9._-]{1,100})$")
WRITE_LEVELS = frozenset({"write", "maintain", "admin"})
PULL_REQUEST_EVENTS = frozenset(
    {"pull_request", "pull_request_review", "pull_request_review_comment"}
)
BRANCH_EVENTS = frozenset({"push", "workflow_dispatch", "schedule"})
BRANCH_PREFIX = "refs/heads/"
_MAX_FIELD = 1024


class PolicyGitHub(Protocol):
    """What the policy asks GitHub (``github_client.GithubClient`` implements it)."""

    def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
        """Return the user's permission level on the repository."""

    def get_branch_protection(self, path: GitHubRepo, branch: str) -> BranchProtection | None:
        """Return the branch's protection, None when unprotected."""

    def get_pull_request(self, path: GitHubRepo, number: int) -> PullRequestInfo:
        """Return the pull request."""

    def get_workflow_run(self, path: GitHubRepo, run_id: int) -> WorkflowRunInfo:
        """Return the workflow run."""


class BadCheckRequestError(ValueError):
    """The body of a check request is malformed (HTTP 400)."""


@dataclass(frozen=True)
class CheckRequest:
    """What a runner's pre-job script says about the job it is about to run.

    Attributes:
        repository: ``owner/repo`` (``GITHUB_REPOSITORY``).
        event: The event name (``GITHUB_EVENT_NAME``).
        ref: ``GITHUB_REF``.
        head_ref: ``GITHUB_HEAD_REF`` (pull requests).
        base_ref: ``GITHUB_BASE_REF`` (pull requests).
        sha: ``GITHUB_SHA``.
        actor: ``GITHUB_ACTOR``.
        pull_request_number: The pull request number from the event payload, if any.
        run_id: ``GITHUB_RUN_ID``: the workflow run GitHub is asked about.
    """

    repository: str
    event: str
    ref: str = ""
    head_ref: str = ""
    base_ref: str = ""
    sha: str = ""
    actor: str = ""
    pull_request_number: int | None = None
    run_id: int | None = None

    @property
    def repo(self) -> GitHubRepo:
        """The repository as a path."""
        owner, _, name = self.repository.partition("/")
        return GitHubRepo(owner, name)

    @classmethod
    def from_json(cls, data: Any) -> CheckRequest:
        """Validate the decoded body of ``POST /check``.

        Args:
            data: ``{repository, event, ref, head_ref, base_ref, sha, actor, run_id, payload}``
                (``run_id`` a positive integer or its decimal digits; older runners omit it).

        Returns:
            The request.

        Raises:
            BadCheckRequestError: If a field is missing, too long or of the wrong type.
        """
        if not isinstance(data, dict):
            raise BadCheckRequestError("the body must be a JSON object")
        values: dict[str, str] = {}
        for key in ("repository", "event", "ref", "head_ref", "base_ref", "sha", "actor"):
            value = data.get(key, "")
            if not isinstance(value, str) or len(value) > _MAX_FIELD:
                raise BadCheckRequestError(
                    f"{key} must be a string of at most {_MAX_FIELD} characters"
                )
            values[key] = value
        match = _REPOSITORY.match(values["repository"])
        if not match or match.group(2) in (".", ".."):
            raise BadCheckRequestError("repository must be 'owner/repo'")
        if not values["event"]:
            raise BadCheckRequestError("event is required")
        payload = data.get("payload") or {}
        if not isinstance(payload, dict):
            raise BadCheckRequestError("payload must be a JSON object")
        return cls(
            **values, pull_request_number=_pull_request_number(payload), run_id=_run_id(data)
        )


def _run_id(data: dict[str, Any]) -> int | None:
    value = data.get("run_id")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise BadCheckRequestError("run_id must be a positive integer")
    return value


def _pull_request_number(payload: dict[str, Any]) -> int | None:
    pull = payload.get("pull_request")
    number = pull.get("number") if isinstance(pull, dict) else payload.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        return None
    return number


@dataclass(frozen=True)
class Decision:
    """The answer to a check.

    Attributes:
        allowed: Whether the job may run.
        reason: Why, for the job log and the service log.
        status: The HTTP status to answer: 200, 403 or 503.
    """

    allowed: bool
    reason: str
    status: int

    @classmethod
    def allow(cls, reason: str) -> Decision:
        """Build an allowing decision.

        Args:
            reason: Why.

        Returns:
            The decision (200).
        """
        return cls(True, reason, 200)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        """Build a refusing decision.

        Args:
            reason: Why.

        Returns:
            The decision (403).
        """
        return cls(False, reason, 403)

    @classmethod
    def unavailable(cls, reason: str) -> Decision:
        """Build the decision given when GitHub cannot be asked.

        Args:
            reason: What failed.

        Returns:
            The decision (503), never allowing.
        """
        return cls(False, f"{reason}; retry later", 503)


def evaluate(check: CheckRequest, config: PolicyConfig, github: PolicyGitHub) -> Decision:
    """Decide whether a job may run, on GitHub's record of its workflow run.

    Args:
        check: What the runner says about the job (it selects the run).
        config: The configured options.
        github: Where the facts come from.

    Returns:
        The decision; 503 when GitHub could not be asked.
    """
    if check.run_id is None:
        return Decision.deny(
            "the job names no workflow run (GITHUB_RUN_ID): the policy decides on GitHub's "
            "record of the run, never on the runner's word"
        )
    try:
        try:
            run = github.get_workflow_run(check.repo, check.run_id)
        except GithubNotFoundError:
            return Decision.deny(f"{check.repository} has no workflow run {check.run_id}")
        if run.repository.lower() != check.repository.lower():
            return Decision.deny(f"workflow run {run.id} belongs to {run.repository}")
        if run.status == "completed":
            return Decision.deny(f"workflow run {run.id} is already completed")
        decision = _decide(run, check, config, github)
    except GithubRateLimitError:
        return Decision.unavailable("GitHub rate-limited the policy check")
    except GithubClientError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        return Decision.unavailable(f"GitHub could not be asked{status}")
    if check.event != run.event:
        note = f" (GitHub records a {run.event} run; the runner reported {check.event[:64]!r})"
        return Decision(decision.allowed, decision.reason + note, decision.status)
    return decision


def _decide(
    run: WorkflowRunInfo, check: CheckRequest, config: PolicyConfig, github: PolicyGitHub
) -> Decision:
    if run.event in PULL_REQUEST_EVENTS:
        return _pull_request(run, check, config, github)
    if run.event == "pull_request_target":
        if config.allow_pull_request_target:
            return Decision.allow("pull_request_target jobs are allowed by configuration")
        return Decision.deny(
            "pull_request_target jobs are not allowed on these runners "
            "(configuration: repo-policy-allow-pull-request-target)"
        )
    if run.event in BRANCH_EVENTS:
        ref = f"{BRANCH_PREFIX}{run.head_branch}" if run.head_branch else ""
        if check.ref != ref:
            # The report can only make the answer stricter: a tag, or a report that lies.
            return Decision.deny(
                f"the runner reported ref {check.ref[:128]!r} but workflow run {run.id} is on "
                f"{ref or 'no branch'!r}"
            )
        return _branch(run.event, ref, check.repo, config, github)
    if config.default == ALLOW:
        return Decision.allow(f"{run.event} events are allowed by the default policy")
    return Decision.deny(
        f"{run.event} events are not allowed on these runners (configuration: repo-policy-default)"
    )


def _run_pull_request(run: WorkflowRunInfo, check: CheckRequest) -> int | Decision:
    """The pull request to decide on: the run's own, or for a fork's run the payload's."""
    reported = check.pull_request_number
    if run.pull_requests:
        if reported in run.pull_requests:
            return reported
        if len(run.pull_requests) == 1:
            return run.pull_requests[0]
        return Decision.deny(
            f"workflow run {run.id} belongs to pull requests "
            f"{', '.join(f'#{n}' for n in run.pull_requests)}; the runner named #{reported}"
        )
    if reported is None:
        return Decision.deny(f"the {run.event} event payload names no pull request")
    return reported


def _pull_request(
    run: WorkflowRunInfo, check: CheckRequest, config: PolicyConfig, github: PolicyGitHub
) -> Decision:
    number = _run_pull_request(run, check)
    if isinstance(number, Decision):
        return number
    try:
        pull = github.get_pull_request(check.repo, number)
    except GithubNotFoundError:
        return Decision.deny(f"{check.repository} has no pull request #{number}")
    if pull.base_repo.lower() != check.repository.lower():
        return Decision.deny(f"pull request #{number} does not target {check.repository}")
    if pull.head_sha != run.head_sha:
        return Decision.deny(
            f"the head of pull request #{number} moved since the job's commit (the run is on "
            f"{run.head_sha[:12]}, the head is now {pull.head_sha[:12]}): the new head gets its "
            "own run and its own check"
        )
    if (pull.head_repo or "").lower() != (run.head_repository or "").lower() or (
        run.head_branch is not None and pull.head_ref != run.head_branch
    ):
        return Decision.deny(f"workflow run {run.id} is not on the head of pull request #{number}")
    if not pull.is_fork:
        return Decision.allow(f"pull request #{number} comes from a branch of the repository")
    if pull.head_repo is None:
        return Decision.deny(f"pull request #{number} comes from a deleted repository")
    return _fork(pull, check, config, github)


def _fork(
    pull: PullRequestInfo, check: CheckRequest, config: PolicyConfig, github: PolicyGitHub
) -> Decision:
    number, people, why = pull.number, [pull.author], ""
    if pull.head_owner_type == "Organization" or not pull.head_owner:
        owner = pull.head_owner or "an unknown owner"
        if owner.lower() == check.repo.owner.lower():
            why = f" (the fork belongs to {owner}, the repository's own organisation)"
        elif config.allow_organization_forks:
            why = f" (forks of organisations are allowed by configuration; {owner} owns this one)"
        else:
            return Decision.deny(
                f"pull request #{number} comes from {pull.head_repo}, a fork owned by the "
                f"organisation {owner}, whose members can all push to it "
                "(configuration: repo-policy-allow-organization-forks)"
            )
    else:
        people.append(pull.head_owner)
    for login in dict.fromkeys(people):
        try:
            level = github.get_collaborator_permission(check.repo, login)
        except GithubNotFoundError:
            level = "none"
        if level not in WRITE_LEVELS:
            return Decision.deny(
                f"pull request #{number} comes from the fork {pull.head_repo} and {login} has "
                f"{level} permission on {check.repository} (write, maintain or admin needed)"
            )
    return Decision.allow(
        f"pull request #{number} comes from the fork {pull.head_repo} of collaborators with "
        f"write permission, at {pull.head_sha[:12]}{why}"
    )


def _branch(
    event: str, ref: str, repo: GitHubRepo, config: PolicyConfig, github: PolicyGitHub
) -> Decision:
    if config.allow_unprotected_branches:
        return Decision.allow(f"{event} jobs on any ref are allowed by configuration")
    hint = "(configuration: repo-policy-allow-unprotected-branches)"
    if not ref.startswith(BRANCH_PREFIX) or ref == BRANCH_PREFIX:
        return Decision.deny(f"{event} jobs must run on a protected branch, not {ref!r} {hint}")
    branch = ref[len(BRANCH_PREFIX) :]
    if ".." in branch or branch == "." or branch.startswith("/") or branch.endswith("/"):
        return Decision.deny(f"{ref!r} is not a valid branch ref")
    protection = github.get_branch_protection(repo, branch)
    repository = f"{repo.owner}/{repo.repo}"
    if protection is None:
        return Decision.deny(f"branch {branch!r} of {repository} is not protected {hint}")
    if not protection.requires_reviews:
        return Decision.deny(
            f"branch {branch!r} of {repository} is protected but does not require "
            f"approving reviews {hint}"
        )
    return Decision.allow(f"branch {branch!r} is protected and requires approving reviews")
