#!/usr/bin/env python3
"""Scale: N idle runners per unit on real LXD, from creation to a steady state, then teardown.

For each N (1, 8, 24, 40; ``--small``: 1, 4, 8) the charm's RunnerManager in test mode
(containers, runner template on: the production default), with the sandbox GitHub on the
closed test network (runners' NIC on the test bridge, as the charm's ``network`` option) and
the production metrics stores (``SharedFilesystemManager``: one loop-mounted 1 MiB ext4 image
per runner):

1. the runner template is made (untimed, as it is once per image generation in production);
2. page caches dropped, then ``reconcile(N)`` from 0: seconds until the sandbox shows N runners
   online, runners online per minute, failed creations; host memory per idle runner
   (MemAvailable before, minus with all N online, over N);
3. ``--reconciles`` (default 7; small 5) reconciles with nothing to do (N wanted, N healthy):
   wall and CPU seconds of each (CPU: this process, the manager: the sandbox GitHub runs in a
   process of its own, so the N runners' polls and heartbeats it answers are not counted), LXD
   API requests (every ``LxdTransport.request`` of the manager's
   LXD client) and GitHub requests (the project's own meter, ``observability.github_meter``,
   checked against the sandbox's request count); medians;
4. the RSS of this process (the manager and this script; not the sandbox) with N runners;
5. flush back to 0 (idle flush; the template stays).

After the last N: force flush, then every instance and metrics store (image, mount, loop
device) of the unit must be gone. Ratios are the largest N over the second size (40/8; small
8/4; the first size when only two are given).

Exits 1 when any creation fails, a steady reconcile creates or deletes anything, LXD calls or
GitHub requests per steady reconcile grow with N, the steady reconcile wall time at the largest
N is over 2x the one at the second size (full sizes only: at --small sizes the walls are tens of
milliseconds, noise on a shared CI machine, so they are shown, not judged), the meter and the
sandbox disagree, or an instance or a store is left after teardown.

    python benchmarks/scale.py [--json] [--small] [--sizes 1,8,24,40] [--reconciles R]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
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
    stopwatch,
)
from benchmarks.api_calls import api_counts
from benchmarks.scale_up import mem_available, online_count
from harness.local import RESOURCES, TEST_IMAGE, LocalEnvironment, LocalOptions
from lxd.transport import LxdTransport
from metrics.shared_fs import SharedFilesystemManager
from observability.series import API_REQUESTS
from observability.state import STATE_FILE_NAME, StateFile
from runner_manager_type import LXDFlushMode

APP = "bench-scale-n"
WALL_GOAL = 2.0


def path_shape(path: str) -> str:
    """An API path with its instance name or operation id as a placeholder, no query.

    ``instances/r-1a2b/state`` -> ``instances/{name}/state``: one key for every runner's call.
    """
    parts = path.split("?", 1)[0].strip("/").split("/")
    for index, part in enumerate(parts[:-1]):
        if part in ("instances", "operations", "containers"):
            parts[index + 1] = "{name}" if part != "operations" else "{id}"
    return "/".join(parts)


class LxdCounter:
    """Counts the requests a transport sends and the seconds they take, by path.

    Wraps ``request`` on the transport instance (every call of the LXD client, its instances
    and their files goes through it).
    """

    def __init__(self, transport: LxdTransport) -> None:
        """Wrap ``transport.request``."""
        self.calls = 0
        self.seconds = 0.0
        self.paths: dict[str, float] = {}
        inner: Callable[..., Any] = transport.request

        def counted(method: str, path: str, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return inner(method, path, **kwargs)
            finally:
                took = time.perf_counter() - began
                self.calls += 1
                self.seconds += took
                key = f"{method.upper()} {path_shape(path)}"
                self.paths[key] = self.paths.get(key, 0.0) + took

        transport.request = counted  # type: ignore[method-assign]


def metered(env: LocalEnvironment) -> float:
    """GitHub requests the project's meter has recorded so far (all routes and statuses)."""
    state = StateFile(env.manager.settings.state_dir / STATE_FILE_NAME).read()
    return sum(state.values.get(API_REQUESTS.name, {}).values())


def rss_mib() -> tuple[float, float]:
    """This process's resident set now and at its peak, MiB (/proc/self/status)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)


def store_leaks(stores: SharedFilesystemManager, base: Path) -> list[str]:
    """Metrics stores left: listed stores, image files, mounts and loop devices under ``base``."""
    left = [f"store {s.runner_name}" for s in stores.list_all()]
    left += [f"image {p.name}" for p in (base / "images").glob("*.img")]
    with open("/proc/mounts", encoding="utf-8") as mounts:
        left += [f"mount {m.split()[1]}" for m in mounts if str(base) in m.split()[1]]
    loops = subprocess.run(
        ["losetup", "-a"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    left += [f"loop {line.split(':', 1)[0]}" for line in loops.splitlines() if str(base) in line]
    return left


def make_template(env: LocalEnvironment) -> float:
    """Make (or find) the runner template; seconds it took."""
    manager = env.manager
    began = time.perf_counter()
    generation = runner_image.image_generation(manager._clients.lxd, TEST_IMAGE)
    if not manager._template(TEST_IMAGE, generation):
        raise RuntimeError("no runner template")
    return time.perf_counter() - began


def create(env: LocalEnvironment, count: int, report: Report) -> dict[str, Any]:
    """Reconcile 0 -> ``count`` and wait for all online; throughput and memory."""
    drop_caches()
    before = mem_available()
    began = time.perf_counter()
    env.manager.reconcile(count, RESOURCES)
    created = time.perf_counter() - began
    made = env.manager.last_report
    online: float | None = None
    while time.perf_counter() < began + 120 + 6 * count:
        if online_count(env) >= count:
            online = time.perf_counter() - began
            break
        time.sleep(0.2)
    used = before - mem_available()
    report.check(not made.failed, f"N={count}: creations failed: {made.failed}")
    report.check(len(made.created) == count, f"N={count}: {len(made.created)} created")
    report.check(online is not None, f"N={count}: not all runners came online")
    return {
        "made": len(made.created),
        "failed": len(made.failed),
        "created_s": round(created, 2),
        "online_s": round(online, 2) if online is not None else None,
        "runners_per_minute": round(60 * count / online, 1) if online else None,
        "host_memory_mib_per_runner": round(used / count / 2**20, 1),
    }


def steady(
    env: LocalEnvironment, count: int, lxd: LxdCounter, reps: int, report: Report
) -> dict[str, Any]:
    """``reps`` reconciles with nothing to do: medians of wall, CPU, LXD and GitHub requests."""
    rows: list[dict[str, float]] = []
    paths = dict(lxd.paths)
    for _ in range(reps):
        env.control("POST", "/stats/reset")
        calls, waited, meter = lxd.calls, lxd.seconds, metered(env)
        with stopwatch() as times:
            env.manager.reconcile(count, RESOURCES)
        done = env.manager.last_report
        report.check(
            not done.created and not done.deleted and not done.failed,
            f"N={count}: a steady reconcile changed something "
            f"({done.created}, {done.deleted}, {done.failed})",
        )
        sandbox = sum(api_counts(env).values())
        github = metered(env) - meter
        report.check(
            github == sandbox, f"N={count}: meter counted {github}, sandbox served {sandbox}"
        )
        rows.append(
            {**times, "lxd": lxd.calls - calls, "lxd_s": lxd.seconds - waited, "github": github}
        )
    wall, cpu = median([r["wall"] for r in rows]), median([r["cpu"] for r in rows])
    return {
        "reps": reps,
        "wall_s": round(wall or 0.0, 3),
        "wall_max_s": round(max(r["wall"] for r in rows), 3),
        "cpu_s": round(cpu or 0.0, 3),
        "lxd_calls": median([r["lxd"] for r in rows]),
        "lxd_wait_s": round(median([r["lxd_s"] for r in rows]) or 0.0, 3),
        "lxd_mean_s_by_path": {
            key: round((took - paths.get(key, 0.0)) / reps, 4)
            for key, took in lxd.paths.items()
            if took > paths.get(key, 0.0)
        },
        "github_requests": median([r["github"] for r in rows]),
    }


def flush_idle(env: LocalEnvironment, count: int, report: Report) -> float:
    """Flush every (idle) runner; seconds. The template stays."""
    began = time.perf_counter()
    env.manager.flush(LXDFlushMode.FLUSH_IDLE)
    seconds = time.perf_counter() - began
    left = env.instances()
    report.check(not left, f"N={count}: instances left after the idle flush: {left}")
    return round(seconds, 2)


def run(sizes: tuple[int, ...], reps: int, report: Report) -> dict[str, Any]:
    """Every size in one environment; teardown checks; the figures by size."""
    options = LocalOptions(
        app_name=APP, repo="octo/bench", labels=("bench",), metrics=True, sandbox_process=True
    )
    env = LocalEnvironment(options)
    base = env.settings().metrics_storage_dir
    stores = SharedFilesystemManager(base, env.settings().quarantine_dir)
    options.storage = stores
    results: dict[str, Any] = {}
    try:
        with env:
            lxd = LxdCounter(env.manager._clients.lxd.transport)
            results["template_s"] = round(make_template(env), 2)
            for count in sizes:
                make_template(env)  # present: an idle flush keeps it
                row = create(env, count, report)
                row["steady"] = steady(env, count, lxd, reps, report)
                row["rss_mib"], row["rss_peak_mib"] = rss_mib()
                row["flush_s"] = flush_idle(env, count, report)
                results[str(count)] = row
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            left = [f"instance {n}" for n in lxd_instances(f"{APP}-")]
            left += [f"template {n}" for n in lxd_instances(f"grt-{APP}-")]
            left += store_leaks(stores, base)
            report.check(not left, f"left after teardown: {left}")
            results["leaks"] = left
    finally:
        force_delete_instances(f"{APP}-")
        force_delete_instances(f"grt-{APP}-")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    return results


def show(report: Report, sizes: tuple[int, ...], results: dict[str, Any]) -> None:
    """Tables, ratios and the wall-time invariant."""
    table = report.table(
        f"N idle runners per unit (template on, production stores; steady: medians of "
        f"{results[str(sizes[0])]['steady']['reps']} do-nothing reconciles)",
        "N",
        "online",
        "runners/min",
        "failed",
        "host MiB/runner",
        "steady wall",
        "steady CPU",
        "LXD calls",
        "LXD wait",
        "GitHub req.",
        "RSS MiB",
        "flush",
    )
    for count in sizes:
        row = results[str(count)]
        table.add_row(
            str(count),
            fmt(row["online_s"], "s"),
            fmt(row["runners_per_minute"]),
            str(row["failed"]),
            fmt(row["host_memory_mib_per_runner"]),
            fmt(row["steady"]["wall_s"], "s"),
            fmt(row["steady"]["cpu_s"], "s"),
            fmt(row["steady"]["lxd_calls"]),
            fmt(row["steady"]["lxd_wait_s"], "s"),
            fmt(row["steady"]["github_requests"]),
            fmt(row["rss_mib"]),
            fmt(row["flush_s"], "s"),
        )
    big, base = str(sizes[-1]), str(sizes[1] if len(sizes) > 2 else sizes[0])
    figures = {
        "runners_per_minute": (results[big]["runners_per_minute"], results[base]),
        "host_memory_mib_per_runner": (results[big]["host_memory_mib_per_runner"], results[base]),
        "steady_wall_s": (results[big]["steady"]["wall_s"], results[base]["steady"]),
        "steady_cpu_s": (results[big]["steady"]["cpu_s"], results[base]["steady"]),
        "lxd_calls": (results[big]["steady"]["lxd_calls"], results[base]["steady"]),
        "lxd_wait_s": (results[big]["steady"]["lxd_wait_s"], results[base]["steady"]),
        "github_requests": (results[big]["steady"]["github_requests"], results[base]["steady"]),
        "rss_mib": (results[big]["rss_mib"], results[base]),
    }
    keys = {
        "steady_wall_s": "wall_s",
        "steady_cpu_s": "cpu_s",
    }
    ratios: dict[str, float | None] = {}
    against = report.table(f"N={big} / N={base}", "figure", f"N={base}", f"N={big}", "ratio")
    for name, (value, holder) in figures.items():
        below = holder[keys.get(name, name)]
        ratios[name] = ratio(value, below)
        against.add_row(name, fmt(below), fmt(value), fmt(ratios[name], "x"))
    for name in ("lxd_calls", "github_requests"):  # counts: exact, whatever the load
        grown = ratios[name]
        report.check(
            grown is not None and grown <= 1.0,
            f"{name} per steady reconcile grew {grown}x from N={base} to N={big} (must not grow)",
        )
    wall = ratios["steady_wall_s"]
    # Walls of 10-20 ms at N=4 and 8 are noise on a shared CI machine: --small only shows them.
    report.check(
        report.small or (wall is not None and wall <= WALL_GOAL),
        f"steady reconcile wall at N={big} is {wall}x the one at N={base} (goal <= {WALL_GOAL}x)",
    )
    report.figures.update(sizes=list(sizes), results=results, ratios=ratios, base=int(base))


def main() -> int:
    """Run the sizes; exit 1 on a failed creation, a slow steady reconcile or a leak."""
    args = parse_args(
        __doc__ or "",
        [
            ("--sizes", {"default": "", "help": "comma-separated N (default 1,8,24,40)"}),
            ("--reconciles", {"type": int, "default": 0, "help": "steady reconciles per N"}),
        ],
    )
    if args.sizes:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    else:
        sizes = (1, 4, 8) if args.small else (1, 8, 24, 40)
    reps = args.reconciles or (5 if args.small else 7)
    report = Report("scale", args.small)
    results = run(sizes, reps, report)
    if all(str(count) in results for count in sizes):
        show(report, sizes, results)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
