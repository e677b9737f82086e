"""Errors of the webhook intake (src/intake): one family under the project's root error."""

from __future__ import annotations

from errors import GithubRunnerError


class IntakeError(GithubRunnerError):
    """The webhook intake (src/intake) failed."""


class IntakeFileError(IntakeError):
    """A file of the intake is unusable; ``subject`` names which (``<subject> <path>: …``)."""

    subject = "intake file"

    def __init__(self, path: str, reason: str) -> None:
        """Build the error.

        Args:
            path: The file.
            reason: What is wrong (never a secret).
        """
        super().__init__(f"{self.subject} {path}: {reason}")
        self.path = path
        self.reason = reason


class IntakeConfigError(IntakeFileError):
    """The intake's configuration file (or a file it names) is missing, unreadable or invalid."""

    subject = "intake configuration"


class IntakeLedgerError(IntakeFileError):
    """The intake's job ledger (sqlite) cannot be opened or written."""

    subject = "job ledger"


class IntakePayloadError(IntakeError):
    """A webhook delivery is not a ``workflow_job`` event the intake can use (answered 400)."""

    def __init__(self, reason: str) -> None:
        """Build the error.

        Args:
            reason: What is wrong (never the body itself).
        """
        super().__init__(f"invalid delivery: {reason}")
        self.reason = reason


class IntakePublishError(IntakeError):
    """The broker did not take (confirm) a job message in time."""

    def __init__(self, queue: str, job_url: str, reason: str) -> None:
        """Build the error.

        Args:
            queue: The queue name.
            job_url: The job URL of the message.
            reason: What went wrong (an exception type, never the broker URI).
        """
        super().__init__(f"cannot publish job {job_url} to queue {queue}: {reason}")
        self.queue = queue
        self.job_url = job_url
        self.reason = reason
