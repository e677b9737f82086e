"""Shared core of the sandbox model: the lock, the stores, the id counters and the constants.

:class:`StateBase` holds what both halves of :class:`sandbox.state.SandboxState` use: the one
lock, the condition long polls wait on, the runner and job stores, label ids and job listeners.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sandbox.model import Job, Label, RemoteToken, Runner, RunnerGroup, Scope

DEFAULT_GROUP_ID = 1
DEFAULT_GROUP_NAME = "default"
REGISTRATION_TOKEN_TTL = 3600.0
ONLINE_WINDOW = 10.0
LOST_TIMEOUT = 30.0
MAX_LOG_CHARS = 16 * 1024 * 1024
DEFAULT_LABEL_NAMES = ("self-hosted", "linux", "x64", "arm64", "arm", "windows", "macos")


JobListener = Callable[[str, "Job"], None]


class StateBase:  # pylint: disable=too-many-instance-attributes
    """The lock, the stores and the helpers shared by the runner and job halves of the model."""

    def __init__(
        self,
        runner_version: str,
        online_window: float = ONLINE_WINDOW,
        lost_timeout: float = LOST_TIMEOUT,
    ):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.runner_version = runner_version
        self.online_window = online_window
        self.lost_timeout = lost_timeout
        self.allowed_scopes: set[str] | None = None
        self.closed = False
        self.runners: dict[int, Runner] = {}
        self.jobs: dict[int, Job] = {}
        self.remote_tokens: dict[str, RemoteToken] = {}
        self.groups: dict[str, list[RunnerGroup]] = {}
        self.label_ids: dict[str, int] = {}
        self.job_listeners: list[JobListener] = []
        self._next_runner_id = 1
        self._next_job_id = 1000
        self._next_run_id = 500
        self._next_group_id = 2

    # ---- helpers -------------------------------------------------------------------------

    def _label(self, name: str, read_only: bool) -> Label:
        key = name.lower()
        if key not in self.label_ids:
            self.label_ids[key] = len(self.label_ids) + 1
        return Label(self.label_ids[key], name, "read-only" if read_only else "custom")

    def _notify(self, action: str, job: Job) -> None:
        job.events[action] = time.time()
        self.changed.notify_all()
        for listener in list(self.job_listeners):
            listener(action, job)

    def scope_allowed(self, scope: Scope) -> bool:
        """Whether a repository or organization exists (all do unless a list was set).

        Args:
            scope: the scope.

        Returns:
            True when allowed.
        """
        with self.lock:
            if self.allowed_scopes is None:
                return True
            return scope.name.lower() in self.allowed_scopes or (
                scope.kind == "repo" and scope.owner.lower() in self.allowed_scopes
            )

    def close(self) -> None:
        """Wake every long poll and refuse new ones."""
        with self.lock:
            self.closed = True
            self.changed.notify_all()
