"""Settle a delivery with the broker, and the two ways a consumer is asked to finish.

"reject" is ``basic.reject(requeue=False)``: the message is dropped (or dead-lettered when the
queue has a dead-letter exchange). "requeue" is ``basic.reject(requeue=True)``: the broker puts
the same message back in the queue atomically. Requeueing never acks and republishes: an
ack-then-publish loses the job when the process dies between the two calls, a publish-then-ack
duplicates it. With reject-requeue the message is at all times either in the queue or held,
unacked, by exactly one consumer, which spawns at most one runner for that delivery.

A consumer (``reactive.consumer.JobConsumer``) is asked to finish in one of two ways; the
consumer process (``reactive.runner``) maps signals to them:

=======  =================  ===================================================================
Request  Signal             What the consumer does
=======  =================  ===================================================================
stop     SIGTERM/INT/HUP    requeues the message it holds at once (``STOPPED``), then exits
drain    SIGUSR1            sees through the message it holds once a runner was spawned for it
                            (settled as usual: acked on pickup, requeued after
                            ``pickup_timeout``), requeues it at once when nothing was spawned
                            yet, then exits without taking another; an idle consumer exits
                            within ``receive_timeout``
=======  =================  ===================================================================

The pool (``reactive.runner_manager``) drains the consumers it has too many of: the one holding
a message whose runner is booting must not hand the message to another consumer, which would
see no idle runner and spawn a second one for the same job. It stops at once (SIGTERM) the
consumers started with an outdated config and the drains that outlast their bound.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import errors
from reactive.types import ConsumerSettings, Verdict

logger = logging.getLogger(__name__)

# How often a wait that a drain may cut short looks at the drain (threading has no wait on two
# events; the stop, the urgent one, still ends such a wait at once).
_DRAIN_POLL = 0.1


@dataclass(frozen=True)
class StopRequests:
    """The two ways a consumer is asked to finish (set by signal handlers or tests).

    Attributes:
        stop: Set: requeue the held message at once and exit.
        drain: Set: see the held message through (when a runner was spawned for it), then exit.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    drain: threading.Event = field(default_factory=threading.Event)

    def finishing(self) -> bool:
        """Whether to take no more messages and spawn nothing more (stop or drain asked)."""
        return self.stop.is_set() or self.drain.is_set()

    def wait_stop(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when asked to stop (a drain does not cut it short).

        Args:
            seconds: How long.

        Returns:
            Whether the stop was asked.
        """
        return self.stop.wait(max(seconds, 0.0))

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, less when asked to stop or to drain (a retry's sleep)."""
        self.wait_finishing(seconds)

    def wait_finishing(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when asked to stop or to drain.

        Args:
            seconds: How long.

        Returns:
            Whether a stop or a drain was asked.
        """
        end = time.monotonic() + seconds
        while not self.drain.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return self.stop.is_set()
            if self.stop.wait(min(left, _DRAIN_POLL)):
                return True
        return True


def settle(message: Any, verdict: Verdict, requests: StopRequests) -> str:
    """Settle one kombu message as its verdict says.

    A requeue waits the verdict's delay first (holding the message: the backoff after a fault),
    less when the consumer is asked to finish.

    Args:
        message: The kombu message.
        verdict: The decision about it.
        requests: The consumer's stop requests.

    Returns:
        ``ack``, ``reject`` or ``requeue``.
    """
    settlement = verdict.outcome.settlement
    if settlement == "ack":
        message.ack()
    elif settlement == "reject":
        message.reject(requeue=False)
    else:
        if verdict.delay > 0 and requests.wait_finishing(verdict.delay):
            logger.info("Asked to finish: requeueing the held message now")
        message.requeue()
    return settlement


def backoff(
    settings: ConsumerSettings, failures: int, exc: errors.GithubClientError | None = None
) -> float:
    """Return how long to hold a message before its requeue after a fault.

    Exponential in the consecutive failures, capped; a rate limit's reset is waited for (also
    capped), so a requeue never makes a hot loop.

    Args:
        settings: The consumer settings (``error_delay_initial``, ``error_delay_max``).
        failures: Consecutive failures before this one.
        exc: The GitHub error, if any.

    Returns:
        Seconds to wait before requeueing.
    """
    delay = min(settings.error_delay_initial * 2.0**failures, settings.error_delay_max)
    if isinstance(exc, errors.GithubRateLimitError) and exc.reset_at is not None:
        until_reset = (exc.reset_at - datetime.now(timezone.utc)).total_seconds()
        delay = min(max(delay, until_reset), settings.error_delay_max)
    return delay
