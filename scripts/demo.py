#!/usr/bin/env python3
"""Demo: the charm's RunnerManager against local LXD and the sandbox GitHub.

Reconciles a warm pool of 3 runners, queues 6 jobs, shows runners and jobs live while the pool
is replenished (as the charm's reconcile timer does), then flushes and prints a summary. Runners
have a real NIC on a closed test network the demo builds and tears down (harness/testnet.py); the
sandbox serves in one of its test hosts. Leaves no instance, registration or network behind. Run
as root after ``make setup`` (``make demo`` does).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from errors import GithubRunnerError
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from lxd.client import LxdClient
from reconcile_plan import RunnerState
from runner_manager_type import LXDFlushMode

console = Console()


def preflight(image: str) -> str | None:
    """Return what is missing on this machine, or None."""
    client = LxdClient()
    if not client.is_available():
        return "LXD is not running: run `make setup` (or scripts/setup-lxd.sh) as root"
    if not client.image_exists(image):
        return f"the LXD image {image} is missing: run scripts/build-lxd-image.sh --test"
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [tool for tool in ("ip", "dnsmasq") if shutil.which(tool, path=path) is None]
    if os.geteuid() != 0 or missing:
        return "the closed test network needs root, iproute2 and dnsmasq: run `make setup`"
    os.environ["PATH"] = path
    return None


def parse_time(value: str) -> datetime:
    """Parse GitHub's ISO timestamps."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def render(env: LocalEnvironment, job_ids: list[int], started: float) -> Table:
    """One frame: runners by state, jobs by state."""
    plan = env.manager.runner_states()
    jobs = Counter(env.job(i)["status"] for i in job_ids)
    table = Table(title=f"github-runner demo — {time.monotonic() - started:5.1f} s")
    table.add_column("runners", justify="left")
    table.add_column("jobs", justify="left")
    counts = [f"{plan.count(s)} {s.value}" for s in RunnerState if plan.count(s)]
    runner_states = ", ".join(counts) or "none"
    job_states = ", ".join(f"{n} {s}" for s, n in sorted(jobs.items())) or "none"
    table.add_row(runner_states, job_states)
    return table


def keep_reconciling(
    env: LocalEnvironment, count: int, stop: threading.Event, seconds: list[float]
) -> None:
    """Reconcile the pool every second until told to stop, like the charm's timer."""
    while not stop.is_set():
        try:
            env.manager.reconcile(count, RESOURCES)
            seconds.extend(env.manager.last_report.create_seconds)
        except GithubRunnerError as exc:
            console.print(f"[yellow]reconcile failed, retrying: {exc}")
        stop.wait(1.0)


def run_jobs(env: LocalEnvironment, runners: int, count: int, timeout: float) -> Summary:
    """Warm the pool, queue the jobs, show progress until they complete, then flush."""
    started = time.monotonic()
    env.manager.reconcile(runners, RESOURCES)
    summary = Summary(create_seconds=list(env.manager.last_report.create_seconds))
    env.wait_online(runners, 120)
    console.print(f"{runners} runners online after {time.monotonic() - started:.1f} s")
    job_ids = [
        env.queue_job([f"echo job {n} on $RUNNER_NAME", "uname -sm", "sleep 1"])["id"]
        for n in range(1, count + 1)
    ]
    stop = threading.Event()
    worker = threading.Thread(
        target=keep_reconciling, args=(env, runners, stop, summary.create_seconds), daemon=True
    )
    worker.start()
    deadline = time.monotonic() + timeout
    with Live(render(env, job_ids, started), console=console, refresh_per_second=2) as live:
        while time.monotonic() < deadline:
            live.update(render(env, job_ids, started))
            if all(env.job(i)["status"] == "completed" for i in job_ids):
                break
            time.sleep(0.5)
    stop.set()
    worker.join(timeout=120)
    summary.jobs = [env.job(i) for i in job_ids]
    summary.flushed = env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    return summary


@dataclass
class Summary:
    """What the demo reports."""

    create_seconds: list[float]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    flushed: int = 0

    def waits(self) -> list[float]:
        """Seconds each job waited between queued and started."""
        return [
            (parse_time(j["started_at"]) - parse_time(j["created_at"])).total_seconds()
            for j in self.jobs
            if j.get("started_at") and j.get("status") != "queued"
        ]

    def done(self) -> int:
        """Jobs that completed with success."""
        return sum(1 for j in self.jobs if j["conclusion"] == "success")

    def table(self) -> Table:
        """The summary as a table."""
        table = Table(title="summary")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_row("jobs done", f"{self.done()}/{len(self.jobs)}")
        waits = self.waits()
        if waits:
            p50, worst = statistics.median(waits), max(waits)
            table.add_row("job wait p50 / max", f"{p50:.2f} s / {worst:.2f} s")
        if self.create_seconds:
            table.add_row("runner create p50", f"{statistics.median(self.create_seconds):.2f} s")
        table.add_row("runners flushed", str(self.flushed))
        return table


def main() -> int:
    """Run the demo; exit 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    missing = preflight("github-runner-test")
    if missing:
        console.print(f"[red]Cannot run the demo: {missing}")
        return 2
    options = LocalOptions(app_name="demo", repo="octo/demo", labels=("demo",))
    with LocalEnvironment(options) as env:
        console.print(
            f"sandbox GitHub at {env.sandbox.base_url}, runners on test network {env.network}; "
            f"warming {args.runners} runners"
        )
        summary = run_jobs(env, args.runners, args.jobs, args.timeout)
        console.print(summary.table())
        env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        leftovers = env.instances()
    if leftovers:
        console.print(f"[red]instances left behind: {leftovers}")
        return 1
    if summary.done() != len(summary.jobs):
        console.print("[red]not every job succeeded")
        return 1
    console.print("[green]demo finished: every job ran on a fresh runner; nothing left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
