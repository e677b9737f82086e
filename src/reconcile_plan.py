"""The reconcile plan: a pure function from what is observed to what must change.

A runner is the join, by name, of two views: the LXD instance and the GitHub runner record.
Nothing here does I/O; the RunnerManager observes, calls :func:`plan_reconcile` or
:func:`plan_flush`, and executes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum


class InstanceState(str, Enum):
    """What LXD says of an instance, reduced to what the plan needs."""

    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"  # LXD's "Error": it will not come up by waiting
    OTHER = "other"


@dataclass(frozen=True)
class InstanceView:
    """An LXD instance owned by this unit.

    Attributes:
        name: Instance name, equal to the runner name.
        state: Running, stopped, in error or something else (starting, frozen...).
        created_at: When the instance was created (UTC).
        complete: Whether its creation finished (the manager marks it after starting the
            runner). Observed under the manager's lock, an incomplete instance is what a
            creation killed part-way left behind.
        registered_first: Whether its GitHub record was made before the instance (OpenStack:
            the JIT config is in the server's user data). Without its record such an instance
            can never come online, so it is an orphan at once, not a runner still starting.
    """

    name: str
    state: InstanceState
    created_at: datetime
    complete: bool = True
    registered_first: bool = False


@dataclass(frozen=True)
class GithubView:
    """A GitHub runner record owned by this unit.

    Attributes:
        id: GitHub's runner id.
        name: Runner name.
        online: Whether GitHub reports the runner online.
        busy: Whether the runner runs a job.
    """

    id: int
    name: str
    online: bool
    busy: bool


class RunnerState(str, Enum):
    """State of a joined runner."""

    STARTING = "starting"  # young instance, not (yet) online on GitHub
    IDLE = "idle"
    BUSY = "busy"
    UNHEALTHY = "unhealthy"  # instance stopped or in error, or never came online in time
    ORPHAN_INSTANCE = "orphan-instance"  # no GitHub record: after the timeout, or registered first
    ORPHAN_RECORD = "orphan-record"  # offline GitHub record with no instance
    UNKNOWN = "unknown"  # online GitHub record with no instance: left alone


class DeleteReason(str, Enum):
    """Why the plan deletes a runner."""

    UNHEALTHY = "unhealthy"
    ORPHAN_INSTANCE = "orphan-instance"
    ORPHAN_RECORD = "orphan-record"
    SURPLUS = "surplus"
    EXPIRING = "expiring"  # idle, and a credential it holds expires soon: replaced at once
    FLUSH = "flush"


@dataclass(frozen=True)
class Runner:
    """A runner as the plan sees it: the join of both views and a judged state.

    Attributes:
        name: Runner name.
        state: The judged state.
        instance: The LXD view, if any.
        github: The GitHub view, if any.
    """

    name: str
    state: RunnerState
    instance: InstanceView | None
    github: GithubView | None

    @property
    def busy(self) -> bool:
        """Whether GitHub says the runner runs a job."""
        return self.github is not None and self.github.busy


@dataclass(frozen=True)
class Deletion:
    """One runner to delete.

    Attributes:
        runner: The runner.
        reason: Why.
    """

    runner: Runner
    reason: DeleteReason


@dataclass(frozen=True)
class PlanTimeouts:
    """Ages the plan judges runners by.

    Attributes:
        bootstrap: How long a new instance may take to show online on GitHub.
    """

    bootstrap: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class ReconcilePlan:
    """What a reconcile must do.

    Attributes:
        runners: Every runner observed, judged.
        deletions: Runners to delete, with the reason.
        create: How many runners to create (expiring runners' replacements included).
        delta: Desired minus healthy runners before the change (positive: created). Expiring
            runners count as healthy here: they are replaced, the count stays.
    """

    runners: tuple[Runner, ...]
    deletions: tuple[Deletion, ...]
    create: int
    delta: int

    def count(self, state: RunnerState) -> int:
        """Return how many observed runners are in ``state``."""
        return sum(1 for r in self.runners if r.state is state)


HEALTHY_STATES = (RunnerState.STARTING, RunnerState.IDLE, RunnerState.BUSY)
_DEAD_INSTANCE_STATES = (InstanceState.STOPPED, InstanceState.ERROR)


def judge(
    instances: list[InstanceView],
    records: list[GithubView],
    now: datetime,
    timeouts: PlanTimeouts,
) -> tuple[Runner, ...]:
    """Join both views by name and judge each runner's state.

    Args:
        instances: LXD instances owned by this unit.
        records: GitHub runner records owned by this unit.
        now: The current time (UTC).
        timeouts: The ages to judge by.

    Returns:
        The runners, sorted by name.
    """
    by_instance = {i.name: i for i in instances}
    by_record = {r.name: r for r in records}
    runners: list[Runner] = []
    for name in sorted(by_instance.keys() | by_record.keys()):
        inst, rec = by_instance.get(name), by_record.get(name)
        runners.append(Runner(name, _state(inst, rec, now, timeouts), inst, rec))
    return tuple(runners)


def _state(
    inst: InstanceView | None, rec: GithubView | None, now: datetime, timeouts: PlanTimeouts
) -> RunnerState:
    if inst is None:
        if rec is not None and rec.online:
            return RunnerState.UNKNOWN
        return RunnerState.ORPHAN_RECORD
    young = now - inst.created_at < timeouts.bootstrap
    if inst.state in _DEAD_INSTANCE_STATES or not inst.complete:
        return RunnerState.UNHEALTHY
    if rec is None:
        starting = young and not inst.registered_first
        return RunnerState.STARTING if starting else RunnerState.ORPHAN_INSTANCE
    if rec.online and inst.state is InstanceState.RUNNING:
        return RunnerState.BUSY if rec.busy else RunnerState.IDLE
    if rec.busy:
        # Offline but busy: GitHub still holds a job on it; never scale it down on a guess.
        return RunnerState.BUSY
    return RunnerState.STARTING if young else RunnerState.UNHEALTHY


_REASON_BY_STATE = {
    RunnerState.UNHEALTHY: DeleteReason.UNHEALTHY,
    RunnerState.ORPHAN_INSTANCE: DeleteReason.ORPHAN_INSTANCE,
    RunnerState.ORPHAN_RECORD: DeleteReason.ORPHAN_RECORD,
}


def plan_reconcile(
    instances: list[InstanceView],
    records: list[GithubView],
    desired: int,
    now: datetime,
    timeouts: PlanTimeouts | None = None,
    *,
    stale_idle_after: timedelta | None = None,
    max_idle_age: timedelta | None = None,
    keep_idle: int = 0,
) -> ReconcilePlan:
    """Plan a reconcile towards ``desired`` healthy runners.

    Unhealthy runners and orphans on either side are deleted. Surplus runners are removed
    starting ones first (youngest first: they are not ready to take a job yet), then idle ones
    (oldest first); busy runners are never in a scale-down.

    Args:
        instances: LXD instances owned by this unit.
        records: GitHub runner records owned by this unit.
        desired: How many runners there should be.
        now: The current time (UTC).
        timeouts: The ages to judge by.
        stale_idle_after: When given (reactive mode, nothing waits in the queue), idle runners
            whose instance is older than this are surplus too, whatever ``desired`` says; the
            grace lets a runner made for a job take it first. Busy and starting runners never
            are. ``create`` and ``delta`` do not count these deletions.
        max_idle_age: When given, idle runners whose instance is older than this are deleted
            as EXPIRING and replaced in the same plan (``create`` counts them): a credential
            they hold (the policy service's one-time token) would expire before their job
            starts. Busy runners never are; a runner the stale rule removes is not replaced.
        keep_idle: The stale rule spares this many idle runners, the youngest (reactive mode's
            warm floor, ``manager.warm_floor``).

    Returns:
        The plan.
    """
    runners = judge(instances, records, now, timeouts or PlanTimeouts())
    deletions = [
        Deletion(r, _REASON_BY_STATE[r.state]) for r in runners if r.state in _REASON_BY_STATE
    ]
    healthy = [r for r in runners if r.state in HEALTHY_STATES]
    delta = max(desired, 0) - len(healthy)
    stale = _stale_idle(healthy, now, stale_idle_after) if stale_idle_after is not None else []
    idle = sum(1 for r in healthy if r.state is RunnerState.IDLE)
    stale = stale[: max(idle - max(keep_idle, 0), 0)]  # oldest first: ``keep_idle`` idle stay
    stale_names = {r.name for r in stale}
    expiring = [] if max_idle_age is None else _stale_idle(healthy, now, max_idle_age)
    expiring = [r for r in expiring if r.name not in stale_names]
    expiring_names = {r.name for r in expiring}
    remaining = [r for r in healthy if r.name not in expiring_names]
    shortfall = max(desired, 0) - len(remaining)  # == delta without expiring runners
    surplus = _scale_down_order(remaining)[: max(-shortfall, 0)]
    chosen = {r.name for r in surplus}
    surplus += [r for r in stale if r.name not in chosen]
    deletions.extend(Deletion(r, DeleteReason.EXPIRING) for r in expiring)
    deletions.extend(Deletion(r, DeleteReason.SURPLUS) for r in surplus)
    return ReconcilePlan(
        runners=runners, deletions=tuple(deletions), create=max(shortfall, 0), delta=delta
    )


def _stale_idle(healthy: list[Runner], now: datetime, older_than: timedelta) -> list[Runner]:
    """Idle runners whose instance is older than ``older_than``, oldest first."""
    old = [
        r
        for r in healthy
        if r.state is RunnerState.IDLE
        and r.instance is not None
        and now - r.instance.created_at > older_than
    ]
    return sorted(old, key=_created_at)


def _created_at(runner: Runner) -> datetime:
    return (
        runner.instance.created_at
        if runner.instance
        else datetime.min.replace(tzinfo=timezone.utc)
    )


def _scale_down_order(healthy: list[Runner]) -> list[Runner]:
    idle = sorted((r for r in healthy if r.state is RunnerState.IDLE), key=_created_at)
    starting = sorted(
        (r for r in healthy if r.state is RunnerState.STARTING), key=_created_at, reverse=True
    )
    return starting + idle


def plan_flush(runners: tuple[Runner, ...], include_busy: bool) -> tuple[Deletion, ...]:
    """Plan a flush: every idle, starting, unhealthy or orphan runner; busy ones on request.

    Args:
        runners: The judged runners.
        include_busy: Whether busy runners go too.

    Returns:
        The deletions.
    """
    deletions = []
    for runner in runners:
        if runner.state is RunnerState.UNKNOWN and not include_busy:
            continue
        if runner.state is RunnerState.BUSY and not include_busy:
            continue
        reason = _REASON_BY_STATE.get(runner.state, DeleteReason.FLUSH)
        deletions.append(Deletion(runner, reason))
    return tuple(deletions)
