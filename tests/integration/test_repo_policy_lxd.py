"""The pre-job repository policy gate end to end, on real LXD runners.

The sandbox GitHub, the REAL policy service (``repo_policy.service.build_app`` served by waitress
in a test host of the closed test network) and the charm's RunnerManager with ``repo_policy_url``
set to it: runners reach it over their NIC, the manager over the test host's link.

A refused job fails before its first step (the step's output never appears in the job log) and
leaves a ``repo-policy-check-failure`` post-job metric in the runner's metrics store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from lxd.client import LxdClient
from repo_policy.policy import CheckRequest
from repo_policy.service import ServiceFiles, build_app
from runner import Runner
from runner_manager_type import LXDFlushMode

pytestmark = pytest.mark.lxd

REPO = "octo/pol"
SERVICE_TOKEN = "local-service-token"  # what harness.local gives the manager
STEP = "echo step-marker-$((6 * 7))"
MARKER = "step-marker-42"  # only a step that ran prints it (the command text does not hold it)


@dataclass
class Gate:
    """The test-only delay hook: checks by ``actor`` wait until released."""

    actor: str = "slowpoke"
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    released_at: float = 0.0

    def __call__(self, check: CheckRequest) -> None:
        if check.actor == self.actor:
            self.entered.set()
            self.release.wait(timeout=120)
            self.released_at = time.monotonic()


@dataclass
class PolicyService:
    """The real service in a test host, with a record of every answer it gave."""

    url: str
    port: int
    gate: Gate
    answers: list[tuple[str, int]]


@pytest.fixture(scope="module")
def world(
    lxd_client: LxdClient, tmp_path_factory: pytest.TempPathFactory, testnet: TestNet
) -> Iterator[tuple[LocalEnvironment, PolicyService]]:
    options = LocalOptions(
        app_name="pol", repo=REPO, metrics=True, settings={"busy_delete_wait": 2.0}
    )
    with LocalEnvironment(options, testnet=testnet) as env:
        files_dir = tmp_path_factory.mktemp("policy")
        (files_dir / "service-token").write_text(SERVICE_TOKEN)
        (files_dir / "github-token").write_text(env.token)
        (files_dir / "policy.json").write_text(json.dumps({}))  # safe defaults
        gate = Gate()
        app = build_app(
            ServiceFiles(
                token_file=files_dir / "service-token",
                github_token_file=files_dir / "github-token",
                github_api_url=env.sandbox.api_url,
                config_file=files_dir / "policy.json",
                state_file=files_dir / "tokens.json",
            ),
            before_check=gate,
        )
        answers: list[tuple[str, int]] = []

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            def start(status: str, headers: Any) -> Any:
                answers.append((environ.get("PATH_INFO", ""), int(status.split(maxsplit=1)[0])))
                return start_response(status, headers)

            return app(environ, start)

        server = env.serve(recording, threads=6)  # stopped with the environment
        port, url = server.port, server.url
        env.options.settings.update(repo_policy_url=url)
        env.manager = env.build_manager()
        try:
            yield env, PolicyService(url, port, gate, answers)
        finally:
            gate.release.set()
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
    assert not [i.name for i in lxd_client.list(prefix="pol-")], "an instance leaked"


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def read_store(env: LocalEnvironment, runner: str) -> tuple[dict[str, Any], dict[str, Any]]:
    store = env.manager.settings.metrics_storage_dir / runner
    wait_for((store / "post-job-metrics.json").exists, 60, f"{runner}'s post-job metric")
    pre = json.loads((store / "pre-job-metrics.json").read_text())
    post = json.loads((store / "post-job-metrics.json").read_text())
    return pre, post


def pull_request_job(env: LocalEnvironment, author: str, permission: str | None) -> dict[str, Any]:
    if permission is not None:
        body = {"repository": REPO, "username": author, "permission": permission}
        env.control("POST", "/collaborators", body)
    made = env.control(
        "POST",
        "/pulls",
        {"repository": REPO, "author": author, "head_repository": f"{author}/pol"},
    )
    number = made["pull_request"]["number"]
    return env.queue_job(
        [STEP],
        event="pull_request",
        ref=f"refs/pull/{number}/merge",
        head_ref="feature",
        base_ref="main",
        actor=author,
        event_payload=made["event_payload"],
    )


def test_jobs_are_gated_by_event_permission_and_protection(
    world: tuple[LocalEnvironment, PolicyService],
) -> None:
    env, _ = world
    env.control(
        "POST",
        "/branch-protection",
        {"repository": REPO, "branch": "main", "required_approving_review_count": 1},
    )
    assert env.manager.reconcile(4, RESOURCES) == 4
    env.wait_online(4, 90)
    jobs = {
        "stranger-fork": pull_request_job(env, "mallory", "read"),
        "collaborator-fork": pull_request_job(env, "carol", "write"),
        "push-unprotected": env.queue_job([STEP], event="push", ref="refs/heads/dev"),
        "push-protected": env.queue_job([STEP], event="push", ref="refs/heads/main"),
    }
    done = dict(zip(jobs, env.wait_jobs([j["id"] for j in jobs.values()], 180), strict=True))
    for name, job in done.items():
        assert job["status"] == "completed", (name, job)

    allowed = {"collaborator-fork", "push-protected"}
    for name, job in done.items():
        log = job["log"]
        if name in allowed:
            assert job["conclusion"] == "success", (name, log)
            assert MARKER in log and "Repository policy check passed" in log, (name, log)
        else:
            assert job["conclusion"] == "failure", (name, log)
            assert MARKER not in log, f"{name}: a step ran on a refused job:\n{log}"
            assert "Repository policy check refused this job" in log, (name, log)
    assert "mallory has read permission on octo/pol" in done["stranger-fork"]["log"]
    assert "branch 'dev' of octo/pol is not protected" in done["push-unprotected"]["log"]

    for name, job in done.items():
        pre, post = read_store(env, job["runner_name"])
        assert pre["repository"] == REPO
        if name in allowed:
            assert post["status"] == "normal", (name, post)
        else:
            assert post["status"] == "repo-policy-check-failure", (name, post)
            assert post["status_info"] == {"code": 403}
    # Ephemeral runners power off after their job; the next reconcile collects their metrics.
    wait_for(lambda: env.instances() == [], 60, "the ephemeral runners to go away")
    env.manager.reconcile(0, RESOURCES)


def test_the_gate_decides_on_githubs_record_of_the_run(
    world: tuple[LocalEnvironment, PolicyService],
) -> None:
    """A runner whose report lies is decided on GitHub's record; a moved head refuses the job."""
    env, _ = world
    env.control(
        "POST",
        "/branch-protection",
        {"repository": REPO, "branch": "main", "required_approving_review_count": 1},
    )
    env.control(
        "POST", "/collaborators", {"repository": REPO, "username": "oscar", "permission": "read"}
    )
    fork = env.control(
        "POST", "/pulls", {"repository": REPO, "author": "oscar", "head_repository": "oscar/pol"}
    )
    head = fork["pull_request"]["head"]
    # GitHub records run 9100 as oscar's fork pull request; its job tells the runner (and so
    # the runner reports) a push to the protected main branch.
    record = {
        "repository": REPO,
        "run_id": 9100,
        "event": "pull_request",
        "head_branch": head["ref"],
        "head_sha": head["sha"],
        "head_repository": "oscar/pol",
        "head_owner_type": "User",
    }
    env.control("POST", "/runs", record)
    assert env.manager.reconcile(2, RESOURCES) == 2
    env.wait_online(2, 90)
    lying = env.queue_job(
        [STEP],
        event="push",
        ref="refs/heads/main",
        actor="oscar",
        run_id=9100,
        event_payload=fork["event_payload"],
    )
    # A collaborator's fork pull request whose head moved on after the job was queued.
    moved = pull_request_job(env, "carla", "write")
    number = moved["event_payload"]["pull_request"]["number"]
    env.control(
        "POST", "/pulls/head", {"repository": REPO, "number": number, "head_sha": "e" * 40}
    )
    lied, stale = env.wait_jobs([lying["id"], moved["id"]], 120)
    for job in (lied, stale):
        assert job["conclusion"] == "failure", job["log"]
        assert MARKER not in job["log"], job["log"]
    assert "oscar has read permission on octo/pol" in lied["log"], lied["log"]
    assert "GitHub records a pull_request run; the runner reported 'push'" in lied["log"]
    assert "moved since the job's commit" in stale["log"], stale["log"]
    wait_for(lambda: env.instances() == [], 60, "the ephemeral runners to go away")
    env.manager.reconcile(0, RESOURCES)


def test_a_reused_one_time_token_is_refused(world: tuple[LocalEnvironment, PolicyService]) -> None:
    env, service = world
    assert env.manager.reconcile(1, RESOURCES) == 1
    env.wait_online(1, 60)
    (name,) = env.instances()
    instance = env.manager._clients.lxd.get(name)
    token_path = f"{env.manager.settings.runner_dir}/.repo-policy-token"
    token = instance.execute(["cat", token_path], timeout=10).stdout.strip()
    assert len(token) > 40
    job = env.queue_job([STEP], event="push", ref="refs/heads/main")
    (done,) = env.wait_jobs([job["id"]], 90)
    assert done["conclusion"] == "success", done["log"]
    # The runner used its token; presenting it again (from anywhere) is refused.
    body = {"repository": REPO, "event": "push", "ref": "refs/heads/main", "payload": {}}
    reply = requests.post(
        f"{service.url}/check",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 403
    assert reply.json() == {
        "allowed": False,
        "reason": "one-time token already used: each runner checks one job only",
    }
    wait_for(lambda: env.instances() == [], 60, "the ephemeral runner to go away")
    env.manager.reconcile(0, RESOURCES)


def test_busy_flush_waits_for_an_in_flight_check(
    world: tuple[LocalEnvironment, PolicyService],
) -> None:
    env, service = world
    gate = service.gate
    service.answers.clear()
    assert env.manager.reconcile(1, RESOURCES) == 1
    env.wait_online(1, 60)
    (name,) = env.instances()
    job = env.queue_job(["sleep 60"], event="push", ref="refs/heads/main", actor=gate.actor)
    assert gate.entered.wait(60), "the runner's check never reached the service"
    instance = env.manager._clients.lxd.get(name)
    assert Runner.in_pre_job_check(instance, env.manager._clients.repo.checks_in_flight())

    outcome: dict[str, Any] = {}

    def flush() -> None:
        outcome["removed"] = env.manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK)
        outcome["at"] = time.monotonic()

    flusher = threading.Thread(target=flush)
    started = time.monotonic()
    flusher.start()
    time.sleep(4)
    assert flusher.is_alive(), "the flush did not wait for the policy check in flight"
    assert name in env.instances()
    gate.release.set()
    flusher.join(timeout=120)
    assert not flusher.is_alive()
    assert outcome["removed"] == 1
    assert outcome["at"] >= gate.released_at > started + 4
    # The check was answered (allowed) before the runner was removed.
    assert [a for a in service.answers if a[0] == "/check"] == [("/check", 200)]
    assert env.instances() == []
    # The runner went on from the check to its steps before the flush removed it.
    assert env.job(job["id"])["status"] in ("in_progress", "completed")
    env.manager.flush(LXDFlushMode.FLUSH_BUSY)  # the record GitHub kept busy, if any
