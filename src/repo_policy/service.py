"""Assemble the service from files: token files, GitHub client, configuration, token store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import GithubApiError
from github_api.app_tokens import source_from_text
from github_api.client import GithubClient
from github_api.types import BranchProtection, GitHubRepo, PullRequestInfo, WorkflowRunInfo
from metrics.push import MetricsPushApp, MetricsPushReceiver, load_or_create_key
from metrics.storage import DirectoryStorageManager
from repo_policy.app import PolicyApp
from repo_policy.config import ConfigSource, WatchedFile
from repo_policy.policy import CheckRequest, PolicyGitHub
from repo_policy.server_limits import ServerLimits
from repo_policy.tokens import DEFAULT_MAX_TOKENS, OneTimeTokenStore

logger = logging.getLogger(__name__)

GITHUB_TIMEOUT = 10.0
GITHUB_MAX_WAIT = 20.0


class _TokenFile:
    """A secret read from a file (stripped), re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._file = WatchedFile(path)

    def __call__(self) -> str | None:
        try:
            text = self._file.read()
        except OSError:
            return None
        return text.strip() or None if text is not None else None


class _GithubSource:
    """A GitHub client for the current credentials, rebuilt when their file changes.

    The file holds a token, or a GitHub App's credentials
    (``github_api.app_tokens.app_document``): the service then gets and renews the app's
    installation tokens itself, with the same credential source as the manager.
    """

    def __init__(self, token_file: Path, api_url: str) -> None:
        self._token = _TokenFile(token_file)
        self._api_url = api_url
        self._lock = threading.Lock()
        self._client: tuple[str, PolicyGitHub] | None = None

    def __call__(self) -> PolicyGitHub:
        text = self._token()
        if not text:
            return _NoGithub()
        with self._lock:
            if self._client is None or self._client[0] != text:
                self._client = (text, self._build(text))
            return self._client[1]

    def _build(self, text: str) -> PolicyGitHub:
        try:
            credentials = source_from_text(text, self._api_url)
        except ValueError as exc:  # never the secret: the message says what is malformed
            logger.error("unusable GitHub credentials file: %s", exc)
            return _NoGithub(f"the GitHub credentials of the policy service are unusable: {exc}")
        return GithubClient(
            credentials, self._api_url, timeout=GITHUB_TIMEOUT, max_wait=GITHUB_MAX_WAIT
        )


class _NoGithub:
    """Stands for GitHub while no usable credentials are configured: every question fails (503)."""

    MESSAGE = "no GitHub token is configured for the policy service"

    def __init__(self, message: str = MESSAGE) -> None:
        self.message = message

    def get_collaborator_permission(self, path: GitHubRepo, username: str) -> str:
        raise GithubApiError(self.message)

    def get_branch_protection(self, path: GitHubRepo, branch: str) -> BranchProtection | None:
        raise GithubApiError(self.message)

    def get_pull_request(self, path: GitHubRepo, number: int) -> PullRequestInfo:
        raise GithubApiError(self.message)

    def get_workflow_run(self, path: GitHubRepo, run_id: int) -> WorkflowRunInfo:
        raise GithubApiError(self.message)


@dataclass(frozen=True)
class ServiceFiles:
    """Where the service reads its secrets and configuration.

    Attributes:
        token_file: The charm's service token (the charm reads it to ask for one-time tokens).
        github_token_file: The GitHub credentials the checks use (0600): a token, or a GitHub
            App's credentials (the service renews its installation tokens).
        github_api_url: The GitHub REST API base URL.
        config_file: The JSON configuration (:class:`repo_policy.config.PolicyConfig`).
        state_file: Where one-time token digests survive restarts, if anywhere.
        metrics_stores: The metrics stores of the unit's cloud runners: with
            ``metrics_push_key``, the service takes their pushed metric files
            (:mod:`metrics.push`).
        metrics_push_key: The unit's push key (made on first use, 0600).
    """

    token_file: Path
    github_token_file: Path
    github_api_url: str
    config_file: Path | None = None
    state_file: Path | None = None
    metrics_stores: Path | None = None
    metrics_push_key: Path | None = None


def build_app(
    files: ServiceFiles,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    before_check: Callable[[CheckRequest], None] | None = None,
) -> PolicyApp:
    """Build the application from its files.

    The token TTL is read from the configuration at start; the rest of the configuration and
    both tokens are re-read whenever their files change.

    Args:
        files: Where the secrets and configuration are.
        max_tokens: Bound of the one-time token store.
        before_check: Test hook, see :class:`repo_policy.app.PolicyApp`. Never set in production.

    Returns:
        The WSGI application.
    """
    config = ConfigSource(files.config_file)
    store = OneTimeTokenStore(
        ttl=config.get().token_ttl, max_tokens=max_tokens, state_file=files.state_file
    )
    return PolicyApp(
        service_token=_TokenFile(files.token_file),
        tokens=store,
        github=_GithubSource(files.github_token_file, files.github_api_url),
        config=config.get,
        before_check=before_check,
        metrics_push=_metrics_push(files),
    )


def _metrics_push(files: ServiceFiles) -> MetricsPushApp | None:
    """The push route of the unit's cloud runners, when the files name their stores."""
    if files.metrics_stores is None or files.metrics_push_key is None:
        return None
    stores = DirectoryStorageManager(files.metrics_stores)
    return MetricsPushApp(MetricsPushReceiver(stores, load_or_create_key(files.metrics_push_key)))


class BackgroundServer:
    """Serve a WSGI app with waitress in a daemon thread: for tests, the demo and benchmarks.

    Stops cleanly: the serving thread notices the stop and closes the listening socket itself.
    It is the production server (:mod:`repo_policy.server`: per-client cap, timeouts, limits).

    Attributes:
        limits: The server's bounds.
        host: The listening address.
        port: The listening port (chosen by the system when 0 was asked).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 4,
        limits: ServerLimits | None = None,
    ) -> None:
        """Bind at once (the port is known before :meth:`start`).

        Args:
            app: The WSGI application.
            host: The address to listen on (keep it loopback).
            port: The port; 0 picks a free one.
            threads: Waitress worker threads.
            limits: The server's bounds (the service's defaults when None).
        """
        from repo_policy.server import create_server  # noqa: PLC0415 - imports waitress

        self.limits = limits or ServerLimits()
        self._server = create_server(
            app, host=host, port=port, threads=threads, limits=self.limits
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="repo-policy", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Serve in the background.

        Returns:
            self.
        """
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (bounded).

        The serving loop wakes every 0.2 s and sees the flag; it closes the sockets itself
        (writing to waitress' trigger from here could race with that close).
        """
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        """Start on entering a with block.

        Returns:
            self.
        """
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a with block."""
        self.stop()

    def _run(self) -> None:
        from waitress import wasyncore  # noqa: PLC0415 - tests and demo only

        server = self._server
        try:
            while not self._stop.is_set():
                server.asyncore.loop(timeout=0.2, map=server._map, count=1)
        finally:
            server.task_dispatcher.shutdown()
            wasyncore.close_all(server._map)
