"""Reactive mode end to end through the webhook intake, with lost deliveries and a killed intake.

The sandbox (GitHub) delivers ``workflow_job`` webhooks from its test host over the manager link
to a real intake process on the host (``python -m intake --config``), which publishes each queued
job, with broker confirms, to a real RabbitMQ on 127.0.0.1:5672 (a queue of its own). The
reactive consumers the RunnerManager's reconcile keeps (``reactive.runner`` processes) create one
LXD runner per message on the closed test network. 20 % of the deliveries are dropped by the
sandbox (control API, seeded) and the intake is SIGKILLed twice mid-run and restarted (the jobs
queued while it is down get no delivery at all): the reconcile's safety net, sharing the intake's
ledger, enqueues what no webhook brought.

Asserted: every job completes, once, on a runner of its own; one runner creation per job (no job
gets two runners, no runner goes unused); every job is in the ledger; no runner, registration or
message is left. GitHub hands a queued job to any idle runner, so a runner spawned for one job
may take another (one whose webhook was lost): its consumer then requeues its delivery and the
redelivery gets a fresh runner (``Outcome.RUNNER_TAKEN_ELSEWHERE``).
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from harness.intake_process import (
    IntakeProcess,
    flavor_labels,
    free_port,
    link_host_end,
    namespace_of,
    point_webhooks,
    webhook_manager,
)
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from harness.testnet_serve import PublicSandbox
from intake.ledger import JobLedger
from reactive import runner_manager as reactive_processes
from reactive.consumer import queue_size
from reactive.pool import reactive_runner_config

pytestmark = [
    *[pytest.mark.lxd, pytest.mark.broker],
    pytest.mark.usefixtures("lxd_client", "broker"),
]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
JOBS = int(os.environ.get("WEBHOOK_E2E_JOBS", "30"))
CEILING = 5  # virtual-machines: runners + consumers
DROP_RATIO, DROP_SEED = 0.2, 19
GRACE = timedelta(seconds=4)  # the safety net leaves younger queued jobs to their webhook
RECONCILE_EVERY = 2.0  # stands in for the charm's reconcile timer
DOWN_JOBS = 2  # jobs queued while the intake is dead
SPAWNED = re.compile(r"Spawned runner '[^']+' for job '([^']+)'")
SETTLED = re.compile(r"Message (?:ack|reject|requeue) \(([a-z-]+)\)")
JOBS_TIMEOUT = 420  # 2 cores: five LXD runners at a time, each created, run and removed


@pytest.fixture
def env(testnet: TestNet) -> Iterator[LocalEnvironment]:
    options = LocalOptions(app_name="wh", repo="octo/wh", labels=("wh",))
    with LocalEnvironment(options, testnet=testnet) as local:
        yield local
        config = reactive_runner_config(local.manager.config, local.manager.settings)
        if config is not None:
            reactive_processes.reconcile(0, config, drain=False)


class Timer:
    """Reconciles every ``RECONCILE_EVERY`` s in a thread, as the charm's timer would."""

    def __init__(self, env: LocalEnvironment) -> None:
        self.env, self.errors, self.runs = env, list[str](), 0
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="reconcile-timer")

    def __enter__(self) -> Timer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=300)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.env.manager.reconcile(CEILING, RESOURCES)
                self.runs += 1
                self.seconds.append(time.monotonic() - began)
            except Exception as exc:  # reported by the test: a reconcile must never fail
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(RECONCILE_EVERY)


def jit_requests(env: LocalEnvironment) -> int:
    """Runner creations so far: the sandbox's count of JIT configurations handed out."""
    stats = env.control("GET", "/stats")
    return sum(
        count
        for route, count in stats["requests"].items()
        if route.endswith("/actions/runners/generate-jitconfig")
    )


def queued_deliveries(env: LocalEnvironment) -> dict[int, list[dict[str, Any]]]:
    """The sandbox's ``queued`` deliveries, by job id."""
    by_job: dict[int, list[dict[str, Any]]] = {}
    for delivery in env.control("GET", "/webhooks"):
        if delivery["action"] == "queued":
            by_job.setdefault(int(delivery["job_id"]), []).append(delivery)
    return by_job


def wait_delivery_attempts(env: LocalEnvironment, job_ids: list[int], timeout: float) -> None:
    """Wait until the sandbox tried (or dropped) the queued delivery of each job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tried = queued_deliveries(env)
        if all(job_id in tried for job_id in job_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"the sandbox never tried delivering jobs {job_ids}")


def from_consumer_logs(log_dir: Any, pattern: re.Pattern[str]) -> Counter[str]:
    """Count what ``pattern`` captures in the consumers' ``<pid>.log`` files."""
    found: Counter[str] = Counter()
    for log in log_dir.glob("*.log"):
        found.update(pattern.findall(log.read_text(errors="replace")))
    return found


def test_every_job_completes_once_despite_dropped_deliveries_and_a_killed_intake(
    env: LocalEnvironment, testnet: TestNet
) -> None:
    queue = f"wh-{secrets.token_hex(3)}"
    manager = webhook_manager(env, BROKER, queue, grace=GRACE, max_runs=JOBS)
    config = reactive_runner_config(manager.config, manager.settings)
    assert config is not None
    assert isinstance(env.sandbox, PublicSandbox)
    address = link_host_end(testnet, env.sandbox.public_host)
    secret = secrets.token_hex(16)
    intake = IntakeProcess(
        workdir=env.workdir / "intake",
        host=address,
        port=free_port(address),
        secret=secret,
        mq_uri=BROKER,
        flavors=[(queue, flavor_labels(env))],
        ledger=manager.settings.intake_ledger_path,
        api_url=env.sandbox.api_url,
    )
    intake.start()
    point_webhooks(env.sandbox, namespace_of(testnet, env.sandbox.public_host), intake.url, secret)
    env.control("POST", "/webhooks/faults", {"drop_ratio": DROP_RATIO, "seed": DROP_SEED})
    creations_before = jit_requests(env)
    kills = sorted({JOBS // 3, 2 * JOBS // 3})
    jobs: list[int] = []

    def queue_one() -> int:
        job_id = int(env.queue_job([f"echo wh-{len(jobs)}"])["id"])
        jobs.append(job_id)
        return job_id

    began = time.monotonic()
    try:
        with Timer(env) as timer:
            while len(jobs) < JOBS:
                if kills and len(jobs) >= kills[0]:  # mid-run: deliveries may be in flight
                    kills.pop(0)
                    intake.kill()
                    down = [queue_one() for _ in range(DOWN_JOBS)]
                    wait_delivery_attempts(env, down, 30)  # refused: nobody listens
                    intake.start()
                    continue
                queue_one()
                time.sleep(0.2)
            done = env.wait_jobs(jobs, JOBS_TIMEOUT)
            finished = time.monotonic() - began
            # No runner left: the ephemeral runners go after their job, the timer reaps the rest.
            deadline = time.monotonic() + 60
            while (env.instances() or env.registrations()) and time.monotonic() < deadline:
                time.sleep(0.5)
    finally:
        intake.stop()
    creations = jit_requests(env) - creations_before
    deliveries = queued_deliveries(env)
    undelivered = [j for j in jobs if not any(d["status"] == 200 for d in deliveries.get(j, []))]
    took = timer.seconds or [0.0]
    print(
        f"\n{JOBS} jobs through the intake in {finished:.1f} s ({timer.runs} reconciles, "
        f"median {statistics.median(took):.1f} s, max {max(took):.1f} s); "
        f"{creations} runners created; {len(undelivered)} queued deliveries lost "
        f"(dropped or intake down): {undelivered}"
    )
    spawns = from_consumer_logs(config.log_dir, SPAWNED)
    print(f"deliveries settled: {dict(from_consumer_logs(config.log_dir, SETTLED))}")
    assert not timer.errors, timer.errors[:3]
    assert len(jobs) == JOBS
    assert [j["status"] for j in done] == ["completed"] * JOBS, [
        (j["id"], j["status"]) for j in done if j["status"] != "completed"
    ]
    assert [j["conclusion"] for j in done] == ["success"] * JOBS, [j.get("log") for j in done]
    for n, job in enumerate(done):
        assert job["log"].count(f"wh-{n}\n") >= 1, job["log"]
    assert len({j["runner_name"] for j in done}) == JOBS, "each job ran once, on its own runner"
    assert len(undelivered) >= 2 * DOWN_JOBS, "the safety net was not exercised"
    # Runners and jobs pair off: as many runners as jobs, each job on a runner of its own.
    assert creations == JOBS, f"{creations} runners for {JOBS} jobs: a job got two runners"
    assert sum(spawns.values()) == creations, spawns  # the consumers made every runner
    # A delivery whose runner took another job is spawned for again: at most once per swap.
    print(
        f"deliveries spawned for twice (their first runner took another job): "
        f"{sum(1 for n in spawns.values() if n > 1)}"
    )
    ledger = JobLedger(manager.settings.intake_ledger_path)
    assert all(ledger.seen(j) for j in jobs), "a job reached the queue outside the ledger"
    assert intake.starts == 3
    assert env.instances() == [], "runners left behind"
    assert env.registrations() == [], "registrations left behind"
    assert queue_size(BROKER, queue) == 0, "messages left on the queue"
