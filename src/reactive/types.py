"""What the job consumer works with: its seams, its settings and the outcomes of a delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import errors
from github_api.types import JobInfo
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


class Outcome(str, Enum):
    """What the consumer did with one delivery."""

    PICKED_UP = "picked-up"
    ALREADY_TAKEN = "already-taken"
    INVALID = "invalid"
    UNSUPPORTED_LABELS = "unsupported-labels"
    JOB_NOT_FOUND = "job-not-found"
    NOT_PICKED_UP = "not-picked-up"
    GITHUB_ERROR = "github-error"
    SPAWN_FAILED = "spawn-failed"
    ERROR = "error"
    STOPPED = "stopped"

    @property
    def settlement(self) -> str:
        """Return ``ack``, ``reject`` (no requeue) or ``requeue``."""
        if self in (Outcome.PICKED_UP, Outcome.ALREADY_TAKEN):
            return "ack"
        if self in (Outcome.INVALID, Outcome.UNSUPPORTED_LABELS, Outcome.JOB_NOT_FOUND):
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
        pickup_timeout: How long to wait, after spawning, for GitHub to show the job taken.
        pickup_poll_initial: First wait between job checks after spawning.
        pickup_poll_max: Longest wait between job checks after spawning (exponential backoff).
        error_delay_initial: Requeue delay after a first GitHub or spawn failure.
        error_delay_max: Longest requeue delay (consecutive failures double it).
        receive_timeout: How long one wait for a message lasts (bounds the stop latency).
        connect_timeout: Timeout of a broker connection attempt and of AMQP socket I/O.
        poll_interval: Polling interval of polling transports (MongoDB, SQL, memory).
    """

    queue_name: str
    supported_labels: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_LABELS))
    pickup_timeout: float = 300.0
    pickup_poll_initial: float = 2.0
    pickup_poll_max: float = 30.0
    error_delay_initial: float = 5.0
    error_delay_max: float = 120.0
    receive_timeout: float = 1.0
    connect_timeout: float = 10.0
    poll_interval: float = 1.0

    @classmethod
    def from_mapping(cls, queue_name: str, data: Mapping[str, Any]) -> ConsumerSettings:
        """Build settings from a JSON object (the ``consumer`` section of the config file).

        Args:
            queue_name: The queue name.
            data: Optional keys ``supported_labels`` (list of str) and the duration fields.

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
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise errors.ReactiveError(f"{key} must be a non-negative number")
                kwargs[key] = float(value)
        return cls(queue_name=queue_name, **kwargs)
