"""The charm's GitHub REST client: the only module that imports PyGithub.

Every method takes a :data:`github_type.GitHubPath` (repository or organisation), returns the
typed objects of :mod:`github_type` and raises the ``GithubClientError`` family of
:mod:`errors`. PyGithub is used as the transport (authentication, base URL, connection pool);
the endpoints are called through its ``Requester`` (what ``Github.requester`` returns, built
directly because ``Github()`` only takes whole-second timeouts) so that every call, page and
retry is visible here.

Time and retry policy (per public method call):

* Each HTTP attempt has a timeout of ``timeout`` seconds (connect and read).
* 5xx answers, timeouts and connection errors are retried with exponential backoff
  (0.5 s, 1 s, 2 s, ... capped at 4 s), at most ``MAX_ATTEMPTS`` attempts per request. An attempt
  other than the very first one of the call only starts if it can finish within ``max_wait``
  seconds of the start of the call, so one call never blocks much longer than
  ``max(timeout, max_wait)``. When the budget or the attempts run out the last failure is raised
  as :class:`errors.GithubApiError`.
* Rate limits are never waited for: 403 with ``x-ratelimit-remaining: 0`` and 429 (or a 403
  carrying ``retry-after``, GitHub's secondary limit) raise :class:`errors.GithubRateLimitError`
  at once, with the reset time GitHub gave, so the caller (a reconcile on a timer) backs off.
* PyGithub's own retry (``GithubRetry``, which may sleep until a rate limit resets) and its
  request throttling are switched off.

Secrets: the token is only handed to PyGithub's ``Auth.Token``; it never appears in messages or
logs. PyGithub's DEBUG logging of each request prints response bodies (which hold registration
tokens and JIT configurations), so DEBUG records of the ``github.Requester`` logger are dropped.

Thread safety: PyGithub's connection object is not safe to share between threads, so each thread
gets its own ``Requester``; the runner-group cache is shared and locked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

from github import Auth
from github.Requester import Requester

import errors
from github_api.parse import (
    HttpReply,
    application_from_json,
    error_from_reply,
    job_from_json,
    json_int,
    json_str,
    parse_job_url,
    parse_time,
    permission_from_json,
    protection_from_json,
    pull_request_from_json,
    runner_from_json,
)
from github_api.types import (
    BranchProtection,
    GitHubOrg,
    GitHubPath,
    GitHubRepo,
    JITConfig,
    JobInfo,
    PullRequestInfo,
    RateLimitStatus,
    RegistrationToken,
    RunnerApplication,
    SelfHostedRunner,
)

logger = logging.getLogger(__name__)

PER_PAGE = 100
MAX_ATTEMPTS = 4
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 4.0
USER_AGENT = "github-runner-charm"
REPO_RUNNER_GROUP_ID = 1
_T = TypeVar("_T")


def _drop_debug(record: logging.LogRecord) -> bool:
    """Keep records above DEBUG: PyGithub's DEBUG lines print response bodies holding secrets."""
    return record.levelno > logging.DEBUG


logging.getLogger("github.Requester").addFilter(_drop_debug)


class TransportError(Exception):
    """No HTTP answer: timeout or connection error (raised by the transport seam)."""


Sender = Callable[[str, str, dict[str, Any] | None, dict[str, Any] | None], HttpReply]


class _Budget:
    """The time budget of one public call."""

    def __init__(self, clock: Callable[[], float], max_wait: float) -> None:
        self._clock = clock
        self._start = clock()
        self._max_wait = max_wait
        self.attempts = 0

    def allows(self, seconds: float) -> bool:
        """Return whether ``seconds`` more fit (the first attempt of a call always does)."""
        if self.attempts == 0:
            return True
        return self._clock() - self._start + seconds <= self._max_wait


class GithubClient:
    """Typed client of the GitHub REST endpoints the charm uses.

    Attributes:
        api_url: The REST API base URL (``https://api.github.com`` or ``<ghes>/api/v3``).
        timeout: Timeout of one HTTP attempt, in seconds.
        max_wait: Time budget of one public call, retries included, in seconds.
    """

    def __init__(
        self,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        timeout: float = 15,
        max_wait: float = 30,
    ) -> None:
        """Build the client. No request is made.

        Args:
            token: The personal access token. Secret.
            api_url: The REST API base URL; see :func:`github_type.api_base_url`.
            timeout: Timeout of one HTTP attempt, in seconds.
            max_wait: Time budget of one public call, retries included, in seconds. ``timeout``
                is lowered to it if larger.

        Raises:
            ValueError: If the token is empty, the URL is not plain http(s) or a time is not > 0.
        """
        if not token or not token.strip():
            raise ValueError("the GitHub token is empty")
        url = api_url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise ValueError("the GitHub API URL must not hold credentials")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid GitHub API URL {api_url!r}: need http(s)://host[/path]")
        if parts.query or parts.fragment:
            raise ValueError(f"invalid GitHub API URL {api_url!r}: no query or fragment")
        if timeout <= 0 or max_wait <= 0:
            raise ValueError("timeout and max_wait must be positive")
        self.api_url = url
        self.timeout = min(timeout, max_wait)
        self.max_wait = max_wait
        self._token = token
        self._local = threading.local()
        self._groups: dict[tuple[str, str], int] = {}
        self._groups_lock = threading.Lock()
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep
        self._send: Sender = self._send_pygithub

    def __repr__(self) -> str:
        """Describe the client without its token."""
        return f"GithubClient(api_url={self.api_url!r})"

    # --- runners ---------------------------------------------------------------------------

    def list_runners(self, path: GitHubPath, prefix: str) -> list[SelfHostedRunner]:
        """List the self-hosted runners whose name starts with ``prefix``.

        Reads every page (100 runners each): ``ceil(total / 100)`` requests, at least one.

        Args:
            path: The repository or organisation.
            prefix: Name prefix of the runners to keep (the unit's prefix).

        Returns:
            The matching runners, in GitHub's order.
        """
        url = f"{_prefix(path)}/actions/runners"
        found: dict[int, SelfHostedRunner] = {}
        for page in self._pages(url, path, self._budget(), "runners", runner_from_json):
            for runner in page:
                if runner.name.startswith(prefix):
                    found.setdefault(runner.id, runner)
        return list(found.values())

    def delete_runner(self, path: GitHubPath, runner_id: int, runner_name: str = "") -> None:
        """Delete a self-hosted runner registration. A runner already gone is not an error.

        Args:
            path: The repository or organisation.
            runner_id: GitHub's id of the runner.
            runner_name: The runner's name, for :class:`errors.RunnerBusyError` (no lookup is
                made; the id is used when it is empty).

        Raises:
            RunnerBusyError: If the runner is running a job (422).
        """
        url = f"{_prefix(path)}/actions/runners/{int(runner_id)}"
        try:
            self._request("DELETE", url, path, self._budget())
        except errors.GithubNotFoundError:
            logger.debug("runner %s on %s was already deleted", runner_id, path.path())
        except errors.GithubApiError as exc:
            if exc.status == 422:
                raise errors.RunnerBusyError(runner_name or f"#{runner_id}") from exc
            raise

    def get_jit_config(self, path: GitHubPath, name: str, labels: Iterable[str]) -> JITConfig:
        """Register a just-in-time runner and return its configuration.

        For an organisation the runner joins ``path.group`` (looked up by name once per client,
        then cached); for a repository the default group.

        Args:
            path: The repository or organisation.
            name: The runner's name.
            labels: Its labels (1 to 100).

        Returns:
            The runner id and the encoded configuration for ``run.sh --jitconfig``.

        Raises:
            ValueError: If there are no labels or more than 100.
            GithubConflictError: If a runner with this name exists (409).
            GithubRunnerGroupNotFoundError: If the organisation has no such runner group.
        """
        label_list = list(labels)
        if not 1 <= len(label_list) <= 100:
            raise ValueError("a JIT runner needs 1 to 100 labels")
        budget = self._budget()
        if isinstance(path, GitHubOrg):
            group_id = self._runner_group_id(path, budget)
        else:
            group_id = REPO_RUNNER_GROUP_ID
        body = {"name": name, "runner_group_id": group_id, "labels": label_list}
        url = f"{_prefix(path)}/actions/runners/generate-jitconfig"
        data = self._request("POST", url, path, budget, body=body)
        try:
            return JITConfig(
                runner_id=json_int(data["runner"]["id"]),
                encoded_jit_config=json_str(data["encoded_jit_config"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("JIT configuration", exc) from exc

    def get_registration_token(self, path: GitHubPath) -> RegistrationToken:
        """Create a registration token (for ``config.sh --token``).

        Args:
            path: The repository or organisation.

        Returns:
            The token and its expiry.
        """
        return self._token_call(path, "registration-token")

    def get_removal_token(self, path: GitHubPath) -> RegistrationToken:
        """Create a remove token (for ``config.sh remove --token``).

        Args:
            path: The repository or organisation.

        Returns:
            The token and its expiry.
        """
        return self._token_call(path, "remove-token")

    def get_runner_application(
        self, path: GitHubPath, os_name: str = "linux", arch: str = "x64"
    ) -> RunnerApplication:
        """Return the runner application download for an OS and architecture.

        Args:
            path: The repository or organisation.
            os_name: ``linux``, ``osx`` or ``win``.
            arch: ``x64``, ``arm64``, ...

        Returns:
            The download (URL, file name, SHA-256 when GitHub gives it).

        Raises:
            RunnerApplicationNotFoundError: If GitHub lists none for this OS and architecture.
        """
        data = self._request(
            "GET", f"{_prefix(path)}/actions/runners/downloads", path, self._budget()
        )
        try:
            if not isinstance(data, list):
                raise TypeError("downloads is not a list")
            apps = [application_from_json(item) for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("runner application list", exc) from exc
        for app in apps:
            if app.os == os_name and app.architecture == arch:
                return app
        raise errors.RunnerApplicationNotFoundError(os_name, arch, path.path())

    # --- jobs -------------------------------------------------------------------------------

    def get_job(self, path: GitHubRepo, job_id: int) -> JobInfo:
        """Return a workflow job.

        Args:
            path: The repository that runs the job.
            job_id: The job id.

        Returns:
            The job.

        Raises:
            GithubNotFoundError: If there is no such job (404).
        """
        url = f"{_prefix(path)}/actions/jobs/{int(job_id)}"
        data = self._request("GET", url, path, self._budget())
        try:
            return job_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("job", exc) from exc

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        """List the jobs of a workflow run (latest attempt), all pages.

        Args:
            path: The repository of the run.
            run_id: The workflow run id.

        Returns:
            The jobs.

        Raises:
            GithubNotFoundError: If there is no such run (404).
        """
        url = f"{_prefix(path)}/actions/runs/{int(run_id)}/jobs"
        jobs: dict[int, JobInfo] = {}
        for page in self._pages(url, path, self._budget(), "jobs", job_from_json):
            for info in page:
                jobs.setdefault(info.id, info)
        return list(jobs.values())

    def get_job_by_url(self, url: str) -> JobInfo:
        """Return the job behind an API job URL (``<api_url>/repos/o/r/actions/jobs/<id>``).

        The URL is untrusted (it comes from a queue): it must be on this client's API URL and
        have exactly that form; the request is rebuilt from the parsed parts.

        Args:
            url: The job's API URL.

        Returns:
            The job.

        Raises:
            InvalidJobUrlError: If the URL is not a job URL under this client's API URL.
        """
        repo, job_id = parse_job_url(self.api_url, url)
        return self.get_job(repo, job_id)

    # --- rate limit -------------------------------------------------------------------------

    def get_rate_limit(self) -> RateLimitStatus:
        """Return the token's core rate limit (this request does not count against it).

        Returns:
            Limit, remaining requests and reset time.
        """
        data = self._request("GET", "/rate_limit", None, self._budget())
        try:
            core = data["resources"]["core"] if "resources" in data else data["rate"]
            return RateLimitStatus(
                limit=json_int(core["limit"]),
                remaining=json_int(core["remaining"]),
                reset_at=datetime.fromtimestamp(json_int(core["reset"]), tz=timezone.utc),
            )
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            raise _malformed("rate limit", exc) from exc

    # --- internals --------------------------------------------------------------------------

    def _budget(self) -> _Budget:
        return _Budget(self._clock, self.max_wait)

    def _token_call(self, path: GitHubPath, kind: str) -> RegistrationToken:
        url = f"{_prefix(path)}/actions/runners/{kind}"
        data = self._request("POST", url, path, self._budget())
        try:
            return RegistrationToken(
                token=json_str(data["token"]), expires_at=parse_time(data["expires_at"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(kind, exc) from exc

    def _runner_group_id(self, path: GitHubOrg, budget: _Budget) -> int:
        key = (path.org.lower(), path.group)
        with self._groups_lock:
            cached = self._groups.get(key)
        if cached is not None:
            return cached
        url = f"{_prefix(path)}/actions/runner-groups"
        groups: list[tuple[int, str]] = []
        for page in self._pages(url, path, budget, "runner_groups", _group_from_json):
            groups.extend(page)
            exact = [gid for gid, name in page if name == path.group]
            if exact:
                group_id = exact[0]
                break
        else:
            loose = [gid for gid, name in groups if name.lower() == path.group.lower()]
            if not loose:
                raise errors.GithubRunnerGroupNotFoundError(path.org, path.group)
            group_id = loose[0]
        with self._groups_lock:
            self._groups[key] = group_id
        return group_id

    def _pages(
        self,
        url: str,
        path: GitHubPath,
        budget: _Budget,
        key: str,
        parse: Callable[[Any], _T],
    ) -> Iterator[list[_T]]:
        """Yield the parsed items of each page of a ``{total_count, <key>: [...]}`` list.

        Stops after a short page or once ``total_count`` items were read, so ``n`` items take
        ``ceil(n / 100)`` requests (one when there are none).

        Args:
            url: Path under the API URL.
            path: The repository or organisation concerned.
            budget: The time budget of the public call.
            key: The name of the list in the answer.
            parse: Builds one item from its JSON.

        Yields:
            The items of one page.
        """
        page = 1
        seen = 0
        while True:
            params = {"per_page": PER_PAGE, "page": page}
            data = self._request("GET", url, path, budget, params=params)
            try:
                total = json_int(data["total_count"])
                items = data[key]
                if not isinstance(items, list):
                    raise TypeError(f"{key} is not a list")
                parsed = [parse(item) for item in items]
            except (KeyError, TypeError, ValueError) as exc:
                raise _malformed(f"{key} list", exc) from exc
            yield parsed
            seen += len(parsed)
            if len(parsed) < PER_PAGE or seen >= total:
                return
            page += 1

    def _request(
        self,
        verb: str,
        url: str,
        path: GitHubPath | None,
        budget: _Budget,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request with retries and map the answer.

        Args:
            verb: HTTP method.
            url: Path under the API URL, starting with ``/``.
            path: The repository or organisation concerned, for errors.
            budget: The time budget of the public call.
            params: Query parameters.
            body: JSON body.

        Returns:
            The decoded JSON answer (``None`` for an empty body).

        Raises:
            GithubApiError: If the request cannot be completed in the budget.
        """
        if not budget.allows(self.timeout):
            raise errors.GithubApiError(
                f"GitHub is too slow: {verb} {url} does not fit in {self.max_wait}s",
                path=_path_str(path),
            )
        while True:
            budget.attempts += 1
            failure: errors.GithubClientError
            try:
                reply = self._send(verb, url, params, body)
            except TransportError as exc:
                failure = errors.GithubApiError(
                    f"GitHub did not answer {verb} {url}: {exc}", path=_path_str(path)
                )
            else:
                if 200 <= reply.status < 300:
                    return _decode(reply)
                failure = error_from_reply(reply, verb, url, _path_str(path))
                if reply.status < 500:
                    raise failure
            pause = min(BACKOFF_FIRST * 2 ** (budget.attempts - 1), BACKOFF_MAX)
            if budget.attempts >= MAX_ATTEMPTS or not budget.allows(pause + self.timeout):
                raise failure
            logger.info("%s %s failed (%s), retrying in %.1fs", verb, url, failure, pause)
            self._sleep(pause)

    def _requester(self) -> Requester:
        # PyGithub's Github() insists on an int timeout; its Requester (what Github.requester
        # returns) takes the float that requests accepts, so it is built directly.
        requester = getattr(self._local, "requester", None)
        if requester is None:
            requester = Requester(
                auth=Auth.Token(self._token),
                base_url=self.api_url,
                timeout=cast("int", self.timeout),
                user_agent=USER_AGENT,
                per_page=PER_PAGE,
                verify=True,
                retry=None,
                pool_size=None,
                seconds_between_requests=None,
                seconds_between_writes=None,
                lazy=True,
            )
            self._local.requester = requester
        return requester

    def _send_pygithub(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> HttpReply:
        """Send one HTTP request through PyGithub: the transport seam.

        Args:
            verb: HTTP method.
            url: Path under the API URL.
            params: Query parameters.
            body: JSON body.

        Returns:
            The answer, whatever its status.

        Raises:
            TransportError: On a timeout or connection error.
            GithubApiError: If PyGithub refuses the exchange (e.g. a redirect off the host).
        """
        requester = self._requester()
        try:
            status, headers, text = requester.requestJson(
                verb, url, parameters=params, headers=None, input=body
            )
        except OSError as exc:  # requests' exceptions derive from OSError
            raise TransportError(type(exc).__name__) from exc
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise errors.GithubApiError(f"{verb} {url} failed: {type(exc).__name__}") from exc
        return HttpReply(
            status=int(status),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            body=text,
        )

    # --- repository policy (appended for the pre-job policy service) ---------------------------

    def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
        """Return a user's permission on a repository.

        Args:
            path: The repository.
            username: The user's login.

        Returns:
            One of ``github_type.PERMISSION_LEVELS`` (``none`` for a user who is no
            collaborator; maintain and triage told apart by GitHub's ``role_name``).

        Raises:
            GithubNotFoundError: If the repository or the user does not exist (404).
        """
        if not username or username in (".", ".."):
            raise ValueError(f"invalid username {username!r}")
        user = quote(username, safe="")
        url = f"{_prefix(path)}/collaborators/{user}/permission"
        data = self._request("GET", url, path, self._budget())
        try:
            return permission_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed("collaborator permission", exc) from exc

    def get_branch_protection(self, path: GitHubRepo, branch: str) -> BranchProtection | None:
        """Return the protection of a branch, or None when it is not protected.

        GitHub answers 404 both for an unprotected branch and for a missing one: both give None.

        Args:
            path: The repository.
            branch: The branch name (without ``refs/heads/``).

        Returns:
            The protection, or None.
        """
        if not branch or branch in (".", ".."):
            raise ValueError(f"invalid branch name {branch!r}")
        url = f"{_prefix(path)}/branches/{quote(branch, safe='')}/protection"
        try:
            data = self._request("GET", url, path, self._budget())
        except errors.GithubNotFoundError:
            return None
        try:
            return protection_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed("branch protection", exc) from exc

    def get_pull_request(self, path: GitHubRepo, number: int) -> PullRequestInfo:
        """Return a pull request.

        Args:
            path: The repository the pull request targets.
            number: Its number.

        Returns:
            The pull request.

        Raises:
            GithubNotFoundError: If there is no such pull request (404).
        """
        url = f"{_prefix(path)}/pulls/{int(number)}"
        data = self._request("GET", url, path, self._budget())
        try:
            return pull_request_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed("pull request", exc) from exc


# --- helpers ----------------------------------------------------------------------------------


def _prefix(path: GitHubPath) -> str:
    if isinstance(path, GitHubRepo):
        return f"/repos/{quote(path.owner, safe='')}/{quote(path.repo, safe='')}"
    return f"/orgs/{quote(path.org, safe='')}"


def _path_str(path: GitHubPath | None) -> str | None:
    return path.path() if path is not None else None


def _decode(reply: HttpReply) -> Any:
    if not reply.body.strip():
        return None
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise errors.GithubApiError("GitHub answered malformed JSON", status=reply.status) from exc


def _group_from_json(item: Any) -> tuple[int, str]:
    return json_int(item["id"]), json_str(item["name"])


def _malformed(what: str, exc: Exception) -> errors.GithubApiError:
    return errors.GithubApiError(f"GitHub answered a malformed {what} ({type(exc).__name__})")
