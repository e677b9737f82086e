#!/usr/bin/env python3
"""Reconciles under GitHub faults: 20% injected 5xx, then a rate-limit window on top.

The charm's RunnerManager keeps a pool of K runners (real LXD, sandbox GitHub) while jobs
arrive every few seconds, so runners are used up and re-created during the run (creations,
deletions and listings all meet the faults). Phases:

1. ``5xx``: every REST API request fails with 503 with probability 0.2 (sandbox
   ``/_sandbox/faults``; the runners' own protocol is not touched);
2. ``rate limit``: the 5xx stay, and the token's rate limit is exhausted for a window
   (``rate_limit: {remaining: 0, reset_in: W}``);
3. faults cleared: reconciles until the pool is converged again (K instances, each registered,
   online, no stray record); the seconds this took are "time to converge".

Counted: reconciles attempted, completed, failed with one of the project's errors (a handled
failure: the charm shows it as a status and the next timer run retries) and failed with anything
else (an uncaught exception: expected 0); runner creations that failed (isolated, per runner);
jobs queued and jobs completed by the end (nothing lost). Exit 1 on an uncaught exception, a
job never done, no convergence, or a leak.

    python benchmarks/faults.py [--json] [--small]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    parse_args,
)
from errors import GithubRunnerError
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from runner_manager_type import LXDFlushMode

APP = "bench-fault"
FAULT_P = 0.2


@dataclass
class Tally:
    """What the reconciles of one phase did."""

    attempted: int = 0
    completed: int = 0
    handled: Counter[str] = field(default_factory=Counter)
    uncaught: list[str] = field(default_factory=list)
    creations_failed: int = 0
    created: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "attempted": self.attempted,
            "completed": self.completed,
            "success_rate": round(self.completed / self.attempted, 3) if self.attempted else None,
            "handled_errors": dict(self.handled),
            "uncaught": self.uncaught,
            "creations_failed": self.creations_failed,
            "created": self.created,
            "seconds": round(self.seconds, 1),
        }


def reconcile_once(env: LocalEnvironment, size: int, tally: Tally) -> None:
    """One reconcile, classified."""
    tally.attempted += 1
    try:
        env.manager.reconcile(size, RESOURCES)
    except GithubRunnerError as exc:
        tally.handled[type(exc).__name__] += 1
        return
    except Exception as exc:  # what the benchmark is looking for
        tally.uncaught.append(f"{type(exc).__name__}: {exc}")
        return
    tally.completed += 1
    tally.created += len(env.manager.last_report.created)
    tally.creations_failed += len(env.manager.last_report.failed)


def phase(
    env: LocalEnvironment, size: int, seconds: float, job_every: float, jobs: list[int]
) -> Tally:
    """Reconcile every 0.5 s for ``seconds`` while queuing a job every ``job_every`` s."""
    tally = Tally()
    began = time.monotonic()
    next_job = began
    while time.monotonic() - began < seconds:
        if time.monotonic() >= next_job:
            jobs.append(env.queue_job(["true"])["id"])
            next_job += job_every
        reconcile_once(env, size, tally)
        time.sleep(0.5)
    tally.seconds = time.monotonic() - began
    return tally


def converged(env: LocalEnvironment, size: int) -> bool:
    """K instances, each with its record, all online and idle-or-busy, nothing else."""
    instances = set(env.instances())
    runners = env.control("GET", "/runners")
    mine = {r["name"]: r for r in runners if r["name"].startswith(env.manager.prefix)}
    return (
        len(instances) == size
        and set(mine) == instances
        and all(r["status"] == "online" for r in mine.values())
    )


def main() -> int:  # noqa: PLR0915 - one linear scenario
    """Run the phases; exit 1 on an uncaught exception, a lost job or a leak."""
    args = parse_args(__doc__ or "")
    size = 1 if args.small else 2
    fault_s, limit_s = (12.0, 6.0) if args.small else (90.0, 20.0)
    job_every = 4.0 if args.small else 6.0
    report = Report("faults", args.small)
    jobs: list[int] = []
    tallies: dict[str, Tally] = {}
    after: dict[str, Any] = {}
    options = LocalOptions(
        app_name=APP, repo="octo/bench", labels=("bench",), settings={"busy_delete_wait": 2.0}
    )
    try:
        with LocalEnvironment(options) as env:
            env.manager.reconcile(size, RESOURCES)
            env.wait_online(size, 60)
            env.control("POST", "/faults", {"status": 503, "probability": FAULT_P})
            tallies["5xx"] = phase(env, size, fault_s, job_every, jobs)
            env.control("POST", "/faults", {"rate_limit": {"remaining": 0, "reset_in": limit_s}})
            tallies["5xx + rate limit"] = phase(env, size, limit_s, job_every, jobs)
            faults = env.control("GET", "/faults")
            env.control("DELETE", "/faults")
            began = time.monotonic()
            recovery = Tally()
            while time.monotonic() - began < 180:
                reconcile_once(env, size, recovery)
                if converged(env, size):
                    break
                time.sleep(0.5)
            to_converge = time.monotonic() - began
            report.check(converged(env, size), "not converged 180 s after the faults stopped")
            recovery.seconds = to_converge
            tallies["recovery"] = recovery
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = [env.job(j) for j in jobs]
                if all(j["status"] == "completed" for j in done):
                    break
                reconcile_once(env, size, recovery)
                time.sleep(0.5)
            done = [env.job(j) for j in jobs]
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            after = {
                "instances": env.instances(),
                "registrations": env.registrations(),
                "jobs_queued": len(jobs),
                "jobs_completed": sum(1 for j in done if j["status"] == "completed"),
                "jobs_succeeded": sum(1 for j in done if j.get("conclusion") == "success"),
                "injected_hits": sum(f["hits"] for f in faults),
                "seconds_to_converge": round(to_converge, 1),
            }
    finally:
        leaked = force_delete_instances(f"{APP}-")
    report.check(not leaked, f"instances left behind: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    report.check(not after.get("registrations"), f"registrations left: {after}")
    uncaught = sum(len(t.uncaught) for t in tallies.values())
    report.check(uncaught == 0, f"uncaught exceptions: {[t.uncaught for t in tallies.values()]}")
    report.check(
        after.get("jobs_completed") == after.get("jobs_queued"),
        f"jobs lost: {after.get('jobs_queued')} queued, {after.get('jobs_completed')} done",
    )

    table = report.table(
        f"reconciles under faults (pool of {size}; a job every {job_every:g} s)",
        "phase",
        "s",
        "reconciles",
        "ok",
        "ok share",
        "handled errors",
        "uncaught",
        "made",
        "create failed",
    )
    for name, tally in tallies.items():
        row = tally.as_dict()
        table.add_row(
            name,
            fmt(row["seconds"]),
            str(row["attempted"]),
            str(row["completed"]),
            fmt(row["success_rate"]),
            ", ".join(f"{k} {v}" for k, v in row["handled_errors"].items()) or "-",
            str(len(row["uncaught"])),
            str(row["created"]),
            str(row["creations_failed"]),
        )
    summary = report.table("outcome", "figure", "value", "expected")
    summary.add_row("injected faults that hit", str(after.get("injected_hits")), "> 0")
    summary.add_row(
        "seconds to converge after faults stop", fmt(after.get("seconds_to_converge")), ""
    )
    summary.add_row("uncaught exceptions", str(uncaught), "0")
    summary.add_row(
        "jobs completed / queued",
        f"{after.get('jobs_completed')} / {after.get('jobs_queued')}",
        "all",
    )
    summary.add_row(
        "left after the final flush (instances, registrations)",
        f"{len(after.get('instances', []))}, {len(after.get('registrations', []))}",
        "0, 0",
    )
    report.figures.update(
        pool=size,
        fault_probability=FAULT_P,
        rate_limit_window_s=limit_s,
        phases={k: v.as_dict() for k, v in tallies.items()},
        outcome=after,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
