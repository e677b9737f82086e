"""Types describing GitHub objects the charm works with (no I/O, no PyGithub).

Also the pure parts of talking to GitHub that ``github_client`` builds on: parsing GitHub's
(untrusted) JSON answers into these types, checking API job URLs, and mapping an HTTP answer to
the project's errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import errors

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})$")
_JOB_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/actions/jobs/([0-9]{1,19})$")


class GitHubRunnerStatus(str, Enum):
    """Status GitHub reports for a self-hosted runner."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class GitHubRepo:
    """A repository path.

    Attributes:
        owner: The user or organisation that owns the repository.
        repo: The repository name.
    """

    owner: str
    repo: str

    def path(self) -> str:
        """Return the path as ``owner/repo``."""
        return f"{self.owner}/{self.repo}"


@dataclass(frozen=True)
class GitHubOrg:
    """An organisation path with the runner group runners join.

    Attributes:
        org: The organisation name.
        group: The runner group name.
    """

    org: str
    group: str = "default"

    def path(self) -> str:
        """Return the organisation name."""
        return self.org


GitHubPath = GitHubOrg | GitHubRepo


def parse_github_path(path: str, runner_group: str = "default") -> GitHubPath:
    """Parse the ``path`` config option: ``owner/repo`` or an organisation name.

    Args:
        path: The path as configured.
        runner_group: The runner group, used for organisations only.

    Returns:
        The repository or organisation path.

    Raises:
        ValueError: If the path is neither form.
    """
    path = path.strip()
    parts = path.split("/")
    if len(parts) == 2 and all(_NAME.match(p) for p in parts):
        return GitHubRepo(owner=parts[0], repo=parts[1])
    if len(parts) == 1 and _NAME.match(parts[0]):
        return GitHubOrg(org=parts[0], group=runner_group)
    raise ValueError(f"{path!r} is neither an organisation name nor owner/repo")


def api_base_url(github_url: str) -> str:
    """Derive the REST API base URL from the GitHub (or GHES) web URL.

    Args:
        github_url: ``https://github.com`` or a GitHub Enterprise Server base URL.

    Returns:
        ``https://api.github.com`` for github.com, else ``<url>/api/v3``.
    """
    url = github_url.rstrip("/")
    if url in ("https://github.com", "http://github.com"):
        return "https://api.github.com"
    return f"{url}/api/v3"


@dataclass(frozen=True)
class SelfHostedRunner:
    """A self-hosted runner as GitHub lists it.

    Attributes:
        id: GitHub's runner id.
        name: The runner name.
        status: Online or offline.
        busy: Whether it runs a job now.
        labels: Label names.
    """

    id: int
    name: str
    status: GitHubRunnerStatus
    busy: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunnerApplication:
    """A downloadable runner application (``GET .../actions/runners/downloads``).

    Attributes:
        os: Operating system, e.g. ``linux``.
        architecture: ``x64`` or ``arm64``.
        download_url: Where to download the tarball.
        filename: The tarball's file name (carries the version).
        sha256_checksum: Expected SHA-256 of the tarball, if GitHub gave one.
        temp_download_token: Bearer token for the download, if GitHub gave one.
    """

    os: str
    architecture: str
    download_url: str
    filename: str
    sha256_checksum: str | None = None
    temp_download_token: str | None = None

    @property
    def version(self) -> str:
        """Return the version carried by the file name (``actions-runner-linux-x64-2.3.0``)."""
        match = re.search(r"(\d+\.\d+\.\d+)", self.filename)
        return match.group(1) if match else "unknown"


@dataclass(frozen=True)
class JITConfig:
    """A just-in-time runner configuration.

    Attributes:
        runner_id: GitHub's id of the registered runner.
        encoded_jit_config: The opaque configuration for ``run.sh --jitconfig``. Secret.
    """

    runner_id: int
    encoded_jit_config: str

    def __repr__(self) -> str:
        """Hide the secret configuration."""
        return f"JITConfig(runner_id={self.runner_id}, encoded_jit_config=***)"


@dataclass(frozen=True)
class RegistrationToken:
    """A registration or remove token.

    Attributes:
        token: The token. Secret.
        expires_at: When it expires.
    """

    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        """Hide the secret token."""
        return f"RegistrationToken(token=***, expires_at={self.expires_at.isoformat()})"


class JobStatus(str, Enum):
    """Status of a workflow job."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    WAITING = "waiting"
    REQUESTED = "requested"
    PENDING = "pending"


@dataclass(frozen=True)
class JobInfo:
    """A workflow job as GitHub reports it.

    Attributes:
        id: The job id.
        status: Queued, in progress, completed...
        conclusion: success, failure... once completed.
        created_at: When it was queued.
        started_at: When a runner picked it up.
        runner_name: The runner that picked it up, if any.
        labels: Labels the job asks for.
        completed_at: When it finished, if it did.
        run_id: The workflow run it belongs to.
        runner_id: GitHub's id of the runner that picked it up, if any.
        name: The job's name.
        workflow_name: The workflow's name.
    """

    id: int
    status: JobStatus
    conclusion: str | None
    created_at: datetime
    started_at: datetime | None
    runner_name: str | None
    labels: tuple[str, ...] = ()
    completed_at: datetime | None = None
    run_id: int | None = None
    runner_id: int | None = None
    name: str | None = None
    workflow_name: str | None = None


@dataclass(frozen=True)
class RateLimitStatus:
    """The token's core rate limit.

    Attributes:
        limit: Requests allowed per window.
        remaining: Requests left in the window.
        reset_at: When the window resets.
    """

    limit: int
    remaining: int
    reset_at: datetime


# --- parsing GitHub's JSON answers (untrusted: raise KeyError / TypeError / ValueError) ---------


def json_str(value: Any) -> str:
    """Return ``value`` if it is a string.

    Args:
        value: A decoded JSON value.

    Returns:
        The string.

    Raises:
        TypeError: If it is not a string.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def json_int(value: Any) -> int:
    """Return ``value`` as an int if it is a JSON integer (or a number with no fraction).

    Args:
        value: A decoded JSON value.

    Returns:
        The integer.

    Raises:
        TypeError: If it is not an integral number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, float) and not value.is_integer():
        raise TypeError("expected an integer, got a fraction")
    return int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else json_str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else json_int(value)


def parse_time(value: Any) -> datetime:
    """Parse an ISO 8601 time as GitHub writes it (``2024-01-01T00:00:00Z``), in UTC if naive.

    Args:
        value: A decoded JSON value.

    Returns:
        The aware datetime.
    """
    text = json_str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(value)


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("labels is not a list")
    return tuple(
        json_str(label["name"]) if isinstance(label, dict) else json_str(label) for label in value
    )


def runner_from_json(item: Any) -> SelfHostedRunner:
    """Build a runner from GitHub's ``runner`` object (any status but online is offline).

    Args:
        item: The decoded JSON object.

    Returns:
        The runner.
    """
    online = json_str(item["status"]) == GitHubRunnerStatus.ONLINE.value
    busy = item["busy"]
    if not isinstance(busy, bool):
        raise TypeError("busy is not a boolean")
    return SelfHostedRunner(
        id=json_int(item["id"]),
        name=json_str(item["name"]),
        status=GitHubRunnerStatus.ONLINE if online else GitHubRunnerStatus.OFFLINE,
        busy=busy,
        labels=_labels(item.get("labels", [])),
    )


def application_from_json(item: Any) -> RunnerApplication:
    """Build a runner application from GitHub's ``runner-application`` object.

    Args:
        item: The decoded JSON object.

    Returns:
        The runner application.
    """
    return RunnerApplication(
        os=json_str(item["os"]),
        architecture=json_str(item["architecture"]),
        download_url=json_str(item["download_url"]),
        filename=json_str(item["filename"]),
        sha256_checksum=_opt_str(item.get("sha256_checksum")),
        temp_download_token=_opt_str(item.get("temp_download_token")),
    )


def job_from_json(item: Any) -> JobInfo:
    """Build a job from GitHub's ``job`` object.

    Args:
        item: The decoded JSON object.

    Returns:
        The job.
    """
    return JobInfo(
        id=json_int(item["id"]),
        status=JobStatus(json_str(item["status"])),
        conclusion=_opt_str(item.get("conclusion")),
        created_at=parse_time(item["created_at"]),
        started_at=_opt_time(item.get("started_at")),
        runner_name=_opt_str(item.get("runner_name")) or None,
        labels=_labels(item.get("labels", [])),
        completed_at=_opt_time(item.get("completed_at")),
        run_id=_opt_int(item.get("run_id")),
        runner_id=_opt_int(item.get("runner_id")),
        name=_opt_str(item.get("name")),
        workflow_name=_opt_str(item.get("workflow_name")),
    )


def _port(scheme: str, port: int | None) -> int:
    if port is not None:
        return port
    return 443 if scheme.lower() == "https" else 80


def parse_job_url(api_url: str, url: str) -> tuple[GitHubRepo, int]:
    """Split an untrusted API job URL into repository and job id.

    The URL must be ``<api_url>/repos/<owner>/<repo>/actions/jobs/<id>`` exactly: same scheme,
    host and port as ``api_url``, under its path, no credentials, query or fragment.

    Args:
        api_url: The REST API base URL the URL must be under.
        url: The job's API URL (e.g. from the queue).

    Returns:
        The repository and the job id.

    Raises:
        InvalidJobUrlError: If the URL is anything else.
    """
    if not isinstance(url, str) or len(url) > 2048:
        raise errors.InvalidJobUrlError(str(url)[:200], "not a string of at most 2048 characters")
    try:
        got = urlsplit(url.strip())
        got_port = got.port
    except ValueError as exc:
        raise errors.InvalidJobUrlError(url, "not a URL") from exc
    base = urlsplit(api_url.rstrip("/"))
    if (
        got.scheme.lower() != base.scheme.lower()
        or (got.hostname or "").lower() != (base.hostname or "").lower()
        or _port(got.scheme, got_port) != _port(base.scheme, base.port)
        or got.username is not None
        or got.password is not None
    ):
        raise errors.InvalidJobUrlError(url, f"not on {api_url}")
    if got.query or got.fragment:
        raise errors.InvalidJobUrlError(url, "has a query or fragment")
    base_path = base.path.rstrip("/")
    if not got.path.startswith(base_path + "/"):
        raise errors.InvalidJobUrlError(url, f"not on {api_url}")
    match = _JOB_PATH.match(got.path[len(base_path) :])
    if not match or not _NAME.match(match.group(1)) or not _NAME.match(match.group(2)):
        raise errors.InvalidJobUrlError(url, "not <api>/repos/<owner>/<repo>/actions/jobs/<id>")
    return GitHubRepo(owner=match.group(1), repo=match.group(2)), int(match.group(3))


# --- HTTP answers -> the project's errors (pure) ----------------------------------------------

_MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class HttpReply:
    """One HTTP answer, as the transport seam returns it.

    Attributes:
        status: The HTTP status.
        headers: Response headers, names in lower case.
        body: The response body (JSON text or empty).
    """

    status: int
    headers: Mapping[str, str]
    body: str


def _server_message(reply: HttpReply) -> str:
    try:
        data = json.loads(reply.body) if reply.body else None
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message[:_MESSAGE_LIMIT] if isinstance(message, str) else ""


def rate_limit_reset(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Return when a rate limit resets (``retry-after`` seconds or date, or ``x-ratelimit-reset``).

    Args:
        headers: Response headers, names in lower case.
        now: The current time (UTC).

    Returns:
        The reset time, or None if GitHub did not say.
    """
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return now + timedelta(seconds=max(0.0, float(retry_after)))
        except (ValueError, OverflowError):
            pass
        try:
            when = parsedate_to_datetime(retry_after)
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        except (TypeError, ValueError):
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return datetime.fromtimestamp(int(float(reset)), tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            return None
    return None


def error_from_reply(
    reply: HttpReply, verb: str, url: str, where: str | None
) -> errors.GithubClientError:
    """Map a non-2xx answer to the project's error.

    401 -> token error; 429, or 403 with ``x-ratelimit-remaining: 0`` or ``retry-after`` -> rate
    limit (reset from ``retry-after``, else ``x-ratelimit-reset``); other 403 -> permission error
    naming the path; 404 -> not found; 409 -> conflict; anything else -> API error with status.

    Args:
        reply: The answer.
        verb: HTTP method.
        url: Path under the API URL.
        where: The repository or organisation concerned (``owner/repo`` or org), if any.

    Returns:
        The error to raise (5xx ones are retried first by the client).
    """
    status = reply.status
    headers = reply.headers
    now = datetime.now(timezone.utc)
    if status == 401:
        return errors.GithubTokenError(where)
    if status == 429 or (
        status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    ):
        return errors.GithubRateLimitError(rate_limit_reset(headers, now), status=status)
    if status == 403:
        return errors.GithubPermissionError(where or "the GitHub API")
    detail = _server_message(reply)
    suffix = f": {detail}" if detail else ""
    if status == 404:
        return errors.GithubNotFoundError(
            f"{verb} {url}: not found{suffix}", status=404, path=where
        )
    if status == 409:
        return errors.GithubConflictError(
            f"{verb} {url}: conflict{suffix}", status=409, path=where
        )
    return errors.GithubApiError(
        f"{verb} {url}: GitHub answered {status}{suffix}", status=status, path=where
    )


# --- repository policy (collaborators, branch protection, pull requests) ----------------------

#: Permission levels a collaborator may hold on a repository, weakest first.
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")


@dataclass(frozen=True)
class BranchProtection:
    """The protection of a branch (``GET .../branches/{branch}/protection``).

    Attributes:
        required_approving_review_count: Approving reviews a pull request needs before merging,
            or None when the protection does not require reviews.
        require_code_owner_reviews: Whether code owners must approve.
        dismiss_stale_reviews: Whether new commits dismiss approvals.
        enforce_admins: Whether the rules apply to administrators too.
        allow_force_pushes: Whether force pushes are allowed.
    """

    required_approving_review_count: int | None
    require_code_owner_reviews: bool = False
    dismiss_stale_reviews: bool = False
    enforce_admins: bool = False
    allow_force_pushes: bool = False

    @property
    def requires_reviews(self) -> bool:
        """Whether a change reaches the branch only through an approved pull request."""
        return (self.required_approving_review_count or 0) >= 1


@dataclass(frozen=True)
class PullRequestInfo:
    """A pull request as GitHub reports it (``GET .../pulls/{pull_number}``).

    Attributes:
        number: The pull request number.
        state: ``open`` or ``closed``.
        author: Login of the user who opened it.
        head_repo: ``owner/repo`` of the repository the changes come from; None when that
            repository was deleted.
        head_owner: Login of the owner of the head repository (None when it was deleted).
        head_owner_type: ``User`` or ``Organization`` (None when it was deleted).
        head_ref: The head branch.
        head_sha: The head commit.
        base_repo: ``owner/repo`` of the repository the pull request targets.
        base_ref: The base branch.
    """

    number: int
    state: str
    author: str
    head_repo: str | None
    head_owner: str | None
    head_owner_type: str | None
    head_ref: str
    head_sha: str
    base_repo: str
    base_ref: str

    @property
    def is_fork(self) -> bool:
        """Whether the changes come from another repository (or a deleted one)."""
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


def permission_from_json(data: Any) -> str:
    """Read a collaborator's permission (``repository-collaborator-permission``).

    ``permission`` is GitHub's legacy level (admin, write, read, none: maintain is reported as
    write and triage as read); ``role_name`` tells maintain and triage apart, so it wins when it
    is one of the known levels (a custom role keeps the legacy level).

    Args:
        data: The decoded JSON object.

    Returns:
        One of :data:`PERMISSION_LEVELS`.

    Raises:
        ValueError: If the permission is not a known level.
    """
    permission = json_str(data["permission"]).lower()
    role = data.get("role_name")
    if isinstance(role, str) and role.lower() in ("maintain", "triage"):
        return role.lower()
    if permission not in PERMISSION_LEVELS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission


def protection_from_json(data: Any) -> BranchProtection:
    """Build a branch protection from GitHub's ``branch-protection`` object.

    Args:
        data: The decoded JSON object.

    Returns:
        The protection.
    """
    if not isinstance(data, dict):
        raise TypeError("branch protection is not an object")
    reviews = data.get("required_pull_request_reviews")
    count: int | None = None
    owners = stale = False
    if isinstance(reviews, dict):
        # GitHub omits the count when it is the default (1).
        count = json_int(reviews.get("required_approving_review_count", 1))
        owners = bool(reviews.get("require_code_owner_reviews", False))
        stale = bool(reviews.get("dismiss_stale_reviews", False))
    admins = data.get("enforce_admins")
    force = data.get("allow_force_pushes")
    return BranchProtection(
        required_approving_review_count=count,
        require_code_owner_reviews=owners,
        dismiss_stale_reviews=stale,
        enforce_admins=bool(admins.get("enabled")) if isinstance(admins, dict) else False,
        allow_force_pushes=bool(force.get("enabled")) if isinstance(force, dict) else False,
    )


def pull_request_from_json(data: Any) -> PullRequestInfo:
    """Build a pull request from GitHub's ``pull-request`` object.

    Args:
        data: The decoded JSON object.

    Returns:
        The pull request.
    """
    head, base = data["head"], data["base"]
    head_repo = head.get("repo")
    owner = head_repo.get("owner") if isinstance(head_repo, dict) else None
    return PullRequestInfo(
        number=json_int(data["number"]),
        state=json_str(data["state"]),
        author=json_str(data["user"]["login"]),
        head_repo=json_str(head_repo["full_name"]) if isinstance(head_repo, dict) else None,
        head_owner=json_str(owner["login"]) if isinstance(owner, dict) else None,
        head_owner_type=_opt_str(owner.get("type")) if isinstance(owner, dict) else None,
        head_ref=json_str(head["ref"]),
        head_sha=json_str(head["sha"]),
        base_repo=json_str(base["repo"]["full_name"]),
        base_ref=json_str(base["ref"]),
    )
