"""What the job consumer works with: its seams, its settings and the outcomes of a delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import errors
from github_api.types import GitHubPath, JobInfo, parse_github_path
from runner_type import DEFAULT_LABELS


class GithubJobChecker(Protocol):
    """Reads a job from GitHub (the real one is ``github_client.GithubClient``)."""

    def get_job_by_url(self, url: str) -> JobInfo:
        """Return the job behind an API job URL.

        Args:
            url: The job's API URL, untrusted.

        Returns:
            The job.

        Raises:
            GithubNotFoundError: The job does not exist.
            InvalidJobUrlError: The URL is not a job URL of the configured GitHub.
            GithubClientError: Any other GitHub failure.
        """
        ...  # pragma: no cover


class RunnerSpawner(Protocol):
    """Creates one runner (the real one wraps the charm's RunnerManager)."""

    def spawn_one(self) -> str:
        """Create one runner, registered and starting.

        Returns:
            The runner's name.
        """
        ...  # pragma: no cover


class RunnerActivity(str, Enum):
    """What a spawned runner is doing, as GitHub lists it."""

    WAITING = "waiting"  # registered and not running a job: still booting (offline) or idle
    BUSY = "busy"  # running a job
    GONE = "gone"  # not listed: ran a job and removed itself, or was removed


@dataclass(frozen=True)
class RunnerView:
    """One look at this unit's runners on GitHub, from the side of one spawned runner.

    Attributes:
        own: What the spawned runner does (GONE when no runner was named).
        others_idle: Other runners of the unit online and idle: GitHub gives them a queued job.
        others_starting: Other runners registered but not online yet (booting).
    """

    own: RunnerActivity
    others_idle: int = 0
    others_starting: int = 0


@runtime_checkable
class RunnerWatcher(Protocol):
    """Tells what this unit's runners do (the real one lists them through the GitHub client)."""

    def watch(self, name: str | None) -> RunnerView:
        """Look at the runner ``name`` (None: no runner of this delivery) and the others.

        Args:
            name: The runner spawned for the delivery, or None.

        Returns:
            The view.

        Raises:
            GithubClientError: GitHub could not list the runners.
        """
        ...  # pragma: no cover


class Outcome(str, Enum):
    """What the consumer did with one delivery."""

    PICKED_UP = "picked-up"
    ALREADY_TAKEN = "already-taken"
    INVALID = "invalid"
    UNSUPPORTED_LABELS = "unsupported-labels"
    FOREIGN_REPOSITORY = "foreign-repository"
    JOB_NOT_FOUND = "job-not-found"
    NOT_PICKED_UP = "not-picked-up"
    RUNNER_TAKEN_ELSEWHERE = "runner-taken-elsewhere"
    GITHUB_ERROR = "github-error"
    SPAWN_FAILED = "spawn-failed"
    ERROR = "error"
    STOPPED = "stopped"

    @property
    def settlement(self) -> str:
        """Return ``ack``, ``reject`` (no requeue) or ``requeue``."""
        if self in (Outcome.PICKED_UP, Outcome.ALREADY_TAKEN):
            return "ack"
        if self in (
            Outcome.INVALID,
            Outcome.UNSUPPORTED_LABELS,
            Outcome.FOREIGN_REPOSITORY,
            Outcome.JOB_NOT_FOUND,
        ):
            return "reject"
        return "requeue"


@dataclass(frozen=True)
class Verdict:
    """The decision about one delivery.

    Attributes:
        outcome: What happened.
        delay: Seconds to wait (holding the message) before a requeue.
        runner_name: The runner spawned for this delivery, if any.
    """

    outcome: Outcome
    delay: float = 0.0
    runner_name: str | None = None


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer behaves; all durations in seconds.

    Attributes:
        queue_name: The queue (the application name).
        supported_labels: Lower-cased labels this application offers.
        served: The repository or organisation the unit serves: a job of any other repository
            is rejected. None (only in tests and old config files) accepts any repository.
        pickup_timeout: How long to wait, after spawning, for GitHub to show the job taken.
        pickup_poll_initial: First wait between job checks after spawning.
        pickup_poll_max: Longest wait between job checks after spawning (exponential backoff).
        error_delay_initial: Requeue delay after a first GitHub or spawn failure.
        error_delay_max: Longest requeue delay (consecutive failures double it).
        receive_timeout: How long one wait for a message lasts (bounds the stop latency).
        connect_timeout: Timeout of a broker connection attempt and of AMQP socket I/O.
        poll_interval: Polling interval of polling transports (MongoDB, SQL, memory).
        not_found_grace: How long a job GitHub answers 404 for is asked again before it is
            dropped (GitHub's replicas may not show a job just created); 0 drops it at once.
        not_found_poll_initial: First wait between those checks (doubled, at most 2 s).
        warm_grace: With an idle runner of the unit online (the warm floor), how long a queued
            job is left to it before a runner is spawned; GitHub assigns it within a second
            or two, and a job it took gets no runner of its own.
    """

    queue_name: str
    supported_labels: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_LABELS))
    served: GitHubPath | None = None
    pickup_timeout: float = 300.0
    pickup_poll_initial: float = 2.0
    pickup_poll_max: float = 30.0
    error_delay_initial: float = 5.0
    error_delay_max: float = 120.0
    receive_timeout: float = 1.0
    connect_timeout: float = 10.0
    poll_interval: float = 1.0
    not_found_grace: float = 5.0
    not_found_poll_initial: float = 0.5
    warm_grace: float = 5.0

    @classmethod
    def from_mapping(cls, queue_name: str, data: Mapping[str, Any]) -> ConsumerSettings:
        """Build settings from a JSON object (the ``consumer`` section of the config file).

        Args:
            queue_name: The queue name.
            data: Optional keys ``supported_labels`` (list of str), ``served`` (the ``path``
                option: ``owner/repo`` or an organisation) and the duration fields.

        Returns:
            The settings.

        Raises:
            ReactiveError: A key is unknown or a value has the wrong type.
        """
        known = {f for f in cls.__dataclass_fields__ if f not in ("queue_name",)}
        unknown = set(data) - known
        if unknown:
            raise errors.ReactiveError(f"unknown consumer settings: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "supported_labels":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise errors.ReactiveError("supported_labels must be a list of strings")
                kwargs[key] = frozenset(v.strip().lower() for v in value if v.strip())
            elif key == "served":
                try:
                    kwargs[key] = parse_github_path(value) if isinstance(value, str) else None
                except ValueError as exc:
                    raise errors.ReactiveError(f"served is not a GitHub path: {exc}") from exc
                if kwargs[key] is None:
                    raise errors.ReactiveError("served must be owner/repo or an organisation")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise errors.ReactiveError(f"{key} must be a non-negative number")
                kwargs[key] = float(value)
        return cls(queue_name=queue_name, **kwargs)
