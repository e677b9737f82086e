#!/usr/bin/env python3
"""Runner creation before and after an LXD daemon restart, in the same run, phase by phase.

The churn soak (soak.py) saw creations slower after its LXD restart with the same daemon CPU per
creation. This tells where the time goes. One unit's RunnerManager in test mode (template on,
runners on the closed test network, the sandbox GitHub in a process of its own), one runner at a
time: ``create_runners(1)`` (timed; the LXD requests it makes are timed by path with the scale
benchmark's counter), then until the sandbox shows it online, then an idle flush. ``--reps``
such creations (default 8; small 3), then the daemon is restarted as the soak does (SIGTERM,
``scripts/setup-lxd.sh``), then ``--reps`` more; ``--restarts`` times (default 2; small 1).
The first creation of the run and the first after each restart are not counted. Page caches are
dropped before each creation.

Printed per phase: medians of the creation call, of created -> online, of the LXD daemon's CPU
seconds per creation, and of the LXD requests by path; ratios after / before. Exits 1 when a
creation fails, a runner does not come online, the daemon does not come back, or an instance is
left. The ratios are figures, not invariants. Root, under ``flock /tmp/work/lxd.lock``.

    flock /tmp/work/lxd.lock python benchmarks/lxd_restart.py [--json] [--small] [--reps R]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks._lib.bench import (
    Report,
    drop_caches,
    fmt,
    force_delete_instances,
    lxd_instances,
    median,
    parse_args,
    ratio,
)
from benchmarks._lib.soak_manager import cpu_seconds, lxd_daemons, restart_lxd
from benchmarks.scale import LxdCounter, make_template
from benchmarks.scale_up import online_count
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from lxd.client import LxdClient
from runner_manager_type import LXDFlushMode

APP = "bench-restart"
ONLINE_TIMEOUT = 60.0


def daemon_cpu() -> float:
    """CPU seconds the running LXD daemon has used (0 when none answers)."""
    return sum(c for p in lxd_daemons() if (c := cpu_seconds(p)) is not None)


def one_creation(env: LocalEnvironment, lxd: LxdCounter, report: Report) -> dict[str, Any]:
    """Create one runner, wait until it is online, flush it; the times of each step."""
    drop_caches()
    paths, cpu = dict(lxd.paths), daemon_cpu()
    began = time.perf_counter()
    names = env.manager.create_runners(1, RESOURCES)
    created = time.perf_counter() - began
    online: float | None = None
    while time.perf_counter() < began + ONLINE_TIMEOUT:
        if online_count(env) >= 1:
            online = time.perf_counter() - began
            break
        time.sleep(0.1)
    used = daemon_cpu() - cpu
    report.check(len(names) == 1, f"one creation asked, {names} made (see the log)")
    report.check(online is not None, f"{names} not online within {ONLINE_TIMEOUT} s")
    env.manager.flush(LXDFlushMode.FLUSH_IDLE)
    report.check(not env.instances(), f"left after the idle flush: {env.instances()}")
    return {
        "create_s": created,
        "to_online_s": (online - created) if online is not None else None,
        "daemon_cpu_s": used if used >= 0 else None,  # negative: the daemon changed under us
        "lxd_s_by_path": {k: v - paths.get(k, 0.0) for k, v in lxd.paths.items()},
    }


def phase(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of one phase's creations."""
    paths = sorted({k for r in rows for k in r["lxd_s_by_path"]})
    by_path = {k: median([r["lxd_s_by_path"].get(k, 0.0) for r in rows]) for k in paths}
    return {
        "n": len(rows),
        "create_s": median([r["create_s"] for r in rows]),
        "to_online_s": median([r["to_online_s"] for r in rows if r["to_online_s"] is not None]),
        "daemon_cpu_s": median([r["daemon_cpu_s"] for r in rows if r["daemon_cpu_s"] is not None]),
        "lxd_s_by_path": {k: v for k, v in by_path.items() if v and v >= 0.005},
    }


def run(reps: int, restarts: int, report: Report) -> dict[str, Any]:
    """Before, then after each restart: ``reps`` creations each."""
    options = LocalOptions(
        app_name=APP, repo="octo/bench", labels=("bench",), sandbox_process=True
    )
    phases: dict[str, Any] = {}
    restarted: list[dict[str, Any]] = []
    try:
        with LocalEnvironment(options) as env:
            client = env.manager._clients.lxd
            assert isinstance(client, LxdClient)  # the real daemon's client, not a fake
            lxd = LxdCounter(client.transport)
            make_template(env)
            one_creation(env, lxd, report)  # warm-up, not counted
            for index in range(restarts + 1):
                if index:
                    restarted.append(restart_lxd())
                    report.check(restarted[-1]["rc"] == 0, f"LXD did not start: {restarted[-1]}")
                    one_creation(env, lxd, report)  # the first after a restart: not counted
                rows = [one_creation(env, lxd, report) for _ in range(reps)]
                phases["before" if not index else f"after restart {index}"] = phase(rows)
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    finally:
        force_delete_instances(f"{APP}-")
        force_delete_instances(f"grt-{APP}-")
    report.check(not lxd_instances(f"{APP}-"), "instances left after cleanup")
    report.check(not lxd_instances(f"grt-{APP}-"), "runner template left after cleanup")
    return {"phases": phases, "restarts": restarted}


def show(report: Report, results: dict[str, Any]) -> None:
    """One table: each phase's medians and their ratio to the phase before any restart."""
    phases = results["phases"]
    base = phases["before"]
    paths = sorted({k for p in phases.values() for k in p["lxd_s_by_path"]})
    table = report.table(
        f"one runner at a time, {base['n']} per phase (medians; ratio to before)",
        "figure",
        *phases,
    )
    for key, label in (
        ("create_s", "create_runners(1) s"),
        ("to_online_s", "created -> online s"),
        ("daemon_cpu_s", "LXD daemon CPU s per creation"),
    ):
        cells = [f"{fmt(p[key])} ({fmt(ratio(p[key], base[key]), 'x')})" for p in phases.values()]
        table.add_row(label, *cells)
    for path in paths:
        cells = []
        for p in phases.values():
            value, before = p["lxd_s_by_path"].get(path), base["lxd_s_by_path"].get(path)
            cells.append(f"{fmt(value)} ({fmt(ratio(value, before), 'x')})")
        table.add_row(f"  LXD {path}", *cells)
    report.figures.update(results)


def main() -> int:
    """Run the phases; exit 1 on a failed creation, a daemon that stays down or a leak."""
    args = parse_args(
        __doc__ or "",
        [
            ("--reps", {"type": int, "default": 0, "help": "creations per phase"}),
            ("--restarts", {"type": int, "default": 0, "help": "restarts (default 2; small 1)"}),
        ],
    )
    reps = args.reps or (3 if args.small else 8)
    restarts = args.restarts or (1 if args.small else 2)
    report = Report("lxd_restart", args.small)
    results = run(reps, restarts, report)
    if "before" in results["phases"]:
        show(report, results)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
