#!/usr/bin/env python3
"""Churn soak: many short jobs through a warm pool of ephemeral runners, under every fault.

Real LXD, the sandbox GitHub, the production metrics stores (loop-mounted SharedFilesystemManager).
A manager process (a child, like the charm's timer runs reconciles) reconciles a pool of K
runners every ~second; each runner takes one job and is replaced by a later reconcile. The parent
queues N jobs (``sleep 1..20``; at most K + K/2 not yet finished at a time), cancels 5 % of them
mid-run (sandbox ``POST /_sandbox/jobs/{id}/cancel``: the runner learns it from its heartbeat) and
injects, all along, 10 % 5xx answers to GitHub REST requests, then once each (at a share of the
jobs done): a kill -9 of the manager process mid-reconcile (15 %; a new one starts), a
rate-limit window (30 %), an LXD daemon restart (55 %: SIGTERM to the daemon, which leaves
instances running, then ``scripts/setup-lxd.sh`` starts it again the way it did at setup).

Invariants (exit 1 when one breaks): every job completed exactly once, ``success`` or (only the
cancelled ones) ``cancelled``; after the final flush nothing left: instances, GitHub records,
metrics stores, loop devices, mounts; the manager's RSS and open fds flat (median of its first
10 % of reconciles vs its last 10 %, on the manager process that ran longest: more than +25 % and
+40 MiB RSS, or more than +8 fds, is growth; CPython's allocator keeps arenas and pylxd/requests
keep a few pooled sockets, so small steps are noise, a leak per reconcile or per runner over
hundreds of them is not); runner logs and quarantine within their bounds (``MAX_LOG_FILES`` files
of ``MAX_LOG_BYTES``, ``QUARANTINE_MAX_ARCHIVES``); with full sizes, no drift of the charm's
own: the runner creation p50 and the LXD daemon's CPU per creation of the last 50 jobs at most
``DRIFT_LIMIT`` times the first 50's. Reported: job wait (queued -> in progress) p50/p95 of the
first 50 vs the last 50 jobs and per 50 jobs with the load; per 50 jobs, what made the runners
(runners made per minute, creation p50, reconcile p50, LXD daemon CPU per creation, creations
launched from the image) and the runner overhead per job (the pool over the start rate, minus
the mean run time: the job wait alone moves with the job mix, as a fixed number of jobs is
open); totals, the faults actually injected. Must run as root under ``flock /tmp/work/lxd.lock``
(it restarts the LXD daemon).

    flock /tmp/work/lxd.lock python benchmarks/soak.py [--json] [--small] [--jobs N] [--pool K]
        [--seed S] [--restart-at SHARE]
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    parse_args,
    ratio,
    summary,
)
from benchmarks._lib.soak_figures import (
    FD_SLACK,
    RSS_SLACK_KIB,
    RSS_TOLERANCE,
    dir_files,
    flat,
    host_state,
    pipeline_windows,
    turnaround_windows,
    wait_windows,
)
from benchmarks._lib.soak_manager import ManagerProcess, cpu_seconds, lxd_daemons, restart_lxd
from harness.local import LocalEnvironment, LocalOptions
from metrics.shared_fs import SharedFilesystemManager
from metrics.storage import QUARANTINE_MAX_ARCHIVES
from observability.runner_logs import MAX_LOG_BYTES, MAX_LOG_FILES
from runner_manager_type import LXDFlushMode

APP = "bench-soak"
CANCEL_SHARE, FAULT_P = 0.05, 0.1
KILL_AT, LIMIT_AT, RESTART_AT = 0.15, 0.30, 0.55
DRIFT_LIMIT = 1.5  # creation p50 and LXD CPU per creation, last 50 jobs / first 50


def drive(env: LocalEnvironment, args: Any, rng: random.Random) -> dict[str, Any]:  # noqa: C901, PLR0915
    """Queue the jobs, cancel some, inject the faults; return what happened."""
    total, size = args.jobs, args.pool
    longest = 6 if args.small else 20
    durations = [rng.randint(1, longest) for _ in range(total)]
    cancel = set(rng.sample(range(total), max(1, round(CANCEL_SHARE * total))))
    for i in cancel:  # long enough to be cancelled mid-run: the runner's heartbeat is every 5 s
        durations[i] = 20
    manager = ManagerProcess(json.dumps(env.attach_spec()), size, env.workdir)
    events: dict[str, Any] = {}
    ids: list[int] = []  # job ids in queue order
    index_of: dict[int, int] = {}
    cancel_at: dict[int, float] = {}
    cancelled: set[int] = set()
    env.control("POST", "/faults", {"status": 503, "probability": FAULT_P})
    manager.start()
    deadline = time.monotonic() + (300 if args.small else 60 * 60)
    jobs: dict[int, dict[str, Any]] = {}
    loads: list[tuple[float, float]] = []  # (time, 1-minute load) each round
    lxd_cpu: list[tuple[float, dict[int, float]]] = []  # (time, {daemon pid: CPU s}) each round
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in env.control("GET", "/jobs") if j["id"] in index_of}
        done = sum(1 for j in jobs.values() if j["status"] == "completed")
        if done == total:
            break
        open_jobs = len(ids) - done
        while len(ids) < total and open_jobs < size + size // 2:
            i = len(ids)
            job = env.queue_job([f"sleep {durations[i]}"], name=f"soak-{i}")
            ids.append(job["id"])
            index_of[job["id"]] = i
            open_jobs += 1
        now = time.time()
        for job_id, job in jobs.items():
            i = index_of[job_id]
            if i in cancel and job["status"] == "in_progress" and job_id not in cancelled:
                started = job["event_times"].get("in_progress", now)
                at = cancel_at.setdefault(job_id, started + rng.uniform(2.0, 8.0))
                if now >= at:
                    env.control("POST", f"/jobs/{job_id}/cancel")
                    cancelled.add(job_id)
        if "kill" not in events and done >= KILL_AT * total:
            events["kill"] = {"after_s": round(manager.kill_mid_reconcile(rng), 2), "at": done}
        if "rate_limit" not in events and done >= LIMIT_AT * total:
            window = 8 if args.small else 20
            env.control("POST", "/faults", {"rate_limit": {"remaining": 0, "reset_in": window}})
            events["rate_limit"] = {"window_s": window, "at": done}
        if "lxd_restart" not in events and done >= args.restart_at * total:
            events["lxd_restart"] = {**restart_lxd(), "at": done}
        loads.append((time.time(), os.getloadavg()[0]))
        lxd_cpu.append((time.time(), {p: c for p in lxd_daemons() if (c := cpu_seconds(p))}))
        time.sleep(1.0)
    faults = env.control("GET", "/faults")
    stats = env.control("GET", "/stats")
    env.control("DELETE", "/faults")
    manager.stop()
    return {
        "metric_events": manager.events(),  # read now: the work directory goes with the env
        "warnings": manager.warnings(),
        "jobs": [jobs.get(j, {"id": j, "status": "lost"}) for j in ids],
        "planned": total,
        "cancel_planned": sorted(ids[i] for i in cancel if i < len(ids)),
        "cancel_sent": sorted(cancelled),
        "events": events,
        "fault_hits": sum(f["hits"] for f in faults),
        "rate_limited": stats.get("rate_limited"),
        "requests": sum(n for k, n in stats["requests"].items() if " /_" not in k),
        "manager": manager,
        "loads": loads,
        "lxd_cpu": lxd_cpu,
    }


def main() -> int:  # noqa: PLR0915 - one linear scenario and its checks
    """Run the soak; exit 1 when an invariant breaks."""
    args = parse_args(
        __doc__ or "",
        [
            ("--jobs", {"type": int, "default": 0}),
            ("--pool", {"type": int, "default": 0}),
            ("--seed", {"type": int, "default": 20261204}),
            ("--restart-at", {"type": float, "default": RESTART_AT, "help": "share of jobs done"}),
        ],
    )
    args.jobs = args.jobs or (30 if args.small else 300)
    args.pool = args.pool or (4 if args.small else 8)
    rng = random.Random(args.seed)
    report = Report("soak", args.small)
    before = host_state()
    run: dict[str, Any] = {}
    left: dict[str, Any] = {}
    options = LocalOptions(
        app_name=APP,
        repo="octo/bench",
        labels=("bench",),
        metrics=True,
        settings={"busy_delete_wait": 2.0},
    )
    began = time.monotonic()
    try:
        with LocalEnvironment(options) as env:
            settings = env.settings()
            env.options.storage = SharedFilesystemManager(
                settings.metrics_storage_dir, settings.quarantine_dir
            )
            env.manager = env.build_manager()
            run = drive(env, args, rng)
            run["seconds"] = round(time.monotonic() - began, 1)
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            logs = dir_files(settings.runner_log_dir)
            left = {
                "instances": env.instances(),
                "registrations": env.registrations(),
                "stores": [s.runner_name for s in env.options.storage.list_all()],
                "log_files": len(logs),
                "log_names": sorted(str(p.relative_to(settings.runner_log_dir)) for p in logs)[:8],
                "log_max_bytes": max((p.stat().st_size for p in logs), default=0),
                "log_total_bytes": sum(p.stat().st_size for p in logs),
                "quarantine": len(dir_files(settings.quarantine_dir)),
            }
    finally:
        leaked = force_delete_instances(f"{APP}-")
    after = host_state()
    report.check(not leaked, f"instances left behind after the final flush: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    report.check(not left.get("registrations"), f"GitHub registrations left: {left}")
    report.check(not left.get("stores"), f"metrics stores left: {left.get('stores')}")
    for key in ("loop_devices", "mounts"):
        report.check(after[key] <= before[key], f"{key}: {before[key]} before, {after[key]} after")
    report.check(left.get("log_files", 0) <= MAX_LOG_FILES, f"runner logs: {left}")
    report.check(left.get("log_max_bytes", 0) <= MAX_LOG_BYTES, f"runner log size: {left}")
    report.check(left.get("quarantine", 0) <= QUARANTINE_MAX_ARCHIVES, f"quarantine: {left}")

    jobs = run.get("jobs", [])
    cancel_sent = set(run.get("cancel_sent", []))
    bad = [
        j
        for j in jobs
        if j["status"] != "completed"
        or j.get("conclusion") not in ("success", "cancelled")
        or (j.get("conclusion") == "cancelled" and j["id"] not in cancel_sent)
    ]
    report.check(len(jobs) == args.jobs, f"{len(jobs)} of {args.jobs} jobs queued")
    ignored = [
        j["id"] for j in jobs if j["id"] in cancel_sent and j.get("conclusion") != "cancelled"
    ]
    report.check(not ignored, f"cancelled mid-run but not concluded cancelled: {ignored}")
    report.check(not bad, f"{len(bad)} jobs not completed once as expected: {bad[:5]}")
    waits = [
        j["event_times"]["in_progress"] - j["event_times"]["queued"]
        for j in jobs
        if "in_progress" in j.get("event_times", {}) and "queued" in j["event_times"]
    ]
    first, last = summary(waits[:50]), summary(waits[-50:])
    windows = wait_windows(jobs, run.get("loads", []), 50)
    turnaround = turnaround_windows(jobs, 50, args.pool)

    manager: ManagerProcess | None = run.get("manager")
    ends = manager.ends() if manager else []
    pipeline = pipeline_windows(
        windows,
        run.get("metric_events", []),
        ends,
        run.get("lxd_cpu", []),
        run.get("warnings", []),
    )
    uncaught = [r["error"] for r in ends if (r["error"] or "").startswith("uncaught")]
    handled: dict[str, int] = {}
    for r in ends:
        if (r["error"] or "").startswith("handled"):
            handled[r["error"][8:]] = handled.get(r["error"][8:], 0) + 1
    by_pid = {
        pid: [r for r in ends if r["pid"] == pid] for pid in (manager.pids if manager else [])
    }
    longest = max(by_pid.values(), key=len, default=[])
    memory = flat(longest) if longest else {}
    report.check(bool(memory) and not memory["rss_grew"], f"manager RSS grew: {memory}")
    report.check(bool(memory) and not memory["fds_grew"], f"manager open fds grew: {memory}")
    report.check(not uncaught, f"uncaught exceptions in reconciles: {uncaught[:5]}")
    for key in ("install_p50", "lxd_cpu_per_create"):  # the charm's own drift, not the mix's
        grown = ratio(pipeline[-1][key], pipeline[0][key]) if len(pipeline) > 1 else None
        report.check(
            args.small or grown is None or grown <= DRIFT_LIMIT,
            f"{key} of the last 50 jobs is {grown}x the first 50's (drift; <= {DRIFT_LIMIT}x)",
        )
    events = run.get("events", {})
    for name in ("kill", "rate_limit", "lxd_restart"):
        report.check(name in events, f"fault {name} never injected")
    restart = events.get("lxd_restart", {})
    report.check(restart.get("rc", 0) == 0, "LXD did not start again")
    report.check(len(restart.get("pids", [0])) == 1, f"not one LXD daemon signalled: {restart}")

    conclusions = [j.get("conclusion") for j in jobs]
    table = report.table(
        f"soak: {args.jobs} jobs, pool of {args.pool}, {len(cancel_sent)} cancelled",
        "figure",
        "value",
        "expected",
    )
    table.add_row("wall s", fmt(run.get("seconds")), "")
    table.add_row(
        "jobs success / cancelled / other",
        f"{conclusions.count('success')} / {conclusions.count('cancelled')} / {len(bad)}",
        f"-, {len(cancel_sent)}, 0",
    )
    table.add_row(
        "wait p50 / p95 s, first 50 jobs", f"{fmt(first['p50'])} / {fmt(first['p95'])}", ""
    )
    table.add_row("wait p50 / p95 s, last 50 jobs", f"{fmt(last['p50'])} / {fmt(last['p95'])}", "")
    table.add_row(
        "wait p50 s (mean load) per 50 jobs",
        ", ".join(f"{fmt(w['p50'])} ({fmt(w['load'])})" for w in windows),
        "",
    )
    for label, key in (
        ("jobs started per minute, per 50 jobs", "starts_per_min"),
        ("  mean job run s", "run_s"),
        ("  runner overhead per job s (pool / rate - run)", "overhead_s"),
    ):
        table.add_row(label, ", ".join(fmt(w[key]) for w in turnaround), "")
    for label, key in (
        ("runners made per minute, per 50 jobs", "per_min"),
        ("  creation p50 s", "install_p50"),
        ("  reconcile p50 s", "reconcile_p50"),
        ("  LXD daemon CPU s per creation", "lxd_cpu_per_create"),
        ("  launched from the image (no template)", "from_image"),
    ):
        table.add_row(label, ", ".join(fmt(w[key]) for w in pipeline), "")
    table.add_row(
        "reconciles (ok, handled errors, uncaught)",
        f"{len(ends)} ({sum(1 for r in ends if not r['error'])}, {sum(handled.values())},"
        f" {len(uncaught)})",
        "uncaught 0",
    )
    table.add_row("  handled errors", ", ".join(f"{k} {v}" for k, v in handled.items()) or "-", "")
    table.add_row(
        "5xx injected / REST requests",
        f"{run.get('fault_hits')} / {run.get('requests')}",
        f"~{FAULT_P:.0%}",
    )
    table.add_row("requests refused by the rate limit", str(run.get("rate_limited")), "> 0")
    table.add_row("kill -9 mid-reconcile", json.dumps(events.get("kill")), "1")
    table.add_row("LXD daemon restart", json.dumps(events.get("lxd_restart")), "1, rc 0")
    table.add_row(
        "manager RSS MiB first / last 10 %",
        f"{memory.get('rss_mib_first')} / {memory.get('rss_mib_last')}",
        f"< +{RSS_TOLERANCE:.0%} or +{RSS_SLACK_KIB >> 10} MiB",
    )
    table.add_row(
        "manager fds first / last 10 %",
        f"{memory.get('fds_first')} / {memory.get('fds_last')}",
        f"<= +{FD_SLACK}",
    )
    table.add_row(
        "left: instances, records, stores",
        f"{len(left.get('instances', []))}, "
        f"{len(left.get('registrations', []))}, {len(left.get('stores', []))}",
        "0, 0, 0",
    )
    table.add_row(
        "loop devices, mounts before -> after",
        f"{before['loop_devices']}, {before['mounts']} -> "
        f"{after['loop_devices']}, {after['mounts']}",
        "not more",
    )
    table.add_row(
        "runner log files (max bytes), quarantine",
        f"{left.get('log_files')} ({left.get('log_max_bytes')}), {left.get('quarantine')}",
        f"<= {MAX_LOG_FILES} ({MAX_LOG_BYTES}), <= {QUARANTINE_MAX_ARCHIVES}",
    )
    report.figures.update(
        jobs=args.jobs,
        pool=args.pool,
        seed=args.seed,
        seconds=run.get("seconds"),
        conclusions={c: conclusions.count(c) for c in set(conclusions) if c},
        wait_first_50=first,
        wait_last_50=last,
        wait_all=summary(waits),
        wait_windows=windows,
        pipeline_windows=pipeline,
        turnaround_windows=turnaround,
        restart_at=args.restart_at,
        reconciles=len(ends),
        handled_errors=handled,
        uncaught=uncaught,
        faults={
            "5xx": run.get("fault_hits"),
            "requests": run.get("requests"),
            "rate_limited": run.get("rate_limited"),
            "cancels": len(cancel_sent),
            **events,
        },
        manager_memory=memory,
        left=left,
        host_before=before,
        host_after=after,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
