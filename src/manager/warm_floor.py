"""Reactive mode's runner counts: a warm floor of idle runners under on-demand ones, a ceiling.

In reactive mode runners are made per queued job by consumer processes; with
``base-virtual-machines`` the reconcile also keeps that many runners ready (idle or starting)
beside the busy ones, so a job starts without waiting for a boot. The ceiling
(``max-total-virtual-machines``, or ``virtual-machines`` when it is 0, as before these options
existed) bounds runners alive plus consumers: a consumer spawns at most one runner at a time, so
runners never exceed it.

* desired runners = ``min(ceiling, max(healthy, busy + floor))``: the floor is created on top of
  the busy runners, runners made for jobs are never scaled down below the ceiling (their job may
  not have started yet);
* the stale-idle rule (nothing waits in the queue) spares ``floor`` idle runners;
* consumers = ``ceiling - runners alive after the change``.

With a floor of 0 this is exactly the reactive reconcile before the floor: never create, only
scale down above the ceiling. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconcile_plan import HEALTHY_STATES, Runner, RunnerState


@dataclass(frozen=True)
class FloorTarget:
    """What a reactive reconcile aims at.

    Attributes:
        floor: Runners kept ready (idle or starting), at most the ceiling.
        ceiling: The most runners plus consumers.
        desired: The plan's target of healthy runners.
    """

    floor: int
    ceiling: int
    desired: int


def ceiling_of(quantity: int, max_total: int) -> int:
    """Return the ceiling of runners plus consumers.

    Args:
        quantity: ``virtual-machines`` (what the charm passes to the reconcile).
        max_total: ``max-total-virtual-machines``; 0 when unset.

    Returns:
        ``max_total`` when set, else ``quantity`` (never negative).
    """
    return max(max_total or quantity, 0)


def floor_target(runners: Iterable[Runner], base: int, ceiling: int) -> FloorTarget:
    """Return the target of a reactive reconcile.

    Args:
        runners: The judged runners of the unit.
        base: ``base-virtual-machines``.
        ceiling: See :func:`ceiling_of`.

    Returns:
        The target.
    """
    judged = list(runners)
    floor = min(max(base, 0), ceiling)
    healthy = sum(1 for r in judged if r.state in HEALTHY_STATES)
    busy = sum(1 for r in judged if r.state is RunnerState.BUSY)
    desired = min(ceiling, max(healthy, busy + floor))
    return FloorTarget(floor=floor, ceiling=ceiling, desired=desired)


def consumers_for(ceiling: int, alive: int) -> int:
    """Return how many consumers keep runners plus consumers at the ceiling.

    Args:
        ceiling: See :func:`ceiling_of`.
        alive: Runners alive after the reconcile's changes.

    Returns:
        ``ceiling - alive``, at least 0.
    """
    return max(ceiling - alive, 0)
