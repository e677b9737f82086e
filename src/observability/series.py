"""The Prometheus series the unit exports: one catalogue for the feed, the exporter and the docs.

Names follow upstream's github-runner charm where upstream has the same series
(``expected_runners_count``, ``idle_runners_count``, ``busy_runners_count``,
``deleted_runners_total``, ``reconcile_duration_seconds``, ``runner_spawn_duration_seconds``,
``runner_idle_duration_seconds``, ``runner_queue_duration_seconds``, ``job_duration_seconds``,
``github_api_rate_limit_remaining``, ``github_api_rate_limit_limit``), so that dashboards built
on them carry over. The others are named in the same style.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MINUTE = 60.0
HOUR = 60 * MINUTE


class Kind(str, Enum):
    """The Prometheus metric type of a series."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Series:
    """One exported metric family.

    Attributes:
        name: The metric name (counters end in ``_total``, as exposed).
        kind: Gauge, counter or histogram.
        help: What the series measures.
        labels: Its label names, in order.
        buckets: Upper bounds of a histogram's buckets (``+Inf`` is implied).
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def names(self) -> frozenset[str]:
        """Return the sample names PromQL sees (``_bucket``/``_sum``/``_count`` of histograms)."""
        if self.kind is Kind.HISTOGRAM:
            return frozenset(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count"))
        return frozenset({self.name})


_F = ("flavor",)
_DURATION = (1.0, 5.0, 10.0, 30.0, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE)
_WAIT = (1.0, 5.0, 30.0, MINUTE, 5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR)
_JOB = (MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, 24 * HOUR)

EXPECTED = Series("expected_runners_count", Kind.GAUGE, "Runners the unit is configured for.", _F)
IDLE = Series("idle_runners_count", Kind.GAUGE, "Idle runners the last reconcile observed.", _F)
BUSY = Series("busy_runners_count", Kind.GAUGE, "Busy runners the last reconcile observed.", _F)
STARTING = Series(
    "starting_runners_count",
    Kind.GAUGE,
    "Runners not yet online on GitHub the last reconcile observed.",
    _F,
)
UNHEALTHY = Series(
    "unhealthy_runners_count",
    Kind.GAUGE,
    "Unhealthy runners (stopped, in error, never online) the last reconcile observed.",
    _F,
)
CREATED = Series("created_runners_total", Kind.COUNTER, "Runners created.", _F)
DELETED = Series(
    "deleted_runners_total", Kind.COUNTER, "Runners deleted, by reason.", (*_F, "reason")
)
CREATION_FAILURES = Series(
    "runner_creation_failures_total", Kind.COUNTER, "Runner creations that failed.", _F
)
RECONCILE_DURATION = Series(
    "reconcile_duration_seconds", Kind.HISTOGRAM, "Duration of a reconcile.", _F, _DURATION
)
SPAWN_DURATION = Series(
    "runner_spawn_duration_seconds",
    Kind.HISTOGRAM,
    "Time to create a runner's instance and register it on GitHub.",
    _F,
    _DURATION,
)
TIME_TO_ONLINE = Series(
    "runner_time_to_online_seconds",
    Kind.HISTOGRAM,
    "Time from a runner's creation until a reconcile saw it online on GitHub.",
    _F,
    _DURATION,
)
IDLE_DURATION = Series(
    "runner_idle_duration_seconds",
    Kind.HISTOGRAM,
    "Time a runner waited idle before it took its job.",
    _F,
    _WAIT,
)
QUEUE_DURATION = Series(
    "runner_queue_duration_seconds",
    Kind.HISTOGRAM,
    "Time a job waited in GitHub's queue before a runner started it.",
    _F,
    _WAIT,
)
JOB_DURATION = Series(
    "job_duration_seconds", Kind.HISTOGRAM, "Time a job ran on a runner.", _F, _JOB
)
API_REQUESTS = Series(
    "github_api_requests_total",
    Kind.COUNTER,
    "GitHub API requests, by method, route and HTTP status (0: no answer).",
    ("method", "route", "status"),
)
RATE_REMAINING = Series(
    "github_api_rate_limit_remaining",
    Kind.GAUGE,
    "Requests left in the rate-limit window, from the most recent answer.",
)
RATE_LIMIT = Series(
    "github_api_rate_limit_limit",
    Kind.GAUGE,
    "Requests allowed in the rate-limit window, from the most recent answer.",
)
RATE_RESET = Series(
    "github_api_rate_limit_reset_timestamp_seconds",
    Kind.GAUGE,
    "When the rate-limit window resets (UNIX time), from the most recent answer.",
)
QUEUE_DEPTH = Series("reactive_queue_depth", Kind.GAUGE, "Jobs waiting in the reactive queue.", _F)
CONSUMERS = Series(
    "reactive_consumers_count", Kind.GAUGE, "Reactive consumer processes kept running.", _F
)
QUARANTINES = Series(
    "metrics_store_quarantines_total",
    Kind.COUNTER,
    "Runner metrics stores quarantined as corrupt or tampered with.",
    _F,
)

SERIES: tuple[Series, ...] = (
    EXPECTED,
    IDLE,
    BUSY,
    STARTING,
    UNHEALTHY,
    CREATED,
    DELETED,
    CREATION_FAILURES,
    RECONCILE_DURATION,
    SPAWN_DURATION,
    TIME_TO_ONLINE,
    IDLE_DURATION,
    QUEUE_DURATION,
    JOB_DURATION,
    API_REQUESTS,
    RATE_REMAINING,
    RATE_LIMIT,
    RATE_RESET,
    QUEUE_DEPTH,
    CONSUMERS,
    QUARANTINES,
)
BY_NAME: dict[str, Series] = {series.name: series for series in SERIES}


def sample_names() -> frozenset[str]:
    """Return every sample name the exporter can expose (what PromQL may select)."""
    return frozenset().union(*(series.names() for series in SERIES))
