"""Metric events and the JSON-lines log they are appended to.

Each event is one JSON object on one line of ``/var/log/github-runner-metrics.log`` (path
overridable with the ``GITHUB_RUNNER_METRICS_LOG`` environment variable), for example::

    {"timestamp":1763884830.5,"event":"runner_start","flavor":"small","workflow":"CI",
     "repo":"canonical/github-runner","github_event":"push","idle":30.2,"queue_duration":1.5}

The ``event`` field is the snake_case name of the model class. The grafana-agent ships the file
to Loki; the dashboards and alert rules select events with ``| json | event="runner_start"``.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from errors import IssueMetricEventError
from metrics.type import CodeInformation

METRICS_LOG_PATH = Path("/var/log/github-runner-metrics.log")
METRICS_LOG_PATH_ENV = "GITHUB_RUNNER_METRICS_LOG"

NonNegativeFloat = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Event(BaseModel):
    """Base of the metric events.

    Attributes:
        timestamp: UNIX time at which the event happened.
        event: The event name: the snake_case name of the class (``runner_start``...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_name: ClassVar[str] = "event"

    timestamp: NonNegativeFloat
    event: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive the event name of each subclass from its class name.

        Args:
            kwargs: Passed on.
        """
        super().__init_subclass__(**kwargs)
        cls.event_name = _snake_case(cls.__name__)

    @model_validator(mode="before")
    @classmethod
    def _set_event_name(cls, data: Any) -> Any:
        """Fill in (and check) the event name."""
        if isinstance(data, dict):
            given = data.get("event")
            if given not in (None, "", cls.event_name):
                raise ValueError(f"event must be {cls.event_name!r}, not {given!r}")
            return {**data, "event": cls.event_name}
        return data


class RunnerInstalled(Event):
    """A runner was installed (its instance created and registered).

    Attributes:
        flavor: The runner flavor (the charm's application name).
        duration: Seconds the installation took.
    """

    flavor: str
    duration: NonNegativeFloat


class RunnerStart(Event):
    """A runner started a job.

    Attributes:
        flavor: The runner flavor.
        workflow: The workflow name.
        repo: The repository (``owner/repo``).
        github_event: The GitHub event that triggered the workflow.
        idle: Seconds the runner waited idle between installation and the job.
        queue_duration: Seconds the job waited in GitHub's queue, if known.
    """

    flavor: str
    workflow: str
    repo: str
    github_event: str
    idle: NonNegativeFloat
    queue_duration: NonNegativeFloat | None = None


class RunnerStop(Event):
    """A runner finished a job.

    Attributes:
        flavor: The runner flavor.
        workflow: The workflow name.
        repo: The repository (``owner/repo``).
        github_event: The GitHub event that triggered the workflow.
        status: ``normal``, ``abnormal`` or ``repo-policy-check-failure``.
        status_info: The exit code or HTTP status behind the status, if any.
        job_duration: Seconds between the job start and the runner's stop.
        job_conclusion: GitHub's conclusion of the job (success, failure...), if known.
    """

    flavor: str
    workflow: str
    repo: str
    github_event: str
    status: str
    status_info: CodeInformation | None = None
    job_duration: NonNegativeFloat
    job_conclusion: str | None = None


class Reconciliation(Event):
    """A reconcile of the runners finished.

    Attributes:
        flavor: The runner flavor.
        crashed_runners: Runners that started a job and never reported its end.
        idle_runners: Idle runners after the reconcile.
        active_runners: Busy runners after the reconcile.
        expected_runners: The configured number of runners.
        duration: Seconds the reconcile took.
    """

    flavor: str
    crashed_runners: NonNegativeInt
    idle_runners: NonNegativeInt
    active_runners: NonNegativeInt
    expected_runners: NonNegativeInt
    duration: NonNegativeFloat


EVENT_TYPES: tuple[type[Event], ...] = (RunnerInstalled, RunnerStart, RunnerStop, Reconciliation)


def metrics_log_path() -> Path:
    """Return the path of the metrics log (``GITHUB_RUNNER_METRICS_LOG`` overrides it).

    Returns:
        The path.
    """
    override = os.environ.get(METRICS_LOG_PATH_ENV)
    return Path(override) if override else METRICS_LOG_PATH


def issue_event(event: Event) -> None:
    """Append one event as one JSON line to the metrics log.

    The line is written with a single ``write`` on an ``O_APPEND`` descriptor under an exclusive
    ``flock``, so concurrent writers (hooks, reactive processes) never interleave lines.

    Args:
        event: The event.

    Raises:
        IssueMetricEventError: If the log cannot be written.
    """
    line = (event.model_dump_json() + "\n").encode()
    path = metrics_log_path()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            written = os.write(fd, line)
            if written != len(line):
                raise IssueMetricEventError(f"short write to {path}: {written}/{len(line)}")
        finally:
            os.close(fd)
    except OSError as exc:
        raise IssueMetricEventError(f"cannot write metric event to {path}: {exc}") from exc


def now() -> float:
    """Return the current UNIX time (a seam for tests).

    Returns:
        Seconds since the epoch.
    """
    return time.time()
