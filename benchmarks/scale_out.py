#!/usr/bin/env python3
"""Scale-out the Juju way: 1, 2 and 3 units of one application on one host, one queue.

Every unit is the charm's real ``RunnerManager(app, unit, config)`` with a reactive config
(RabbitMQ on 127.0.0.1:5672, the queue named after the application, shared by the units), driven
by a process of its own (this script with ``--unit-loop``: ``reconcile(ceiling)`` every 2 s, as
the charm's reconcile timer would), whose reconcile keeps the unit's consumer processes
(``reactive.runner``). One sandbox GitHub repository; jobs are queued there and published on the
queue as ``{"labels", "url"}``.

Scenarios:

- ``isolation``: each unit (non-reactive) keeps one idle runner; unit 0 flushes (idle), then
  unit 1 force-flushes; the other units' instances and GitHub records must all stay.
- ``spread`` (1, 2, 3 units, ``ceiling`` consumers each): a burst of jobs published at once;
  job wait (queued -> in_progress, sandbox clock) p50/p95/max, makespan, jobs per unit (the unit
  whose runner ran the job, from the runner name ``<app>-<unit>-``), runners created per job.
  Repeated ``--runs`` times (the unit counts interleaved, so load drifts over all alike); each
  figure is the median over the runs, the ratio is of the medians, and the per-run p50s are
  printed too.
- ``kill``: with every unit up, a burst is published, then one unit's manager process and its
  consumers are SIGKILLed while they hold messages; every job must still run (the broker
  redelivers the unacked messages to the other units), none twice. The killed unit then comes
  back (a fresh manager of the same unit) and cleans up what its dead consumers left.

Invariants (exit 1): a job never completed (lost), a job run by no unit's runner, a unit's
flush removing another unit's runner or GitHub record, instances, consumers or metrics stores
(shared-fs images and mount points) left behind. A job cannot run twice in the sandbox (it hands a
queued job to one runner); a duplicate delivery shows as ``runners / job`` above 1.

    python benchmarks/scale_out.py [--json] [--small] [--jobs N] [--ceiling C] [--runs R]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    median,
    parse_args,
    summary,
)
from errors import GithubRunnerError
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from runner_manager import RunnerManager
from runner_manager_type import LXDFlushMode

APP = "bench-units"
MQ_URI = "amqp://guest:guest@127.0.0.1:5672//"
LOOP_PERIOD = 2.0


def reactive_config() -> Any:
    """The reactive config every unit shares: one broker, the queue named after the app."""
    from pydantic import SecretStr

    from config.state import ReactiveConfig

    return ReactiveConfig(mq_uri=SecretStr(MQ_URI), queue_name=APP)


def unit_manager(env: LocalEnvironment, unit: int, *, reactive: bool) -> RunnerManager:
    """The manager of ``unit`` (same app, sandbox and work directory as ``env``'s)."""
    saved = env.options.unit
    env.options.unit = unit
    try:
        overrides = {"reactive_config": reactive_config()} if reactive else {}
        manager = env.build_manager(**overrides)
    finally:
        env.options.unit = saved
    if not manager.check_runner_bin():  # each unit keeps its own cache (the charm's install)
        manager.update_runner_bin(manager.get_latest_runner_bin_url())
    return manager


def unit_loop(spec_path: str, unit: int, ceiling: int) -> int:
    """The ``--unit-loop`` child: one unit's manager reconciling until killed."""
    env = LocalEnvironment.attach(json.loads(Path(spec_path).read_text()))
    manager = unit_manager(env, unit, reactive=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            manager.reconcile(ceiling, RESOURCES)
        except GithubRunnerError as exc:
            print(f"unit {unit}: reconcile failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(LOOP_PERIOD)


class Units:
    """The unit manager processes of one scenario."""

    def __init__(self, env: LocalEnvironment, spec_path: Path, ceiling: int) -> None:
        """Bind to the environment (units start with :meth:`start`)."""
        self.env, self.spec_path, self.ceiling = env, spec_path, ceiling
        self.loops: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, unit: int) -> None:
        """Start the manager process of ``unit``."""
        command = [sys.executable, __file__, "--unit-loop", str(self.spec_path), str(unit)]
        command.append(str(self.ceiling))
        self.loops[unit] = subprocess.Popen(command, start_new_session=True)

    def consumers(self, unit: int) -> list[int]:
        """Pids of the unit's live consumer processes (its pid files)."""
        from reactive import runner_manager as reactive_processes
        from reactive.pool import reactive_runner_config

        manager = unit_manager(self.env, unit, reactive=True)
        config = reactive_runner_config(manager.config, manager.settings)
        assert config is not None
        return [p.pid for p in reactive_processes.list_processes(config.pid_dir)]

    def wait_consumers(self, timeout: float = 60) -> bool:
        """Wait until every started unit runs its consumers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(self.consumers(u)) >= self.ceiling for u in self.loops):
                time.sleep(3)  # let the consumer processes import and connect
                return True
            time.sleep(0.5)
        return False

    def kill(self, unit: int) -> int:
        """SIGKILL the unit's manager process and every consumer process; how many killed."""
        killed = 0
        loop = self.loops.pop(unit)
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=30)
        killed += 1
        for pid in self.consumers(unit):
            try:
                os.killpg(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def stop_all(self) -> None:
        """Stop every manager process; then each unit (killed ones too) stops its consumers."""
        from reactive import runner_manager as reactive_processes
        from reactive.pool import reactive_runner_config

        for loop in self.loops.values():
            loop.terminate()
        for loop in self.loops.values():
            try:
                loop.wait(timeout=30)
            except subprocess.TimeoutExpired:
                loop.kill()
        self.loops.clear()
        for unit in range(3):
            manager = unit_manager(self.env, unit, reactive=True)
            config = reactive_runner_config(manager.config, manager.settings)
            assert config is not None
            reactive_processes.reconcile(0, config, drain=False)  # teardown: at once

    def leftover_consumers(self) -> dict[int, list[int]]:
        """Consumers still alive, per unit (none after :meth:`stop_all`)."""
        left = {u: self.consumers(u) for u in range(3)}
        return {u: pids for u, pids in left.items() if pids}


def publish_burst(env: LocalEnvironment, jobs: int, steps: list[str]) -> list[int]:
    """Queue ``jobs`` jobs in the sandbox and publish each on the shared queue."""
    from reactive.consumer import publish_job

    ids = []
    for _ in range(jobs):
        job = env.queue_job(steps)
        publish_job(MQ_URI, APP, json.dumps({"labels": job["labels"], "url": job["url"]}))
        ids.append(job["id"])
    return ids


def jit_requests(env: LocalEnvironment) -> int:
    """Runner JIT configurations the sandbox handed out (one per runner created)."""
    stats = env.control("GET", "/stats")
    return sum(n for route, n in stats["requests"].items() if route.endswith("generate-jitconfig"))


def unit_of(runner_name: str | None) -> int | None:
    """The unit whose runner ran a job (runner names are ``<app>-<unit>-<hex>``)."""
    if not runner_name or not runner_name.startswith(f"{APP}-"):
        return None
    return int(runner_name[len(APP) + 1 :].split("-")[0])


def judge_jobs(
    env: LocalEnvironment, ids: list[int], timeout: float, report: Report, what: str
) -> dict[str, Any]:
    """Wait for the jobs; check each completed once; waits and jobs per unit."""
    done = env.wait_jobs(ids, timeout)
    waits, per_unit = [], {}
    for job in done:
        times = job.get("event_times") or {}
        completed = job["status"] == "completed" and job.get("conclusion") == "success"
        report.check(completed, f"{what}: job {job['id']} lost ({job['status']})")
        if "queued" in times and "in_progress" in times:
            waits.append(float(times["in_progress"]) - float(times["queued"]))
        unit = unit_of(job.get("runner_name"))
        report.check(not completed or unit is not None, f"{what}: job {job['id']} on no unit")
        per_unit[str(unit)] = per_unit.get(str(unit), 0) + 1
    starts = [
        float(j["event_times"]["in_progress"])
        for j in done
        if "in_progress" in (j.get("event_times") or {})
    ]
    queued = [
        float(j["event_times"]["queued"]) for j in done if "queued" in (j.get("event_times") or {})
    ]
    makespan = max(starts) - min(queued) if starts and queued else None
    return {**summary(waits), "makespan": makespan, "jobs_per_unit": per_unit}


def wait_gone(env: LocalEnvironment, timeout: float) -> bool:
    """Wait until the application has no instance left (ephemeral runners exit after a job)."""
    deadline = time.monotonic() + timeout
    while lxd_instances(f"{APP}-") and time.monotonic() < deadline:
        time.sleep(0.5)
    return not lxd_instances(f"{APP}-")


def reap(env: LocalEnvironment, report: Report, what: str) -> int:
    """After a burst: busy runners exit with their job; each unit flushes its spare idle ones.

    A spare is a runner whose job another unit's runner took first (the charm's reconcile reaps
    it after ``reactive_idle_grace``). Returns how many spares the units removed.
    """
    wait_gone(env, 20)
    spares = sum(
        unit_manager(env, u, reactive=True).flush(LXDFlushMode.FLUSH_IDLE) for u in range(3)
    )
    report.check(wait_gone(env, 60), f"{what}: instances left: {lxd_instances(f'{APP}-')}")
    return spares


def isolation(env: LocalEnvironment, units: int, report: Report) -> dict[str, Any]:
    """Each unit keeps one idle runner; unit 0 flushes, unit 1 force-flushes: others stay."""
    managers = [unit_manager(env, u, reactive=False) for u in range(units)]
    for manager in managers:
        manager.create_runners(1, RESOURCES)
    before = {u: set(lxd_instances(f"{APP}-{u}-")) for u in range(units)}
    report.check(all(len(names) == 1 for names in before.values()), f"isolation: {before}")
    removed = managers[0].flush(LXDFlushMode.FLUSH_IDLE)
    after = {u: set(lxd_instances(f"{APP}-{u}-")) for u in range(units)}
    for u in range(1, units):
        report.check(after[u] == before[u], f"unit 0's flush touched unit {u}: {after[u]}")
    report.check(not after[0], f"unit 0's flush left its runner: {after[0]}")
    forced = managers[1].flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    final = {u: set(lxd_instances(f"{APP}-{u}-")) for u in range(units)}
    for u in range(2, units):
        report.check(final[u] == before[u], f"unit 1's force flush touched unit {u}")
    records = {r.name for r in managers[-1].get_github_info()}
    report.check(records == before[units - 1], f"unit {units - 1}'s GitHub records: {records}")
    for manager in managers:
        manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    return {"units": units, "flush_removed": removed, "force_flush_removed": forced}


def spread(
    env: LocalEnvironment, spec: Path, units: int, *, jobs: int, ceiling: int, report: Report
) -> dict[str, Any]:
    """A burst of ``jobs`` on ``units`` units: waits, makespan, jobs per unit."""
    group = Units(env, spec, ceiling)
    try:
        for u in range(units):
            group.start(u)
        report.check(group.wait_consumers(), f"spread {units}: consumers not started")
        created = jit_requests(env)
        ids = publish_burst(env, jobs, ["true"])
        row = judge_jobs(env, ids, 180, report, f"spread {units}")
        row["runners_per_job"] = round((jit_requests(env) - created) / jobs, 2)
    finally:
        group.stop_all()
    report.check(not group.leftover_consumers(), f"spread {units}: consumers left")
    row["spare_runners"] = reap(env, report, f"spread {units}")
    return row


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the runs of one unit count; jobs per unit summed."""
    merged: dict[str, Any] = {"runs": len(rows), "run_p50s": [row["p50"] for row in rows]}
    for key in ("n", "p50", "p95", "max", "makespan", "runners_per_job", "spare_runners"):
        values = [row[key] for row in rows if row.get(key) is not None]
        middle = median(values)
        merged[key] = None if middle is None else round(middle, 2)
    per_unit: dict[str, int] = {}
    for row in rows:
        for unit, count in row["jobs_per_unit"].items():
            per_unit[unit] = per_unit.get(unit, 0) + count
    merged["jobs_per_unit"] = per_unit
    return merged


def kill(
    env: LocalEnvironment, spec: Path, units: int, *, jobs: int, ceiling: int, report: Report
) -> dict[str, Any]:
    """Burst, SIGKILL unit 0's manager and consumers while they hold messages: no job lost."""
    group = Units(env, spec, ceiling)
    try:
        for u in range(units):
            group.start(u)
        report.check(group.wait_consumers(), "kill: consumers not started")
        created = jit_requests(env)
        ids = publish_burst(env, jobs, ["sleep 2"])
        time.sleep(1.0)  # the consumers took their messages and are spawning runners
        killed = group.kill(0)
        row = judge_jobs(env, ids, 240, report, "kill")
        row["processes_killed"], row["units"] = killed, units
        row["runners_per_job"] = round((jit_requests(env) - created) / jobs, 2)
    finally:
        group.stop_all()
    report.check(not group.leftover_consumers(), "kill: consumers left")
    comeback = unit_manager(env, 0, reactive=True)  # unit 0 restarts: cleans its own leftovers
    row["killed_unit_left"] = comeback.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    row["spare_runners"] = reap(env, report, "kill")
    return row


def stores_left(env: LocalEnvironment) -> list[str]:
    """Metrics stores (images, mount points) any unit still holds."""
    left = []
    for unit in range(3):
        folder = unit_manager(env, unit, reactive=False).settings.metrics_storage_dir
        for part in ("images", "mounts"):
            if (folder / part).is_dir():
                left += [str(p) for p in (folder / part).iterdir()]
    return left


def delete_queue() -> None:
    """Remove the application's queue and exchange from the broker (a clean start and end)."""
    import kombu

    try:
        with kombu.Connection(MQ_URI, connect_timeout=5) as conn:
            channel = conn.channel()
            channel.queue_delete(APP)
            channel.exchange_delete(APP)
    except Exception as exc:  # cleanup only
        print(f"could not delete queue {APP}: {exc}", file=sys.stderr)


def main() -> int:
    """Run the scenarios; exit 1 if an invariant broke."""
    if len(sys.argv) == 5 and sys.argv[1] == "--unit-loop":
        return unit_loop(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    args = parse_args(
        __doc__ or "",
        [
            ("--jobs", {"type": int, "default": 0, "help": "jobs per burst"}),
            ("--ceiling", {"type": int, "default": 2, "help": "consumers per unit"}),
            ("--runs", {"type": int, "default": 0, "help": "bursts per unit count (median)"}),
        ],
    )
    jobs = args.jobs or (3 if args.small else 6)
    counts = (1, 3) if args.small else (1, 2, 3)
    report = Report("scale_out", args.small)
    started = time.monotonic()
    options = LocalOptions(app_name=APP, repo="octo/bench", labels=("bench",))
    delete_queue()
    runs = args.runs or (1 if args.small else 3)
    figures: dict[str, Any] = {"jobs": jobs, "ceiling": args.ceiling, "runs": runs, "spread": {}}
    bursts: dict[int, list[dict[str, Any]]] = {units: [] for units in counts}
    try:
        with LocalEnvironment(options) as env:
            spec = env.workdir / "attach.json"
            spec.write_text(json.dumps(env.attach_spec()))
            figures["isolation"] = isolation(env, 3, report)
            for _ in range(runs):
                for units in counts:
                    bursts[units].append(
                        spread(env, spec, units, jobs=jobs, ceiling=args.ceiling, report=report)
                    )
            for units in counts:
                figures["spread"][str(units)] = median_row(bursts[units])
            figures["kill"] = kill(
                env, spec, 2 if args.small else 3, jobs=jobs, ceiling=args.ceiling, report=report
            )
            left = stores_left(env)
            report.check(not left, f"metrics stores left behind: {left}")
    finally:
        leaked = force_delete_instances(f"{APP}-")
        force_delete_instances(f"grt-{APP}-")
        delete_queue()
    report.check(not leaked, f"instances left behind: {leaked}")

    base = figures["spread"].get("1", {}).get("p50")
    table = report.table(
        f"burst of {jobs} jobs, {args.ceiling} consumers per unit, median of {runs} bursts per "
        "unit count (s; sandbox clock)",
        "units",
        "n",
        "p50 per run",
        "p50",
        "p95",
        "max",
        "makespan",
        "p50 vs 1 unit",
        "runners / job",
        "spares",
        "jobs per unit",
    )
    rows = [(f"{u}", figures["spread"][u]) for u in figures["spread"]]
    rows.append((f"{figures['kill']['units']}, unit 0 killed", figures["kill"]))
    for name, row in rows:
        table.add_row(
            name,
            str(row["n"]),
            ", ".join(fmt(p) for p in row.get("run_p50s", [row["p50"]])),
            fmt(row["p50"]),
            fmt(row["p95"]),
            fmt(row["max"]),
            fmt(row["makespan"]),
            fmt(round(row["p50"] / base, 2) if base and row["p50"] else None),
            fmt(row.get("runners_per_job")),
            fmt(row.get("spare_runners")),
            json.dumps(row["jobs_per_unit"], sort_keys=True),
        )
    figures["wall_s"] = round(time.monotonic() - started, 1)
    report.figures.update(figures)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
