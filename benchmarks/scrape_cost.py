#!/usr/bin/env python3
"""Cost of one scrape of the unit's /metrics, and proof that a scrape calls neither GitHub nor LXD.

The metrics state is fed the way the manager feeds it (``observability.feed``) for 8 and 40
runners: a reconcile's plan, the creations, 5 jobs per runner, GitHub requests on every route the
manager uses, deletions by reason. The exporter serves it over HTTP on loopback (the same
``serve`` the systemd unit runs, in a thread of this process), and the benchmark scrapes it with
plain HTTP requests:

- ms per scrape (median and p95, wall, client side) and bytes per scrape;
- outbound connections opened while scraping, other than the scraper's own to the exporter,
  counted by a ``socket.connect`` audit hook (GitHub is HTTPS, LXD a unix socket: both would
  show); the invariant is zero;
- GitHub requests recorded in the state during the scrapes (the metered transport counts every
  request the manager makes): the invariant is zero.

    python benchmarks/scrape_cost.py [--json] [--small]
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._lib.bench import Report, fmt, median, parse_args, percentile
from observability import series as s
from observability.exporter import serve
from observability.feed import MetricsFeed, api_request
from observability.state import STATE_FILE_NAME, StateFile
from reconcile_plan import (
    GithubView,
    InstanceState,
    InstanceView,
    ReconcilePlan,
    Runner,
    RunnerState,
)

ROUTES = (
    ("GET", "/repos/{owner}/{repo}/actions/runners", "200"),
    ("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", "201"),
    ("DELETE", "/repos/{owner}/{repo}/actions/runners/{runner_id}", "204"),
    ("DELETE", "/repos/{owner}/{repo}/actions/runners/{runner_id}", "422"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "200"),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", "200"),
    ("GET", "/repos/{owner}/{repo}/actions/runner-groups", "200"),
    ("GET", "/repos/{owner}/{repo}/actions/runners", "503"),
)


def feed_state(path: Path, runners: int) -> None:
    """Write what a day of a unit with ``runners`` runners leaves in the state."""
    state = StateFile(path)
    feed = MetricsFeed(state, "bench")
    states = [RunnerState.IDLE, RunnerState.BUSY, RunnerState.BUSY, RunnerState.STARTING]
    now = datetime.now(timezone.utc)
    plan_runners = []
    for i in range(runners):
        name = f"bench-0-{i:08x}"
        feed.runner_created(name, 3.0 + i % 7)
        instance = InstanceView(name=name, state=InstanceState.RUNNING, created_at=now)
        github = GithubView(id=i, name=name, online=True, busy=states[i % 4] is RunnerState.BUSY)
        plan_runners.append(Runner(name, states[i % 4], instance, github))
        for job in range(5):
            feed.job(idle=float(job), queue=float(10 * job), duration=float(60 * job))
    plan = ReconcilePlan(runners=tuple(plan_runners), deletions=(), create=0, delta=0)
    for _ in range(3):
        feed.reconciled(plan, expected=runners, duration=1.5)
    feed.runners_deleted(["surplus", "unhealthy", "orphan-instance", "flush"] * runners)
    feed.creation_failed(2)
    feed.quarantined()
    feed.reactive(queue_depth=3, consumers=2)
    headers = {"x-ratelimit-remaining": "4000", "x-ratelimit-limit": "5000"}
    for method, route, status in ROUTES:
        for _ in range(3):
            api_request(state, method, route, int(status), headers)


def requests_recorded(path: Path) -> float:
    """GitHub requests the state has recorded so far."""
    values = StateFile(path).read().values.get(s.API_REQUESTS.name, {})
    return sum(values.values())


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConnectCounter:
    """Counts ``socket.connect`` calls other than to the exporter (audit hook)."""

    def __init__(self, exporter: tuple[str, int]) -> None:
        self.exporter = exporter
        self.active = False
        self.others: list[Any] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "socket.connect":
            address = args[1]
            if not (isinstance(address, tuple) and tuple(address[:2]) == self.exporter):
                self.others.append(address)


def counter_sees_a_connect(counter: ConnectCounter) -> bool:
    """The counter's self-check: a connection to another loopback port is counted."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        counter.others.clear()
        counter.active = True
        try:
            with socket.create_connection(listener.getsockname(), timeout=2):
                pass
        finally:
            counter.active = False
    seen = len(counter.others) == 1
    counter.others.clear()
    return seen


def measure(runners: int, scrapes: int, counter: ConnectCounter, port: int) -> dict[str, Any]:
    """Scrape ``scrapes`` times; return the figures."""
    url = f"http://127.0.0.1:{port}/metrics"
    seconds: list[float] = []
    size = 0
    counter.others.clear()
    counter.active = True
    try:
        for _ in range(scrapes):
            began = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                size = len(response.read())
            seconds.append(time.perf_counter() - began)
    finally:
        counter.active = False
    return {
        "runners": runners,
        "scrapes": scrapes,
        "ms_median": round(1000 * (median(seconds) or 0), 3),
        "ms_p95": round(1000 * (percentile(seconds, 95) or 0), 3),
        "bytes": size,
        "outbound_connects": len(counter.others),
    }


def main() -> int:
    """Run the benchmark."""
    args = parse_args(__doc__ or "")
    report = Report("scrape_cost", args.small)
    scrapes = 50 if args.small else 500
    table = report.table(
        "one scrape of /metrics", "runners", "ms median", "ms p95", "bytes", "other connects"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="scrape-cost-") as work:
        for runners in (8, 40):
            path = Path(work) / str(runners) / STATE_FILE_NAME
            feed_state(path, runners)
            port = free_port()
            stop = threading.Event()
            thread = threading.Thread(target=serve, args=("127.0.0.1", port, path, stop))
            thread.start()
            try:
                for _ in range(50):  # the server is up once it answers
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                            break
                    except OSError:
                        time.sleep(0.05)
                counter = ConnectCounter(("127.0.0.1", port))
                report.check(counter_sees_a_connect(counter), "the connect counter is blind")
                before = requests_recorded(path)
                result = measure(runners, scrapes, counter, port)
                result["github_requests"] = requests_recorded(path) - before
            finally:
                stop.set()
                thread.join(timeout=10)
            results.append(result)
            table.add_row(
                str(runners),
                fmt(result["ms_median"], " ms"),
                fmt(result["ms_p95"], " ms"),
                str(result["bytes"]),
                str(result["outbound_connects"]),
            )
            report.check(
                result["outbound_connects"] == 0,
                f"a scrape at {runners} runners opened connections: {counter.others[:3]}",
            )
            report.check(result["github_requests"] == 0, "a scrape made GitHub requests")
    report.figures["scrapes"] = results
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
