"""The sandbox's model objects: scopes, runners, labels, jobs, steps, tokens, runner groups."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def iso(ts: float | None) -> str | None:
    """Format an epoch as GitHub does ("2026-11-23T07:42:05Z").

    Args:
        ts: seconds since the epoch, or None.

    Returns:
        The ISO 8601 UTC string, or None.
    """
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Scope:
    """Where a runner is registered: a repository ("owner/repo") or an organization."""

    kind: str  # "repo" or "org"
    name: str

    @property
    def owner(self) -> str:
        """The organization (or user) that owns the scope."""
        return self.name.split("/", 1)[0]

    @classmethod
    def parse(cls, path: str) -> Scope:
        """Parse "owner/repo" or "org" (as found after the host in a --url).

        Args:
            path: the path part, slashes around it are ignored.

        Returns:
            The scope.

        Raises:
            ValueError: if the path is empty or has more than two parts.
        """
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) == 1:
            return cls("org", parts[0])
        if len(parts) == 2:
            return cls("repo", f"{parts[0]}/{parts[1]}")
        raise ValueError(f"not a repository or organization path: {path!r}")

    def covers(self, repository: str) -> bool:
        """Whether a runner of this scope may take jobs of a repository.

        Args:
            repository: "owner/repo" of the job.

        Returns:
            True for the same repository or the organization owning it.
        """
        if self.kind == "repo":
            return self.name.lower() == repository.lower()
        return repository.split("/", 1)[0].lower() == self.name.lower()


@dataclass
class Label:
    """A runner label."""

    id: int
    name: str
    type: str  # "read-only" or "custom"


@dataclass
class Runner:
    """A registered self-hosted runner."""

    id: int
    name: str
    scope: Scope
    group_id: int
    group_name: str
    labels: list[Label]
    ephemeral: bool
    credential: str
    jit: bool
    work_folder: str = "_work"
    os: str = "linux"
    arch: str = "x64"
    version: str | None = None
    created_at: float = field(default_factory=time.time)
    last_seen: float | None = None
    polling: int = 0
    job_id: int | None = None

    @property
    def busy(self) -> bool:
        """Whether the runner is running a job."""
        return self.job_id is not None

    def status(self, now: float, window: float) -> str:
        """GitHub's runner status: "online" while polling, heartbeating or busy.

        Args:
            now: the current epoch.
            window: seconds a heartbeat keeps the runner online.

        Returns:
            "online" or "offline".
        """
        if self.busy or self.polling > 0:
            return "online"
        if self.last_seen is not None and now - self.last_seen <= window:
            return "online"
        return "offline"

    def label_names(self) -> list[str]:
        """Names of the runner's labels."""
        return [label.name for label in self.labels]


@dataclass
class Step:
    """One step of a job as reported by the runner."""

    number: int
    name: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None


@dataclass
class Job:
    """A workflow job."""

    id: int
    run_id: int
    repository: str
    labels: list[str]
    commands: list[str]
    name: str
    workflow: str
    event: str
    ref: str
    head_sha: str
    actor: str
    event_payload: dict[str, Any]
    created_at: float
    run_attempt: int = 1
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    steps: list[Step] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)
    cancel_requested: bool = False
    log_size: int = 0

    @property
    def head_branch(self) -> str | None:
        """The branch name of the ref (a pull request's head branch), as GitHub reports it."""
        pull = self.event_payload.get("pull_request")
        if isinstance(pull, dict) and isinstance(pull.get("head"), dict):
            ref = pull["head"].get("ref")
            if isinstance(ref, str) and ref:
                return ref
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref or None


@dataclass
class RemoteToken:
    """A registration or remove token."""

    token: str
    kind: str  # "registration" or "remove"
    scope: Scope
    expires_at: float


@dataclass
class RunnerGroup:
    """An organization runner group."""

    id: int
    name: str
    visibility: str = "all"
    default: bool = False


class StateError(Exception):
    """A request the model refuses; carries the HTTP status the API answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
