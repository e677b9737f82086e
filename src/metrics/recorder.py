"""What the RunnerManager records: metric events around reconciles, from the runners' stores."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from errors import MetricsError
from metrics import github as github_metrics
from metrics.events import Event, RunnerInstalled, issue_event, now
from metrics.runner import extract, issue_events, reconciliation_event
from metrics.storage import StorageManager

if TYPE_CHECKING:
    from github_api.types import GitHubPath

logger = logging.getLogger(__name__)


class MetricsRecorder:
    """Issues the metric events of one unit's runners; does nothing when metrics are off.

    Attributes:
        enabled: Whether metrics are collected (the cos-agent relation exists).
        storage: The per-runner metrics stores (None when disabled).
    """

    def __init__(
        self,
        enabled: bool,
        flavor: str,
        storage: StorageManager | None,
        github: github_metrics.JobsOfRunClient,
        *,
        served: GitHubPath,
    ) -> None:
        """Build the recorder.

        Args:
            enabled: Whether metrics are collected.
            flavor: The runner flavor (the application name).
            storage: The metrics store manager (required when enabled).
            github: Client used to find the job a runner ran.
            served: The repository or organisation the unit serves: the only one asked about
                jobs (a runner's metrics name the repository, and the job wrote them).
        """
        self.enabled = enabled and storage is not None
        self.flavor = flavor
        self.storage = storage if self.enabled else None
        self._github = github
        self._served = served
        self._issued: list[set[type[Event]]] = []

    def collect(self, ignore_runners: set[str]) -> int:
        """Extract the stores of finished runners and issue their events.

        Args:
            ignore_runners: Runners still alive (their stores are left alone).

        Returns:
            How many runners' metrics were extracted.
        """
        if self.storage is None:
            return 0
        count = 0
        for runner_metrics in extract(self.storage, ignore_runners):
            job = None
            if runner_metrics.pre_job is not None:
                job = github_metrics.job(
                    self._github,
                    runner_metrics.pre_job,
                    runner_metrics.runner_name,
                    served=self._served,
                )
            self._issued.append(issue_events(runner_metrics, self.flavor, job))
            count += 1
        return count

    def runner_installed(self, duration: float) -> None:
        """Issue ``runner_installed`` for a runner that was just created.

        Args:
            duration: Seconds its creation took.
        """
        if not self.enabled:
            return
        self._issue(
            RunnerInstalled(timestamp=now(), flavor=self.flavor, duration=max(duration, 0.0))
        )

    def reconciliation(self, expected: int, duration: float, idle: int, busy: int) -> None:
        """Issue ``reconciliation`` for the reconcile that just ended.

        Args:
            expected: The configured number of runners.
            duration: Seconds the reconcile took.
            idle: Idle runners after the reconcile.
            busy: Busy runners after the reconcile.
        """
        if not self.enabled:
            return
        event = reconciliation_event(
            self.flavor,
            issued_per_runner=self._issued,
            idle_runners=idle,
            active_runners=busy,
            expected_runners=max(expected, 0),
            duration=max(duration, 0.0),
        )
        self._issued = []
        self._issue(event)

    @staticmethod
    def _issue(event: Event) -> None:
        try:
            issue_event(event)
        except MetricsError:
            logger.exception("cannot issue %s", type(event).__name__)
