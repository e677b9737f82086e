"""Runner and RunnerManager on the real LXD daemon with the sandbox GitHub (test mode).

Runners are containers from the locally built test image with a NIC on the closed test network
(the session's ``testnet``); the sandbox serves in a test host. Every test ends with no instance
and no registration left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import errors
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from lxd.client import LxdClient
from runner import CreateRunnerConfig, Runner
from runner_manager_type import LXDFlushMode
from runner_type import RunnerStatus

pytestmark = [pytest.mark.lxd, pytest.mark.usefixtures("lxd_client")]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def env(request: pytest.FixtureRequest, testnet: TestNet) -> Iterator[LocalEnvironment]:
    # A killed busy runner is released by GitHub only later: don't wait for it in tests.
    options = LocalOptions(
        app_name="it", repo="octo/it", metrics=True, settings={"busy_delete_wait": 2.0}
    )
    with LocalEnvironment(options, testnet=testnet) as local:
        yield local
        local.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        assert local.instances() == [], "an instance leaked"


def test_one_runner_runs_one_job_and_goes_away(
    env: LocalEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_log = tmp_path / "github-runner-metrics.log"
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(metrics_log))
    began = time.monotonic()
    assert env.manager.reconcile(1, RESOURCES) == 1
    created = time.monotonic() - began
    env.wait_online(1, 60)
    print(f"\ncreate {created:.2f} s, create-to-online {time.monotonic() - began:.2f} s")
    (name,) = env.instances()
    job = env.queue_job(["echo marker-$((6 * 7))", "test -w /metrics-exchange"])
    (done,) = env.wait_jobs([job["id"]], 90)
    assert done["status"] == "completed", done
    assert done["conclusion"] == "success", done.get("log")
    assert "marker-42" in done["log"]
    assert done["runner_name"] == name
    wait_for(lambda: name not in env.instances(), 60, "the ephemeral instance to go away")
    store = env.manager.settings.metrics_storage_dir / name
    pre_job = json.loads((store / "pre-job-metrics.json").read_text())
    assert pre_job["repository"] == "octo/it" and pre_job["event"] == "push"
    post_job = json.loads((store / "post-job-metrics.json").read_text())
    assert post_job["status"] == "normal"
    # The next reconcile turns the store into events and deletes it.
    env.manager.reconcile(0, RESOURCES)
    assert not store.exists()
    events = {e["event"]: e for e in map(json.loads, metrics_log.read_text().splitlines())}
    assert set(events) == {"runner_installed", "runner_start", "runner_stop", "reconciliation"}
    start, stop = events["runner_start"], events["runner_stop"]
    assert (start["repo"], start["github_event"], start["flavor"]) == ("octo/it", "push", "it")
    queued = datetime.fromisoformat(done["created_at"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
    assert start["queue_duration"] == (started - queued).total_seconds()
    assert (stop["status"], stop["job_conclusion"]) == ("normal", "success")
    assert stop["job_duration"] >= 0


def test_reconcile_scales_up_and_down(env: LocalEnvironment) -> None:
    assert env.manager.reconcile(3, RESOURCES) == 3
    env.wait_online(3, 60)
    assert len(env.instances()) == 3 and len(env.registrations()) == 3
    assert env.manager.reconcile(1, RESOURCES) == -2
    assert len(env.instances()) == 1 and len(env.registrations()) == 1
    assert env.manager.reconcile(0, RESOURCES) == -1
    assert env.instances() == [] and env.registrations() == []


def busy_runner(env: LocalEnvironment) -> str:
    job = env.queue_job(["sleep 120"])
    wait_for(lambda: env.job(job["id"])["status"] == "in_progress", 30, "the job to start")
    return str(env.job(job["id"])["runner_name"])


@pytest.mark.parametrize(
    ("mode", "busy_left"),
    [
        (LXDFlushMode.FLUSH_IDLE, True),
        (LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK, True),
        (LXDFlushMode.FLUSH_BUSY, False),
        (LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK, False),
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, False),
    ],
)
def test_flush_modes_with_idle_and_busy_runners(
    env: LocalEnvironment, mode: LXDFlushMode, busy_left: bool
) -> None:
    env.manager.reconcile(2, RESOURCES)
    env.wait_online(2, 60)
    busy = busy_runner(env)
    flushed = env.manager.flush(mode)
    assert flushed == (1 if busy_left else 2)
    assert env.instances() == ([busy] if busy_left else [])


def test_remove_when_either_side_is_already_gone(env: LocalEnvironment) -> None:
    env.manager.reconcile(2, RESOURCES)
    env.wait_online(2, 60)
    first, second = env.instances()
    infos = {r.name: r for r in env.manager._clients.github.list_runners(env.state.path, "it-")}
    clients, settings = env.manager._clients, env.manager.settings
    config = env.manager._runner_config(first, "")
    # The instance is already gone: remove() deregisters on GitHub and succeeds.
    clients.lxd.get(first).delete()
    Runner(
        clients, config, RunnerStatus(runner_id=infos[first].id, exist=True), settings=settings
    ).remove(None)
    # The GitHub record is already gone: remove() deletes the instance and succeeds.
    clients.github.delete_runner(env.state.path, infos[second].id, second)
    instance = clients.lxd.get(second)
    config = env.manager._runner_config(second, "")
    Runner(
        clients,
        config,
        RunnerStatus(runner_id=infos[second].id, exist=True),
        instance,
        settings=settings,
    ).remove(None)
    assert env.instances() == [] and env.registrations() == []


def test_pull_logs_keeps_the_runner_diagnostics(env: LocalEnvironment) -> None:
    env.manager.reconcile(1, RESOURCES)
    env.wait_online(1, 60)
    (name,) = env.instances()
    clients, settings = env.manager._clients, env.manager.settings
    runner = Runner(
        clients,
        env.manager._runner_config(name, ""),
        RunnerStatus(),
        clients.lxd.get(name),
        settings=settings,
    )
    runner.pull_logs()
    text = (settings.runner_log_dir / f"{name}.log").read_text(errors="replace")
    assert "==> /home/ubuntu/actions-runner/_diag/Runner_" in text, text[:500]


def test_missing_image_gives_one_error_and_leaves_nothing(env: LocalEnvironment) -> None:
    clients, settings = env.manager._clients, env.manager.settings
    runner = Runner(
        clients, env.manager._runner_config("it-0-deadbeef", ""), RunnerStatus(), settings=settings
    )
    with pytest.raises(
        errors.RunnerCreateError, match="runner image 'no-such-image' is not in LXD"
    ):
        runner.create(
            CreateRunnerConfig(
                image="no-such-image",
                resources=RESOURCES,
                binary_path=env.manager.runner_bin_path,
                registration_token="",
                instance_type="container",
            )
        )
    assert env.instances() == [] and env.registrations() == []


def test_invalid_token_is_one_clear_error(env: LocalEnvironment) -> None:
    manager = env.build_manager(token=__import__("pydantic").SecretStr("ghp_wrong"))
    with pytest.raises(errors.GithubTokenError, match="the token is invalid"):
        manager.reconcile(1, RESOURCES)
    assert env.instances() == []


def test_stopped_daemon_is_one_clear_error(tmp_path: Path) -> None:
    client = LxdClient(endpoint=str(tmp_path / "no-such.socket"))
    with pytest.raises(errors.LXDUnavailableError):
        client.list(prefix="it-")


def test_force_flush_with_revoked_token_deletes_instances(env: LocalEnvironment) -> None:
    env.manager.reconcile(2, RESOURCES)
    env.wait_online(2, 60)
    env.control("POST", "/tokens", {"token": env.token, "revoke": True})
    with pytest.raises(errors.GithubTokenError):
        env.manager.flush(LXDFlushMode.FLUSH_IDLE)
    assert env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK) == 2
    assert env.instances() == []
    env.control("POST", "/tokens", {"token": env.token})  # restore, so cleanup can deregister


RECONCILE_CHILD = textwrap.dedent(
    """
    import json, sys
    from harness.local import RESOURCES, LocalEnvironment
    env = LocalEnvironment.attach(json.loads(sys.argv[1]))
    print("ready", flush=True)
    env.manager.reconcile(int(sys.argv[2]), RESOURCES)
    """
)


def test_kill_9_during_reconcile_then_converges(env: LocalEnvironment) -> None:
    trials = int(os.environ.get("KILL_TRIALS", "10"))
    rng = random.Random(20261123)
    spec = json.dumps(env.attach_spec())
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)])
    for trial in range(trials):
        target = rng.choice([0, 1, 2, 3])
        child = subprocess.Popen(
            [sys.executable, "-c", RECONCILE_CHILD, spec, str(target)],
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 3.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        want = rng.choice([0, 1, 2])
        env.manager.reconcile(want, RESOURCES)
        # The next reconcile reaches the wanted count of working runners.
        instances = set(env.instances())
        report = env.manager.last_report
        seen = [(r.name, r.state.value) for r in report.plan.runners] if report.plan else []
        assert len(instances) == want, f"trial {trial}: {instances}; plan saw {seen}; {report}"
        # A JIT registration the killed process had in flight can land after that reconcile
        # listed GitHub: the one after (the timer's next tick) removes it. Nothing leaks for good.
        env.manager.reconcile(want, RESOURCES)
        instances = set(env.instances())
        records = set(env.registrations())
        assert len(instances) == want, f"trial {trial}: {instances}"
        assert records == instances, f"trial {trial}: leaked registrations {records - instances}"
