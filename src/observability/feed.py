"""What the manager tells the exporter: each observation merged into the metrics state file.

The manager (through :class:`metrics.recorder.MetricsRecorder`) and the metered GitHub transport
call these methods after the work they observe; nothing here calls GitHub or LXD.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from observability import series as s
from observability.state import MetricsState, StateFile
from reconcile_plan import ReconcilePlan, RunnerState

ONLINE_STATES = (RunnerState.IDLE, RunnerState.BUSY)


class MetricsFeed:
    """Writes the observations of one flavor (application) into the state file."""

    def __init__(self, state: StateFile, flavor: str) -> None:
        """Build it.

        Args:
            state: The state file.
            flavor: The runner flavor (the application name), the ``flavor`` label.
        """
        self.state = state
        self.flavor = flavor

    def reconciled(self, plan: ReconcilePlan, expected: int, duration: float) -> None:
        """Record what a reconcile observed: runners by state, and the runners now online.

        Args:
            plan: The reconcile's plan (its runners carry the states observed at its start).
            expected: The configured number of runners.
            duration: Seconds the reconcile took.
        """
        flavor = (self.flavor,)
        online = {r.name for r in plan.runners if r.state in ONLINE_STATES}
        alive = {r.name for r in plan.runners if r.instance is not None}
        deleted = {d.runner.name for d in plan.deletions}

        def change(state: MetricsState) -> None:
            state.set(s.EXPECTED, flavor, max(expected, 0))
            for gauge, runner_state in (
                (s.IDLE, RunnerState.IDLE),
                (s.BUSY, RunnerState.BUSY),
                (s.STARTING, RunnerState.STARTING),
                (s.UNHEALTHY, RunnerState.UNHEALTHY),
            ):
                state.set(gauge, flavor, plan.count(runner_state))
            state.observe(s.RECONCILE_DURATION, flavor, duration)
            now = datetime.now(timezone.utc).timestamp()
            observed_at = now - max(duration, 0.0)
            for name, created_at in list(state.pending_online.items()):
                if name in online:
                    state.observe(s.TIME_TO_ONLINE, flavor, now - created_at)
                    del state.pending_online[name]
                elif name in deleted or (name not in alive and created_at < observed_at):
                    del state.pending_online[name]  # gone (created after the observation: kept)

        self.state.update(change)

    def runner_created(self, name: str | None, seconds: float) -> None:
        """Record a runner created in ``seconds``; a reconcile then sees it come online."""
        created_at = datetime.now(timezone.utc).timestamp() - max(seconds, 0.0)

        def change(state: MetricsState) -> None:
            state.inc(s.CREATED, (self.flavor,))
            state.observe(s.SPAWN_DURATION, (self.flavor,), seconds)
            if name:
                state.pending_online[name] = created_at

        self.state.update(change)

    def creation_failed(self, count: int = 1) -> None:
        """Record failed runner creations."""
        self.state.update(lambda state: state.inc(s.CREATION_FAILURES, (self.flavor,), count))

    def runners_deleted(self, reasons: Iterable[str]) -> None:
        """Record deleted runners, one reason each."""
        reasons = list(reasons)
        if not reasons:
            return

        def change(state: MetricsState) -> None:
            for reason in reasons:
                state.inc(s.DELETED, (self.flavor, reason))

        self.state.update(change)

    def job(self, *, idle: float | None, queue: float | None, duration: float | None) -> None:
        """Record a job a runner ran: idle time before it, queue wait, run time (None: unknown)."""

        def change(state: MetricsState) -> None:
            for histogram, value in (
                (s.IDLE_DURATION, idle),
                (s.QUEUE_DURATION, queue),
                (s.JOB_DURATION, duration),
            ):
                if value is not None:
                    state.observe(histogram, (self.flavor,), value)

        self.state.update(change)

    def quarantined(self, count: int = 1) -> None:
        """Record quarantined metrics stores."""
        self.state.update(lambda state: state.inc(s.QUARANTINES, (self.flavor,), count))

    def reactive(self, queue_depth: int | None, consumers: int) -> None:
        """Record the reactive queue's depth (None: unknown) and the consumers kept."""

        def change(state: MetricsState) -> None:
            state.set(s.CONSUMERS, (self.flavor,), consumers)
            if queue_depth is not None:
                state.set(s.QUEUE_DEPTH, (self.flavor,), queue_depth)

        self.state.update(change)


def api_request(
    state_file: StateFile, method: str, route: str, status: int, headers: Mapping[str, str]
) -> None:
    """Record one GitHub API request and the rate limit its answer reports.

    Args:
        state_file: The state file.
        method: The HTTP method.
        route: The route template (``/repos/{owner}/{repo}/actions/runners``).
        status: The HTTP status (0: no answer).
        headers: The answer's headers, lower-case names.
    """
    rate = {}
    for header, gauge in (
        ("x-ratelimit-remaining", s.RATE_REMAINING),
        ("x-ratelimit-limit", s.RATE_LIMIT),
        ("x-ratelimit-reset", s.RATE_RESET),
    ):
        try:
            rate[gauge] = float(headers[header])
        except (KeyError, ValueError):
            continue

    def change(state: MetricsState) -> None:
        state.inc(s.API_REQUESTS, (method, route, str(status)))
        for gauge, value in rate.items():
            state.set(gauge, (), value)

    state_file.update(change)
