"""Reactive mode end to end: jobs on a real RabbitMQ queue get runners on real LXD.

The RunnerManager's reconcile keeps consumer processes (reactive.runner); each takes a message,
creates one runner through the RunnerManager, and acks once the sandbox shows the job taken.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config.state import ReactiveConfig
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from reactive import runner_manager as reactive_processes
from reactive.consumer import publish_job, queue_size
from reactive.pool import reactive_runner_config
from runner_manager_type import LXDFlushMode

pytestmark = [
    *[pytest.mark.lxd, pytest.mark.broker],
    pytest.mark.usefixtures("lxd_client", "broker"),
]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def env(testnet: TestNet) -> Iterator[LocalEnvironment]:
    options = LocalOptions(app_name="rx", repo="octo/rx", labels=("rx",))
    with LocalEnvironment(options, testnet=testnet) as local:
        queue = f"rx-{secrets.token_hex(3)}"
        local.manager = local.build_manager(
            reactive_config=ReactiveConfig(mq_uri=SecretStr(BROKER), queue_name=queue)
        )
        yield local
        config = reactive_runner_config(local.manager.config, local.manager.settings)
        assert config is not None
        reactive_processes.reconcile(0, config, drain=False)
        assert reactive_processes.list_processes(config.pid_dir) == []


def test_queued_jobs_get_runners_and_complete(
    env: LocalEnvironment, request: pytest.FixtureRequest
) -> None:
    config = reactive_runner_config(env.manager.config, env.manager.settings)
    assert config is not None
    # Reactive reconcile with no runner: no runner is created, 3 consumers are started.
    assert env.manager.reconcile(3, RESOURCES) == 0
    assert env.instances() == []
    assert len(reactive_processes.list_processes(config.pid_dir)) == 3
    began = time.monotonic()
    jobs = []
    for n in range(5):
        job = env.queue_job([f"echo reactive-{n}"], labels=("self-hosted", "rx"))
        publish_job(
            BROKER, config.queue_name, json.dumps({"labels": job["labels"], "url": job["url"]})
        )
        jobs.append(job["id"])
    done = env.wait_jobs(jobs, 240)
    elapsed = time.monotonic() - began
    assert [j["conclusion"] for j in done] == ["success"] * 5, [j.get("log") for j in done]
    for n, job in enumerate(done):
        assert f"reactive-{n}" in job["log"]
    assert len({j["runner_name"] for j in done}) == 5, "one fresh runner per job"
    waits = sorted(
        (
            time.mktime(time.strptime(j["started_at"], "%Y-%m-%dT%H:%M:%SZ"))
            - time.mktime(time.strptime(j["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
        )
        for j in done
    )
    print(f"\n5 reactive jobs done in {elapsed:.1f} s; queued->started (1 s resolution): {waits}")
    assert queue_size(BROKER, config.queue_name) == 0


def test_poison_messages_are_dropped_without_runners(env: LocalEnvironment) -> None:
    config = reactive_runner_config(env.manager.config, env.manager.settings)
    assert config is not None
    env.manager.reconcile(1, RESOURCES)
    missing_job = f"{env.sandbox.api_url}/repos/octo/rx/actions/jobs/999999"
    for body in (
        "not json",
        json.dumps({"labels": ["gpu"], "url": missing_job}),
        json.dumps({"labels": ["rx"], "url": missing_job}),
    ):
        publish_job(BROKER, config.queue_name, body)
    deadline = time.monotonic() + 30
    while queue_size(BROKER, config.queue_name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue_size(BROKER, config.queue_name) == 0
    assert env.instances() == []
    assert len(reactive_processes.list_processes(config.pid_dir)) == 1, "no consumer crashed"


def jit_requests(env: LocalEnvironment) -> int:
    stats = env.control("GET", "/stats")
    return sum(
        count
        for route, count in stats["requests"].items()
        if route.endswith("/actions/runners/generate-jitconfig")
    )


def test_sigkilled_consumer_loses_no_job(env: LocalEnvironment) -> None:
    """Kill a consumer while it waits for its job: the job still completes, once."""
    config = reactive_runner_config(env.manager.config, env.manager.settings)
    assert config is not None
    trials = int(os.environ.get("REACTIVE_KILL_TRIALS", "3"))
    for trial in range(trials):
        env.manager.reconcile(1, RESOURCES)
        (consumer,) = reactive_processes.list_processes(config.pid_dir)
        before = jit_requests(env)
        job = env.queue_job([f"echo trial-{trial}"], labels=("self-hosted", "rx"))
        publish_job(
            BROKER, config.queue_name, json.dumps({"labels": job["labels"], "url": job["url"]})
        )
        # The consumer created a runner for the job and now waits for GitHub to show it taken.
        deadline = time.monotonic() + 60
        while jit_requests(env) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jit_requests(env) == before + 1, f"trial {trial}: no runner was created"
        os.killpg(consumer.pid, signal.SIGKILL)
        # The timer's next reconcile replaces the consumer; the message comes back to it.
        env.manager.reconcile(1, RESOURCES)
        (done,) = env.wait_jobs([job["id"]], 120)
        assert done["conclusion"] == "success", f"trial {trial}: {done.get('log')}"
        assert f"trial-{trial}" in done["log"]
        # With virtual-machines=1 the redelivered message waits while the killed consumer's
        # runner runs (consumers = ceiling - runners); the timer's later reconciles start a
        # consumer, which finds the job done and acks the message.
        deadline = time.monotonic() + 90
        while queue_size(BROKER, config.queue_name) and time.monotonic() < deadline:
            env.manager.reconcile(1, RESOURCES)
            time.sleep(1)
        assert queue_size(BROKER, config.queue_name) == 0, f"trial {trial}: message left"
        # At most one more runner: the redelivery spawns only if the job was still queued.
        assert jit_requests(env) - before <= 2, (
            f"trial {trial}: runners spawned twice per delivery"
        )
        reactive_processes.reconcile(0, config, drain=False)
        env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
