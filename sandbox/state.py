"""In-memory model of the sandbox: scopes, runners, tokens, runner groups and jobs.

Every public method takes the one lock, so the model is safe to use from the server's request
threads. Long polls wait on :attr:`SandboxState.changed`, a condition bound to that lock. The
model objects live in :mod:`sandbox.model`; the shared core in :mod:`sandbox.state_base`, runners,
groups and tokens in :mod:`sandbox.state_runners`, jobs in :mod:`sandbox.state_jobs`. All are
re-exported here.
"""

from __future__ import annotations

from sandbox.model import (
    Job,
    Label,
    RemoteToken,
    Runner,
    RunnerGroup,
    Scope,
    StateError,
    Step,
    iso,
)
from sandbox.state_base import (
    DEFAULT_GROUP_ID,
    DEFAULT_GROUP_NAME,
    DEFAULT_LABEL_NAMES,
    LOST_TIMEOUT,
    MAX_LOG_CHARS,
    ONLINE_WINDOW,
    REGISTRATION_TOKEN_TTL,
    JobListener,
)
from sandbox.state_jobs import JobQueue
from sandbox.state_runners import RunnerRegistry

__all__ = [
    "DEFAULT_GROUP_ID",
    "DEFAULT_GROUP_NAME",
    "DEFAULT_LABEL_NAMES",
    "LOST_TIMEOUT",
    "MAX_LOG_CHARS",
    "ONLINE_WINDOW",
    "REGISTRATION_TOKEN_TTL",
    "Job",
    "JobListener",
    "Label",
    "RemoteToken",
    "Runner",
    "RunnerGroup",
    "SandboxState",
    "Scope",
    "StateError",
    "Step",
    "iso",
]


class SandboxState(RunnerRegistry, JobQueue):
    """The whole in-memory model, guarded by one lock."""

    def reset(self) -> None:
        """Forget every runner, job, remote token, runner group and scope restriction."""
        with self.lock:
            for runner in self.runners.values():
                runner.job_id = None
            self.runners.clear()
            self.jobs.clear()
            self.remote_tokens.clear()
            self.groups.clear()
            self.allowed_scopes = None
            self.changed.notify_all()
