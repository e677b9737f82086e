#!/usr/bin/env python3
"""GitHub REST requests per reconcile (steady state) and per runner created, from the sandbox.

Counts come from the sandbox's ``/_sandbox/stats`` (requests per route), keeping only REST API
routes (the runners' own ``/_runner`` protocol and the ``/_sandbox`` control routes are not
GitHub API calls the charm makes).

Steady state with K runners listed (K = 10, 150, 250; ``--small`` too: no LXD is needed): K
runner records are registered in the sandbox with the unit's prefix through the charm's own
``GithubClient.get_jit_config`` and brought online through the runner protocol (``/connect``,
then a heartbeat before each reconcile, as a live runner would). The RunnerManager under test
uses the real GithubClient against the sandbox, and an LXD seam that mirrors the records: one
Running instance, marked created a minute ago, per record. So the plan sees K healthy idle
runners, wants K, and neither creates nor deletes: what is left is the listing cost. Each figure
is the mean over several reconciles. The charm's reconcile event also lists runners once more
for its status (``get_github_info``): shown as a second column.

Safety net on (reactive mode): the same do-nothing reconcile with Q workflow runs queued in the
sandbox (Q = 0, 3, 30) and the reconcile's safety net sweeping them (``max_runs`` 10, no grace,
a ledger in memory, publishes recorded, not sent): requests per reconcile = runner pages +
2 run lists (1 once Q >= max_runs) + ``min(Q, max_runs)`` job lists: at most 2 + max_runs
beyond the listing, whatever Q.

Per runner created (real LXD): the requests of ``reconcile(N)`` from 0 and of the flush back to
0, divided by N.

    python benchmarks/api_calls.py [--json] [--small]
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    parse_args,
)
from benchmarks._lib.cloud_probe import speak_as_runners
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from manager.job_safety_net import JobSafetyNet, SafetyNetSettings
from reactive.message import JobDetails
from runner import CREATED_KEY
from runner_manager import RunnerManager
from runner_manager_type import LXDFlushMode, RunnerManagerClients
from sandbox import jitconfig

APP = "bench-api"
RECONCILES = 5
MAX_RUNS = 10


@dataclass
class _Status:
    value: str


@dataclass
class MirrorInstance:
    """An instance as the manager's observation reads it."""

    name: str
    created_at: datetime
    status: _Status
    config: dict[str, str]

    @property
    def last_status(self) -> _Status:
        """The status as listed (what the reconcile judges by)."""
        return self.status


class MirrorLxd:
    """An LXD seam that lists one healthy Running instance per registered name."""

    def __init__(self) -> None:
        """Start with no instance."""
        self.names: list[str] = []
        self.born = datetime.now(timezone.utc) - timedelta(minutes=1)

    def wait_instances_settled(self, prefix: str, timeout: float) -> list[str]:
        """No LXD operation is ever running on a mirrored instance."""
        del prefix, timeout
        return []

    def list(self, prefix: str | None = None, user_config: Any = None) -> list[MirrorInstance]:
        """The mirrored instances with the prefix."""
        del user_config
        return [
            MirrorInstance(name, self.born, _Status("Running"), {CREATED_KEY: "true"})
            for name in self.names
            if prefix is None or name.startswith(prefix)
        ]


def api_counts(env: LocalEnvironment) -> Counter[str]:
    """REST API requests counted by the sandbox, per route."""
    counts: dict[str, int] = env.control("GET", "/stats")["requests"]
    return Counter(
        {key: n for key, n in counts.items() if not key.split(" ", 1)[1].startswith("/_")}
    )


class Records:
    """Runner records registered in the sandbox and kept online over the runner protocol."""

    def __init__(self, env: LocalEnvironment, prefix: str) -> None:
        """Bind to an environment and a name prefix."""
        self.env = env
        self.prefix = prefix
        self.credentials: list[str] = []
        self.names: list[str] = []

    def add(self, count: int) -> None:
        """Register ``count`` more records (JIT, like the charm does) and connect them."""
        github = self.env.manager._clients.github
        labels = ["self-hosted", "linux", "x64", APP]
        for _ in range(count):
            name = f"{self.prefix}{len(self.names):08x}"
            jit = github.get_jit_config(self.env.state.path, name, labels)
            files = jitconfig.decode(jit.encoded_jit_config)
            self.credentials.append(files[".credentials"]["data"]["token"])
            self.names.append(name)
        self.heartbeat("/connect")

    def heartbeat(self, route: str = "/heartbeat") -> None:
        """Every record says it is alive (the sandbox keeps it online for 10 s)."""
        speak_as_runners(self.env.sandbox.base_url, self.credentials, route)


def steady_state(env: LocalEnvironment, sizes: tuple[int, ...], report: Report) -> dict[str, Any]:
    """Requests per do-nothing reconcile with K healthy runners listed."""
    mirror = MirrorLxd()
    real = env.manager._clients
    clients = RunnerManagerClients(
        github=real.github, jinja=real.jinja, lxd=mirror, repo=real.repo
    )  # type: ignore[arg-type]
    manager = RunnerManager(
        env.options.app_name,
        env.options.unit,
        env.manager.config,
        clients=clients,
        settings=env.manager.settings,
    )
    records = Records(env, manager.prefix)
    results: dict[str, Any] = {}
    for size in sizes:
        records.add(size - len(records.names))
        mirror.names = list(records.names)
        per_reconcile: list[int] = []
        per_event: list[int] = []
        routes: Counter[str] = Counter()
        for _ in range(RECONCILES):
            records.heartbeat()
            env.control("POST", "/stats/reset")
            manager.reconcile(size, RESOURCES)
            after_reconcile = api_counts(env)
            infos = list(manager.get_github_info())
            after_event = api_counts(env)
            per_reconcile.append(sum(after_reconcile.values()))
            per_event.append(sum(after_event.values()))
            routes += after_reconcile
            report.check(
                not manager.last_report.created and not manager.last_report.deleted,
                f"K={size}: the steady-state reconcile changed something "
                f"({manager.last_report.created}, {manager.last_report.deleted})",
            )
            report.check(len(infos) == size, f"K={size}: listed {len(infos)} runners")
        pages = math.ceil(size / 100)
        mean = sum(per_reconcile) / len(per_reconcile)
        results[str(size)] = {
            "pages": pages,
            "per_reconcile": mean,
            "per_reconcile_event": sum(per_event) / len(per_event),
            "constant": mean - pages,
            "routes": {k: v / RECONCILES for k, v in routes.items()},
        }
    constants = {round(r["constant"], 2) for r in results.values()}
    report.check(
        len(constants) == 1, f"requests per reconcile are not pages + a constant: {results}"
    )
    return results


class QuietPool:
    """A consumer pool with an empty queue that starts nothing (reactive mode, no broker)."""

    def queue_empty(self) -> bool:
        """Nothing waits."""
        return True

    def reconcile(self, quantity: int) -> int:
        """No consumer process is started."""
        del quantity
        return 0


class MemoryLedger:
    """The intake ledger's contract in memory."""

    def __init__(self) -> None:
        """No job seen."""
        self.claimed: set[int] = set()

    def claim(self, job_id: int, delivery_id: str | None = None) -> bool:
        """True the first time."""
        del delivery_id
        fresh = job_id not in self.claimed
        self.claimed.add(job_id)
        return fresh

    def confirm(self, job_id: int) -> None:
        """Published: nothing more to keep in memory."""
        del job_id

    def release(self, job_id: int) -> None:
        """Forget a claim."""
        self.claimed.discard(job_id)


def safety_net(env: LocalEnvironment, report: Report) -> dict[str, Any]:
    """Requests per reconcile with the safety net on, for Q queued runs."""
    real = env.manager._clients
    published: list[JobDetails] = []
    net = JobSafetyNet(
        github=real.github,
        path=env.state.path,
        api_url=env.state.api_url,
        ledger=MemoryLedger(),
        publish=lambda uri, queue, message, timeout=10.0: published.append(message),
        mq_uri="memory://",
        queue_name=APP,
        routes=lambda labels: True,
        settings=SafetyNetSettings(grace=timedelta(0), max_runs=MAX_RUNS),
    )
    manager = RunnerManager(
        env.options.app_name,
        env.options.unit,
        env.manager.config,
        clients=RunnerManagerClients(
            github=real.github,
            jinja=real.jinja,
            lxd=MirrorLxd(),  # type: ignore[arg-type]
            repo=real.repo,
        ),
        settings=env.manager.settings,
        consumer_pool=QuietPool(),
        safety_net=net,
    )
    results: dict[str, Any] = {}
    queued, job_ids = 0, []
    for runs in (0, 3, 30):
        for _ in range(runs - queued):
            body = {"repository": "octo/bench", "labels": ["bench"]}
            job_ids.append(int(env.control("POST", "/jobs", body)["id"]))
        queued = runs
        counts: list[int] = []
        for _ in range(RECONCILES):
            env.control("POST", "/stats/reset")
            manager.reconcile(0, RESOURCES)
            counts.append(sum(api_counts(env).values()))
        mean = sum(counts) / len(counts)
        lists = 1 if runs >= MAX_RUNS else 2  # the in_progress list only while runs < max
        expected = 1 + lists + min(runs, MAX_RUNS)
        report.check(mean == expected, f"Q={runs}: {mean} requests, expected {expected}")
        results[str(runs)] = {"per_reconcile": mean, "expected": expected}
    # Q=3: 3 new jobs; Q=30: the newest MAX_RUNS runs, none seen before; then nothing new.
    report.check(len(published) == 3 + MAX_RUNS, f"the net enqueued {len(published)} jobs")
    for job_id in job_ids:  # no runner made later may take them
        env.control("POST", f"/jobs/{job_id}/cancel")
    results["enqueued_once"] = len(published) == len({m.url for m in published})
    report.check(results["enqueued_once"], "a job was enqueued twice")
    return results


def short(routes: dict[str, int]) -> str:
    """Routes without the repository part, e.g. ``GET runners: 1``."""
    return ", ".join(
        f"{key.replace('/repos/{owner}/{repo}/actions/', '')}: {n}"
        for key, n in sorted(routes.items())
    )


def per_runner(env: LocalEnvironment, count: int, report: Report) -> dict[str, Any]:
    """Requests of a 0 -> ``count`` reconcile and of the flush back, per runner."""
    env.control("POST", "/stats/reset")
    env.manager.reconcile(count, RESOURCES)
    created = api_counts(env)
    report.check(len(env.manager.last_report.created) == count, "not every runner was created")
    env.wait_online(count, 60)
    env.control("POST", "/stats/reset")
    env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    flushed = api_counts(env)
    env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    return {
        "runners": count,
        "create_total": sum(created.values()),
        "create_routes": dict(created),
        "create_per_runner_beyond_listing": (sum(created.values()) - 1) / count,
        "flush_total": sum(flushed.values()),
        "flush_routes": dict(flushed),
    }


def main() -> int:
    """Count the requests; exit 1 if they are not pages + constant or anything leaked."""
    args = parse_args(__doc__ or "")
    sizes = (10, 150, 250)
    created_n = 1 if args.small else 4
    report = Report("api_calls", args.small)
    options = LocalOptions(app_name=APP, repo="octo/bench", labels=("bench",))
    try:
        with LocalEnvironment(options) as env:
            steady = steady_state(env, sizes, report)
            # The fake records are removed before real runners are made.
            env.control("POST", "/stats/reset")
            for record in env.manager._clients.github.list_runners(env.state.path, "bench-api"):
                env.manager._clients.github.delete_runner(env.state.path, record.id, record.name)
            net = safety_net(env, report)
            creation = per_runner(env, created_n, report)
    finally:
        leaked = force_delete_instances(f"{APP}-")
    report.check(not leaked, f"instances left behind: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")

    table = report.table(
        f"GitHub REST requests per steady-state reconcile (mean of {RECONCILES})",
        "runners listed",
        "pages",
        "RunnerManager.reconcile",
        "= pages +",
        "charm reconcile event",
    )
    for size, row in steady.items():
        table.add_row(
            size,
            str(row["pages"]),
            fmt(row["per_reconcile"]),
            fmt(row["constant"]),
            fmt(row["per_reconcile_event"]),
        )
    swept = report.table(
        f"requests per reconcile with the safety net on (max_runs {MAX_RUNS}, 0 runners)",
        "workflow runs queued",
        "RunnerManager.reconcile",
        "expected: 1 + run lists + min(Q, max_runs)",
    )
    for runs, row in net.items():
        if isinstance(row, dict):
            swept.add_row(runs, fmt(row["per_reconcile"]), str(row["expected"]))
    made = report.table(
        f"requests to create {creation['runners']} runner(s) from 0, and to flush them",
        "operation",
        "requests",
        "by route",
    )
    made.add_row(
        f"reconcile(0 -> {creation['runners']})",
        str(creation["create_total"]),
        short(creation["create_routes"]),
    )
    made.add_row(
        "  per runner beyond the listing", fmt(creation["create_per_runner_beyond_listing"]), ""
    )
    made.add_row("force flush", str(creation["flush_total"]), short(creation["flush_routes"]))
    report.figures.update(steady_state=steady, safety_net=net, per_runner=creation)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
