"""The client face of the GitHub seam: the REST endpoints the charm uses, typed.

Every method takes a :data:`github_api.types.GitHubPath` (repository or organisation), returns
the typed objects of :mod:`github_api.types` and raises the ``GithubClientError`` family of
:mod:`errors`. The parts behind it: :mod:`github_api.transport` (PyGithub, the only module that
imports it), :mod:`github_api.retry` (time budget, bounded retries, rate limits raised at once),
:mod:`github_api.pagination` (``ceil(n / 100)`` list requests) and :mod:`github_api.parse`
(untrusted JSON and HTTP errors). The seams the core types against are in
:mod:`github_api.seam`.

Thread safety: the transport gives each thread its own connection; the runner-group cache is
shared and locked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import errors
from github_api.credentials import CredentialSource, as_source
from github_api.pagination import pages
from github_api.parse import (
    application_from_json,
    job_from_json,
    json_int,
    json_str,
    malformed,
    parse_job_url,
    parse_time,
    permission_from_json,
    protection_from_json,
    pull_request_from_json,
    runner_from_json,
    workflow_run_from_json,
)
from github_api.queued_jobs import list_queued_jobs
from github_api.retry import Budget, HttpTransport, Retrier
from github_api.transport import PyGithubTransport
from github_api.types import (
    BranchProtection,
    GitHubOrg,
    GitHubPath,
    GitHubRepo,
    JITConfig,
    JobInfo,
    PullRequestInfo,
    RegistrationToken,
    RunnerApplication,
    SelfHostedRunner,
    WorkflowRunInfo,
)

logger = logging.getLogger(__name__)

REPO_RUNNER_GROUP_ID = 1


class GithubClient:
    """Typed client of the GitHub REST endpoints the charm uses.

    Attributes:
        api_url: The REST API base URL (``https://api.github.com`` or ``<ghes>/api/v3``).
        timeout: Timeout of one HTTP attempt, in seconds.
        max_wait: Time budget of one public call, retries included, in seconds.
    """

    def __init__(
        self,
        token: str | CredentialSource,
        api_url: str = "https://api.github.com",
        *,
        timeout: float = 15,
        max_wait: float = 30,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Build the client. No request is made.

        Args:
            token: The personal access token (secret), or the source of each request's token
                (:mod:`github_api.credentials`; GitHub App installation tokens:
                :mod:`github_api.app_tokens`).
            api_url: The REST API base URL; see :func:`github_api.types.api_base_url`.
            timeout: Timeout of one HTTP attempt, in seconds.
            max_wait: Time budget of one public call, retries included, in seconds. ``timeout``
                is lowered to it if larger.
            transport: Sends one HTTP request; PyGithub (:class:`PyGithubTransport`) by default.
            clock: Monotonic clock of the time budget, in seconds.
            sleep: Sleeps between retries.

        Raises:
            ValueError: If the token is empty, the URL is not plain http(s) or a time is not > 0.
        """
        credentials = as_source(token)
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
        if transport is None:
            transport = PyGithubTransport(credentials, url, self.timeout)
        self._retrier = Retrier(
            transport, timeout=self.timeout, max_wait=max_wait, clock=clock, sleep=sleep
        )
        self._groups: dict[tuple[str, str], int] = {}
        self._groups_lock = threading.Lock()

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
        for page in pages(
            self._retrier, url, path, self._retrier.budget(), key="runners", parse=runner_from_json
        ):
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
            self._retrier.request("DELETE", url, path, self._retrier.budget())
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
        budget = self._retrier.budget()
        if isinstance(path, GitHubOrg):
            group_id = self._runner_group_id(path, budget)
        else:
            group_id = REPO_RUNNER_GROUP_ID
        body = {"name": name, "runner_group_id": group_id, "labels": label_list}
        url = f"{_prefix(path)}/actions/runners/generate-jitconfig"
        data = self._retrier.request("POST", url, path, budget, body=body)
        try:
            return JITConfig(
                runner_id=json_int(data["runner"]["id"]),
                encoded_jit_config=json_str(data["encoded_jit_config"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed("JIT configuration", exc) from exc

    def get_registration_token(self, path: GitHubPath) -> RegistrationToken:
        """Create a registration token (for the ``config.sh --token`` fallback).

        Args:
            path: The repository or organisation.

        Returns:
            The token and its expiry.
        """
        url = f"{_prefix(path)}/actions/runners/registration-token"
        data = self._retrier.request("POST", url, path, self._retrier.budget())
        try:
            return RegistrationToken(
                token=json_str(data["token"]), expires_at=parse_time(data["expires_at"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed("registration-token", exc) from exc

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
        data = self._retrier.request(
            "GET", f"{_prefix(path)}/actions/runners/downloads", path, self._retrier.budget()
        )
        try:
            if not isinstance(data, list):
                raise TypeError("downloads is not a list")
            apps = [application_from_json(item) for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed("runner application list", exc) from exc
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
        data = self._retrier.request("GET", url, path, self._retrier.budget())
        try:
            return job_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed("job", exc) from exc

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
        for page in pages(
            self._retrier, url, path, self._retrier.budget(), key="jobs", parse=job_from_json
        ):
            for info in page:
                jobs.setdefault(info.id, info)
        return list(jobs.values())

    def list_queued_jobs(self, path: GitHubRepo, max_runs: int = 10) -> list[JobInfo]:
        """List the jobs still queued in the newest waiting runs of a repository.

        At most ``2 + max_runs`` requests (:mod:`github_api.queued_jobs`).

        Args:
            path: The repository.
            max_runs: The most runs whose jobs are read (1 to 100).

        Returns:
            The queued jobs.
        """
        return list_queued_jobs(self._retrier, path, max_runs)

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

    # --- internals --------------------------------------------------------------------------

    def _runner_group_id(self, path: GitHubOrg, budget: Budget) -> int:
        key = (path.org.lower(), path.group)
        with self._groups_lock:
            cached = self._groups.get(key)
        if cached is not None:
            return cached
        url = f"{_prefix(path)}/actions/runner-groups"
        groups: list[tuple[int, str]] = []
        for page in pages(
            self._retrier, url, path, budget, key="runner_groups", parse=_group_from_json
        ):
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

    # --- repository policy (asked by the pre-job policy service) -------------------------------

    def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
        """Return a user's permission on a repository.

        Args:
            path: The repository.
            username: The user's login.

        Returns:
            One of ``github_api.types.PERMISSION_LEVELS`` (``none`` for a user who is no
            collaborator; maintain and triage told apart by GitHub's ``role_name``).

        Raises:
            GithubNotFoundError: If the repository or the user does not exist (404).
        """
        if not username or username in (".", ".."):
            raise ValueError(f"invalid username {username!r}")
        user = quote(username, safe="")
        url = f"{_prefix(path)}/collaborators/{user}/permission"
        data = self._retrier.request("GET", url, path, self._retrier.budget())
        try:
            return permission_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed("collaborator permission", exc) from exc

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
            data = self._retrier.request("GET", url, path, self._retrier.budget())
        except errors.GithubNotFoundError:
            return None
        try:
            return protection_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed("branch protection", exc) from exc

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
        data = self._retrier.request("GET", url, path, self._retrier.budget())
        try:
            return pull_request_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed("pull request", exc) from exc

    def get_workflow_run(self, path: GitHubRepo, run_id: int) -> WorkflowRunInfo:
        """Return a workflow run (what the policy service decides on, not the runner's word).

        Args:
            path: The repository of the run.
            run_id: The run id.

        Returns:
            The run.

        Raises:
            GithubNotFoundError: If the repository has no such run (404).
        """
        url = f"{_prefix(path)}/actions/runs/{int(run_id)}"
        data = self._retrier.request("GET", url, path, self._retrier.budget())
        try:
            return workflow_run_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed("workflow run", exc) from exc


# --- helpers ----------------------------------------------------------------------------------


def _prefix(path: GitHubPath) -> str:
    if isinstance(path, GitHubRepo):
        return f"/repos/{quote(path.owner, safe='')}/{quote(path.repo, safe='')}"
    return f"/orgs/{quote(path.org, safe='')}"


def _group_from_json(item: Any) -> tuple[int, str]:
    return json_int(item["id"]), json_str(item["name"])
