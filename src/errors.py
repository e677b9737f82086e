"""Errors of the github-runner charm: one root, families by subsystem, structured fields.

Every error the project raises derives from :class:`GithubRunnerError`. Errors carry the facts a
caller needs as attributes (option name, HTTP status, runner name, ...) so that the charm maps
them to statuses in one place without parsing messages. Messages never contain a token.
"""

from __future__ import annotations

from datetime import datetime


class GithubRunnerError(Exception):
    """Root of every error raised by the project."""

    def __init__(self, message: str) -> None:
        """Build the error.

        Args:
            message: What went wrong, for a human. Never holds a secret.
        """
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        """Return the message."""
        return self.message


# --- configuration --------------------------------------------------------------------------


class ConfigError(GithubRunnerError):
    """A configuration option has an invalid value."""

    def __init__(self, option: str, reason: str) -> None:
        """Build the error.

        Args:
            option: The name of the config option, as the user types it.
            reason: What is wrong with it.
        """
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


class MissingConfigError(ConfigError):
    """A required configuration option is empty."""

    def __init__(self, option: str) -> None:
        """Build the error.

        Args:
            option: The name of the missing option.
        """
        super().__init__(option, "not set")
        self.message = f"Missing required configuration: {option}"


class ImmutableConfigChangedError(ConfigError):
    """An option that cannot change after deployment was changed."""


# --- GitHub -----------------------------------------------------------------------------------


class GithubClientError(GithubRunnerError):
    """A call to the GitHub API failed."""

    def __init__(self, message: str, status: int | None = None, path: str | None = None) -> None:
        """Build the error.

        Args:
            message: What went wrong.
            status: The HTTP status GitHub answered, if any.
            path: The GitHub path (org or owner/repo) the call was about, if any.
        """
        super().__init__(message)
        self.status = status
        self.path = path


class GithubTokenError(GithubClientError):
    """GitHub rejected the token (401)."""

    def __init__(self, path: str | None = None, message: str = "the token is invalid") -> None:
        """Build the error.

        Args:
            path: The GitHub path the call was about.
            message: What GitHub refused. Never holds a secret.
        """
        super().__init__(message, status=401, path=path)


class GithubAppAuthError(GithubTokenError):
    """GitHub refused the GitHub App's JWT (401) or its installation (404).

    A 401 means the key is revoked or not the app's (or the client ID is wrong); a 404 that the
    app is not installed there, or that the installation is not this app's.
    """

    def __init__(self, message: str, status: int, option: str) -> None:
        """Build the error.

        Args:
            message: What GitHub refused and what to check. Never holds a secret.
            status: The HTTP status GitHub answered.
            option: The config option to check.
        """
        GithubClientError.__init__(self, message, status=status)
        self.option = option


class GithubPermissionError(GithubClientError):
    """The token lacks the permission the call needs (403 without a rate limit)."""

    def __init__(self, path: str) -> None:
        """Build the error.

        Args:
            path: The GitHub path (org or owner/repo) the token cannot manage.
        """
        super().__init__(f"the token cannot manage runners on {path}", status=403, path=path)


class GithubRateLimitError(GithubClientError):
    """GitHub rate limited the token; retry after ``reset_at``."""

    def __init__(self, reset_at: datetime | None, status: int = 403) -> None:
        """Build the error.

        Args:
            reset_at: When the limit resets (UTC), if GitHub said.
            status: 403 for the primary limit, 429 for a secondary one.
        """
        when = reset_at.isoformat() if reset_at else "unknown"
        super().__init__(f"GitHub rate limit reached, resets at {when}", status=status)
        self.reset_at = reset_at


class GithubApiError(GithubClientError):
    """GitHub answered an unexpected status (5xx, timeouts, malformed answers)."""


class GithubTimeoutError(GithubApiError):
    """GitHub gave no complete answer in time (the request's deadline or a socket timeout)."""


class GithubNotFoundError(GithubClientError):
    """The GitHub object (runner, job, repository) does not exist (404)."""


class GithubConflictError(GithubClientError):
    """GitHub refused because the object already exists (409), e.g. a runner name."""


class RunnerBusyError(GithubClientError):
    """GitHub refused to delete a runner that is running a job (422)."""

    def __init__(self, runner_name: str) -> None:
        """Build the error.

        Args:
            runner_name: The busy runner.
        """
        super().__init__(f"runner {runner_name} is busy running a job", status=422)
        self.runner_name = runner_name


class GithubRunnerGroupNotFoundError(GithubClientError):
    """The organisation has no runner group of the configured name."""

    def __init__(self, org: str, group: str) -> None:
        """Build the error.

        Args:
            org: The organisation.
            group: The runner group name that was not found.
        """
        super().__init__(f"organisation {org} has no runner group named {group!r}", path=org)
        self.org = org
        self.group = group


class RunnerApplicationNotFoundError(GithubNotFoundError):
    """GitHub lists no runner application for the wanted OS and architecture."""

    def __init__(self, os_name: str, arch: str, path: str | None = None) -> None:
        """Build the error.

        Args:
            os_name: The operating system asked for, e.g. ``linux``.
            arch: The architecture asked for, e.g. ``x64``.
            path: The GitHub path the downloads were listed for.
        """
        super().__init__(f"GitHub offers no runner application for {os_name}/{arch}", path=path)
        self.os_name = os_name
        self.arch = arch


class InvalidJobUrlError(GithubClientError):
    """A job URL (untrusted, e.g. from the queue) is not a job URL of the configured GitHub."""

    def __init__(self, url: str, reason: str) -> None:
        """Build the error.

        Args:
            url: The rejected URL (shortened in the message).
            reason: Why it is rejected.
        """
        shown = url if len(url) <= 200 else url[:200] + "..."
        super().__init__(f"invalid job URL {shown!r}: {reason}")
        self.url = url
        self.reason = reason


# --- LXD --------------------------------------------------------------------------------------


class LXDError(GithubRunnerError):
    """A call to the LXD daemon failed."""

    def __init__(self, message: str, operation: str = "", instance: str | None = None) -> None:
        """Build the error.

        Args:
            message: What went wrong.
            operation: The LXD operation (e.g. "create", "exec").
            instance: The instance concerned, if any.
        """
        super().__init__(message)
        self.operation = operation
        self.instance = instance


class LXDUnavailableError(LXDError):
    """The LXD daemon cannot be reached."""


class LXDNotFoundError(LXDError):
    """An LXD object (instance, image, profile, pool) does not exist."""


class LXDImageNotFoundError(LXDNotFoundError):
    """The runner image is missing from LXD."""


class LXDTimeoutError(LXDError):
    """An LXD operation or a wait on an instance exceeded its deadline."""


class LXDAlreadyExistsError(LXDError):
    """An LXD object (instance, profile, pool) with this name exists already."""


class LXDExecError(LXDError):
    """A command run in an instance with ``check=True`` exited with a non-zero code."""

    def __init__(
        self, message: str, instance: str | None = None, exit_code: int = -1, stderr: str = ""
    ) -> None:
        """Build the error.

        Args:
            message: What failed (the command with its secrets hidden).
            instance: The instance it ran in.
            exit_code: The command's exit code.
            stderr: The end of its standard error, secrets hidden.
        """
        super().__init__(message, operation="exec", instance=instance)
        self.exit_code = exit_code
        self.stderr = stderr


# --- runners ----------------------------------------------------------------------------------


class RunnerError(GithubRunnerError):
    """An operation on one runner failed."""

    def __init__(self, message: str, runner_name: str | None = None) -> None:
        """Build the error.

        Args:
            message: What went wrong.
            runner_name: The runner concerned.
        """
        super().__init__(message)
        self.runner_name = runner_name


class RunnerCreateError(RunnerError):
    """A runner could not be created."""


class RunnerRemoveError(RunnerError):
    """A runner could not be removed."""


class RunnerLogsError(RunnerError):
    """The logs of a runner could not be pulled."""


class RunnerBinaryError(RunnerError):
    """The runner application could not be found, downloaded or verified."""


class ReconcileError(RunnerError):
    """A reconcile or flush could not run at all (not: one runner failed)."""


# --- metrics ----------------------------------------------------------------------------------


class MetricsError(GithubRunnerError):
    """Metrics could not be stored, extracted or issued."""


class MetricsStorageError(MetricsError):
    """A runner's metrics store could not be created, read, moved or deleted."""

    def __init__(self, message: str, runner_name: str | None = None) -> None:
        """Build the error.

        Args:
            message: What went wrong.
            runner_name: The runner the store belongs to.
        """
        super().__init__(message)
        self.runner_name = runner_name


class CorruptMetricsError(MetricsStorageError):
    """A metrics store holds data that is not what a runner may write."""


class IssueMetricEventError(MetricsError):
    """A metric event could not be written."""


class MetricsStorageNotFoundError(MetricsStorageError):
    """A runner has no metrics store."""


class MetricsStorageExistsError(MetricsStorageError):
    """A runner already has a metrics store."""


# --- reactive ---------------------------------------------------------------------------------


class ReactiveError(GithubRunnerError):
    """Reactive mode (queue consumers) failed."""


class ReactiveRunnerError(ReactiveError):
    """A reactive runner process could not be spawned or managed."""


class QueueError(ReactiveError):
    """The message queue could not be reached or used."""


class JobMessageError(ReactiveError):
    """A job message on the queue is not valid JSON, not a job, or names a bad job URL."""

    def __init__(self, reason: str) -> None:
        """Build the error.

        Args:
            reason: What is wrong with the message (never the message body itself).
        """
        super().__init__(f"invalid job message: {reason}")
        self.reason = reason


# --- repo policy ------------------------------------------------------------------------------


class RepoPolicyError(GithubRunnerError):
    """The pre-job repository policy service failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """Build the error.

        Args:
            message: What went wrong.
            status: The HTTP status the service answered, if any.
        """
        super().__init__(message)
        self.status = status


class RepoPolicyConfigError(RepoPolicyError):
    """The policy service's configuration (file or command line) is invalid."""


class RepoPolicyTokenError(RepoPolicyError):
    """A one-time token was refused: unknown, expired or already used (HTTP 403)."""

    def __init__(self, message: str) -> None:
        """Build the error.

        Args:
            message: Why the token was refused (never the token itself).
        """
        super().__init__(message, status=403)


# --- system -----------------------------------------------------------------------------------


class TemplateValueError(GithubRunnerError):
    """A value cannot be written safely into a rendered file of some format."""

    def __init__(self, format: str, reason: str) -> None:
        """Build the error (the value itself is never shown: it may be a secret).

        Args:
            format: The file format: ``env``, ``systemd``, ``shell`` or ``json``.
            reason: Why the value cannot be written.
        """
        super().__init__(f"a value cannot be written into a {format} file: {reason}")
        self.format = format
        self.reason = reason


class SubprocessError(GithubRunnerError):
    """A command the charm runs on the unit failed."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str = "") -> None:
        """Build the error.

        Args:
            cmd: The command (secrets already hidden by the caller).
            returncode: Its exit code.
            stderr: Its standard error, truncated by the caller.
        """
        super().__init__(f"command {cmd[0] if cmd else '?'} failed with exit code {returncode}")
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr


# --- OpenStack --------------------------------------------------------------------------------


class OpenstackError(GithubRunnerError):
    """A call to the OpenStack cloud failed (``openstack.client`` maps the SDK's errors)."""

    def __init__(
        self, message: str, status: int | None = None, operation: str = "", server: str = ""
    ) -> None:
        """Build the error.

        Args:
            message: What went wrong (the cloud's own words, never a credential).
            status: The HTTP status the cloud answered, if any.
            operation: The call, e.g. "create_server", "list_servers".
            server: The server (name or id) concerned, if any.
        """
        super().__init__(message)
        self.status = status
        self.operation = operation
        self.server = server


class OpenstackQuotaError(OpenstackError):
    """The project's quota (instances, cores, RAM) forbids another server (403 or 413)."""


class OpenstackNotFoundError(OpenstackError):
    """An image, flavor, network or server does not exist (404, or a failed lookup)."""


class OpenstackBadRequestError(OpenstackError):
    """The cloud refused the request as malformed (400: bad image, flavor or network...)."""


class OpenstackTimeoutError(OpenstackError):
    """The cloud did not answer within the call's timeout, or could not be reached."""
