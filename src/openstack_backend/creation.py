"""Create a batch of OpenStack runners in parallel; a quota refusal stops the rest of the batch.

Used by a reconcile and by a reactive consumer's ``create_runners`` alike: creations that the
quota stopped are counted (``not_attempted``) and its message kept, so the charm can say why
(``OpenstackRunnerManager.quota_refusal``); no error escapes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from errors import OpenstackQuotaError
from manager.executor import run_parallel
from manager.report import ReconcileReport
from metrics.recorder import MetricsRecorder
from openstack_backend.runners import RunnerSide, ServerTarget, create_runner

logger = logging.getLogger(__name__)


@dataclass
class OpenstackReconcileReport(ReconcileReport):
    """What the last reconcile or flush did, with the cloud's refusals.

    Attributes:
        quota_exceeded: The cloud's quota message when it refused a server (None otherwise):
            the charm can show it; the next reconcile tries again.
        not_attempted: Creations the plan wanted but the quota refusal stopped.
    """

    quota_exceeded: str | None = None
    not_attempted: int = 0


def create_batch(
    side: RunnerSide,
    target: ServerTarget,
    count: int,
    *,
    parallelism: int,
    metrics: MetricsRecorder,
    report: OpenstackReconcileReport,
) -> None:
    """Create ``count`` runners, at most ``parallelism`` at once, into ``report``.

    Args:
        side: The seams and settings of one runner's creation.
        target: The image, flavor and network ids.
        count: How many runners.
        parallelism: How many creations run at once.
        metrics: Records ``runner_installed`` per creation.
        report: Gets the names created, the failures and the quota refusal.
    """
    refused = threading.Event()

    def create_one(_: int) -> str | None:
        if refused.is_set():
            return None
        began = time.monotonic()
        try:
            name = create_runner(side, target)
        except OpenstackQuotaError as exc:
            refused.set()
            report.quota_exceeded = exc.message
            raise
        metrics.runner_installed(time.monotonic() - began, name)
        return name

    for outcome in run_parallel(create_one, range(count), parallelism):
        if outcome is None or isinstance(outcome, OpenstackQuotaError):
            report.not_attempted += 1
        elif isinstance(outcome, Exception):
            report.failed.append(getattr(outcome, "runner_name", None) or "?")
            logger.error("runner creation failed: %s", outcome)
        else:
            report.created.append(outcome)
    if report.quota_exceeded:
        logger.warning(
            "quota exceeded: %d of %d runners not created (%s); retried next reconcile",
            report.not_attempted,
            count,
            report.quota_exceeded,
        )
