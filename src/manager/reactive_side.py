"""The reactive side of a reconcile: the safety net, the warm floor's target, the consumers.

The RunnerManager calls :meth:`ReactiveSide.target` before planning and
:meth:`ReactiveSide.keep_consumers` after the plan ran (counts in ``manager.warm_floor``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from config.settings import RunnerManagerSettings
from config.state import CharmState
from errors import GithubClientError
from intake.errors import IntakeLedgerError
from manager.job_safety_net import JobSafetyNet
from manager.warm_floor import ceiling_of, consumers_for, floor_target
from reactive.pool import ConsumerPool
from reconcile_plan import Runner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReactiveTarget:
    """The plan inputs of a reactive reconcile.

    Attributes:
        desired: Healthy runners to aim at.
        stale_idle_after: Idle runners older than this go (nothing waits in the queue), or None.
        keep_idle: Idle runners the stale rule spares (the warm floor).
        ceiling: The most runners plus consumers.
    """

    desired: int
    stale_idle_after: timedelta | None
    keep_idle: int
    ceiling: int


@dataclass
class ReactiveSide:
    """One unit's reactive mode, as its reconcile drives it.

    Attributes:
        pool: The consumers.
        state: The charm state (warm floor and ceiling options).
        settings: The manager settings (idle grace).
        net: The safety net, if any.
    """

    pool: ConsumerPool
    state: CharmState
    settings: RunnerManagerSettings
    net: JobSafetyNet | None = None

    def target(self, quantity: int, runners: Iterable[Runner]) -> ReactiveTarget:
        """Sweep queued jobs into the queue, then return the plan inputs.

        Args:
            quantity: ``virtual-machines``, as the charm passes it.
            runners: The judged runners.

        Returns:
            The plan inputs.
        """
        self._sweep()
        ceiling = ceiling_of(quantity, self.state.max_total_virtual_machines)
        target = floor_target(runners, self.state.base_virtual_machines, ceiling)
        empty = self.pool.queue_empty()  # after the sweep: a job it enqueued keeps idle runners
        return ReactiveTarget(
            desired=target.desired,
            stale_idle_after=self.settings.reactive_idle_grace if empty else None,
            keep_idle=target.floor,
            ceiling=ceiling,
        )

    def keep_consumers(self, ceiling: int, alive: int) -> int:
        """Keep ``ceiling - alive`` consumers.

        Args:
            ceiling: From :meth:`target`.
            alive: Runners alive after the reconcile's changes.

        Returns:
            How many consumers run.
        """
        consumers = consumers_for(ceiling, alive)
        self.pool.reconcile(consumers)
        return consumers

    def _sweep(self) -> None:
        if self.net is None:
            return
        try:
            self.net.sweep()
        except GithubClientError as exc:  # never fails a reconcile: webhooks still come
            logger.warning("safety net: cannot list queued jobs: %s", exc)
        except IntakeLedgerError as exc:
            logger.warning("safety net: the job ledger failed: %s", exc)
