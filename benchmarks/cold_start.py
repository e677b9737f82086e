#!/usr/bin/env python3
"""Where the time of one cold runner start goes (profile of Runner.create, then online, then job).

Creates runners one at a time through the charm's RunnerManager (``create_runners(1)``) on the
real LXD daemon with the sandbox GitHub, first launching each from the image, then cloning each
from the runner template (``RunnerManagerSettings.clone_from_template``), and times every phase
of ``Runner.create`` by wrapping its steps (launch = LXD create + start, readiness wait,
metrics store, binary check, file pushes, JIT registration, runner start, "created" mark),
then the time until the sandbox sees the runner online, then until a queued job starts on it.

    python benchmarks/cold_start.py [--json] [--small] [--runs N]
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import runner
from artifacts import runner_image
from benchmarks._lib.bench import (
    Report,
    drop_caches,
    fmt,
    force_delete_instances,
    lxd_instances,
    median,
    parse_args,
)
from harness.local import RESOURCES, TEST_IMAGE, LocalEnvironment, LocalOptions
from lxd import instance as lxd_instance
from runner_manager_type import LXDFlushMode

APP = "bench-cold"
TEST = TEST_IMAGE
PHASES = (
    ("launch", "LXD create + start (Runner._launch)"),
    ("create_api", "  of which POST /instances (image or copy)"),
    ("start_api", "  of which start"),
    ("wait_ready", "readiness wait (systemctl is-system-running)"),
    ("metrics", "metrics store + disk device"),
    ("binary", "runner binary check/install"),
    ("push_files", "env, pre-job, start scripts pushed"),
    ("register", "JIT config from GitHub + push"),
    ("start", "runner started (systemd-run)"),
    ("mark", "'created' mark in LXD config"),
)

_times: dict[str, dict[str, float]] = defaultdict(dict)
MISSING: list[str] = []
_local = threading.local()


def _timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            name = getattr(_local, "runner", None)
            if name is not None:
                bucket = _times[name]
                bucket[phase] = bucket.get(phase, 0.0) + time.perf_counter() - began

    return wrapper


def instrument() -> None:
    """Wrap the steps of Runner.create (and the LXD calls inside launch) with timers."""
    original_create = runner.Runner.create

    @functools.wraps(original_create)
    def create(self: runner.Runner, config: Any) -> None:
        _local.runner = self.config.name
        began = time.perf_counter()
        try:
            original_create(self, config)
        finally:
            _times[self.config.name]["total"] = time.perf_counter() - began
            _local.runner = None

    runner.Runner.create = create  # type: ignore[method-assign]
    # The steps are private methods: a renamed one is skipped (and reported), not an error.
    for owner, attr, phase in (
        (runner.Runner, "_launch", "launch"),
        (runner.Runner, "_mount_metrics", "metrics"),
        (runner.Runner, "_install_binary", "binary"),
        (runner.Runner, "_push_files", "push_files"),
        (runner.Runner, "_register", "register"),
        (runner.Runner, "_start", "start"),
        (lxd_instance.LxdInstance, "wait_ready", "wait_ready"),
        (lxd_instance.LxdInstance, "start", "start_api"),
        (lxd_instance.LxdInstance, "set_config", "mark"),
    ):
        if callable(getattr(owner, attr, None)):
            setattr(owner, attr, _timed(phase, getattr(owner, attr)))
        else:
            MISSING.append(f"{owner.__name__}.{attr}")
    client_cls = __import__("lxd.transport", fromlist=["LxdTransport"]).LxdTransport
    original_run = client_cls.run_operation

    @functools.wraps(original_run)
    def run_operation(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        if method == "post" and path == "instances":
            return _timed("create_api", original_run)(self, method, path, **kwargs)
        return original_run(self, method, path, **kwargs)

    client_cls.run_operation = run_operation


def wait_for(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Poll every 50 ms; seconds until the predicate held, or None on timeout."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if predicate():
            return time.perf_counter() - began
        time.sleep(0.05)
    return None


def online(env: LocalEnvironment, name: str) -> bool:
    """Whether the sandbox shows the runner online (control API: no GitHub API call counted)."""
    return any(
        r["name"] == name and r["status"] == "online" for r in env.control("GET", "/runners")
    )


def one_run(env: LocalEnvironment, report: Report) -> dict[str, float]:
    """Create one runner, wait for it online, run a job on it, flush; the phase times."""
    began = time.perf_counter()
    (name,) = env.manager.create_runners(1, RESOURCES)
    created = time.perf_counter() - began
    to_online = wait_for(lambda n=name: online(env, n), 60)
    job = env.queue_job(["true"])
    started = wait_for(lambda j=job: env.job(j["id"])["status"] != "queued", 60)
    row = dict(_times[name])
    row.update(
        created=created,
        online=(created + to_online) if to_online is not None else float("nan"),
        online_after_create=to_online if to_online is not None else float("nan"),
        job_pickup=started if started is not None else float("nan"),
    )
    report.check(to_online is not None, f"{name} never came online")
    report.check(started is not None, f"job on {name} never started")
    env.wait_jobs([job["id"]], 60)
    env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    return row


def main() -> int:
    """Run the profile; exit 0 unless a runner failed or an instance leaked."""
    args = parse_args(__doc__ or "", [("--runs", {"type": int, "default": 0})])
    runs = args.runs or (2 if args.small else 7)
    report = Report("cold_start", args.small)
    instrument()
    caches_dropped = drop_caches()
    rows: dict[str, list[dict[str, float]]] = {"image": [], "template": []}
    template_s = None
    options = LocalOptions(app_name=APP, repo="octo/bench", labels=("bench",), metrics=True)
    try:
        with LocalEnvironment(options) as env:
            for launch, launch_rows in rows.items():
                env.options.settings = {"clone_from_template": launch == "template"}
                env.manager = env.build_manager()
                if launch == "template":  # made once per image generation: timed apart
                    began = time.perf_counter()
                    generation = runner_image.image_generation(env.manager._clients.lxd, TEST)
                    made = env.manager._template(TEST, generation)
                    template_s = time.perf_counter() - began
                    report.check(made is not None, "the runner template could not be made")
                for _ in range(runs):
                    launch_rows.append(one_run(env, report))
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    finally:
        leaked = force_delete_instances(f"{APP}-") + force_delete_instances(f"grt-{APP}-")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    report.check(not [n for n in leaked if not n.startswith("grt-")], f"left behind: {leaked}")

    table = report.table(
        f"cold runner start, {runs} runs one at a time per launch mode (medians, min-max; "
        f"caches dropped: {caches_dropped}; template made once in "
        f"{template_s if template_s is None else round(template_s, 1)} s)",
        "phase",
        "image: median s",
        "min-max",
        "template: median s",
        "min-max",
    )
    figures: dict[str, Any] = {"image": {}, "template": {}}
    for key, label in (
        *PHASES,
        ("total", "Runner.create total"),
        ("created", "create_runners(1) returned"),
        ("online_after_create", "create -> online in the sandbox"),
        ("online", "call -> runner online"),
        ("job_pickup", "job queued on an online runner -> started"),
    ):
        cells = [label]
        for launch, launch_rows in rows.items():
            values = [r[key] for r in launch_rows if key in r and r[key] == r[key]]
            best = median(values)
            figures[launch][key] = round(best, 3) if best is not None else None
            spread = f"{min(values):.2f}-{max(values):.2f}" if values else "-"
            cells += [fmt(best), spread]
        table.add_row(*cells)
    report.figures.update(
        runs=runs,
        caches_dropped=caches_dropped,
        phases_median_s=figures,
        template_made_s=template_s,
        not_instrumented=MISSING,
    )
    if MISSING:
        print(f"not instrumented (renamed?): {', '.join(MISSING)}")
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
