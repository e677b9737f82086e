#!/usr/bin/env python3
"""Job wait: job queued (sandbox) -> job started on a runner, warm pool and cold start.

Figures come from the sandbox's own clock (``event_times``: queued, in_progress), p50/p95/max.

- ``warm``: a pool of idle runners kept by the charm's RunnerManager (``reconcile(P)`` in a loop
  every second, standing in for the charm's reconcile timer). A job is queued only while the
  sandbox shows an idle online runner, so each wait is a warm-pool wait.
- ``cold``: no idle runner; the reactive mode. The manager is built with a reactive config
  (RabbitMQ on 127.0.0.1:5672, a queue of its own); its ``reconcile(2)`` starts two consumer
  processes (``reactive.runner``). Each job is queued in the sandbox and published on the queue
  as ``{"labels", "url"}``; a consumer checks it on GitHub, creates one runner through the
  RunnerManager (``create_runners(1)``) and acks once the job is taken. Jobs run one after the
  other, so every wait is a full cold start. ``--in-process`` runs the project's
  ``JobConsumer`` in a thread instead of the consumer processes; ``--no-broker`` (or no broker
  answering) calls ``create_runners(1)`` right after queuing ("create-on-demand").
- ``webhook`` / ``webhook_floor`` (with a broker): the webhook path
  (``benchmarks/_lib/webhook_wait.py``): the sandbox delivers ``workflow_job`` webhooks to a
  real intake process (``python -m intake``) that publishes to RabbitMQ; the consumers take it.
  Without a warm floor (``base-virtual-machines`` 0: a cold runner per job) and with one (1: a
  warm runner takes the job). Reported both as queued -> started (beside the rows above) and as
  delivery -> started (the intake's 200 -> in_progress; negative when a warm runner took the
  job before the intake answered), with runner creations per job.

    python benchmarks/job_wait.py [--json] [--small] [--jobs N] [--pool P]
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from typing import Any

from benchmarks._lib.bench import (
    Report,
    drop_caches,
    fmt,
    force_delete_instances,
    lxd_instances,
    parse_args,
    summary,
)
from benchmarks._lib.webhook_wait import WebhookWaits, webhook_waits
from errors import GithubRunnerError
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from runner_manager_type import LXDFlushMode

APP = "bench-wait"
MQ_URI = "amqp://guest:guest@127.0.0.1:5672//"
WARM_GOAL, COLD_GOAL = 2.0, 10.0


def wait_seconds(job: dict[str, Any]) -> float | None:
    """Queued -> in_progress by the sandbox's clock, or None if the job never started."""
    times = job.get("event_times") or {}
    if "queued" not in times or "in_progress" not in times:
        return None
    return float(times["in_progress"]) - float(times["queued"])


def wait_status(env: LocalEnvironment, job_id: int, timeout: float) -> dict[str, Any]:
    """Poll a job until it left the queue (bounded); return its view."""
    deadline = time.monotonic() + timeout
    while True:
        job = env.job(job_id)
        if job["status"] != "queued" or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def idle_online(env: LocalEnvironment) -> int:
    """Idle online runners the sandbox shows (control API)."""
    return sum(
        1 for r in env.control("GET", "/runners") if r["status"] == "online" and not r["busy"]
    )


def keep_pool(env: LocalEnvironment, size: int, stop: threading.Event, errors: list[str]) -> None:
    """Reconcile the pool every second until told to stop."""
    while not stop.is_set():
        try:
            env.manager.reconcile(size, RESOURCES)
        except GithubRunnerError as exc:
            errors.append(str(exc))
        stop.wait(1.0)


def warm(env: LocalEnvironment, jobs: int, pool: int, report: Report) -> list[float]:
    """Warm-pool waits of ``jobs`` jobs."""
    stop, errors = threading.Event(), []
    worker = threading.Thread(target=keep_pool, args=(env, pool, stop, errors), daemon=True)
    worker.start()
    waits: list[float] = []
    try:
        for _ in range(jobs):
            deadline = time.monotonic() + 120
            while idle_online(env) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            job = env.queue_job(["true"])
            seconds = wait_seconds(wait_status(env, job["id"], 60))
            if report.check(seconds is not None, f"warm job {job['id']} never started"):
                waits.append(seconds)  # type: ignore[arg-type]
    finally:
        stop.set()
        worker.join(timeout=300)
    report.check(not errors, f"warm pool reconciles failed: {errors[:3]}")
    return waits


def broker_up() -> bool:
    """Whether RabbitMQ answers on 127.0.0.1:5672."""
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


class Spawner:
    """The reactive spawner: one runner through the charm's RunnerManager."""

    def __init__(self, env: LocalEnvironment) -> None:
        """Bind to the environment's manager."""
        self.env = env

    def spawn_one(self) -> str:
        """Create one runner; return its name."""
        (name,) = self.env.manager.create_runners(1, RESOURCES)
        return name


def cold_jobs(env: LocalEnvironment, jobs: int, publish: Any, report: Report) -> list[float]:
    """Queue ``jobs`` jobs one after the other, each handed to ``publish``; their waits."""
    waits: list[float] = []
    for _ in range(jobs):
        drop_caches()
        job = env.queue_job(["true"])
        publish(job)
        seconds = wait_seconds(wait_status(env, job["id"], 120))
        if report.check(seconds is not None, f"cold job {job['id']} never started"):
            waits.append(seconds)  # type: ignore[arg-type]
        env.wait_jobs([job["id"]], 60)
        deadline = time.monotonic() + 60  # the ephemeral runner goes away after its job
        while env.instances() and time.monotonic() < deadline:
            time.sleep(0.2)
    return waits


def cold(env: LocalEnvironment, jobs: int, mode: str, report: Report) -> list[float]:
    """Cold-start waits through the reactive path ``mode``."""
    from reactive.consumer import publish_job

    queue_name = f"{APP}-{uuid.uuid4().hex[:8]}"

    def publish(job: dict[str, Any]) -> None:
        message = {"labels": job["labels"], "url": job["url"]}
        publish_job(MQ_URI, queue_name, json.dumps(message))

    if mode == "create-on-demand":
        return cold_jobs(env, jobs, lambda job: env.manager.create_runners(1, RESOURCES), report)
    if mode == "in-process":
        from reactive.consumer import ConsumerSettings, JobConsumer

        labels = {"self-hosted", "linux", "x64", APP, *env.options.labels}
        settings = ConsumerSettings(
            queue_name=queue_name, supported_labels=frozenset(labels), pickup_poll_initial=0.5
        )
        consumer = JobConsumer(MQ_URI, settings, env.manager._clients.github, Spawner(env))
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        try:
            return cold_jobs(env, jobs, publish, report)
        finally:
            consumer.stop()
            thread.join(timeout=60)
            delete_queue(queue_name)
    from pydantic import SecretStr

    from config.state import ReactiveConfig
    from reactive import runner_manager as reactive_processes
    from reactive.pool import reactive_runner_config

    env.manager = env.build_manager(
        reactive_config=ReactiveConfig(mq_uri=SecretStr(MQ_URI), queue_name=queue_name)
    )
    config = reactive_runner_config(env.manager.config, env.manager.settings)
    assert config is not None
    try:
        env.manager.reconcile(2, RESOURCES)  # reactive: starts consumers, creates nothing
        report.check(
            len(reactive_processes.list_processes(config.pid_dir)) == 2, "consumers not started"
        )
        time.sleep(3)  # let the consumer processes import and connect
        return cold_jobs(env, jobs, publish, report)
    finally:
        reactive_processes.reconcile(0, config, drain=False)  # teardown: at once
        delete_queue(queue_name)
        env.manager = env.build_manager()


def delete_queue(name: str) -> None:
    """Remove the benchmark's queue and exchange from the broker."""
    import kombu

    try:
        with kombu.Connection(MQ_URI, connect_timeout=5) as conn:
            channel = conn.channel()
            channel.queue_delete(name)
            channel.exchange_delete(name)
    except Exception as exc:  # cleanup only
        print(f"could not delete queue {name}: {exc}", file=sys.stderr)


def webhook_table(report: Report, hooks: dict[str, WebhookWaits]) -> dict[str, Any]:
    """Print delivery -> started and runner creations of the webhook scenarios."""
    if not hooks:
        return {}
    table = report.table(
        "webhook delivery answered -> job started (s; sandbox clock)",
        "scenario",
        "n",
        "p50",
        "p95",
        "max",
        "min",
        "runners created / job",
    )
    out: dict[str, Any] = {}
    for name, waits in hooks.items():
        row = summary(waits.delivered)
        per_job = waits.creations / len(waits.queued) if waits.queued else None
        out[name] = {**row, "runners_created": waits.creations, "runners_per_job": per_job}
        table.add_row(
            name,
            str(row["n"]),
            fmt(row["p50"]),
            fmt(row["p95"]),
            fmt(row["max"]),
            fmt(row["min"]),
            fmt(per_job),
        )
    return out


def main() -> int:
    """Measure warm and cold job waits; exit 1 if a job never started or anything leaked."""
    args = parse_args(
        __doc__ or "",
        [
            ("--jobs", {"type": int, "default": 0, "help": "jobs per scenario"}),
            ("--pool", {"type": int, "default": 0, "help": "warm pool size"}),
            ("--no-broker", {"action": "store_true", "help": "cold: create-on-demand"}),
            ("--in-process", {"action": "store_true", "help": "cold: consumer in a thread"}),
        ],
    )
    jobs = args.jobs or (3 if args.small else 20)
    pool = args.pool or 2
    if args.no_broker or not broker_up():
        mode = "create-on-demand"
    else:
        mode = "in-process" if args.in_process else "consumer-processes"
    report = Report("job_wait", args.small)
    image = {"clone_from_template": False}  # the template is a scenario of its own
    options = LocalOptions(app_name=APP, repo="octo/bench", labels=("bench",), settings=image)
    try:
        with LocalEnvironment(options) as env:
            warm_waits = warm(env, jobs, pool, report)
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            cold_waits = cold(env, jobs, mode, report)
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.options.settings = {"clone_from_template": True}
            env.manager = env.build_manager()
            template_waits = cold(env, jobs, mode, report)
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            env.options.settings = dict(image)
            env.manager = env.build_manager()
            hooks: dict[str, WebhookWaits] = {}
            if mode != "create-on-demand":
                for name, floor in (("webhook", 0), ("webhook_floor", 1)):
                    hooks[name] = webhook_waits(env, MQ_URI, jobs, floor, report)
                    env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
                    env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    finally:
        leaked = force_delete_instances(f"{APP}-")
        force_delete_instances(f"grt-{APP}-")  # the runner template
    report.check(not leaked, f"instances left behind: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")

    cold_path = {
        "consumer-processes": "reactive: RabbitMQ + 2 consumer processes",
        "in-process": "reactive: RabbitMQ + JobConsumer in a thread",
        "create-on-demand": "create-on-demand (no broker)",
    }[mode]
    figures = {
        "warm": summary(warm_waits),
        "cold": summary(cold_waits),
        "cold_template": summary(template_waits),
        **{name: summary(w.queued) for name, w in hooks.items()},
    }
    table = report.table(
        f"job queued -> started (s; sandbox clock; warm pool {pool}; cold: {cold_path})",
        "scenario",
        "n",
        "p50",
        "p95",
        "max",
        "min",
        "goal p50",
        "met",
    )
    goals = {"warm": WARM_GOAL, "cold": COLD_GOAL, "cold_template": COLD_GOAL}
    goals.update({"webhook": COLD_GOAL, "webhook_floor": WARM_GOAL} if hooks else {})
    for name, goal in goals.items():
        row = figures[name]
        met = row["p50"] is not None and row["p50"] <= goal
        figures[name]["goal_p50_s"] = goal
        figures[name]["met"] = met
        table.add_row(
            name,
            str(row["n"]),
            fmt(row["p50"]),
            fmt(row["p95"]),
            fmt(row["max"]),
            fmt(row["min"]),
            f"<= {goal:g}",
            fmt(met),
        )
    delivery = webhook_table(report, hooks)
    report.figures.update(
        jobs=jobs, pool=pool, cold_path=cold_path, waits=figures, delivery_to_started=delivery
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
