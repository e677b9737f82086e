"""The GitHub seam as the core sees it: a typing Protocol (no PyGithub, no I/O).

:class:`github_api.client.GithubClient` is the real implementation; the unit tests' fake
(``tests/unit/fakes_github.py``) satisfies the same Protocol under mypy. Narrower consumers
declare their own smaller Protocols, which ``GithubClient`` satisfies too:
``reactive.consumer.GithubJobChecker`` (``get_job_by_url``), ``metrics.github.JobsOfRunClient``
(``list_jobs_of_run``) and ``repo_policy.policy.PolicyGitHub`` (the policy service's questions).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from github_api.types import (
    GitHubPath,
    GitHubRepo,
    JITConfig,
    JobInfo,
    RegistrationToken,
    RunnerApplication,
    SelfHostedRunner,
)


class GithubPlatform(Protocol):
    """What the runner manager, its runners, metrics and reactive consumers ask GitHub.

    Every method raises the ``errors.GithubClientError`` family on failure.
    """

    def list_runners(self, path: GitHubPath, prefix: str) -> list[SelfHostedRunner]:
        """List the self-hosted runners whose name starts with ``prefix`` (all pages).

        Args:
            path: The repository or organisation.
            prefix: Name prefix of the runners to keep (the unit's prefix).
        """
        ...  # pragma: no cover

    def delete_runner(self, path: GitHubPath, runner_id: int, runner_name: str = "") -> None:
        """Delete a runner registration; one already gone is not an error.

        Args:
            path: The repository or organisation.
            runner_id: GitHub's id of the runner.
            runner_name: The runner's name, for ``errors.RunnerBusyError``.

        Raises:
            RunnerBusyError: If the runner is running a job.
        """
        ...  # pragma: no cover

    def get_jit_config(self, path: GitHubPath, name: str, labels: Iterable[str]) -> JITConfig:
        """Register a just-in-time runner and return its configuration.

        Args:
            path: The repository or organisation.
            name: The runner's name.
            labels: Its labels (1 to 100).

        Raises:
            GithubNotFoundError: If GitHub offers no JIT configuration here.
            GithubConflictError: If a runner with this name exists.
        """
        ...  # pragma: no cover

    def get_registration_token(self, path: GitHubPath) -> RegistrationToken:
        """Create a registration token for the ``config.sh --token`` fallback.

        Args:
            path: The repository or organisation.
        """
        ...  # pragma: no cover

    def get_runner_application(
        self, path: GitHubPath, os_name: str = "linux", arch: str = "x64"
    ) -> RunnerApplication:
        """Return the runner application download for an OS and architecture.

        Args:
            path: The repository or organisation.
            os_name: ``linux``, ``osx`` or ``win``.
            arch: ``x64``, ``arm64``, ...

        Raises:
            RunnerApplicationNotFoundError: If GitHub lists none for them.
        """
        ...  # pragma: no cover

    def list_jobs_of_run(self, path: GitHubRepo, run_id: int) -> list[JobInfo]:
        """List the jobs of a workflow run (latest attempt, all pages).

        Args:
            path: The repository of the run.
            run_id: The workflow run id.
        """
        ...  # pragma: no cover

    def list_queued_jobs(self, path: GitHubRepo, max_runs: int = 10) -> list[JobInfo]:
        """List the jobs still queued in the newest waiting runs of a repository (bounded).

        Args:
            path: The repository.
            max_runs: The most runs whose jobs are read (1 to 100).
        """
        ...  # pragma: no cover

    def get_job_by_url(self, url: str) -> JobInfo:
        """Return the job behind an API job URL.

        Args:
            url: The job's API URL, untrusted.

        Raises:
            InvalidJobUrlError: If the URL is not a job URL of the configured GitHub.
            GithubNotFoundError: If the job does not exist.
        """
        ...  # pragma: no cover
