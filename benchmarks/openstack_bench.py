#!/usr/bin/env python3
"""OpenStack backend vs LXD backend: creation, steady reconciles and API calls, in one run.

OpenStack side: ``OpenstackRunnerManager`` on the charm's non-admin user of the test OpenStack
(``scripts/setup-openstack.sh``: real keystone, glance, placement, neutron and nova on
127.0.0.1, nova's ``fake.FakeDriver``: a server goes ACTIVE and runs nothing), the sandbox
GitHub on loopback. The fake driver runs no runner, so the benchmark plays the runners' side:
each JIT record the manager registered connects and heartbeats over the sandbox's runner
protocol (as ``api_calls.py`` does), so the manager sees N idle runners, as it would with real
VMs. LXD side: the charm's ``RunnerManager`` in test mode (containers, runner template on,
sandbox on the closed test network), real runners.

For each N (4 and 8; ``--small``: 2), on each backend:

1. ``--runs`` (default 3; small 2) cycles of ``reconcile(N)`` from 0, then idle flush to 0:
   per runner, seconds from the reconcile's start to the server first listed ACTIVE
   (OpenStack) or the instance first listed Running (LXD), seen by a poller with its own
   connection every 50 ms; LXD runners also to all N online on GitHub; and the creating
   reconcile's own wall (until it returns). Medians over all runners / cycles;
2. after the last cycle's creation, ``--reconciles`` (default 7; small 5) reconciles with
   nothing to do: wall and CPU seconds of each (CPU: this process, i.e. the manager and the
   in-process sandbox answering it), server listings (``OpenstackCloud.list_servers`` calls),
   HTTP requests to OpenStack (every request of the manager's openstacksdk session) or to LXD
   (``LxdTransport.request``) and the seconds waited on them, GitHub REST requests (the
   sandbox's counters); medians.

Ratios are OpenStack / LXD at the same N. Create->online through nova, with the test nova
driver that runs servers as LXD containers (``scripts/openstack/``), is measured by
``benchmarks/openstack_online.py``.

Exits 1 when the test OpenStack is not up, a creation fails or gives fewer than N, a server is
not ACTIVE (an instance not Running, runners not online) in time, a steady reconcile creates
or deletes anything, any reconcile lists servers more than once, or a server or instance of
the benchmark is left after a flush or the teardown. Uses LXD and the test network: run it as
root under ``flock /tmp/work/lxd.lock`` (``--only openstack`` needs neither).

    flock /tmp/work/lxd.lock python benchmarks/openstack_bench.py [--json] [--small] [--sizes 4,8]
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    median,
    parse_args,
    ratio,
    stopwatch,
)
from benchmarks._lib.cloud_probe import CountingCloud, FirstSeen, play_runners, rest_requests
from benchmarks.api_calls import api_counts
from benchmarks.scale import LxdCounter, make_template
from config.settings import RunnerManagerSettings
from github_api.types import GitHubRepo
from harness.local import RESOURCES, LocalEnvironment, LocalOptions, local_charm_state
from lxd.client import LxdClient
from lxd.types import InstanceStatus
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig
from sandbox.server import SandboxServer

# A name of its own per run: a concurrent run (``--only openstack`` takes no lock) with the same
# prefix would see this run's servers as orphans (their records are in another sandbox).
APP_OS, APP_LXD = f"bench-os{secrets.token_hex(2)}", "bench-oslxd"
REPO = GitHubRepo("octo", "bench-os")
ADMIN = "ghp_bench-openstack-admin-0001"  # the loopback sandbox's token
STATE = Path("/var/lib/github-runner-openstack")
DEADLINE = 120.0
RATIOS = ("create_s", "wall_s", "cpu_s", "github_requests")


@dataclass
class Backend:
    """One backend as the measurement drives it.

    Attributes:
        label: ``OpenStack`` or ``LXD``.
        manager: The runner manager (``reconcile``, ``flush``, ``last_report``, ``prefix``).
        ready: {runner: created and ready} now (ACTIVE / Running), from an own connection.
        left: Names of the backend's servers or instances with the manager's prefix now.
        calls: (server listings, backend HTTP requests, seconds waited on the backend) so far.
        github: GitHub REST requests since the last reset (reset and 0 when given True).
        online: Waits (bounded) until N runners are online after a creation: whether they
            are (None: not measured, the OpenStack runners are played).
        steady_prep: Run before each steady reconcile, untimed.
    """

    label: str
    manager: Any
    ready: Callable[[], dict[str, bool]]
    left: Callable[[], list[str]]
    calls: Callable[[], tuple[int, int, float]]
    github: Callable[[bool], int]
    online: Callable[[int], bool | None]
    steady_prep: Callable[[], object]


def wait_empty(backend: Backend, deadline: float = 60.0) -> list[str]:
    """Wait until the backend has nothing with the prefix (bounded); the names left."""
    end = time.monotonic() + deadline
    while (left := backend.left()) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def flush(backend: Backend, count: int, report: Report) -> None:
    """Idle flush; nothing may be left."""
    backend.manager.flush(LXDFlushMode.FLUSH_IDLE)
    left = wait_empty(backend)
    report.check(not left, f"{backend.label} N={count}: left after the flush: {left}")


def create(
    backend: Backend, count: int, report: Report
) -> tuple[list[float], float, float | None]:
    """``reconcile(count)`` from 0: seconds to ready per runner, of the reconcile, to online."""
    listings = backend.calls()[0]
    with FirstSeen(backend.ready).running() as seen:
        backend.manager.reconcile(count, RESOURCES)
        returned = time.perf_counter() - seen.began
        made = backend.manager.last_report
        ready = seen.wait(count, DEADLINE)
        reached = backend.online(count)
        online = time.perf_counter() - seen.began if reached else None
    where = f"{backend.label} N={count}"
    listed = backend.calls()[0] - listings
    report.check(listed <= 1, f"{where}: a creating reconcile listed servers {listed} times")
    report.check(not made.failed, f"{where}: creations failed: {made.failed}")
    refusal = getattr(made, "quota_exceeded", None) or "no quota refusal"
    report.check(len(made.created) == count, f"{where}: {len(made.created)} created ({refusal})")
    report.check(ready, f"{where}: {len(seen.seen)} of {count} ready in {DEADLINE}s")
    return list(seen.seen.values()), returned, online


def steady(backend: Backend, count: int, reps: int, report: Report) -> dict[str, Any]:
    """``reps`` do-nothing reconciles: medians of wall, CPU, listings, backend and GitHub."""
    rows: list[dict[str, float]] = []
    where = f"{backend.label} N={count}"
    for _ in range(reps):
        backend.steady_prep()
        backend.github(True)
        listings, http, waited = backend.calls()
        with stopwatch() as times:
            backend.manager.reconcile(count, RESOURCES)
        done = backend.manager.last_report
        changed = (done.created, done.deleted, done.failed)
        report.check(not any(changed), f"{where}: a steady reconcile changed {changed}")
        after_listings, after_http, after_waited = backend.calls()
        rows.append(
            {
                **times,
                "listings": after_listings - listings,
                "http": after_http - http,
                "wait": after_waited - waited,
                "github": backend.github(False),
            }
        )
        if backend.label == "OpenStack":
            listed = rows[-1]["listings"]
            report.check(listed == 1, f"{where}: a steady reconcile listed servers {listed} times")
    return {
        "reps": reps,
        "wall_s": round(median([r["wall"] for r in rows]) or 0.0, 4),
        "cpu_s": round(median([r["cpu"] for r in rows]) or 0.0, 4),
        "listings": median([r["listings"] for r in rows]),
        "backend_http": median([r["http"] for r in rows]),
        "backend_wait_s": round(median([r["wait"] for r in rows]) or 0.0, 4),
        "github_requests": median([r["github"] for r in rows]),
    }


def measure(backend: Backend, count: int, runs: int, reps: int, report: Report) -> dict[str, Any]:
    """Creation cycles, then steady reconciles, then a flush, at N = ``count``."""
    per_runner: list[float] = []
    online: list[float] = []
    reconciles: list[float] = []
    for run in range(runs):
        times, returned, all_online = create(backend, count, report)
        per_runner += times
        reconciles.append(returned)
        online += [all_online] if all_online is not None else []
        if run < runs - 1:
            flush(backend, count, report)
    row = steady(backend, count, reps, report)
    flush(backend, count, report)
    return {
        "create_s": round(median(per_runner) or 0.0, 3),
        "create_max_s": round(max(per_runner, default=0.0), 3),
        "create_reconcile_s": round(median(reconciles) or 0.0, 3),
        "online_s": round(median(online) or 0.0, 3) if online else None,
        "runners": len(per_runner),
        **row,
    }


# --- OpenStack -----------------------------------------------------------------------------------


def openstack_backend(sandbox: SandboxServer, workdir: Path) -> tuple[Backend, OpenstackClient]:
    """The manager under test (counted cloud, sandbox GitHub) and an independent observer."""
    names = json.loads((STATE / "resources.json").read_text())
    clouds, cloud = Path(names["clouds_yaml"]), names["cloud"]
    state = local_charm_state(
        token=SecretStr(ADMIN),
        path=REPO,
        github_url=sandbox.base_url,
        api_url=sandbox.api_url,
        labels=("bench",),
        app_name=APP_OS,
    )
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=REPO,
        labels=(),
        token=ADMIN,
        flavor=names["flavor"],
        image=names["image"],
        network=names["network"],
        dockerhub_mirror=None,
    )
    settings = RunnerManagerSettings.for_unit(
        APP_OS, 0, state_root=workdir, cron_dir=workdir, log_root=workdir, lock_timeout=30
    )
    counted = CountingCloud(OpenstackClient(clouds, cloud, timeout=60))
    manager = OpenstackRunnerManager(APP_OS, 0, config, counted, settings=settings)  # type: ignore[arg-type]
    observer = OpenstackClient(clouds, cloud, timeout=60)
    prefix = manager.prefix

    def online(count: int) -> None:
        del count  # the fake driver runs nothing: the records connect, untimed
        play_runners(sandbox, prefix, "/connect")

    backend = Backend(
        label="OpenStack",
        manager=manager,
        ready=lambda: {s.name: s.status == "ACTIVE" for s in observer.list_servers(prefix)},
        left=lambda: [s.name for s in observer.list_servers(prefix)],
        calls=counted.totals,
        github=lambda reset: rest_requests(sandbox, reset),
        online=online,
        steady_prep=lambda: play_runners(sandbox, prefix),
    )
    return backend, observer


def run_openstack(sizes: tuple[int, ...], runs: int, reps: int, report: Report) -> dict[str, Any]:
    """Every size on the test OpenStack; teardown checks."""
    if not (STATE / "resources.json").exists():
        report.check(False, f"no test OpenStack ({STATE}/resources.json): make setup-openstack")
        return {}
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-os-") as tmp,
        SandboxServer(token=ADMIN, port=0) as sandbox,
    ):
        backend, observer = openstack_backend(sandbox, Path(tmp))
        try:
            for count in sizes:
                results[str(count)] = measure(backend, count, runs, reps, report)
        finally:
            backend.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            left = wait_empty(backend)
            for name in left:
                observer.delete_server(name)
        report.check(not left, f"OpenStack: servers left after teardown: {left}")
        results["leaks"] = left
    return results


# --- LXD -----------------------------------------------------------------------------------------


def lxd_backend(env: LocalEnvironment) -> Backend:
    """The charm's LXD manager of the environment, counted, and an independent observer."""
    counter = LxdCounter(env.manager._clients.lxd.transport)
    observer, prefix = LxdClient(), env.manager.prefix

    def ready() -> dict[str, bool]:
        return {
            i.name: i.last_status is InstanceStatus.RUNNING for i in observer.list(prefix=prefix)
        }

    def github(reset: bool) -> int:
        if reset:
            env.control("POST", "/stats/reset")
            return 0
        return sum(api_counts(env).values())

    def online(count: int) -> bool:
        try:
            env.wait_online(count, DEADLINE)
        except TimeoutError:
            return False
        return True

    return Backend(
        label="LXD",
        manager=env.manager,
        ready=ready,
        left=env.instances,
        calls=lambda: (0, counter.calls, counter.seconds),
        github=github,
        online=online,
        steady_prep=lambda: None,  # real runners heartbeat themselves
    )


def run_lxd(sizes: tuple[int, ...], runs: int, reps: int, report: Report) -> dict[str, Any]:
    """Every size on real LXD; teardown checks."""
    options = LocalOptions(app_name=APP_LXD, repo="octo/bench-oslxd", labels=("bench",))
    results: dict[str, Any] = {}
    try:
        with LocalEnvironment(options) as env:
            backend = lxd_backend(env)
            make_template(env)  # once per image generation in production: untimed
            for count in sizes:
                results[str(count)] = measure(backend, count, runs, reps, report)
                report.check(
                    results[str(count)]["online_s"] is not None,
                    f"LXD N={count}: runners not all online in {DEADLINE}s",
                )
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    finally:
        left = lxd_instances(f"{APP_LXD}-")
        force_delete_instances(f"{APP_LXD}-")
        force_delete_instances(f"grt-{APP_LXD}-")
    report.check(not left, f"LXD: instances left after teardown: {left}")
    results["leaks"] = left
    return results


def show(report: Report, sizes: tuple[int, ...], results: dict[str, dict[str, Any]]) -> None:
    """Tables and ratios (OpenStack / LXD at the same N)."""
    table = report.table(
        "Creation (median per runner) and do-nothing reconciles (medians), per N",
        "backend",
        "N",
        "create->ready",
        "max",
        "reconcile",
        "->all online",
        "steady wall",
        "steady CPU",
        "listings",
        "backend HTTP",
        "backend wait",
        "GitHub req.",
    )
    for count in map(str, sizes):
        for label, row in (
            ("OpenStack (ACTIVE)", results["openstack"].get(count)),
            ("LXD (Running)", results["lxd"].get(count)),
        ):
            if row is not None:
                table.add_row(
                    label,
                    count,
                    *(
                        fmt(row[k], "s")
                        for k in ("create_s", "create_max_s", "create_reconcile_s", "online_s")
                    ),
                    *(fmt(row[k], "s") for k in ("wall_s", "cpu_s")),
                    fmt(row["listings"] if label.startswith("OpenStack") else None),
                    fmt(row["backend_http"]),
                    fmt(row["backend_wait_s"], "s"),
                    fmt(row["github_requests"]),
                )
    ratios: dict[str, dict[str, float | None]] = {}
    against = report.table("OpenStack / LXD", "N", *RATIOS)
    for count in map(str, sizes):
        os_row, lxd_row = results["openstack"].get(count), results["lxd"].get(count)
        if os_row and lxd_row:
            ratios[count] = {k: ratio(os_row[k], lxd_row[k]) for k in RATIOS}
            against.add_row(count, *(fmt(ratios[count][k], "x") for k in RATIOS))
    report.figures.update(sizes=list(sizes), ratios=ratios, **results)


def main() -> int:
    """Run both backends; exit 1 on a failed creation, an extra listing or a leak."""
    args = parse_args(
        __doc__ or "",
        [
            ("--sizes", {"default": "", "help": "comma-separated N (default 4,8; small 2)"}),
            ("--runs", {"type": int, "default": 0, "help": "creation cycles per N"}),
            ("--reconciles", {"type": int, "default": 0, "help": "steady reconciles per N"}),
            ("--only", {"default": "", "help": "one backend: openstack or lxd (no ratios)"}),
        ],
    )
    default = (2,) if args.small else (4, 8)
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else default
    runs = args.runs or (2 if args.small else 3)
    reps = args.reconciles or (5 if args.small else 7)
    report = Report("openstack", args.small)
    results = {
        "openstack": run_openstack(sizes, runs, reps, report) if args.only != "lxd" else {},
        "lxd": run_lxd(sizes, runs, reps, report) if args.only != "openstack" else {},
    }
    show(report, sizes, results)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
