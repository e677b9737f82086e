"""The metrics state file: what the manager observed, as the exporter serves it.

Hooks, actions and reactive consumers are short-lived processes, so the series cannot live in
one process's memory. Each writer merges its change into one small JSON file under an exclusive
``flock`` (read, change, write a temporary file, rename); the exporter reads the file on each
scrape without a lock (a rename is atomic: it sees the old or the new file, never half of one).
Counters and histograms are cumulative in the file, so they survive exporter restarts.

prometheus-client's multiprocess mode was the alternative: it keeps one set of files per writer
pid, and a hook is a new pid every few minutes, so the files (and the scrape cost) would grow
without bound.

A missing or corrupt file reads as empty: a scrape never fails because of it, and the next write
starts afresh (counters restart from zero, which Prometheus treats as a reset).
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from observability.series import Kind, Series

logger = logging.getLogger(__name__)

STATE_FILE_NAME = "prometheus-state.json"
MAX_STATE_BYTES = 4 << 20  # far above what 40 runners need (a few KiB); a bound, not a budget
MAX_PENDING_ONLINE = 1000


class Histogram(BaseModel):
    """One histogram's cumulative observations.

    Attributes:
        bounds: Upper bounds of the buckets (``+Inf`` implied).
        counts: Observations per bucket (not cumulative), one more than ``bounds`` (``+Inf``).
        sum: Sum of the observed values.
    """

    model_config = ConfigDict(extra="forbid")

    bounds: list[float]
    counts: list[int]
    sum: float = 0.0


class MetricsState(BaseModel):
    """The state: values by series and label values, histograms, runners awaiting online.

    Attributes:
        updated: When the state was last written (UNIX time).
        values: Gauge and counter values: series name -> label values (JSON list) -> value.
        histograms: Series name -> label values (JSON list) -> observations.
        pending_online: Runners created and not yet seen online: name -> creation UNIX time.
    """

    model_config = ConfigDict(extra="ignore")

    updated: float = 0.0
    values: dict[str, dict[str, float]] = Field(default_factory=dict)
    histograms: dict[str, dict[str, Histogram]] = Field(default_factory=dict)
    pending_online: dict[str, float] = Field(default_factory=dict)

    @staticmethod
    def key(series: Series, labels: Sequence[str]) -> str:
        """Return the key of a series' label values.

        Raises:
            ValueError: If the number of values does not match the series' labels.
        """
        if len(labels) != len(series.labels):
            raise ValueError(f"{series.name} takes labels {series.labels}, got {tuple(labels)}")
        return json.dumps([str(value) for value in labels])

    def set(self, series: Series, labels: Sequence[str], value: float) -> None:
        """Set a gauge."""
        self.values.setdefault(series.name, {})[self.key(series, labels)] = float(value)

    def clear(self, series: Series) -> None:
        """Drop every value of a gauge (its label sets are set again from what is observed)."""
        self.values.pop(series.name, None)

    def inc(self, series: Series, labels: Sequence[str], amount: float = 1.0) -> None:
        """Add to a counter (negative amounts are ignored: counters only grow)."""
        if series.kind is not Kind.COUNTER or amount <= 0:
            return
        values = self.values.setdefault(series.name, {})
        key = self.key(series, labels)
        values[key] = values.get(key, 0.0) + float(amount)

    def observe(self, series: Series, labels: Sequence[str], value: float) -> None:
        """Add one observation to a histogram (buckets restart if the bounds changed)."""
        bounds = list(series.buckets)
        histograms = self.histograms.setdefault(series.name, {})
        key = self.key(series, labels)
        current = histograms.get(key)
        if current is None or current.bounds != bounds or len(current.counts) != len(bounds) + 1:
            current = Histogram(bounds=bounds, counts=[0] * (len(bounds) + 1))
            histograms[key] = current
        value = max(float(value), 0.0)
        current.counts[bisect.bisect_left(bounds, value)] += 1
        current.sum += value

    def value(self, series: Series, labels: Sequence[str] = ()) -> float | None:
        """Return a gauge or counter value, if set."""
        return self.values.get(series.name, {}).get(self.key(series, labels))


class StateFile:
    """The state file, shared by every writer on the unit and the exporter."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        """Build it. Nothing is read or written.

        Args:
            path: The state file (its directory is created on the first write).
            clock: UNIX time.
        """
        self.path = path
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._clock = clock

    def read(self) -> MetricsState:
        """Return the state (empty when the file is missing, too large or corrupt)."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return MetricsState()
        except OSError as exc:
            logger.warning("metrics state %s unreadable: %s", self.path, exc)
            return MetricsState()
        if len(data) > MAX_STATE_BYTES:
            logger.warning(
                "metrics state %s is over %d bytes: ignored", self.path, MAX_STATE_BYTES
            )
            return MetricsState()
        try:
            return MetricsState.model_validate_json(data)
        except ValidationError:
            logger.warning("metrics state %s is corrupt: ignored", self.path)
            return MetricsState()

    def update(self, change: Callable[[MetricsState], None]) -> bool:
        """Apply ``change`` to the state under the file's lock and write it back.

        A failure (unwritable directory, full disk, a bad change) is logged: observing must
        never break the work being observed.

        Args:
            change: Mutates the state.

        Returns:
            Whether the state was written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = self.read()
                change(state)
                if len(state.pending_online) > MAX_PENDING_ONLINE:
                    oldest = sorted(state.pending_online, key=state.pending_online.__getitem__)
                    for name in oldest[: len(state.pending_online) - MAX_PENDING_ONLINE]:
                        del state.pending_online[name]
                state.updated = self._clock()
                self._write(state)
            finally:
                os.close(fd)  # releases the lock
        except (OSError, ValueError) as exc:
            logger.warning("metrics state %s not updated: %s", self.path, exc)
            return False
        return True

    def _write(self, state: MetricsState) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(state.model_dump_json())
        os.replace(tmp, self.path)
