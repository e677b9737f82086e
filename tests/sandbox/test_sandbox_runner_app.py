"""The emulated runner app, run as real subprocesses from the downloaded tarball."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from sandbox.server import SandboxServer
from tests.sandbox.sandbox_openapi import checked
from tests.sandbox.sandbox_testlib import (
    ADMIN_TOKEN,
    FAST_ENV,
    REPO_API,
    get_job,
    install_runner,
    jit_config,
    queue_job,
    start_runner,
    wait_for,
)


@pytest.fixture
def runner_dir(sandbox: SandboxServer, admin: requests.Session, tmp_path: Path) -> Path:
    return install_runner(sandbox, admin, tmp_path / "actions-runner")


def test_version_and_layout(runner_dir: Path) -> None:
    for name in ("config.sh", "run.sh", "bin/Runner.Listener", "README.md"):
        assert (runner_dir / name).exists(), name
    assert os.access(runner_dir / "run.sh", os.X_OK)
    out = subprocess.run(
        [str(runner_dir / "bin" / "Runner.Listener"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert out.stdout.strip() == "2.330.0"


def test_tarball_is_deterministic_and_versioned(
    sandbox: SandboxServer, admin: requests.Session
) -> None:
    first = admin.get(f"{sandbox.api_url}{REPO_API}/downloads").json()
    again = admin.get(f"{sandbox.api_url}/orgs/canonical/actions/runners/downloads").json()
    assert first == again
    assert {(a["os"], a["architecture"]) for a in first} >= {("linux", "x64"), ("linux", "arm64")}
    changed = requests.post(
        f"{sandbox.base_url}/_sandbox/runner-version", json={"version": "2.331.0"}, timeout=5
    )
    assert changed.json() == {"version": "2.331.0"}
    newer = admin.get(f"{sandbox.api_url}{REPO_API}/downloads").json()
    assert all("2.331.0" in a["filename"] for a in newer)
    assert {a["sha256_checksum"] for a in newer}.isdisjoint({a["sha256_checksum"] for a in first})
    bad = requests.post(
        f"{sandbox.base_url}/_sandbox/runner-version", json={"version": "latest"}, timeout=5
    )
    assert bad.status_code == 422


def test_jit_runner_runs_a_job(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    (runner_dir / "started.sh").write_text(
        'echo "started $GITHUB_REPOSITORY $GITHUB_EVENT_NAME $RUNNER_NAME $FROM_ENV_FILE"\n'
        "python3 -c \"import json,os; print(json.load(open(os.environ['GITHUB_EVENT_PATH']))"
        "['marker'])\"\n"
    )
    (runner_dir / "completed.sh").write_text('echo "completed hook ran"\n')
    (runner_dir / ".env").write_text(
        f"ACTIONS_RUNNER_HOOK_JOB_STARTED={runner_dir / 'started.sh'}\n"
        f"ACTIONS_RUNNER_HOOK_JOB_COMPLETED={runner_dir / 'completed.sh'}\n"
        "FROM_ENV_FILE=dotenv-value\n"
    )
    jit = jit_config(admin, sandbox, "jit-runner")
    runner_id = jit["runner"]["id"]
    proc = start_runner(runner_dir, "--jitconfig", jit["encoded_jit_config"])
    try:
        wait_for(
            lambda: (
                admin.get(f"{sandbox.api_url}{REPO_API}/{runner_id}").json()["status"] == "online"
            ),
            what="runner online",
        )
        runner = admin.get(f"{sandbox.api_url}{REPO_API}/{runner_id}").json()
        assert runner["version"] == "2.330.0" and runner["busy"] is False

        job = queue_job(
            sandbox,
            steps=["echo step-one-output", "echo $GITHUB_SHA > sha.txt && cat sha.txt"],
            event="pull_request",
            event_payload={"marker": "payload-marker", "pull_request": {"head": {"ref": "f"}}},
        )
        assert proc.wait(timeout=20) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["status"] == "completed" and done["conclusion"] == "success", done["log"]
    assert done["runner_name"] == "jit-runner" and done["runner_id"] == runner_id
    assert "started canonical/demo pull_request jit-runner dotenv-value" in done["log"]
    assert "payload-marker" in done["log"]
    assert "step-one-output" in done["log"] and done["head_sha"] in done["log"]
    assert "completed hook ran" in done["log"]
    assert [s["conclusion"] for s in done["steps"]] == ["success"] * 4
    assert done["started_at"] and done["completed_at"]
    assert admin.get(f"{sandbox.api_url}{REPO_API}/{runner_id}").status_code == 404
    api_job = admin.get(done["url"]).json()
    assert api_job["conclusion"] == "success" and api_job["runner_id"] == runner_id
    diag = {p.name.split("_")[0] for p in (runner_dir / "_diag").iterdir()}
    assert diag == {"Runner", "Worker"}


def test_failing_started_hook_fails_job_without_steps(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    (runner_dir / "started.sh").write_text("echo policy says no; exit 3\n")
    (runner_dir / ".env").write_text(
        f"ACTIONS_RUNNER_HOOK_JOB_STARTED={runner_dir / 'started.sh'}\n"
    )
    marker = runner_dir / "step-ran"
    job = queue_job(sandbox, steps=[f"touch {marker}"])
    proc = start_runner(
        runner_dir, "--jitconfig", jit_config(admin, sandbox, "r-hook")["encoded_jit_config"]
    )
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "failure"
    assert not marker.exists()
    assert "policy says no" in done["log"]
    assert [(s["name"][:9], s["conclusion"]) for s in done["steps"]][:2] == [
        ("Set up jo", "failure"),
        ("Run touch", "skipped"),
    ]


def test_failing_step_fails_job_and_skips_the_rest(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    job = queue_job(sandbox, steps=["echo before; false", "echo never"])
    proc = start_runner(
        runner_dir, "--jitconfig", jit_config(admin, sandbox, "r-fail")["encoded_jit_config"]
    )
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "failure"
    assert "before" in done["log"] and "never\n" not in done["log"].replace("echo never", "")
    assert [s["conclusion"] for s in done["steps"]] == ["success", "failure", "skipped", "success"]


def test_label_matching(sandbox: SandboxServer, admin: requests.Session, runner_dir: Path) -> None:
    other_repo = queue_job(sandbox, repository="canonical/elsewhere", steps=["true"])
    wrong_labels = queue_job(sandbox, labels=["self-hosted", "gpu"], steps=["true"])
    mine = queue_job(sandbox, labels=["SELF-HOSTED", "Sandbox", "linux"], steps=["true"])
    proc = start_runner(
        runner_dir, "--jitconfig", jit_config(admin, sandbox, "r-lbl")["encoded_jit_config"]
    )
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert get_job(sandbox, mine["id"])["conclusion"] == "success"
    assert get_job(sandbox, other_repo["id"])["status"] == "queued"
    assert get_job(sandbox, wrong_labels["id"])["status"] == "queued"


def test_config_sh_ephemeral_flow(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    token = admin.post(f"{sandbox.api_url}{REPO_API}/registration-token").json()["token"]
    env = {**os.environ, **FAST_ENV}
    configured = subprocess.run(
        [
            str(runner_dir / "config.sh"),
            "--url",
            f"{sandbox.base_url}/canonical/demo",
            "--token",
            token,
            "--name",
            "cfg-runner",
            "--labels",
            "sandbox,extra",
            "--ephemeral",
            "--unattended",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert configured.returncode == 0, configured.stdout + configured.stderr
    settings = json.loads((runner_dir / ".runner").read_text())
    assert settings["agentName"] == "cfg-runner" and settings["ephemeral"] is True
    assert (runner_dir / ".credentials").stat().st_mode & 0o077 == 0
    assert ADMIN_TOKEN not in (runner_dir / ".credentials").read_text()
    listed = admin.get(f"{sandbox.api_url}{REPO_API}", params={"name": "cfg-runner"}).json()
    labels = {label["name"]: label["type"] for label in listed["runners"][0]["labels"]}
    assert labels["self-hosted"] == "read-only" and labels["extra"] == "custom"

    job = queue_job(sandbox, steps=["echo from-config-runner"])
    proc = start_runner(runner_dir)
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "success" and "from-config-runner" in done["log"]
    assert admin.get(f"{sandbox.api_url}{REPO_API}").json()["total_count"] == 0


def test_config_sh_remove_and_errors(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    env = {**os.environ, **FAST_ENV}
    url = f"{sandbox.base_url}/canonical/demo"

    def config(*args: str, extra_env: dict[str, str] | None = None) -> int:
        result = subprocess.run(
            [str(runner_dir / "config.sh"), *args],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return result.returncode

    assert config("--url", url, "--token", "bogus", "--name", "x") == 1
    token = admin.post(f"{sandbox.api_url}{REPO_API}/registration-token").json()["token"]
    assert config("--url", url, "--token", token, "--name", "keep") == 0
    assert admin.get(f"{sandbox.api_url}{REPO_API}").json()["total_count"] == 1
    assert config("--url", url, "--token", token, "--name", "again") == 1  # already configured
    remove = admin.post(f"{sandbox.api_url}{REPO_API}/remove-token").json()["token"]
    assert config("remove", "--token", remove) == 0
    assert not (runner_dir / ".runner").exists()
    assert admin.get(f"{sandbox.api_url}{REPO_API}").json()["total_count"] == 0
    if os.geteuid() == 0:
        assert (
            config("--url", url, "--token", token, extra_env={"RUNNER_ALLOW_RUNASROOT": ""}) == 1
        )
    unconfigured = start_runner(runner_dir)
    assert unconfigured.wait(timeout=20) == 1


def test_deleted_runner_exits_and_sigterm_stops(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path, tmp_path: Path
) -> None:
    jit = jit_config(admin, sandbox, "to-delete")
    proc = start_runner(runner_dir, "--jitconfig", jit["encoded_jit_config"])
    try:
        url = f"{sandbox.api_url}{REPO_API}/{jit['runner']['id']}"
        wait_for(lambda: admin.get(url).json()["status"] == "online", what="online")
        assert admin.delete(url).status_code == 204
        assert proc.wait(timeout=10) == 1
    finally:
        proc.kill()

    second = tmp_path / "second"
    shutil.copytree(runner_dir, second)
    jit = jit_config(admin, sandbox, "to-stop")
    proc = start_runner(second, "--jitconfig", jit["encoded_jit_config"])
    try:
        url = f"{sandbox.api_url}{REPO_API}/{jit['runner']['id']}"
        wait_for(lambda: admin.get(url).json()["status"] == "online", what="online")
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_unreachable_server_is_retryable_exit(tmp_path: Path) -> None:
    with checked(SandboxServer(token=ADMIN_TOKEN)) as other:
        session = requests.Session()
        session.headers["Authorization"] = f"token {ADMIN_TOKEN}"
        target = install_runner(other, session, tmp_path / "r")
        jit = jit_config(session, other, "gone")
    proc = start_runner(
        target,
        "--jitconfig",
        jit["encoded_jit_config"],
        env={"SANDBOX_RUNNER_UNREACHABLE_TIMEOUT": "1"},
    )
    try:
        assert proc.wait(timeout=20) == 2
    finally:
        proc.kill()


def test_jitconfig_from_env_input(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    """ACTIONS_RUNNER_INPUT_JITCONFIG keeps the config out of argv and out of the job's env."""
    jit = jit_config(admin, sandbox, "env-input")
    job = queue_job(sandbox, steps=["env | grep -c ACTIONS_RUNNER_INPUT_ || true"])
    proc = start_runner(
        runner_dir, env={"ACTIONS_RUNNER_INPUT_JITCONFIG": jit["encoded_jit_config"]}
    )
    try:
        assert proc.wait(timeout=20) == 0
        output = proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
    assert "Listening for Jobs" in output
    assert "Running job: build" in output
    assert "Job build completed with result: Succeeded" in output
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "success"
    assert "\n0\n" in done["log"]
    assert jit["encoded_jit_config"] not in done["log"]


def test_sigterm_cancels_a_running_job(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    (runner_dir / "completed.sh").write_text("echo cleanup-ran\n")
    (runner_dir / ".env").write_text(
        f"ACTIONS_RUNNER_HOOK_JOB_COMPLETED={runner_dir / 'completed.sh'}\n"
    )
    job = queue_job(sandbox, steps=["echo long-step-started; sleep 60", "echo never-runs"])
    proc = start_runner(
        runner_dir, "--jitconfig", jit_config(admin, sandbox, "r-cancel")["encoded_jit_config"]
    )
    try:
        wait_for(lambda: "long-step-started" in get_job(sandbox, job["id"])["log"], what="step")
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "cancelled"
    assert "cleanup-ran" in done["log"] and "never-runs\n" not in done["log"]


def test_cancelling_a_running_job(
    sandbox: SandboxServer, admin: requests.Session, runner_dir: Path
) -> None:
    job = queue_job(sandbox, steps=["echo long-step-started; sleep 60"])
    proc = start_runner(
        runner_dir,
        "--jitconfig",
        jit_config(admin, sandbox, "r-server-cancel")["encoded_jit_config"],
    )
    try:
        wait_for(lambda: "long-step-started" in get_job(sandbox, job["id"])["log"], what="step")
        cancel = requests.post(f"{sandbox.base_url}/_sandbox/jobs/{job['id']}/cancel", timeout=5)
        assert cancel.status_code == 200
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "cancelled"
    again = requests.post(f"{sandbox.base_url}/_sandbox/jobs/{job['id']}/cancel", timeout=5)
    assert again.status_code == 422
