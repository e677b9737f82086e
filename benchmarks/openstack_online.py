#!/usr/bin/env python3
"""Create -> online through nova (test LXD compute driver) vs the LXD backend, in one run.

OpenStack side: the charm's ``OpenstackRunnerManager`` on the test OpenStack
(``scripts/setup-openstack.sh``) whose nova-compute runs the test driver
``scripts/openstack/lxd_virt_driver.py`` (TEST INFRASTRUCTURE): the server of a Glance image
tagged ``github_runner_lxd`` is an LXD container from the test image on the closed test network,
its user data (the manager's start script: fetch the runner from the sandbox, run it with the
JIT config) run as root at boot. LXD side: the charm's ``RunnerManager`` in test mode with the
same sandbox (the environment of ``harness.local``), cloning runners from the runner template
(its default in test mode; the driver creates each container from the image).

Each run, one runner per backend, the order alternating: ``reconcile(1)`` from 0, then wait
until the sandbox lists the runner online (a poller: a GitHub listing, then 0.2 s asleep;
OpenStack also notes when nova first lists the server ACTIVE, one nova listing a loop, so that
figure is late by up to a loop, ~0.4-0.6 s); then an idle flush and a wait until the server
(and its container) or the instance is gone. Medians over ``--runs`` (default 5; ``--small``
2) and the ratio OpenStack / LXD.

Exits 1 when the test OpenStack or its LXD driver is missing, a runner is not online within
120 s, or a server, container or instance of the benchmark is left after the teardown. Uses
LXD and the test network: run it as root under ``flock /tmp/work/lxd.lock``.

    flock /tmp/work/lxd.lock python benchmarks/openstack_online.py [--json] [--small] [--runs N]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack
import openstack.config

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    median,
    parse_args,
    ratio,
)
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.openstack_lxd import (
    TestCloud,
    containers_of,
    driver_problem,
    lxd_glance_image,
    openstack_manager,
    remove_containers,
)
from openstack_backend.manager import OpenstackRunnerManager
from runner_manager_type import LXDFlushMode

APP_LXD, APP_OS = "bench-onl", "bench-osonl"
STATE = Path(os.environ.get("GITHUB_RUNNER_OPENSTACK_STATE", "/var/lib/github-runner-openstack"))
DEADLINE = 120.0
POLL = 0.2


def _until(check: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(POLL)
    return True


def lxd_run(env: LocalEnvironment, report: Report) -> dict[str, float]:
    """One runner on the LXD backend: seconds to online."""
    began = time.monotonic()
    env.manager.reconcile(1, RESOURCES)
    created = time.monotonic() - began
    ok = _until(lambda: any(r.status.value == "online" for r in env.manager.get_github_info()))
    row = {"reconcile": created, "online": time.monotonic() - began}
    report.check(ok, "an LXD runner was not online in time")
    env.manager.flush(LXDFlushMode.FLUSH_IDLE)
    report.check(_until(lambda: env.instances() == [], 60), "an LXD instance outlived its flush")
    return row if ok else {}


def openstack_run(manager: OpenstackRunnerManager, report: Report) -> dict[str, float]:
    """One runner through nova: seconds to ACTIVE and to online."""
    row: dict[str, float] = {}
    began = time.monotonic()
    manager.reconcile(1, RESOURCES)
    row["reconcile"] = time.monotonic() - began
    ids: set[str] = set()

    def online() -> bool:
        if "active" not in row:
            servers = manager.cloud.list_servers(manager.prefix)
            ids.update(s.id for s in servers)
            if any(s.status == "ACTIVE" for s in servers):
                row["active"] = time.monotonic() - began
        return any(r.status.value == "online" for r in manager.get_github_info())

    ok = _until(online)
    row["online"] = time.monotonic() - began
    report.check(ok, "a runner through nova was not online in time")
    manager.flush(LXDFlushMode.FLUSH_IDLE)
    gone = _until(lambda: manager.cloud.list_servers(manager.prefix) == [], 60)
    report.check(gone, "a server outlived its flush")
    report.check(_until(lambda: containers_of(ids) == [], 30), "a container outlived its server")
    return row if ok else {}


def _cloud() -> tuple[TestCloud, Any]:
    names = json.loads((STATE / "resources.json").read_text())
    cloud = TestCloud(
        Path(names["clouds_yaml"]), names["cloud"], names["flavor"], names["network"]
    )
    config = openstack.config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)])
    region = config.get_one(cloud=cloud.cloud, api_timeout=60)
    return cloud, openstack.connection.Connection(config=region)


def _table(report: Report, rows: dict[str, list[dict[str, float]]], runs: int) -> dict[str, Any]:
    """Add the table of medians; return them (and the ratios) as figures."""
    table = report.table(
        f"one runner, create -> online, {runs} runs per backend, interleaved (medians, min-max)",
        "figure",
        "LXD backend s",
        "min-max",
        "OpenStack + LXD driver s",
        "min-max",
        "ratio",
    )
    figures: dict[str, Any] = {}
    for key, label in (
        ("reconcile", "reconcile(1) returned"),
        ("active", "server ACTIVE in nova"),
        ("online", "runner online in the sandbox"),
    ):
        cells = [label]
        medians = []
        for backend in ("lxd", "openstack"):
            values = [r[key] for r in rows[backend] if key in r]
            best = median(values)
            medians.append(best)
            figures.setdefault(backend, {})[key] = None if best is None else round(best, 3)
            cells += [fmt(best), f"{min(values):.2f}-{max(values):.2f}" if values else "-"]
        cells.append(fmt(ratio(medians[1], medians[0])))
        figures.setdefault("ratio", {})[key] = ratio(medians[1], medians[0])
        table.add_row(*cells)
    return figures


def main() -> int:
    """Measure; exit 0 unless a prerequisite is missing, a runner failed or something leaked."""
    args = parse_args(__doc__ or "", [("--runs", {"type": int, "default": 0})])
    runs = args.runs or (2 if args.small else 5)
    report = Report("openstack_online", args.small)
    problem = driver_problem()
    if not (STATE / "resources.json").exists():
        problem = f"no test OpenStack ({STATE}/resources.json): make setup-openstack"
    if problem is not None:
        report.check(False, f"{problem}; run sudo scripts/setup-openstack.sh")
        return report.finish(args.json)
    cloud, conn = _cloud()
    rows: dict[str, list[dict[str, float]]] = {"lxd": [], "openstack": []}
    ids: set[str] = set()
    options = LocalOptions(app_name=APP_LXD, repo="octo/bench-onl", labels=("bench",))
    try:
        with LocalEnvironment(options) as env:
            assert env.testnet is not None  # the environment made its own
            with lxd_glance_image(
                conn, alias=options.image, network=env.testnet.bridge, name=f"{APP_OS}-image"
            ) as image:
                manager = openstack_manager(env, cloud, image.name, app_name=APP_OS)
                try:
                    for run in range(runs):
                        order = ("lxd", "openstack") if run % 2 == 0 else ("openstack", "lxd")
                        for backend in order:
                            if backend == "lxd":
                                row = lxd_run(env, report)
                            else:
                                row = openstack_run(manager, report)
                            if row:
                                rows[backend].append(row)
                finally:
                    servers = manager.cloud.list_servers(manager.prefix)
                    ids.update(s.id for s in servers)
                    for server in servers:
                        manager.cloud.delete_server(server.id)
                    report.check(
                        _until(lambda: manager.cloud.list_servers(manager.prefix) == [], 120),
                        "servers left after the teardown",
                    )
    finally:
        leaked = force_delete_instances(f"{APP_LXD}-")
        left = containers_of(ids)
        remove_containers(left)
        conn.close()
    report.check(not leaked and not lxd_instances(f"{APP_LXD}-"), f"instances left: {leaked}")
    report.check(not left, f"containers left: {left}")

    figures = _table(report, rows, runs)
    report.figures.update(runs=runs, median_s=figures, samples=rows)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
