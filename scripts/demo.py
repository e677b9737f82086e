#!/usr/bin/env python3
"""Demo: the charm's RunnerManager against local LXD and the sandbox GitHub.

Reconciles a warm pool of 3 runners, queues 6 jobs, shows runners and jobs live while the pool
is replenished (as the charm's reconcile timer does), then flushes and prints a summary. Leaves
no instance and no registration behind. Run as root after ``make setup`` (``make demo`` does).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]

from rich.console import Console  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.table import Table  # noqa: E402

from errors import GithubRunnerError  # noqa: E402
from harness.local import RESOURCES, LocalEnvironment, LocalOptions  # noqa: E402
from lxd import LxdClient  # noqa: E402
from reconcile_plan import RunnerState  # noqa: E402
from runner_manager_type import LXDFlushMode  # noqa: E402

console = Console()


def preflight(image: str) -> str | None:
    """Return what is missing on this machine, or None."""
    client = LxdClient()
    if not client.is_available():
        return "LXD is not running: run `make setup` (or scripts/setup-lxd.sh) as root"
    if not client.image_exists(image):
        return f"the LXD image {image} is missing: run scripts/build-lxd-image.sh --test"
    return None


def parse_time(value: str | None) -> datetime | None:
    """Parse GitHub's ISO timestamps."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def render(env: LocalEnvironment, job_ids: list[int], started: float) -> Table:
    """One frame: runners by state, jobs by state."""
    plan = env.manager.runner_states()
    jobs = Counter(env.job(i)["status"] for i in job_ids)
    table = Table(title=f"github-runner demo — {time.monotonic() - started:5.1f} s")
    table.add_column("runners", justify="left")
    table.add_column("jobs", justify="left")
    runner_states = ", ".join(
        f"{plan.count(s)} {s.value}" for s in RunnerState if plan.count(s)
    ) or "none"
    job_states = ", ".join(f"{n} {s}" for s, n in sorted(jobs.items())) or "none"
    table.add_row(runner_states, job_states)
    return table


def keep_reconciling(env: LocalEnvironment, count: int, stop: threading.Event, seconds: list[float]) -> None:
    """Reconcile the pool every second until told to stop, like the charm's timer."""
    while not stop.is_set():
        try:
            env.manager.reconcile(count, RESOURCES)
            seconds.extend(env.manager.last_report.create_seconds)
        except GithubRunnerError as exc:
            console.print(f"[yellow]reconcile failed, retrying: {exc}")
        stop.wait(1.0)


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
        console.print(f"sandbox GitHub at {env.sandbox.base_url}; warming {args.runners} runners")
        started = time.monotonic()
        env.manager.reconcile(args.runners, RESOURCES)
        create_seconds = list(env.manager.last_report.create_seconds)
        env.wait_online(args.runners, 120)
        console.print(f"{args.runners} runners online after {time.monotonic() - started:.1f} s")
        job_ids = [
            env.queue_job([f"echo job {n} on $RUNNER_NAME", "uname -sm", "sleep 1"])["id"]
            for n in range(1, args.jobs + 1)
        ]
        stop = threading.Event()
        worker = threading.Thread(
            target=keep_reconciling, args=(env, args.runners, stop, create_seconds), daemon=True
        )
        worker.start()
        deadline = time.monotonic() + args.timeout
        with Live(render(env, job_ids, started), console=console, refresh_per_second=2) as live:
            while time.monotonic() < deadline:
                jobs = [env.job(i) for i in job_ids]
                live.update(render(env, job_ids, started))
                if all(j["status"] == "completed" for j in jobs):
                    break
                time.sleep(0.5)
        stop.set()
        worker.join(timeout=120)
        jobs = [env.job(i) for i in job_ids]
        flushed = env.manager.flush(LXDFlushMode.FLUSH_BUSY)
        waits = [
            (parse_time(j["started_at"]) - parse_time(j["created_at"])).total_seconds()  # type: ignore[operator]
            for j in jobs
            if j.get("started_at")
        ]
        done = [j for j in jobs if j["status"] == "completed" and j["conclusion"] == "success"]
        summary = Table(title="summary")
        summary.add_column("figure")
        summary.add_column("value", justify="right")
        summary.add_row("jobs done", f"{len(done)}/{len(jobs)}")
        if waits:
            summary.add_row("job wait p50 / max", f"{statistics.median(waits):.2f} s / {max(waits):.2f} s")
        if create_seconds:
            summary.add_row("runner create p50", f"{statistics.median(create_seconds):.2f} s")
        summary.add_row("runners flushed", str(flushed))
        console.print(summary)
        leftovers = env.instances()
        env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    if leftovers:
        console.print(f"[red]instances left behind: {leftovers}")
        return 1
    if len(done) != len(jobs):
        console.print("[red]not every job succeeded")
        return 1
    console.print("[green]demo finished: every job ran on a fresh runner; nothing left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
