"""Parse GitHub's JSON answers and HTTP errors into the project's types and errors (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import errors
from github_api.types import (
    NAME_PATTERN,
    PERMISSION_LEVELS,
    BranchProtection,
    GitHubRepo,
    GitHubRunnerStatus,
    JobInfo,
    JobStatus,
    PullRequestInfo,
    RunnerApplication,
    SelfHostedRunner,
    WorkflowRunInfo,
)

_JOB_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/actions/jobs/([0-9]{1,19})$")


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
    if (
        not match
        or not NAME_PATTERN.match(match.group(1))
        or not NAME_PATTERN.match(match.group(2))
    ):
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


def workflow_run_from_json(data: Any) -> WorkflowRunInfo:
    """Build a workflow run from GitHub's ``workflow-run`` object.

    Args:
        data: The decoded JSON object.

    Returns:
        The run.
    """
    head = data.get("head_repository")
    owner = head.get("owner") if isinstance(head, dict) else None
    pulls = data.get("pull_requests") or []
    if not isinstance(pulls, list):
        raise TypeError("pull_requests is not a list")
    return WorkflowRunInfo(
        id=json_int(data["id"]),
        repository=json_str(data["repository"]["full_name"]),
        event=json_str(data["event"]),
        status=_opt_str(data.get("status")),
        head_branch=_opt_str(data.get("head_branch")),
        head_sha=json_str(data["head_sha"]),
        head_repository=json_str(head["full_name"]) if isinstance(head, dict) else None,
        head_owner_type=_opt_str(owner.get("type")) if isinstance(owner, dict) else None,
        pull_requests=tuple(json_int(pull["number"]) for pull in pulls),
    )


def malformed(what: str, exc: Exception) -> errors.GithubApiError:
    """Return the error for an answer that does not have the shape GitHub documents.

    Args:
        what: What was being read (e.g. ``runners list``).
        exc: The parsing failure (only its type is shown).
    """
    return errors.GithubApiError(f"GitHub answered a malformed {what} ({type(exc).__name__})")
