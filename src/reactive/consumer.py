"""Consume job messages from the reactive queue: one message, at most one runner per delivery.

kombu is reached through :mod:`reactive.broker` (the connection, the queue's declaration) and
kombu's own consumer here; nothing else of the core imports it. A message is a JSON object
``{"labels": [...], "url": "<GitHub API job URL>"}``. For each delivery the consumer decides:

=============================================  ========================================  =======
Situation                                      Outcome                                   Settles
=============================================  ========================================  =======
not JSON, not a job, bad job URL               ``INVALID``                               reject
a label this application does not offer        ``UNSUPPORTED_LABELS``                    reject
a repository the unit does not serve           ``FOREIGN_REPOSITORY`` (GitHub not asked)  reject
still 404 after ``not_found_grace`` seconds     ``JOB_NOT_FOUND``                         reject
the job is already in progress or completed    ``ALREADY_TAKEN`` (no runner spawned)     ack
runner spawned, GitHub shows the job taken     ``PICKED_UP``                             ack
runner spawned, job not taken by the deadline  ``NOT_PICKED_UP``                         requeue
the runner took another job, none spare left   ``RUNNER_TAKEN_ELSEWHERE`` (at once)      requeue
GitHub failed (5xx, rate limit, timeout)       ``GITHUB_ERROR`` (after a backoff delay)  requeue
the spawner failed                             ``SPAWN_FAILED`` (after a backoff delay)  requeue
an unexpected error (bug, unmapped error)      ``ERROR`` (after a backoff delay)         requeue
asked to stop (SIGTERM) while holding one      ``STOPPED`` (at once)                     requeue
asked to drain (SIGUSR1), runner spawned       as above (pickup waited for), then exits  as above
asked to drain, nothing spawned yet            ``STOPPED`` (at once), then exits         requeue
=============================================  ========================================  =======

"reject" drops the message, "requeue" puts it back atomically (:mod:`reactive.settling`, which
also tells the stop from the drain): it is at all times in the queue or held, unacked, by one
consumer, which spawns at most one runner per delivery. A draining consumer takes no other
message (one received while draining is requeued unread; an idle one exits within
``receive_timeout``). If that consumer dies the broker returns the unacked message to the queue
(AMQP, Redis, SQL transports; kombu's MongoDB transport only restores unacked messages when the
connection closes cleanly, so a SIGKILL can lose the one message in hand there).

A redelivered message is checked against GitHub again: if the runner spawned for the previous
delivery took the job it is acked without a spawn, otherwise it gets one more runner. A job
nobody takes cycles through the queue at most once per ``pickup_timeout`` per consumer until
GitHub cancels it (then ``completed``: acked). Faults never make a hot loop: every requeue
after a fault waits an exponential backoff first, holding the message unacked meanwhile.

GitHub gives a queued job to any idle runner whose labels match, not to the runner spawned for
it. When the runner spawned for this delivery took another job (one whose webhook was lost, or
a job of another delivery) while this job stays queued, and no other runner of the unit is idle
or starting to take it, the message is requeued at once: its redelivery spawns a fresh runner
instead of waiting ``pickup_timeout`` for nothing. When a runner of the unit is already online and
idle (the warm floor), a queued job is left to it for up to ``warm_grace`` seconds before a
runner is spawned, so a job a warm runner takes is not also given a new one. Both looks are
one runner listing (:class:`RunnerWatcher`), made only when the spawner offers one.

A job GitHub has just created may not show on every replica yet: a 404 before the spawn is asked
again (tenacity, exponential waits) for up to ``not_found_grace`` seconds before the message is
dropped. Everything a message or GitHub says is logged with ``%r`` (escaped): a newline in a
URL or label cannot forge a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import kombu
import kombu.exceptions
import tenacity

import errors
from github_api.names import serves
from github_api.types import JobInfo, JobStatus
from reactive.broker import broker_connection, declare_queue, publish_job, queue_size
from reactive.message import (
    MAX_MESSAGE_BYTES,
    JobDetails,
    build_supported_labels,
    parse_job_message,
)
from reactive.settling import StopRequests, backoff, settle
from reactive.types import (
    ConsumerSettings,
    GithubJobChecker,
    Outcome,
    RunnerActivity,
    RunnerSpawner,
    RunnerView,
    RunnerWatcher,
    Verdict,
)
from runner_type import DEFAULT_LABELS

# kombu is only partly typed: the boundary goes through Any.
_kombu: Any = kombu
_KombuError: type[Exception] = kombu.exceptions.KombuError

logger = logging.getLogger(__name__)

# The message schema (reactive.message), the broker helpers (reactive.broker) and the
# consumer's types (reactive.types) stay importable from here.
__all__ = [
    "DEFAULT_LABELS",
    "MAX_MESSAGE_BYTES",
    "ConsumerSettings",
    "GithubJobChecker",
    "JobConsumer",
    "JobDetails",
    "Outcome",
    "RunnerSpawner",
    "RunnerWatcher",
    "Verdict",
    "build_supported_labels",
    "parse_job_message",
    "publish_job",
    "queue_size",
]

PICKED_UP_STATUSES = frozenset({JobStatus.IN_PROGRESS, JobStatus.COMPLETED})
_SHOWN_BODY_CHARS = 120


class JobConsumer:
    """Takes job messages one at a time and gets each a runner.

    Attributes:
        settings: The consumer settings.
        counts: How many deliveries ended with each outcome.
    """

    def __init__(
        self,
        mq_uri: str,
        settings: ConsumerSettings,
        checker: GithubJobChecker,
        spawner: RunnerSpawner,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        watcher: RunnerWatcher | None = None,
        drain: threading.Event | None = None,
    ) -> None:
        """Build a consumer; it connects in :meth:`run`.

        Args:
            mq_uri: The broker URI (secret: never logged).
            settings: The consumer settings.
            checker: Reads jobs from GitHub.
            spawner: Creates one runner.
            stop: Set it to make the consumer finish at once (SIGTERM handler); a new one by
                default.
            clock: Monotonic clock (injectable for tests).
            watcher: Lists the unit's runners; None looks only at the job (the spawner
                itself when it is a :class:`RunnerWatcher`).
            drain: Set it to make the consumer finish the message it holds, then return
                (SIGUSR1 handler); a new one by default.
        """
        self._mq_uri = mq_uri
        self.settings = settings
        self._checker = checker
        self._spawner = spawner
        self._stop = stop if stop is not None else threading.Event()
        self._requests = StopRequests(
            self._stop, drain if drain is not None else threading.Event()
        )
        self._clock = clock
        self._watcher = watcher
        if watcher is None and isinstance(spawner, RunnerWatcher):
            self._watcher = spawner
        self._failures = 0
        self.counts: Counter[Outcome] = Counter()

    def __repr__(self) -> str:
        """Describe the consumer without its broker URI."""
        return f"JobConsumer(queue={self.settings.queue_name!r})"

    def stop(self) -> None:
        """Ask the consumer to finish: a held message is requeued at once, then it returns."""
        self._stop.set()

    def drain(self) -> None:
        """Ask the consumer to see the message it holds through, then return."""
        self._requests.drain.set()

    # --- deciding ----------------------------------------------------------------------------

    def decide(self, body: bytes | str) -> Verdict:
        """Decide what to do with one message body; may spawn one runner and wait for pickup.

        Args:
            body: The raw message body.

        Returns:
            The verdict. Never raises for bad input or GitHub/spawner failures.
        """
        try:
            job = parse_job_message(body)
        except errors.JobMessageError as exc:
            shown = body[:_SHOWN_BODY_CHARS]
            logger.warning("Rejecting message: %s (body starts %r)", exc.reason, shown)
            return Verdict(Outcome.INVALID)
        unsupported = sorted(
            {label.lower() for label in job.labels} - self.settings.supported_labels
        )
        if unsupported:
            logger.warning("Rejecting job %r: unsupported labels %r", job.url, unsupported)
            return Verdict(Outcome.UNSUPPORTED_LABELS)
        served = self.settings.served
        if served is not None and not serves(served, job.repository):
            logger.warning(
                "Rejecting job %r: repository %r is not served here (%s)",
                job.url,
                job.repository.path(),
                served.path(),
            )
            return Verdict(Outcome.FOREIGN_REPOSITORY)
        verdict = self._check_job(job.url)
        if verdict is not None:
            return verdict
        verdict = self._leave_to_warm_runner(job.url)
        if verdict is not None:
            return verdict
        if self._requests.finishing():
            return Verdict(Outcome.STOPPED)
        try:
            runner_name = self._spawner.spawn_one()
        except Exception:
            logger.exception("Spawning a runner for job %r failed; requeueing", job.url)
            return Verdict(Outcome.SPAWN_FAILED, delay=self._next_error_delay())
        logger.info("Spawned runner %r for job %r", runner_name, job.url)
        return self._wait_for_pickup(job.url, runner_name)

    def _check_job(self, url: str) -> Verdict | None:
        """Check the job before spawning.

        Args:
            url: The job URL.

        Returns:
            A final verdict, or None when the job still needs a runner.
        """
        try:
            info = self._get_job_after_lag(url)
        except errors.GithubNotFoundError:
            if self._requests.finishing():  # the grace was cut short: another consumer asks
                return Verdict(Outcome.STOPPED)
            logger.warning(
                "Rejecting job %r: not found on GitHub within %.1fs",
                url,
                self.settings.not_found_grace,
            )
            return Verdict(Outcome.JOB_NOT_FOUND)
        except errors.InvalidJobUrlError as exc:
            logger.warning("Rejecting job: %r", str(exc))
            return Verdict(Outcome.INVALID)
        except errors.GithubClientError as exc:
            delay = self._next_error_delay(exc)
            logger.warning(
                "Checking job %r failed (%s, status %s); requeueing in %.1fs",
                url,
                type(exc).__name__,
                exc.status,
                delay,
            )
            return Verdict(Outcome.GITHUB_ERROR, delay=delay)
        if info.status in PICKED_UP_STATUSES:
            logger.info("Job %r is already %s; acking without a runner", url, info.status.value)
            self._failures = 0
            return Verdict(Outcome.ALREADY_TAKEN)
        return None

    def _watch(self, name: str | None) -> RunnerView | None:
        """Look at the unit's runners, or None without a watcher or when GitHub fails."""
        if self._watcher is None:
            return None
        try:
            return self._watcher.watch(name)
        except errors.GithubClientError as exc:
            logger.warning("Listing the runners failed (%s); going on", type(exc).__name__)
            return None

    def _leave_to_warm_runner(self, url: str) -> Verdict | None:
        """Give an idle runner of the unit ``warm_grace`` seconds to take the queued job.

        Args:
            url: The job URL (queued at the last check).

        Returns:
            ALREADY_TAKEN or STOPPED, or None when the job still needs a runner: no idle
            runner, none left idle, or the grace passed.
        """
        grace = self.settings.warm_grace
        view = self._watch(None) if grace > 0 else None
        if view is None or view.others_idle == 0:
            return None
        logger.info("Job %r: %d idle runners online; leaving it to them", url, view.others_idle)
        deadline = self._clock() + grace
        interval = min(max(self.settings.pickup_poll_initial, 0.01), 1.0)
        while self._clock() < deadline:
            if self._requests.wait_finishing(min(interval, max(deadline - self._clock(), 0.0))):
                return Verdict(Outcome.STOPPED)
            verdict = self._check_job(url)
            if verdict is not None:
                return verdict
            view = self._watch(None)
            if view is not None and view.others_idle == 0:
                break
        logger.info("Job %r still queued with no idle runner taking it; spawning", url)
        return None

    def _taken_elsewhere(self, url: str, runner_name: str) -> bool:
        """Whether the spawned runner took another job and no other runner may take this one.

        Args:
            url: The job URL (still queued).
            runner_name: The runner spawned for it.

        Returns:
            True when the delivery should get a fresh runner now.
        """
        view = self._watch(runner_name)
        if view is None or view.own == RunnerActivity.WAITING:
            return False
        if view.others_idle + view.others_starting > 0:
            return False  # one of them (made for the job ours took, or warm) takes this one
        logger.warning(
            "Runner %r is %s but job %r is still queued, and no other runner may take it; "
            "requeueing for a new runner",
            runner_name,
            view.own.value,
            url,
        )
        return True

    def _get_job_after_lag(self, url: str) -> JobInfo:
        """Read the job, asking again while GitHub answers 404, for ``not_found_grace`` seconds.

        Args:
            url: The job URL.

        Returns:
            The job.

        Raises:
            GithubNotFoundError: GitHub still does not show it (or the consumer is finishing).
            GithubClientError: Any other GitHub failure, at once.
        """
        settings = self.settings
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(errors.GithubNotFoundError),
            stop=tenacity.stop_any(
                tenacity.stop_before_delay(settings.not_found_grace),
                tenacity.stop_when_event_set(self._stop),
                tenacity.stop_when_event_set(self._requests.drain),
            ),
            wait=tenacity.wait_exponential(
                multiplier=max(settings.not_found_poll_initial, 0.01), max=2.0
            ),
            sleep=self._requests.pause,
            before_sleep=lambda state: logger.info(
                "Job %r not on GitHub yet (attempt %d); asking again", url, state.attempt_number
            ),
            reraise=True,
        )
        info: JobInfo = retrying(self._checker.get_job_by_url, url)
        return info

    def _wait_for_pickup(self, url: str, runner_name: str) -> Verdict:
        """Poll GitHub with exponential backoff until the job is taken or the deadline passes.

        A stop ends the wait at once; a drain does not (the runner is spawned: see it through).

        Args:
            url: The job URL.
            runner_name: The runner spawned for it.

        Returns:
            PICKED_UP, NOT_PICKED_UP, RUNNER_TAKEN_ELSEWHERE, JOB_NOT_FOUND or STOPPED.
        """
        deadline = self._clock() + self.settings.pickup_timeout
        interval = max(self.settings.pickup_poll_initial, 0.01)
        while True:
            remaining = max(deadline - self._clock(), 0.0)
            if self._requests.wait_stop(min(interval, remaining)):
                logger.info("Stopping while job %r waits for runner %r", url, runner_name)
                return Verdict(Outcome.STOPPED, runner_name=runner_name)
            try:
                info = self._checker.get_job_by_url(url)
            except errors.GithubNotFoundError:
                logger.warning("Job %r disappeared from GitHub; rejecting", url)
                return Verdict(Outcome.JOB_NOT_FOUND, runner_name=runner_name)
            except errors.GithubClientError as exc:
                logger.warning("Checking job %r failed (%s); retrying", url, type(exc).__name__)
            else:
                if info.status in PICKED_UP_STATUSES:
                    logger.info(
                        "Job %r is %s (runner %r; spawned %r); acking",
                        url,
                        info.status.value,
                        info.runner_name,
                        runner_name,
                    )
                    self._failures = 0
                    return Verdict(Outcome.PICKED_UP, runner_name=runner_name)
                if self._taken_elsewhere(url, runner_name):
                    return Verdict(Outcome.RUNNER_TAKEN_ELSEWHERE, runner_name=runner_name)
            if self._clock() >= deadline:
                logger.warning(
                    "Job %r not taken within %.0fs of spawning %r; requeueing",
                    url,
                    self.settings.pickup_timeout,
                    runner_name,
                )
                return Verdict(Outcome.NOT_PICKED_UP, runner_name=runner_name)
            interval = min(interval * 2, self.settings.pickup_poll_max)

    def _next_error_delay(self, exc: errors.GithubClientError | None = None) -> float:
        """Return the next requeue delay after a failure (:func:`reactive.settling.backoff`)."""
        delay = backoff(self.settings, self._failures, exc)
        self._failures = min(self._failures + 1, 30)
        return delay

    # --- consuming ---------------------------------------------------------------------------

    def run(self, max_messages: int | None = None, idle_timeout: float | None = None) -> None:
        """Consume messages one at a time until asked to stop or to drain.

        Broker failures are retried with an exponential backoff (never a hot loop).

        Args:
            max_messages: Return after this many deliveries (tests); None for no limit.
            idle_timeout: Return after this long without a message (tests); None for never.
        """
        handled = 0
        last_activity = self._clock()
        reconnect_delay = 0.5
        requests = self._requests
        while not requests.finishing():
            conn = broker_connection(
                self._mq_uri, self.settings.connect_timeout, self.settings.poll_interval
            )
            try:
                with conn:
                    conn.ensure_connection(
                        max_retries=1, interval_start=0.1, timeout=self.settings.connect_timeout
                    )
                    reconnect_delay = 0.5
                    inbox: list[Any] = []
                    consumer = _kombu.Consumer(
                        conn.default_channel,
                        queues=[declare_queue(self.settings.queue_name)],
                        on_message=inbox.append,
                        prefetch_count=1,
                    )
                    with consumer:
                        while not requests.finishing():
                            if max_messages is not None and handled >= max_messages:
                                return
                            if not inbox:
                                try:
                                    conn.drain_events(timeout=self.settings.receive_timeout)
                                except TimeoutError:
                                    idle = self._clock() - last_activity
                                    if idle_timeout is not None and idle >= idle_timeout:
                                        return
                                    continue
                            while inbox:
                                self._handle(inbox.pop(0))
                                handled += 1
                                last_activity = self._clock()
            except (*conn.connection_errors, *conn.channel_errors, _KombuError, OSError) as exc:
                logger.warning(
                    "Broker connection failed (%s); reconnecting in %.1fs",
                    type(exc).__name__,
                    reconnect_delay,
                )
                requests.wait_finishing(reconnect_delay)
                reconnect_delay = min(reconnect_delay * 2, 30.0)
        how = "stopped" if self._stop.is_set() else "drained"
        logger.info("Consumer for queue %s %s", self.settings.queue_name, how)

    def _handle(self, message: Any) -> None:
        """Decide about one delivery and settle it with the broker.

        Args:
            message: The kombu message.
        """
        redelivered = bool(getattr(message, "delivery_info", {}).get("redelivered"))
        logger.info("Received a message (redelivered=%s)", redelivered)
        if self._requests.finishing():  # received while draining: another consumer takes it
            logger.info("Finishing: requeueing the message received without looking at it")
            verdict = Verdict(Outcome.STOPPED)
        else:
            try:
                verdict = self.decide(message.body)
            except Exception:
                logger.exception("Unexpected error handling a message; requeueing")
                verdict = Verdict(Outcome.ERROR, delay=self._next_error_delay())
        self.counts[verdict.outcome] += 1
        settlement = settle(message, verdict, self._requests)
        logger.info("Message %s (%s)", settlement, verdict.outcome.value)
