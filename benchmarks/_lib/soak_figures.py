"""The soak's host and process figures: mounts and loop devices, memory, waits over time."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from typing import Any

from benchmarks._lib.bench import summary

RSS_TOLERANCE, RSS_SLACK_KIB, FD_SLACK = 0.25, 40 << 10, 8

# iproute2 bind-mounts /run/netns onto itself at the first ``ip netns add`` of a boot and keeps
# it (the test network's first namespace on a fresh machine makes it): not a leak. The
# namespaces' own mounts (/run/netns/<name>) still count.
IPROUTE2_ONCE_PER_BOOT = "/run/netns"


def host_state() -> dict[str, int]:
    """Loop devices and mounts of the host (compared before vs after)."""
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False)
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        points = [line.split()[4] for line in mounts if len(line.split()) > 4]
    mount_count = sum(1 for point in points if point != IPROUTE2_ONCE_PER_BOOT)
    return {"loop_devices": len(loops.stdout.splitlines()), "mounts": mount_count}


def flat(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS and fds of the first vs the last 10 % of one process's reconciles."""
    tenth = max(1, len(samples) // 10)
    head, tail = samples[:tenth], samples[-tenth:]
    rss = [statistics.median(r["rss_kib"] for r in part) for part in (head, tail)]
    fds = [statistics.median(r["fds"] for r in part) for part in (head, tail)]
    return {
        "reconciles": len(samples),
        "rss_mib_first": round(rss[0] / 1024, 1),
        "rss_mib_last": round(rss[1] / 1024, 1),
        "fds_first": fds[0],
        "fds_last": fds[1],
        "rss_grew": rss[1] > rss[0] * (1 + RSS_TOLERANCE) and rss[1] - rss[0] > RSS_SLACK_KIB,
        "fds_grew": fds[1] - fds[0] > FD_SLACK,
    }


def dir_files(path: Path) -> list[Path]:
    """Regular files below a directory (none if it is missing)."""
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def wait_windows(
    jobs: list[dict[str, Any]], loads: list[tuple[float, float]], size: int
) -> list[dict[str, Any]]:
    """Job waits per ``size`` jobs in queue order, each with the mean 1-minute load meanwhile.

    A wait that grows over the run is drift only if the load did not grow with it: the load is
    averaged over the samples from the window's first queued job to its last job's start.

    Args:
        jobs: The sandbox's jobs, in queue order.
        loads: ``(unix time, 1-minute load average)`` samples.
        size: Jobs per window.

    Returns:
        Per window: its first job's index, its span (``since``, ``until``: unix times), the wait
        summary and ``load`` (None without samples).
    """
    windows = []
    for first in range(0, len(jobs), size):
        times = [j.get("event_times", {}) for j in jobs[first : first + size]]
        times = [t for t in times if "queued" in t and "in_progress" in t]
        if not times:
            continue
        since = min(float(t["queued"]) for t in times)
        until = max(float(t["in_progress"]) for t in times)
        during = [load for at, load in loads if since <= at <= until]
        waits = [float(t["in_progress"]) - float(t["queued"]) for t in times]
        windows.append(
            {
                "from_job": first,
                "since": since,
                "until": until,
                **summary(waits),
                "load": round(statistics.mean(during), 2) if during else None,
            }
        )
    return windows


def cpu_used(samples: list[tuple[float, dict[int, float]]], since: float, until: float) -> float:
    """CPU seconds the sampled processes used between two times.

    A pid that ends counts to its last sample, a new one (the restarted daemon) from its first.
    """
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for at, by_pid in samples:
        if since <= at <= until:
            for pid, seconds in by_pid.items():
                first.setdefault(pid, seconds)
                last[pid] = seconds
    return round(sum(last[pid] - first[pid] for pid in last), 2)


def pipeline_windows(
    windows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    reconciles: list[dict[str, Any]],
    lxd_cpu: list[tuple[float, dict[int, float]]],
    warnings: list[tuple[float, str]],
) -> list[dict[str, Any]]:
    """What made each wait window's runners: creations, their time, reconciles, LXD's CPU.

    A wait that steps up is either fewer runners made per minute (each creation slower: LXD,
    the template, the load) or runners made but taken later (reconciles slower or failing);
    these figures, over the same spans as the waits, tell which.

    Args:
        windows: From ``wait_windows`` (their ``since`` / ``until`` spans).
        events: The manager's metric events (``runner_installed`` with its ``duration``).
        reconciles: The manager's finished reconciles (``t`` unix time, ``s`` seconds).
        lxd_cpu: ``(unix time, {daemon pid: CPU seconds so far})`` samples.
        warnings: ``(unix time, message)`` of the manager's warnings.

    Returns:
        Per window: ``created`` and ``per_min``, ``install_p50`` s, ``reconcile_p50`` s,
        ``lxd_cpu_s`` and ``lxd_cpu_per_create`` s, ``from_image`` (template fallbacks).
    """
    rows = []
    for window in windows:
        since, until = window["since"], window["until"]
        span = max(until - since, 1e-9)
        installs = [
            float(e["duration"])
            for e in events
            if e.get("event") == "runner_installed" and since <= float(e["timestamp"]) <= until
        ]
        runs = [float(r["s"]) for r in reconciles if since <= float(r.get("t", 0)) <= until]
        cpu = cpu_used(lxd_cpu, since, until)
        rows.append(
            {
                "from_job": window["from_job"],
                "created": len(installs),
                "per_min": round(len(installs) * 60 / span, 1),
                "install_p50": summary(installs)["p50"],
                "reconcile_p50": summary(runs)["p50"],
                "lxd_cpu_s": cpu,
                "lxd_cpu_per_create": round(cpu / len(installs), 2) if installs else None,
                "from_image": sum(
                    1 for at, text in warnings if since <= at <= until and "from the image" in text
                ),
            }
        )
    return rows


def turnaround_windows(jobs: list[dict[str, Any]], size: int, pool: int) -> list[dict[str, Any]]:
    """Per ``size`` jobs: start rate, runner cycle and the overhead of a runner per job.

    The soak keeps a fixed number of jobs open, so by Little's law a window's wait plus run time
    is that number over its throughput: shorter jobs wait longer at the same throughput, and the
    wait alone drifts with the job mix. The overhead is what the charm adds per job and does not
    depend on the mix: with every runner of the pool busy or being replaced, one runner's cycle
    (``pool`` over the start rate) minus the job's mean run time is the time to replace a runner
    (delete, create, boot, register, take the next job).

    Args:
        jobs: The sandbox's jobs, in queue order.
        size: Jobs per window.
        pool: Runners in the pool.

    Returns:
        Per window: ``starts_per_min``, ``cycle_s``, ``run_s`` (mean), ``overhead_s``.
    """
    rows = []
    for first in range(0, len(jobs), size):
        times = [j.get("event_times", {}) for j in jobs[first : first + size]]
        done = [t for t in times if "in_progress" in t and "completed" in t]
        starts = sorted(float(t["in_progress"]) for t in done)
        if len(starts) < 2 or starts[-1] <= starts[0]:
            continue
        rate = (len(starts) - 1) / (starts[-1] - starts[0])  # starts per second
        run = statistics.mean(float(t["completed"]) - float(t["in_progress"]) for t in done)
        cycle = pool / rate
        rows.append(
            {
                "from_job": first,
                "starts_per_min": round(rate * 60, 1),
                "cycle_s": round(cycle, 2),
                "run_s": round(run, 2),
                "overhead_s": round(cycle - run, 2),
            }
        )
    return rows
