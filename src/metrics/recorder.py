"""What the RunnerManager records: metric events around reconciles, from the runners' stores.

Two outputs: the metric events (JSON lines for Loki, only with metrics enabled) and the
Prometheus series of the unit's ``/metrics`` (:mod:`observability`), fed from the same
observations whenever the recorder has a state directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from errors import MetricsError
from metrics import github as github_metrics
from metrics.events import Event, RunnerInstalled, issue_event, now
from metrics.runner import extract, issue_events, reconciliation_event
from metrics.storage import MetricsStorage, StorageManager
from observability.feed import MetricsFeed
from observability.state import STATE_FILE_NAME, StateFile
from reconcile_plan import ReconcilePlan

if TYPE_CHECKING:
    from github_api.types import GitHubPath

logger = logging.getLogger(__name__)


class _CountingStorage:
    """A StorageManager that counts the stores ``extract`` quarantines."""

    def __init__(self, inner: StorageManager) -> None:
        self._inner = inner
        self.quarantined = 0

    def create(self, runner_name: str) -> MetricsStorage:
        return self._inner.create(runner_name)

    def list_all(self) -> Iterator[MetricsStorage]:
        return self._inner.list_all()

    def get(self, runner_name: str) -> MetricsStorage:
        return self._inner.get(runner_name)

    def delete(self, runner_name: str) -> None:
        self._inner.delete(runner_name)

    def move_to_quarantine(self, runner_name: str) -> None:
        self.quarantined += 1
        self._inner.move_to_quarantine(runner_name)


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
        state_dir: Path | None = None,
    ) -> None:
        """Build the recorder.

        Args:
            enabled: Whether metrics are collected.
            flavor: The runner flavor (the application name).
            storage: The metrics store manager (required when enabled).
            github: Client used to find the job a runner ran.
            served: The repository or organisation the unit serves: the only one asked about
                jobs (a runner's metrics name the repository, and the job wrote them).
            state_dir: The manager's state directory: the Prometheus series are fed into its
                metrics state file (None: no Prometheus series).
        """
        self.enabled = enabled and storage is not None
        self.flavor = flavor
        self.storage = storage if self.enabled else None
        self._github = github
        self._served = served
        self._issued: list[set[type[Event]]] = []
        self.feed = (
            MetricsFeed(StateFile(state_dir / STATE_FILE_NAME), flavor) if state_dir else None
        )

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
        storage = _CountingStorage(self.storage)
        for runner_metrics in extract(storage, ignore_runners):
            job = None
            pre, post = runner_metrics.pre_job, runner_metrics.post_job
            if pre is not None:
                job = github_metrics.job(
                    self._github, pre, runner_metrics.runner_name, served=self._served
                )
            self._issued.append(issue_events(runner_metrics, self.flavor, job))
            if self.feed is not None and pre is not None:
                self.feed.job(
                    idle=max(0.0, pre.timestamp - runner_metrics.installed_timestamp),
                    queue=job.queue_duration if job else None,
                    duration=max(0.0, post.timestamp - pre.timestamp) if post else None,
                )
            count += 1
        if self.feed is not None and storage.quarantined:
            self.feed.quarantined(storage.quarantined)
        return count

    def runner_installed(self, duration: float, name: str | None = None) -> None:
        """Issue ``runner_installed`` for a runner that was just created.

        Args:
            duration: Seconds its creation took.
            name: The runner (a later reconcile then measures its time to come online).
        """
        if self.feed is not None:
            self.feed.runner_created(name, duration)
        if not self.enabled:
            return
        self._issue(
            RunnerInstalled(timestamp=now(), flavor=self.flavor, duration=max(duration, 0.0))
        )

    def reconciliation(
        self,
        expected: int,
        duration: float,
        idle: int,
        busy: int,
        plan: ReconcilePlan | None = None,
    ) -> None:
        """Issue ``reconciliation`` for the reconcile that just ended.

        Args:
            expected: The configured number of runners.
            duration: Seconds the reconcile took.
            idle: Idle runners after the reconcile.
            busy: Busy runners after the reconcile.
            plan: The reconcile's plan: the runners by state it observed (Prometheus series).
        """
        if self.feed is not None and plan is not None:
            self.feed.reconciled(plan, expected, duration)
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

    def creation_failed(self, count: int = 1) -> None:
        """Record failed runner creations (Prometheus series)."""
        if self.feed is not None and count > 0:
            self.feed.creation_failed(count)

    def runners_deleted(self, reasons: Iterable[str]) -> None:
        """Record deleted runners, one reason each (Prometheus series)."""
        if self.feed is not None:
            self.feed.runners_deleted(reasons)

    def reactive(self, queue_depth: int | None, consumers: int) -> None:
        """Record the reactive queue depth (None: unknown) and consumers kept (Prometheus)."""
        if self.feed is not None:
            self.feed.reactive(queue_depth, consumers)

    @staticmethod
    def _issue(event: Event) -> None:
        try:
            issue_event(event)
        except MetricsError:
            logger.exception("cannot issue %s", type(event).__name__)
