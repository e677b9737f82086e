#!/usr/bin/env python3
"""metrics.runner.extract() over many stores: seconds and peak memory (flat when it streams).

Builds N per-runner stores with the directory backend (``DirectoryStorageManager``; the
production backend is loop-mounted 1 MiB ext4 images, whose reading is the same file I/O), each
holding what a runner that ran one job leaves: ``runner-installed.timestamp``,
``pre-job-metrics.json`` and ``post-job-metrics.json``. Then consumes ``extract(manager, set())``
(which validates, yields and deletes each store) without keeping the results. Seconds are the
median of several runs (stores rebuilt each time, building not timed); peak memory is the
smallest ``tracemalloc`` peak of two more runs (tracemalloc slows the code down; see
``measure`` for why the smallest).

    python benchmarks/extract.py [--json] [--small]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks._lib.bench import Report, fmt, median, parse_args, ratio
from metrics.runner import (
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    extract,
)
from metrics.storage import DirectoryStorageManager

INSTALLED = time.time() - 3600
PRE_JOB = json.dumps(
    {
        "timestamp": INSTALLED + 30,
        "workflow": "CI",
        "workflow_run_id": 123,
        "repository": "canonical/github-runner",
        "event": "push",
    }
)
POST_JOB = json.dumps({"timestamp": INSTALLED + 90, "status": "normal"})
GOAL_1000_S = 1.0
TRACED_RUNS = 2


def build(manager: DirectoryStorageManager, count: int) -> None:
    """Create ``count`` stores of runners that each ran one job."""
    for index in range(count):
        store = manager.create(f"bench-x-0-{index:08x}")
        (store.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text(f"{INSTALLED}\n")
        (store.path / PRE_JOB_METRICS_FILE_NAME).write_text(PRE_JOB)
        (store.path / POST_JOB_METRICS_FILE_NAME).write_text(POST_JOB)


class TimedDeletes(DirectoryStorageManager):
    """The directory backend, timing its store deletions (filesystem cost, not parsing)."""

    delete_seconds = 0.0

    def delete(self, runner_name: str) -> None:
        """Delete a store, adding the time it took to ``delete_seconds``."""
        began = time.perf_counter()
        try:
            super().delete(runner_name)
        finally:
            self.delete_seconds += time.perf_counter() - began


def consume(manager: DirectoryStorageManager) -> int:
    """Run extract() to the end, holding nothing; return how many metrics it yielded."""
    count = 0
    for _ in extract(manager, set()):
        count += 1
    return count


def measure(base: Path, where: str, count: int, reps: int, report: Report) -> dict[str, Any]:
    """Median seconds of ``reps`` runs and the tracemalloc peak of one more."""
    manager = TimedDeletes(base / "stores", base / "quarantine")
    seconds: list[float] = []
    deletes: list[float] = []
    for _ in range(reps):
        build(manager, count)
        manager.delete_seconds = 0.0
        began = time.perf_counter()
        yielded = consume(manager)
        seconds.append(time.perf_counter() - began)
        deletes.append(manager.delete_seconds)
        report.check(yielded == count, f"N={count}: {yielded} metrics yielded")
        report.check(not any((base / "stores").iterdir()), f"N={count}: stores left")
    peaks = []
    for _ in range(TRACED_RUNS):
        build(manager, count)
        tracemalloc.start()
        tracemalloc.reset_peak()
        consume(manager)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # Now and then one run also sees the interpreter's interned-string table grow (one ~1 MiB
    # allocation attributed to pathlib's sys.intern, whatever N is): the smallest peak of the
    # traced runs is extract()'s own.
    peak = min(peaks)
    report.check(not (base / "quarantine").exists(), f"N={count}: something was quarantined")
    shutil.rmtree(base / "stores", ignore_errors=True)
    best = median(seconds)
    deleting = median(deletes)
    return {
        "where": where,
        "stores": count,
        "delete_seconds_p50": round(deleting, 3) if deleting is not None else None,
        "seconds_p50": round(best, 3) if best is not None else None,
        "per_store_ms": round(1000 * best / count, 3) if best is not None else None,
        "peak_kib": round(peak / 1024, 1),
        "peaks_kib": [round(p / 1024, 1) for p in peaks],
        "reps": reps,
    }


def main() -> int:
    """Measure; exit 1 if a store was not extracted or memory grows with N."""
    args = parse_args(__doc__ or "")
    sizes = (100, 1000) if args.small else (1000, 10000)
    reps = 1 if args.small else 3
    report = Report("extract", args.small)
    places = [("disk", Path(tempfile.gettempdir()))]
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp directory is made inside
    if shm.is_dir():
        places.append(("tmpfs", shm))
    rows: list[dict[str, Any]] = []
    for where, parent in places:
        base = Path(tempfile.mkdtemp(prefix="bench-extract-", dir=parent))
        try:
            # Building 10,000 stores on a slow disk takes minutes: one timed run above 1,000.
            rows += [
                measure(base / str(n), where, n, reps if n <= 1000 else 1, report) for n in sizes
            ]
        finally:
            shutil.rmtree(base, ignore_errors=True)
    disk = [r for r in rows if r["where"] == "disk"]
    growth = ratio(disk[-1]["peak_kib"], disk[0]["peak_kib"])
    report.check(growth is not None and growth < 2.0, f"peak memory grew {growth}x with N")
    table = report.table(
        f"extract() over N directory stores (median of {reps}, 1 run above 1,000; tracemalloc "
        f"peak; disk = "
        f"{tempfile.gettempdir()})",
        "where",
        "N stores",
        "seconds",
        "of which deleting",
        "ms / store",
        "peak KiB",
    )
    for row in rows:
        table.add_row(
            row["where"],
            str(row["stores"]),
            fmt(row["seconds_p50"]),
            fmt(row["delete_seconds_p50"]),
            fmt(row["per_store_ms"]),
            fmt(row["peak_kib"]),
        )
    goal = report.table("targets", "figure", "value", "goal", "met")
    for row in rows:
        if row["stores"] == 1000:
            met = row["seconds_p50"] < GOAL_1000_S
            goal.add_row(
                f"1,000 stores ({row['where']})", fmt(row["seconds_p50"], "s"), "< 1 s", fmt(met)
            )
    goal.add_row(
        f"peak memory {disk[-1]['stores']} / {disk[0]['stores']} stores (disk)",
        fmt(growth, "x"),
        "flat (< 2x)",
        fmt(growth is not None and growth < 2.0),
    )
    report.figures.update(rows=rows, peak_growth=growth)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
