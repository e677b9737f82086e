"""Shared plumbing of the benchmark scripts: arguments, statistics, tables, machine facts.

The scripts import the project as installed in the virtualenv (``make venv`` puts ``src``,
``lib`` and the repository root on its path) and this module as ``benchmarks._lib.bench`` (a
namespace package: the Makefile's ``for b in benchmarks/*.py`` loop never runs it as a script).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, width=int(os.environ.get("COLUMNS", "120")))


def parse_args(description: str, extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> Any:
    """Parse the common ``--json`` and ``--small`` options (plus a script's own).

    Args:
        description: The script's docstring.
        extra: More ``(flag, add_argument kwargs)`` pairs.

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    parser.add_argument("--small", action="store_true", help="tiny sizes, for CI (< ~60 s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the manager's INFO")
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args()
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # stays quiet if a library lowers the root
        handler.setLevel(level)
    # pylxd's session keeps one connection; parallel creations discard extra ones (noise).
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return args


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest).

    Args:
        values: The sample.
        pct: The percentile, 0-100.

    Returns:
        The value, or None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, max and min of a sample (rounded to ms)."""
    return {
        "n": len(values),
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "max": _round(max(values) if values else None),
        "min": _round(min(values) if values else None),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Divide: numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def fmt(value: Any, unit: str = "") -> str:
    """Show a figure: floats with 2-3 significant decimals, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return f"{text} {unit}".strip()
    return f"{value} {unit}".strip()


def machine() -> dict[str, Any]:
    """Facts about this machine: cores, memory, LXD storage driver, load average, time."""
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "memory_gib": None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "utc": datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
        facts["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(
            ["lxc", "storage", "list", "-f", "csv"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        facts["lxd_storage"] = ",".join(
            f"{row.split(',')[0]}={row.split(',')[1]}" for row in out.splitlines() if row
        )
    except (OSError, subprocess.SubprocessError):
        facts["lxd_storage"] = None
    return facts


def drop_caches() -> bool:
    """Drop the page cache: ``sync; echo 3 > /proc/sys/vm/drop_caches`` (needs root).

    MACHINE-FACTS: LXD launches slow down on a warm page cache.

    Returns:
        Whether it worked.
    """
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def lxd_instances(prefix: str) -> list[str]:
    """Names of LXD instances starting with ``prefix``.

    Uses the ``lxc`` CLI: independent of the code under measurement.
    """
    out = subprocess.run(
        ["lxc", "list", "-c", "n", "-f", "csv"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return [name for name in out.split() if name.startswith(prefix)]


def force_delete_instances(prefix: str) -> list[str]:
    """Last-resort cleanup: ``lxc delete -f`` every instance with the prefix; returns them."""
    names = lxd_instances(prefix)
    for name in names:
        subprocess.run(["lxc", "delete", "-f", name], capture_output=True, timeout=60, check=False)
    return names


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Measure the wall and process CPU seconds of a block."""
    times: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield times
    finally:
        times["wall"] = time.perf_counter() - wall
        times["cpu"] = time.process_time() - cpu


@dataclass
class Report:
    """The figures of one benchmark run: tables for people, one JSON object for machines.

    Attributes:
        name: The benchmark.
        small: Whether ``--small`` sizes were used.
        figures: The JSON figures.
        failures: Broken invariants (non-empty -> exit status 1).
        tables: Rich tables printed before the JSON line.
    """

    name: str
    small: bool
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def table(self, title: str, *columns: str) -> Table:
        """Start a table (first column left-aligned, the others right-aligned)."""
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(columns):
            table.add_column(column, justify="left" if index == 0 else "right")
        self.tables.append(table)
        return table

    def check(self, ok: bool, message: str) -> bool:
        """Record a broken invariant when ``ok`` is false."""
        if not ok:
            self.failures.append(message)
        return ok

    def finish(self, as_json: bool) -> int:
        """Print the tables, the machine, the verdict and (with ``as_json``) the JSON line.

        Args:
            as_json: Print the figures as one JSON object, last.

        Returns:
            The exit status: 0, or 1 if an invariant broke.
        """
        self.figures["machine"] = machine()
        self.figures["small"] = self.small
        self.figures["failures"] = self.failures
        for table in self.tables:
            console.print(table)
        facts = self.figures["machine"]
        console.print(
            f"machine: {facts['nproc']} cores, {facts['memory_gib']} GiB, LXD pools "
            f"{facts.get('lxd_storage')}, load {facts['loadavg']} at {facts['utc']}"
        )
        if self.failures:
            for failure in self.failures:
                console.print(f"[red]INVARIANT BROKEN: {failure}")
        else:
            console.print(f"[green]{self.name}: all invariants hold")
        sys.stdout.flush()
        if as_json:
            print(json.dumps({"benchmark": self.name, **self.figures}, default=str), flush=True)
        return 1 if self.failures else 0
