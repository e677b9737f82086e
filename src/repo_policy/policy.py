"""The decision: may this job run on a self-hosted runner? Pure, apart from the GitHub seam.

Rules, by the event that triggered the workflow (``GITHUB_EVENT_NAME``):

* ``pull_request`` (and ``pull_request_review``, ``pull_request_review_comment``, which run the
  same head code): the pull request is read from GitHub (its number comes from the event
  payload). It must target the checked repository. A pull request from a branch of the
  repository itself is allowed (only users with write access push branches there). A pull
  request from a fork, or from a deleted repository, is allowed only when its author and, for
  a fork owned by a user, that fork's owner both have write, maintain or admin permission on the
  repository.
* ``pull_request_target``: refused unless ``allow_pull_request_target`` (it runs with the
  repository's secrets and is often used to check out untrusted code).
* ``push``, ``workflow_dispatch``, ``schedule``: the ref must be a branch whose protection
  requires at least one approving review; otherwise refused unless
  ``allow_unprotected_branches``.
* any other event: ``default`` (deny unless configured ``allow``).

Whenever GitHub cannot be asked (5xx, timeouts, rate limits, a token that cannot read), the
answer is 503 "retry later": an error never lets a job run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from errors import GithubClientError, GithubNotFoundError, GithubRateLimitError
from github_api.types import BranchProtection, GitHubRepo, PullRequestInfo
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
    """

    repository: str
    event: str
    ref: str = ""
    head_ref: str = ""
    base_ref: str = ""
    sha: str = ""
    actor: str = ""
    pull_request_number: int | None = None

    @property
    def repo(self) -> GitHubRepo:
        """The repository as a path."""
        owner, _, name = self.repository.partition("/")
        return GitHubRepo(owner, name)

    @classmethod
    def from_json(cls, data: Any) -> CheckRequest:
        """Validate the decoded body of ``POST /check``.

        Args:
            data: ``{repository, event, ref, head_ref, base_ref, sha, actor, payload}``.

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
        return cls(**values, pull_request_number=_pull_request_number(payload))


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
    """Decide whether a job may run.

    Args:
        check: What the runner says about the job.
        config: The configured options.
        github: Where the facts come from.

    Returns:
        The decision; 503 when GitHub could not be asked.
    """
    try:
        if check.event in PULL_REQUEST_EVENTS:
            return _pull_request(check, github)
        if check.event == "pull_request_target":
            if config.allow_pull_request_target:
                return Decision.allow("pull_request_target jobs are allowed by configuration")
            return Decision.deny(
                "pull_request_target jobs are not allowed on these runners "
                "(configuration: repo-policy-allow-pull-request-target)"
            )
        if check.event in BRANCH_EVENTS:
            return _branch(check, config, github)
        if config.default == ALLOW:
            return Decision.allow(f"{check.event} events are allowed by the default policy")
        return Decision.deny(
            f"{check.event} events are not allowed on these runners "
            "(configuration: repo-policy-default)"
        )
    except GithubRateLimitError:
        return Decision.unavailable("GitHub rate-limited the policy check")
    except GithubClientError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        return Decision.unavailable(f"GitHub could not be asked{status}")


def _pull_request(check: CheckRequest, github: PolicyGitHub) -> Decision:
    number = check.pull_request_number
    if number is None:
        return Decision.deny(f"the {check.event} event payload names no pull request")
    try:
        pull = github.get_pull_request(check.repo, number)
    except GithubNotFoundError:
        return Decision.deny(f"{check.repository} has no pull request #{number}")
    if pull.base_repo.lower() != check.repository.lower():
        return Decision.deny(f"pull request #{number} does not target {check.repository}")
    if not pull.is_fork:
        return Decision.allow(f"pull request #{number} comes from a branch of the repository")
    if pull.head_repo is None:
        return Decision.deny(f"pull request #{number} comes from a deleted repository")
    people = [pull.author]
    if pull.head_owner and pull.head_owner_type != "Organization":
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
        "write permission"
    )


def _branch(check: CheckRequest, config: PolicyConfig, github: PolicyGitHub) -> Decision:
    if config.allow_unprotected_branches:
        return Decision.allow(f"{check.event} jobs on any ref are allowed by configuration")
    hint = "(configuration: repo-policy-allow-unprotected-branches)"
    if not check.ref.startswith(BRANCH_PREFIX) or check.ref == BRANCH_PREFIX:
        return Decision.deny(
            f"{check.event} jobs must run on a protected branch, not {check.ref!r} {hint}"
        )
    branch = check.ref[len(BRANCH_PREFIX) :]
    if ".." in branch or branch == "." or branch.startswith("/") or branch.endswith("/"):
        return Decision.deny(f"{check.ref!r} is not a valid branch ref")
    protection = github.get_branch_protection(check.repo, branch)
    if protection is None:
        return Decision.deny(f"branch {branch!r} of {check.repository} is not protected {hint}")
    if not protection.requires_reviews:
        return Decision.deny(
            f"branch {branch!r} of {check.repository} is protected but does not require "
            f"approving reviews {hint}"
        )
    return Decision.allow(f"branch {branch!r} is protected and requires approving reviews")
