"""Consume job messages from the reactive queue: one message, at most one runner per delivery.

This is the only module of the project that imports kombu. A message is a JSON object
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
GitHub failed (5xx, rate limit, timeout)       ``GITHUB_ERROR`` (after a backoff delay)  requeue
the spawner failed                             ``SPAWN_FAILED`` (after a backoff delay)  requeue
an unexpected error (bug, unmapped error)      ``ERROR`` (after a backoff delay)         requeue
asked to stop (SIGTERM) while holding one      ``STOPPED`` (at once)                     requeue
=============================================  ========================================  =======

"reject" is ``basic.reject(requeue=False)``: the message is dropped (or dead-lettered when the
queue has a dead-letter exchange). "requeue" is ``basic.reject(requeue=True)``: the broker puts
the same message back in the queue atomically. Requeueing never acks and republishes: an
ack-then-publish loses the job when the process dies between the two calls, a publish-then-ack
duplicates it. With reject-requeue the message is at all times either in the queue or held,
unacked, by exactly one consumer, which spawns at most one runner for that delivery. If that
consumer dies the broker returns the unacked message to the queue (AMQP, Redis, SQL transports;
kombu's MongoDB transport only restores unacked messages when the connection closes cleanly,
so a SIGKILL can lose the one message in hand there).

A redelivered message is checked against GitHub again: if the runner spawned for the previous
delivery took the job it is acked without a spawn, otherwise it gets one more runner. A job
nobody takes cycles through the queue at most once per ``pickup_timeout`` per consumer until
GitHub cancels it (then ``completed``: acked). Faults never make a hot loop: every requeue
after a fault waits an exponential backoff first, holding the message unacked meanwhile.

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
from datetime import datetime, timezone
from typing import Any

import kombu
import kombu.exceptions
import tenacity

import errors
from github_api.names import serves
from github_api.types import JobInfo, JobStatus
from reactive.message import (
    MAX_MESSAGE_BYTES,
    JobDetails,
    build_supported_labels,
    parse_job_message,
)
from reactive.types import ConsumerSettings, GithubJobChecker, Outcome, RunnerSpawner, Verdict
from runner_type import DEFAULT_LABELS

# kombu is only partly typed: the boundary goes through Any, and this module is the only user.
_kombu: Any = kombu
_KombuError: type[Exception] = kombu.exceptions.KombuError

logger = logging.getLogger(__name__)

# The message schema (reactive.message) and the consumer's types (reactive.types) stay
# importable from here.
__all__ = [
    "DEFAULT_LABELS",
    "MAX_MESSAGE_BYTES",
    "ConsumerSettings",
    "GithubJobChecker",
    "JobConsumer",
    "JobDetails",
    "Outcome",
    "RunnerSpawner",
    "Verdict",
    "build_supported_labels",
    "parse_job_message",
    "publish_job",
    "queue_size",
]

PICKED_UP_STATUSES = frozenset({JobStatus.IN_PROGRESS, JobStatus.COMPLETED})
_SHOWN_BODY_CHARS = 120


def _declare(queue_name: str) -> Any:
    """Return the queue entity, declared the same way as kombu's ``SimpleQueue``.

    Args:
        queue_name: The queue name.

    Returns:
        A durable queue bound to a durable direct exchange of the same name.
    """
    exchange = _kombu.Exchange(queue_name, type="direct", durable=True)
    return _kombu.Queue(queue_name, exchange, routing_key=queue_name, durable=True)


def _connection(mq_uri: str, connect_timeout: float, poll_interval: float) -> Any:
    """Build a (lazy) broker connection with timeouts on every network operation.

    Args:
        mq_uri: The broker URI (secret: never logged).
        connect_timeout: Connect and socket I/O timeout.
        poll_interval: Polling interval for polling transports.

    Returns:
        The kombu connection, not yet connected.
    """
    scheme = mq_uri.split(":", 1)[0].lower()
    options: dict[str, Any]
    if scheme in ("amqp", "amqps", "pyamqp"):
        options = {"read_timeout": connect_timeout, "write_timeout": connect_timeout}
    else:  # polling transports; MongoDB reads connect_timeout here (connectTimeoutMS)
        options = {"polling_interval": poll_interval, "connect_timeout": connect_timeout}
        if scheme in ("redis", "rediss"):
            options.update(socket_timeout=connect_timeout, socket_connect_timeout=connect_timeout)
    return _kombu.Connection(mq_uri, connect_timeout=connect_timeout, transport_options=options)


def queue_size(mq_uri: str, queue_name: str, connect_timeout: float = 10.0) -> int:
    """Return how many messages wait in the queue (those held by consumers are not counted).

    Args:
        mq_uri: The broker URI (secret: never logged).
        queue_name: The queue name.
        connect_timeout: Connect and socket I/O timeout.

    Returns:
        The number of ready messages.

    Raises:
        QueueError: The broker cannot be reached.
    """
    try:
        with _connection(mq_uri, connect_timeout, 1.0) as connection:
            queue = _declare(queue_name)(connection.channel())
            queue.declare()
            return int(queue.queue_declare(passive=True).message_count)
    except Exception as exc:  # kombu raises transport-specific errors
        raise errors.QueueError(
            f"cannot read the size of queue {queue_name}: {type(exc).__name__}"
        ) from exc


def publish_job(
    mq_uri: str, queue_name: str, body: bytes | str, connect_timeout: float = 10.0
) -> None:
    """Publish one raw job message (used by the sandbox, the demo and the tests).

    Args:
        mq_uri: The broker URI.
        queue_name: The queue name.
        body: The raw body; a JSON job message normally.
        connect_timeout: Connect and socket I/O timeout.

    Raises:
        QueueError: The broker could not be reached or refused the message.
    """
    queue = _declare(queue_name)
    conn = _connection(mq_uri, connect_timeout, 1.0)
    try:
        with conn:
            conn.ensure_connection(max_retries=2, interval_start=0.2, timeout=connect_timeout)
            producer = _kombu.Producer(conn.default_channel)
            producer.publish(
                body,
                exchange=queue.exchange,
                routing_key=queue_name,
                declare=[queue],
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                retry=False,
            )
    except (*conn.connection_errors, *conn.channel_errors, _KombuError, OSError) as exc:
        raise errors.QueueError(
            f"cannot publish to queue {queue_name}: {type(exc).__name__}"
        ) from exc


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
    ) -> None:
        """Build a consumer; it connects in :meth:`run`.

        Args:
            mq_uri: The broker URI (secret: never logged).
            settings: The consumer settings.
            checker: Reads jobs from GitHub.
            spawner: Creates one runner.
            stop: Set it to make the consumer finish (SIGTERM handler); a new one by default.
            clock: Monotonic clock (injectable for tests).
        """
        self._mq_uri = mq_uri
        self.settings = settings
        self._checker = checker
        self._spawner = spawner
        self._stop = stop if stop is not None else threading.Event()
        self._clock = clock
        self._failures = 0
        self.counts: Counter[Outcome] = Counter()

    def __repr__(self) -> str:
        """Describe the consumer without its broker URI."""
        return f"JobConsumer(queue={self.settings.queue_name!r})"

    def stop(self) -> None:
        """Ask the consumer to finish: a held message is requeued at once, then it returns."""
        self._stop.set()

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
        if self._stop.is_set():
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

    def _get_job_after_lag(self, url: str) -> JobInfo:
        """Read the job, asking again while GitHub answers 404, for ``not_found_grace`` seconds.

        Args:
            url: The job URL.

        Returns:
            The job.

        Raises:
            GithubNotFoundError: GitHub still does not show it (or the consumer is stopping).
            GithubClientError: Any other GitHub failure, at once.
        """
        settings = self.settings
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(errors.GithubNotFoundError),
            stop=tenacity.stop_any(
                tenacity.stop_before_delay(settings.not_found_grace),
                tenacity.stop_when_event_set(self._stop),
            ),
            wait=tenacity.wait_exponential(
                multiplier=max(settings.not_found_poll_initial, 0.01), max=2.0
            ),
            sleep=self._pause,
            before_sleep=lambda state: logger.info(
                "Job %r not on GitHub yet (attempt %d); asking again", url, state.attempt_number
            ),
            reraise=True,
        )
        info: JobInfo = retrying(self._checker.get_job_by_url, url)
        return info

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the consumer is asked to stop."""
        self._stop.wait(seconds)

    def _wait_for_pickup(self, url: str, runner_name: str) -> Verdict:
        """Poll GitHub with exponential backoff until the job is taken or the deadline passes.

        Args:
            url: The job URL.
            runner_name: The runner spawned for it.

        Returns:
            PICKED_UP, NOT_PICKED_UP, JOB_NOT_FOUND or STOPPED.
        """
        deadline = self._clock() + self.settings.pickup_timeout
        interval = max(self.settings.pickup_poll_initial, 0.01)
        while True:
            remaining = max(deadline - self._clock(), 0.0)
            if self._stop.wait(min(interval, remaining)):
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
        """Return the next requeue delay after a failure (exponential, honours rate-limit resets).

        Args:
            exc: The GitHub error, if any.

        Returns:
            Seconds to wait before requeueing.
        """
        settings = self.settings
        delay = min(settings.error_delay_initial * 2.0**self._failures, settings.error_delay_max)
        self._failures = min(self._failures + 1, 30)
        if isinstance(exc, errors.GithubRateLimitError) and exc.reset_at is not None:
            until_reset = (exc.reset_at - datetime.now(timezone.utc)).total_seconds()
            delay = min(max(delay, until_reset), settings.error_delay_max)
        return delay

    # --- consuming ---------------------------------------------------------------------------

    def run(self, max_messages: int | None = None, idle_timeout: float | None = None) -> None:
        """Consume messages one at a time until stopped.

        Broker failures are retried with an exponential backoff (never a hot loop).

        Args:
            max_messages: Return after this many deliveries (tests); None for no limit.
            idle_timeout: Return after this long without a message (tests); None for never.
        """
        handled = 0
        last_activity = self._clock()
        reconnect_delay = 0.5
        while not self._stop.is_set():
            conn = _connection(
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
                        queues=[_declare(self.settings.queue_name)],
                        on_message=inbox.append,
                        prefetch_count=1,
                    )
                    with consumer:
                        while not self._stop.is_set():
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
                self._stop.wait(reconnect_delay)
                reconnect_delay = min(reconnect_delay * 2, 30.0)
        logger.info("Consumer for queue %s stopped", self.settings.queue_name)

    def _handle(self, message: Any) -> None:
        """Decide about one delivery and settle it with the broker.

        Args:
            message: The kombu message.
        """
        redelivered = bool(getattr(message, "delivery_info", {}).get("redelivered"))
        logger.info("Received a message (redelivered=%s)", redelivered)
        try:
            verdict = self.decide(message.body)
        except Exception:
            logger.exception("Unexpected error handling a message; requeueing")
            verdict = Verdict(Outcome.ERROR, delay=self._next_error_delay())
        self.counts[verdict.outcome] += 1
        settlement = verdict.outcome.settlement
        if settlement == "ack":
            message.ack()
        elif settlement == "reject":
            message.reject(requeue=False)
        else:
            if verdict.delay > 0 and self._stop.wait(verdict.delay):
                logger.info("Stopping: requeueing the held message now")
            message.requeue()
        logger.info("Message %s (%s)", settlement, verdict.outcome.value)
