"""The real pre-job script (rendered template, bash + curl + jq) against the real policy app.

The app is served by waitress on 127.0.0.1 in a thread, with a fake GitHub seam; the script
runs on the host with a temporary runner directory and metrics directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import errors
from github_api.types import BranchProtection
from repo_policy.app import PolicyApp
from repo_policy.config import PolicyConfig
from repo_policy.service import BackgroundServer
from repo_policy.tokens import OneTimeTokenStore
from runner_manager import template_environment
from tests.unit.test_repo_policy_decision import RUN, FakeGithub, branch_run, fork, pr_run

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq")), reason="needs bash curl jq"
)


class Service:
    def __init__(self, app: PolicyApp, server: BackgroundServer) -> None:
        self.app = app
        self.url = server.url


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub(
        pulls={7: fork("eve")},
        permissions={"eve": "read"},
        protections={"main": BranchProtection(1)},
        runs={RUN: pr_run(fork("eve"))},
    )


@pytest.fixture
def service(github: FakeGithub) -> Iterator[Service]:
    app = PolicyApp(lambda: "svc", OneTimeTokenStore(), lambda: github, PolicyConfig)
    with BackgroundServer(app, threads=2) as server:
        yield Service(app, server)


def run_prejob(
    tmp_path: Path, url: str | None, token: str | None, env: dict[str, str], payload: Any = None
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    runner_dir, metrics = tmp_path / "runner", tmp_path / "metrics"
    runner_dir.mkdir(exist_ok=True)
    metrics.mkdir(exist_ok=True)
    script = tmp_path / "pre-job.sh"
    script.write_text(
        template_environment()
        .get_template("pre-job.sh.j2")
        .render(runner_dir=str(runner_dir), metrics_dir=str(metrics), repo_policy_url=url)
    )
    if token is not None:
        (runner_dir / ".repo-policy-token").write_text(token)
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(payload if payload is not None else {}))
    full_env = {
        "PATH": os.environ["PATH"],
        "GITHUB_REPOSITORY": "octo/app",
        "GITHUB_WORKFLOW": "ci",
        "GITHUB_RUN_ID": "42",
        "GITHUB_EVENT_PATH": str(event_path),
        **env,
    }
    result = subprocess.run(
        ["bash", str(script)],
        check=False,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, runner_dir, metrics


def pr_env() -> dict[str, str]:
    return {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF": "refs/pull/7/merge",
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_BASE_REF": "main",
        "GITHUB_ACTOR": "eve",
    }


def test_refused_fork_pull_request(tmp_path: Path, service: Service) -> None:
    token = service.app.tokens.issue()
    result, runner_dir, metrics = run_prejob(
        tmp_path, service.url, token, pr_env(), {"pull_request": {"number": 7}}
    )
    assert result.returncode == 1
    assert "::error::Repository policy check refused this job" in result.stderr
    assert "eve has read permission on octo/app" in result.stderr
    assert not (runner_dir / ".repo-policy-token").exists()
    assert not (runner_dir / ".pre-job-running").exists()
    post = json.loads((metrics / "post-job-metrics.json").read_text())
    assert post["status"] == "repo-policy-check-failure"
    assert post["status_info"] == {"code": 403}
    pre = json.loads((metrics / "pre-job-metrics.json").read_text())
    assert pre["event"] == "pull_request" and pre["workflow_run_id"] == 42
    assert token not in result.stdout + result.stderr


def test_allowed_push_and_a_second_use_of_the_token(
    tmp_path: Path, service: Service, github: FakeGithub
) -> None:
    github.runs[RUN] = branch_run("push", "main")
    token = service.app.tokens.issue()
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    result, _, metrics = run_prejob(tmp_path, service.url, token, env)
    assert result.returncode == 0, result.stderr
    assert "Repository policy check passed" in result.stdout
    assert not (metrics / "post-job-metrics.json").exists()
    # The same token again (a runner replaying it): refused as used.
    result, _, metrics = run_prejob(tmp_path, service.url, token, env)
    assert result.returncode == 1
    assert "already used" in result.stderr
    assert (
        json.loads((metrics / "post-job-metrics.json").read_text())["status_info"]["code"] == 403
    )


def test_no_token_file(tmp_path: Path, service: Service) -> None:
    result, _, metrics = run_prejob(tmp_path, service.url, None, {"GITHUB_EVENT_NAME": "push"})
    assert result.returncode == 1 and "holds no policy token" in result.stderr
    assert (
        json.loads((metrics / "post-job-metrics.json").read_text())["status_info"]["code"] == 403
    )


def test_unreachable_service_and_github_errors_say_retry_later(
    tmp_path: Path, service: Service, github: FakeGithub
) -> None:
    result, _, metrics = run_prejob(
        tmp_path, "http://127.0.0.1:9", "t", {"GITHUB_EVENT_NAME": "push"}
    )
    assert result.returncode == 1 and "could not be reached; retry the job later" in result.stderr
    assert (
        json.loads((metrics / "post-job-metrics.json").read_text())["status_info"]["code"] == 503
    )
    github.runs[RUN] = branch_run("push", "main")
    github.fail = errors.GithubApiError("down", status=502)
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    result, _, metrics = run_prejob(tmp_path, service.url, service.app.tokens.issue(), env)
    assert result.returncode == 1 and "retry later" in result.stderr
    assert (
        json.loads((metrics / "post-job-metrics.json").read_text())["status_info"]["code"] == 503
    )


def test_large_payload_and_no_policy_url(tmp_path: Path, service: Service) -> None:
    big = {"pull_request": {"number": 7}, "filler": "x" * 300_000}  # > one argument's limit
    writer = FakeGithub(
        pulls={7: fork("dev")}, permissions={"dev": "write"}, runs={RUN: pr_run(fork("dev"))}
    )
    service.app._github = lambda: writer
    token = service.app.tokens.issue()
    result, _, _ = run_prejob(tmp_path, service.url, token, pr_env(), big)
    assert result.returncode == 0, result.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    result, _, _ = run_prejob(plain, None, None, {"GITHUB_EVENT_NAME": "push"})
    assert result.returncode == 0 and "policy" not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
@pytest.mark.parametrize("url", [None, "http://127.0.0.1:8291"])
def test_rendered_script_passes_shellcheck(tmp_path: Path, url: str | None) -> None:
    script = tmp_path / "pre-job.sh"
    script.write_text(
        template_environment()
        .get_template("pre-job.sh.j2")
        .render(runner_dir="/home/ubuntu/actions-runner", metrics_dir="/m", repo_policy_url=url)
    )
    result = subprocess.run(
        ["shellcheck", str(script)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
