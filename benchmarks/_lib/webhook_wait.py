"""Job wait through the webhook path: sandbox delivery -> intake -> RabbitMQ -> consumer -> runner.

Used by ``benchmarks/job_wait.py``. The sandbox (in its test host) delivers ``workflow_job``
webhooks to a real intake process on the host (``harness.intake_process``), which publishes the
queued job with broker confirms; the reactive consumers kept by the RunnerManager's reconcile
(every second, standing in for the charm's timer) take it.

- ``webhook``: no warm floor (``base-virtual-machines`` 0): each job waits for a cold runner. The
  next job is queued once the previous runner is gone.
- ``webhook_floor``: ``base-virtual-machines`` 1: a warm runner takes the job; the consumer that
  gets its message sees it taken and spawns nothing; the reconcile replenishes the floor. The next
  job is queued once an idle runner is online again.

Per job: queued -> started (sandbox clock, as the other scenarios) and delivery -> started (the
intake's 200 to the queued delivery -> in_progress, sandbox clock), and runner creations.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from benchmarks._lib.bench import Report, drop_caches
from errors import GithubRunnerError
from harness.local import RESOURCES, LocalEnvironment

CEILING = 2  # virtual-machines: runners + consumers
IDLE_GRACE_S = 60  # reactive_idle_grace of the webhook manager: idle spares live this long


@dataclass
class WebhookWaits:
    """What one webhook scenario measured.

    Attributes:
        queued: Queued -> started, seconds, per job.
        delivered: Delivery answered -> started, seconds, per job.
        creations: Runners created during the scenario (JIT configurations handed out).
    """

    queued: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    creations: int = 0


def _jit_requests(env: LocalEnvironment) -> int:
    stats = env.control("GET", "/stats")
    return sum(
        n for route, n in stats["requests"].items() if route.endswith("/generate-jitconfig")
    )


def _delivered_at(env: LocalEnvironment, job_id: int, timeout: float = 15.0) -> float | None:
    """When the intake answered 200 to the job's queued delivery (sandbox clock), if it did.

    The sandbox records a delivery once the answer came back, which can be after a warm runner
    started the job: wait (bounded) for the record.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in list(env.sandbox.webhooks.deliveries):  # type: ignore[union-attr]
            if delivery.job_id == job_id and delivery.action == "queued":
                return float(delivery.sent_at) if delivery.status == 200 else None
        time.sleep(0.02)
    return None


def _started(env: LocalEnvironment, job_id: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = env.job(job_id).get("event_times") or {}
        if "in_progress" in times:
            return float(times["in_progress"])
        time.sleep(0.05)
    return None


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _keep(env: LocalEnvironment, stop: threading.Event, errors: list[str]) -> None:
    while not stop.is_set():
        try:
            env.manager.reconcile(CEILING, RESOURCES)
        except GithubRunnerError as exc:
            errors.append(str(exc))
        stop.wait(1.0)


def webhook_waits(
    env: LocalEnvironment, mq_uri: str, jobs: int, floor: int, report: Report
) -> WebhookWaits:
    """Measure ``jobs`` jobs, one after the other, through the intake.

    Args:
        env: The environment (its own test network; its manager is replaced, then restored).
        mq_uri: The broker.
        jobs: How many jobs.
        floor: ``base-virtual-machines``.
        report: Where broken invariants go.

    Returns:
        The waits.
    """
    from harness.intake_process import (
        IntakeProcess,
        flavor_labels,
        free_port,
        link_host_end,
        namespace_of,
        point_webhooks,
        webhook_manager,
    )
    from reactive import runner_manager as reactive_processes
    from reactive.pool import reactive_runner_config

    assert env.testnet is not None
    sandbox: Any = env.sandbox
    queue = f"{env.options.app_name}-wh-{uuid.uuid4().hex[:8]}"
    manager = webhook_manager(
        env, mq_uri, queue, grace=timedelta(seconds=IDLE_GRACE_S), base_virtual_machines=floor
    )
    config = reactive_runner_config(manager.config, manager.settings)
    assert config is not None
    address = link_host_end(env.testnet, sandbox.public_host)
    secret = secrets.token_hex(16)
    intake = IntakeProcess(
        workdir=env.workdir / f"intake-{queue}",
        host=address,
        port=free_port(address),
        secret=secret,
        mq_uri=mq_uri,
        flavors=[(queue, flavor_labels(env))],
        ledger=manager.settings.intake_ledger_path,
        api_url=sandbox.api_url,
    )
    intake.start()
    point_webhooks(sandbox, namespace_of(env.testnet, sandbox.public_host), intake.url, secret)
    waits = WebhookWaits()
    stop, errors = threading.Event(), list[str]()
    timer = threading.Thread(target=_keep, args=(env, stop, errors), daemon=True)
    before = _jit_requests(env)
    timer.start()
    try:
        for _ in range(jobs):
            if floor:
                ready = _wait(lambda: _idle_online(env) >= 1, 120)
                report.check(ready, "webhook_floor: no warm runner came online")
            else:
                # A spare runner (made for a job another runner took) is reaped only after the
                # manager's 60 s idle grace: wait past it, or a spare fails the run (seen in CI).
                gone = _wait(lambda: not env.instances(), IDLE_GRACE_S + 60)
                report.check(gone, "webhook: runner left")
                drop_caches()
            job = env.queue_job(["true"])
            started = _started(env, job["id"], 120)
            if not report.check(started is not None, f"webhook job {job['id']} never started"):
                continue
            assert started is not None
            queued_at = float(env.job(job["id"])["event_times"]["queued"])
            waits.queued.append(started - queued_at)
            delivered = _delivered_at(env, job["id"])
            if report.check(delivered is not None, f"job {job['id']}: no delivery answered"):
                waits.delivered.append(started - delivered)  # type: ignore[operator]
            env.wait_jobs([job["id"]], 60)
    finally:
        stop.set()
        timer.join(timeout=300)
        waits.creations = _jit_requests(env) - before
        intake.stop()
        reactive_processes.reconcile(0, config, drain=False)  # teardown: at once
        env.manager = env.build_manager()
    report.check(not errors, f"webhook reconciles failed: {errors[:3]}")
    return waits


def _idle_online(env: LocalEnvironment) -> int:
    return sum(
        1 for r in env.control("GET", "/runners") if r["status"] == "online" and not r["busy"]
    )
