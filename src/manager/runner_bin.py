"""The runner-binary half of the seed API, the same for every backend's manager."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from artifacts import runner_binary
from errors import GithubNotFoundError, RunnerBinaryError
from github_api.seam import GithubPlatform
from github_api.types import GitHubPath, RunnerApplication


class RunnerBinaryMethods:
    """The runner-binary methods over the unit's cached tarball (``runner_bin_path``).

    A manager mixes this in and says where GitHub is (:meth:`_runner_bin_query`) and how it
    holds the unit lock (:meth:`_locked`).

    Attributes:
        runner_bin_path: The cached runner application tarball.
    """

    runner_bin_path: Path

    def _runner_bin_query(self) -> tuple[GithubPlatform, GitHubPath, str]:
        """Return the GitHub to ask, the unit's path and its architecture."""
        raise NotImplementedError

    def _locked(self, what: str) -> AbstractContextManager[None]:
        """Hold the unit lock alone for ``what``."""
        raise NotImplementedError

    def get_latest_runner_bin_url(self, os_name: str = "linux") -> RunnerApplication:
        """Get the latest runner application for this unit's os and architecture.

        Args:
            os_name: Name of the operating system.

        Returns:
            Information on the runner application.

        Raises:
            RunnerBinaryError: If GitHub cannot tell.
        """
        github, path, arch = self._runner_bin_query()
        try:
            return github.get_runner_application(path, os_name=os_name, arch=arch)
        except GithubNotFoundError as exc:
            raise RunnerBinaryError(f"no runner application for {os_name}") from exc

    def update_runner_bin(self, binary: RunnerApplication) -> None:
        """Download a runner application, replacing the current copy once verified.

        Args:
            binary: Information on the runner application to download.

        Raises:
            RunnerBinaryError: If the download or its verification failed.
        """
        with self._locked("update-runner-bin"):
            runner_binary.download(binary, self.runner_bin_path)

    def check_runner_bin(self) -> bool:
        """Check whether a usable runner binary is cached.

        Returns:
            Whether the runner binary exists and its record is consistent.
        """
        return runner_binary.cached_binary(self.runner_bin_path) is not None

    def runner_bin_version(self) -> str | None:
        """Return the version of the cached runner binary, if any."""
        cached = runner_binary.cached_binary(self.runner_bin_path)
        return cached.version if cached else None
