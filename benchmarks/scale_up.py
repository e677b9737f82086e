#!/usr/bin/env python3
"""Scale up from 0 to N idle runners: parallel creation against sequential, in the same run.

For each N (1, 4, 8; ``--small``: 1, 2) and each way of creating, one ``reconcile(N)`` of the
charm's RunnerManager on the real LXD daemon with the sandbox GitHub: seconds until reconcile
returned (all N created) and until the sandbox shows N runners online; then a force flush.
Ways of creating:

- ``parallel``: the manager's executor with its default pool (``create_parallelism``);
- ``sequential``: ``create_parallelism=1``;
- ``parallel-template``: as ``parallel``, runners cloned from the runner template
  (``clone_from_template``; the template is made once before the trials, untimed);
- ``upstream-like``: ``create_parallelism=1`` and a fixed sleep after each creation
  (``fixed_boot_wait``), as upstream's design implies (one runner at a time, then a fixed 60 s
  boot wait). The sleep is scaled down (``--boot-wait``, default 6 s; small 1 s) and the figure is
  extrapolated to 60 s: ``measured + N * (60 - boot_wait)``.

Also shown, per runner of a parallel trial (until online): the CPU seconds the whole host was
busy (``/proc/stat``: includes anything else running on the machine), and the CPU seconds of
the containers themselves (their cgroups: boot and runner application), of the LXD daemon, and
of this process (the manager and the in-process sandbox). They bound what parallelism can do
on 2 cores.

Page caches are dropped before every trial (MACHINE-FACTS: launches slow down on a warm cache).

Capacity (``--capacity N``, default 40; ``--small``: 4): one parallel ``reconcile(N)`` that must
create all N with 0 failures and see them online, with the host memory each idle runner costs
(MemAvailable before, minus while all N are online, over N). ``--capacity-only`` skips the
trials above.

    python benchmarks/scale_up.py [--json] [--small] [--reps R] [--boot-wait S] [--parallelism P]
        [--capacity N] [--capacity-only]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from artifacts import runner_image
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
from config.settings import RunnerManagerSettings
from harness.local import RESOURCES, TEST_IMAGE, LocalEnvironment, LocalOptions
from runner_manager_type import LXDFlushMode

APP = "bench-scale"
UPSTREAM_BOOT_WAIT = 60.0


def online_count(env: LocalEnvironment) -> int:
    """Runners the sandbox shows online (control API: not counted as GitHub API calls)."""
    return sum(1 for r in env.control("GET", "/runners") if r["status"] == "online")


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent busy since boot (all cores; /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def lxd_daemon_cpu() -> float:
    """CPU seconds of the LXD daemon and its reaped children (0.0 if it cannot be found)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "lxd":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def containers_cpu(names: list[str]) -> float:
    """CPU seconds the containers themselves used so far (their cgroups; v1 or v2)."""
    total = 0.0
    for name in names:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/lxc.payload.{name}/cpuacct.usage")
        v2 = Path(f"/sys/fs/cgroup/lxc.payload.{name}/cpu.stat")
        try:
            if v1.exists():
                total += int(v1.read_text()) / 1e9
            elif v2.exists():
                usage = v2.read_text().split()[1]
                total += int(usage) / 1e6
        except (OSError, ValueError, IndexError):
            continue
    return total


def trial(env: LocalEnvironment, count: int, settings: dict[str, Any]) -> dict[str, float]:
    """One 0 -> ``count`` scale-up with these manager settings; leaves 0 runners behind.

    Args:
        env: The environment.
        count: N.
        settings: RunnerManagerSettings overrides.

    Returns:
        Seconds to created and to online, and how many were created.
    """
    env.options.settings = {**env.options.settings, **settings}
    env.manager = env.build_manager()
    drop_caches()
    busy = host_busy_seconds()
    daemon, own = lxd_daemon_cpu(), time.process_time()
    began = time.perf_counter()
    env.manager.reconcile(count, RESOURCES)
    created = time.perf_counter() - began
    made = len(env.manager.last_report.created)
    deadline = began + 120 + count * settings.get("fixed_boot_wait", 0)
    online = float("nan")
    while time.perf_counter() < deadline:
        if online_count(env) >= count:
            online = time.perf_counter() - began
            break
        time.sleep(0.1)
    busy = host_busy_seconds() - busy
    daemon, own = lxd_daemon_cpu() - daemon, time.process_time() - own
    inside = containers_cpu(env.instances())
    env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    return {
        "created": created,
        "online": online,
        "made": made,
        "host_cpu_s": busy,
        "cpu_containers_s": inside,
        "cpu_lxd_s": daemon,
        "cpu_this_process_s": own,
    }


def mem_available() -> int:
    """Bytes the kernel says are available for new work (/proc/meminfo MemAvailable)."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def capacity(env: LocalEnvironment, count: int, parallelism: int) -> dict[str, Any]:
    """Reconcile 0 -> ``count`` once; failures, time to online and memory per idle runner.

    Args:
        env: The environment.
        count: N.
        parallelism: The creation pool.

    Returns:
        The figures; leaves 0 runners behind.
    """
    env.options.settings = {
        **env.options.settings,
        "clone_from_template": False,
        "fixed_boot_wait": 0.0,
        "create_parallelism": parallelism,
    }
    env.manager = env.build_manager()
    drop_caches()
    before = mem_available()
    began = time.perf_counter()
    env.manager.reconcile(count, RESOURCES)
    created = time.perf_counter() - began
    report = env.manager.last_report
    online: float | None = None
    while time.perf_counter() < began + 300:
        if online_count(env) >= count:
            online = time.perf_counter() - began
            break
        time.sleep(0.2)
    used = before - mem_available()
    env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    return {
        "n": count,
        "made": len(report.created),
        "failed": len(report.failed),
        "created_s": round(created, 1),
        "online_s": round(online, 1) if online is not None else None,
        "runners_per_minute": round(60 * count / online, 1) if online else None,
        "host_memory_mib_per_runner": round(used / count / 2**20, 1),
    }


def creation_ways(parallelism: int, boot_wait: float, reps: int) -> list[tuple[str, Any, int]]:
    """The ways of creating compared: (name, manager settings, trials)."""
    image = {"clone_from_template": False, "fixed_boot_wait": 0.0}
    return [
        ("parallel", {**image, "create_parallelism": parallelism}, reps),
        ("sequential", {**image, "create_parallelism": 1}, reps),
        ("upstream-like", {**image, "create_parallelism": 1, "fixed_boot_wait": boot_wait}, 1),
        (
            "parallel-template",
            {**image, "create_parallelism": parallelism, "clone_from_template": True},
            reps,
        ),
    ]


def show_capacity(report: Report, held: dict[str, Any], pool: int) -> None:
    """Check the capacity run (all created, 0 failed, all online), print and keep its figures."""
    report.check(held["failed"] == 0, f"capacity: {held['failed']} creations failed")
    report.check(held["made"] == held["n"], f"capacity: {held['made']} of {held['n']} created")
    report.check(held["online_s"] is not None, "capacity: not all runners came online")
    table = report.table(
        f"capacity: 0 -> {held['n']} runners in one reconcile (pool {pool})",
        "created",
        "failed",
        "online",
        "runners/min",
        "host MiB per runner",
    )
    table.add_row(
        str(held["made"]),
        str(held["failed"]),
        fmt(held["online_s"], "s"),
        fmt(held["runners_per_minute"]),
        fmt(held["host_memory_mib_per_runner"]),
    )
    report.figures.update(capacity=held)


def main() -> int:
    """Run the scale-up trials; exit 1 if a runner failed or an instance leaked."""
    args = parse_args(
        __doc__ or "",
        [
            ("--reps", {"type": int, "default": 0, "help": "trials per (N, way)"}),
            ("--boot-wait", {"type": float, "default": 0.0, "help": "scaled fixed boot wait"}),
            ("--parallelism", {"type": int, "default": 0, "help": "pool of the parallel ways"}),
            ("--capacity", {"type": int, "default": 0, "help": "N of the capacity run"}),
            ("--capacity-only", {"action": "store_true", "help": "skip the scale-up trials"}),
        ],
    )
    sizes: tuple[int, ...] = () if args.capacity_only else ((1, 2) if args.small else (1, 4, 8))
    reps = args.reps or (1 if args.small else 3)
    boot_wait = args.boot_wait or (1.0 if args.small else 6.0)
    default_parallelism = args.parallelism or RunnerManagerSettings().create_parallelism
    ways = creation_ways(default_parallelism, boot_wait, reps)
    report = Report("scale_up", args.small)
    results: dict[str, dict[int, dict[str, Any]]] = {way: {} for way, _, _ in ways}
    options = LocalOptions(app_name=APP, repo="octo/bench", labels=("bench",))
    try:
        with LocalEnvironment(options) as env:
            # The runner template is made once per image generation: not part of any trial.
            env.options.settings = {"clone_from_template": True}
            manager = env.build_manager()
            generation = runner_image.image_generation(manager._clients.lxd, TEST_IMAGE)
            report.check(bool(manager._template(TEST_IMAGE, generation)), "no runner template")
            for count in sizes:
                for way, settings, way_reps in ways:
                    rows = [trial(env, count, settings) for _ in range(way_reps)]
                    for row in rows:
                        report.check(
                            row["made"] == count, f"{way} N={count}: {row['made']} created"
                        )
                        report.check(row["online"] == row["online"], f"{way} N={count}: offline")
                    created = median([r["created"] for r in rows])
                    online = median([r["online"] for r in rows])
                    cpu = median([r["host_cpu_s"] for r in rows])
                    parts = {
                        key: round((median([r[key] for r in rows]) or 0.0) / count, 2)
                        for key in ("cpu_containers_s", "cpu_lxd_s", "cpu_this_process_s")
                    }
                    results[way][count] = {
                        "cpu_per_runner": parts,
                        "host_cpu_s_per_runner": round(cpu / count, 2) if cpu else None,
                        "reps": way_reps,
                        "created_s": round(created, 2) if created is not None else None,
                        "online_s": round(online, 2) if online is not None else None,
                    }
            held = capacity(env, args.capacity or (4 if args.small else 40), default_parallelism)
    finally:
        leaked = force_delete_instances(f"{APP}-")
        force_delete_instances(f"grt-{APP}-")  # the runner template (kept between runs)
    report.check(not leaked, f"instances left behind: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    show_capacity(report, held, default_parallelism)
    if not sizes:
        return report.finish(args.json)

    for count in sizes:
        up = results["upstream-like"].get(count)
        if up and up["online_s"] is not None:
            up["extrapolated_60s_online_s"] = round(
                up["online_s"] + count * (UPSTREAM_BOOT_WAIT - boot_wait), 1
            )
    table = report.table(
        f"0 -> N idle runners (medians of {reps}; parallel pool = {default_parallelism}; "
        f"upstream-like: 1 run, fixed wait {boot_wait:g} s, extrapolated to 60 s)",
        "N",
        "par created",
        "par online",
        "seq online",
        "seq/par",
        "upst. online",
        "upst. @60s",
        "upst./par",
        "tmpl online",
        "CPU s/runner: host",
        "containers",
        "LXD",
        "manager+sandbox",
    )
    one = results["parallel"].get(1, {}).get("online_s")
    one_template = results["parallel-template"].get(1, {}).get("online_s")
    figures: dict[str, Any] = {}
    for count in sizes:
        par, seq = results["parallel"].get(count, {}), results["sequential"].get(count, {})
        up = results["upstream-like"].get(count, {})
        figures[str(count)] = {
            "parallel": par,
            "sequential": seq,
            "upstream_like": up,
            "sequential_over_parallel": ratio(seq.get("online_s"), par.get("online_s")),
            "upstream60_over_parallel": ratio(
                up.get("extrapolated_60s_online_s"), par.get("online_s")
            ),
            "parallel_over_one": ratio(par.get("online_s"), one),
            "parallel_template": results["parallel-template"].get(count, {}),
            "parallel_template_over_one": ratio(
                results["parallel-template"].get(count, {}).get("online_s"), one_template
            ),
        }
        table.add_row(
            str(count),
            fmt(par.get("created_s"), "s"),
            fmt(par.get("online_s"), "s"),
            fmt(seq.get("online_s"), "s"),
            fmt(figures[str(count)]["sequential_over_parallel"], "x"),
            fmt(up.get("online_s"), "s"),
            fmt(up.get("extrapolated_60s_online_s"), "s"),
            fmt(figures[str(count)]["upstream60_over_parallel"], "x"),
            fmt(results["parallel-template"].get(count, {}).get("online_s"), "s"),
            fmt(par.get("host_cpu_s_per_runner")),
            fmt(par.get("cpu_per_runner", {}).get("cpu_containers_s")),
            fmt(par.get("cpu_per_runner", {}).get("cpu_lxd_s")),
            fmt(par.get("cpu_per_runner", {}).get("cpu_this_process_s")),
        )
    biggest = max(sizes)
    target = figures[str(biggest)]["parallel_over_one"]
    report.figures.update(
        sizes=list(sizes),
        reps=reps,
        parallelism=default_parallelism,
        boot_wait_scaled_s=boot_wait,
        results=figures,
        target={"n": biggest, "parallel_online_over_one": target, "goal": 2.0},
    )
    goal = report.table("target", "figure", "value", "goal")
    goal.add_row(f"0 -> {biggest} online / 0 -> 1 online (parallel)", fmt(target, "x"), "<= 2x")
    goal.add_row(
        f"0 -> {biggest} online / 0 -> 1 online (parallel, template)",
        fmt(figures[str(biggest)]["parallel_template_over_one"], "x"),
        "<= 2x",
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
