"""The reconcile's safety net: queued jobs no webhook brought are put on the queue, once.

Webhooks are best effort: GitHub gives up on a delivery the intake did not answer, a network
drops one. At each reactive reconcile the net asks GitHub for the jobs still queued in the
unit's repository (:meth:`github_api.seam.GithubPlatform.list_queued_jobs`: at most
``2 + max_runs`` requests), keeps those

* queued for longer than ``grace`` (the webhook normally wins: it comes within a second),
* whose labels route to this unit's flavor (``intake.routing.route``, the intake's own rule),
* that the ledger has not seen (``JobLedger.claim``: the same sqlite file as the intake's, so
  the intake and the net never both enqueue a job),

and publishes each (``intake.publisher.publish_job``, broker confirms), then confirms the claim;
a failed publish releases it, so the next sweep or a redelivery enqueues it again (and a claim
left pending by a killed process is taken again once stale).

An organisation has no list of queued jobs short of reading every repository's runs: for an
organisation path the net does nothing (logged once per process) and webhooks stay the only
intake. Nothing here raises for a single job; GitHub failures reach the caller, which logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

import errors
from github_api.types import GitHubPath, GitHubRepo, JobInfo
from reactive.message import JobDetails

logger = logging.getLogger(__name__)

_warned_org = False


class Ledger(Protocol):
    """The intake's job ledger (``intake.ledger.JobLedger``), as the net uses it."""

    def claim(self, job_id: int, delivery_id: str | None = None) -> bool:
        """Return True the first time a job is seen (then it is claimed)."""
        ...  # pragma: no cover

    def confirm(self, job_id: int) -> None:
        """Mark a claim's job as enqueued (the broker confirmed)."""
        ...  # pragma: no cover

    def release(self, job_id: int) -> None:
        """Forget a claim whose publish failed."""
        ...  # pragma: no cover


class Publisher(Protocol):
    """``intake.publisher.publish_job``: publish one job message with broker confirms."""

    def __call__(
        self, mq_uri: str, queue_name: str, message: JobDetails, timeout: float = 10.0
    ) -> None:
        """Publish, or raise a project error when the broker does not confirm in time."""
        ...  # pragma: no cover


class QueuedJobs(Protocol):
    """The part of the GitHub seam the net asks."""

    def list_queued_jobs(self, path: GitHubRepo, max_runs: int = 10) -> list[JobInfo]:
        """List the jobs still queued in the newest waiting runs of a repository."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class SafetyNetSettings:
    """How the net paces itself.

    Attributes:
        grace: A job queued for less than this is left to its webhook.
        max_runs: The most workflow runs read per sweep (bounds GitHub requests: 2 + this).
        publish_timeout: Seconds the broker has to confirm one message.
    """

    grace: timedelta = timedelta(seconds=30)
    max_runs: int = 10
    publish_timeout: float = 10.0


@dataclass
class SweepReport:
    """What one sweep did.

    Attributes:
        listed: Queued jobs GitHub showed.
        enqueued: Ids of the jobs the net put on the queue.
        young: Jobs left to their webhook (queued for less than the grace).
        unrouted: Jobs whose labels route to another flavor.
        seen: Jobs the ledger had already seen (the intake or a previous sweep enqueued them).
        failed: Ids of the jobs whose publish failed (claim released).
    """

    listed: int = 0
    enqueued: list[int] = field(default_factory=list)
    young: int = 0
    unrouted: int = 0
    seen: int = 0
    failed: list[int] = field(default_factory=list)


@dataclass
class JobSafetyNet:
    """Enqueues the queued jobs of one flavor that the ledger has not seen.

    Attributes:
        github: Lists queued jobs.
        path: The repository or organisation the unit serves.
        api_url: The GitHub API base URL job URLs are built on (as the consumers check them).
        ledger: The intake's ledger.
        publish: Publishes one message.
        mq_uri: The broker URI (secret: never logged).
        queue_name: This flavor's queue.
        routes: Whether a job's labels route to this flavor.
        settings: Grace and bounds.
        clock: The current time (UTC).
    """

    github: QueuedJobs
    path: GitHubPath
    api_url: str
    ledger: Ledger
    publish: Publisher
    mq_uri: str = field(repr=False)
    queue_name: str
    routes: Callable[[Sequence[str]], bool]
    settings: SafetyNetSettings = field(default_factory=SafetyNetSettings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    def sweep(self) -> SweepReport:
        """List the queued jobs and enqueue, once each, those no webhook brought.

        Returns:
            What was done.

        Raises:
            GithubClientError: If GitHub cannot list the jobs.
        """
        report = SweepReport()
        if not isinstance(self.path, GitHubRepo):
            _warn_org_once(self.path)
            return report
        jobs = self.github.list_queued_jobs(self.path, self.settings.max_runs)
        report.listed = len(jobs)
        now = self.clock()
        for job in jobs:
            if now - job.created_at < self.settings.grace:
                report.young += 1
            elif not self.routes(job.labels):
                report.unrouted += 1
            elif not self.ledger.claim(job.id):
                report.seen += 1
            elif self._publish(self.path, job):
                report.enqueued.append(job.id)
            else:
                report.failed.append(job.id)
        if report.enqueued or report.failed:
            logger.info(
                "safety net: %d queued jobs listed, enqueued %s, failed %s",
                report.listed,
                report.enqueued,
                report.failed,
            )
        return report

    def _publish(self, repo: GitHubRepo, job: JobInfo) -> bool:
        url = f"{self.api_url.rstrip('/')}/repos/{repo.owner}/{repo.repo}/actions/jobs/{job.id}"
        try:
            message = JobDetails(labels=list(job.labels), url=url)
            self.publish(self.mq_uri, self.queue_name, message, self.settings.publish_timeout)
        except (errors.GithubRunnerError, ValueError) as exc:  # ValueError: pydantic's
            self.ledger.release(job.id)
            logger.warning("safety net: job %d not enqueued, claim released: %s", job.id, exc)
            return False
        self.ledger.confirm(job.id)
        return True


def _warn_org_once(path: GitHubPath) -> None:
    global _warned_org  # noqa: PLW0603 -- one line per process, not per reconcile
    if not _warned_org:
        _warned_org = True
        logger.info(
            "safety net off for organisation %s: GitHub lists no queued jobs per organisation; "
            "webhooks are the only intake",
            path.path(),
        )
