"""workflow_job deliveries captured from a running sandbox: GitHub's schema and headers."""

from __future__ import annotations

import json
import re
import time
import uuid
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # installed with openapi-core
import pytest

from sandbox import render
from sandbox.server import SandboxServer
from sandbox.state import Job, Scope, Step
from sandbox.webhooks import verify
from tests.sandbox.webhook_support import (
    SCHEMA_PATH,
    SECRET,
    Received,
    control,
    hooked_sandbox,
    receiver,
    wait_until,
)

HOOKSHOT = re.compile(r"^GitHub-Hookshot/[0-9a-f]{7}$")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _flatten(errors: Any) -> list[str]:
    """Messages of the errors, those inside oneOf/allOf branches included."""
    found = []
    for error in errors:
        if error.context:
            found.extend(_flatten(error.context))
        else:
            path = "/".join(str(p) for p in error.absolute_path)
            found.append(f"{path}: {error.message}")
    return found


def _problems(payload: dict[str, Any]) -> list[str]:
    return _flatten(_validator().iter_errors(payload))


def _run_job(sb: SandboxServer, scope: Scope, repository: str) -> Job:
    """Queue a job and run it through a runner: queued, in_progress, completed."""
    runner = sb.state.register_runner(scope, "w1", ["hooks"])
    job = sb.state.queue_job(repository, ["self-hosted", "hooks"], ["echo hi"], actor="alice")
    assert sb.state.try_assign(runner) is job
    now = time.time()
    sb.state.update_step(job, Step(1, "Run echo hi", "completed", "success", now, now))
    sb.state.complete_job(runner, job, "success")
    return job


def _capture(hook: dict[str, Any] | None, scope: Scope, repository: str) -> list[Received]:
    with receiver() as rx, hooked_sandbox(rx.url) as sb:
        if hook is not None:
            response = control(sb, "POST", "/webhooks/hook", hook)
            assert response.status_code == 200, response.text
        _run_job(sb, scope, repository)
        return list(wait_until(lambda: len(rx.snapshot()) == 3 and rx.snapshot(), what="3"))


CASES = {
    "organization hook": (None, Scope("org", "canonical"), "canonical/demo"),
    "repository hook of an organization's repository": (
        {"hook_target": "repository"},
        Scope("repo", "canonical/demo"),
        "canonical/demo",
    ),
    "repository hook of a user's repository": (
        {"user_accounts": ["Alice"]},
        Scope("repo", "alice/tools"),
        "alice/tools",
    ),
    "GitHub App installation": (
        {"installation_id": 42},
        Scope("org", "canonical"),
        "canonical/demo",
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def captured(request: pytest.FixtureRequest) -> tuple[str, list[Received]]:
    hook, scope, repository = CASES[request.param]
    return request.param, _capture(hook, scope, repository)


def test_captured_deliveries_validate_against_the_schema(
    captured: tuple[str, list[Received]],
) -> None:
    _, received = captured
    assert [r.payload["action"] for r in received] == ["queued", "in_progress", "completed"]
    for delivery in received:
        assert _problems(delivery.payload) == [], delivery.payload["action"]


def test_payload_fields(captured: tuple[str, list[Received]]) -> None:
    case, received = captured
    queued, in_progress, completed = (r.payload for r in received)
    repo = queued["repository"]
    owner = repo["full_name"].split("/")[0]
    user_owned = case == "repository hook of a user's repository"
    assert repo["owner"]["login"] == owner
    assert repo["owner"]["type"] == ("User" if user_owned else "Organization")
    assert ("organization" in queued) is not user_owned
    if not user_owned:
        assert queued["organization"]["login"] == owner
        assert queued["organization"]["id"] == render.stable_id(owner)
    assert queued["sender"]["login"] == "alice"
    if case == "GitHub App installation":
        assert queued["installation"]["id"] == 42 and queued["installation"]["node_id"]
    else:
        assert "installation" not in queued
    job = queued["workflow_job"]
    assert job["labels"] == ["self-hosted", "hooks"]
    assert job["url"].endswith(f"/repos/{repo['full_name']}/actions/jobs/{job['id']}")
    assert job["status"] == "queued" and job["conclusion"] is None and job["runner_id"] is None
    assert in_progress["workflow_job"]["runner_name"] == "w1"
    assert in_progress["workflow_job"]["status"] == "in_progress"
    done = completed["workflow_job"]
    assert done["status"] == "completed" and done["conclusion"] == "success"
    assert done["steps"][0]["name"] == "Run echo hi" and done["completed_at"]
    assert {p["workflow_job"]["id"] for p in (queued, in_progress, completed)} == {job["id"]}
    assert {p["workflow_job"]["run_id"] for p in (queued, in_progress, completed)} == {
        job["run_id"]
    }


def test_headers(captured: tuple[str, list[Received]]) -> None:
    case, received = captured
    ids = set()
    for delivery in received:
        headers = delivery.headers  # the exact spelling GitHub uses
        assert headers["X-GitHub-Event"] == "workflow_job"
        assert str(uuid.UUID(headers["X-GitHub-Delivery"])) == headers["X-GitHub-Delivery"]
        ids.add(headers["X-GitHub-Delivery"])
        assert verify(SECRET, delivery.body, headers["X-Hub-Signature-256"])
        assert HOOKSHOT.match(headers["User-Agent"])
        assert headers["Content-Type"] == "application/json"
        assert int(headers["X-GitHub-Hook-ID"]) > 0
        payload = delivery.payload
        target = (
            "organization"
            if case in ("organization hook", "GitHub App installation")
            else ("repository")
        )
        assert headers["X-GitHub-Hook-Installation-Target-Type"] == target
        expected_id = (
            payload["organization"]["id"]
            if target == "organization"
            else (payload["repository"]["id"])
        )
        assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(expected_id)
    assert len(ids) == 3
    assert len({r.headers["X-GitHub-Hook-ID"] for r in received}) == 1


def test_the_schema_refuses_what_github_would_not_send(
    captured: tuple[str, list[Received]],
) -> None:
    queued, _, completed = (r.payload for r in captured[1])
    broken = json.loads(json.dumps(queued))
    del broken["repository"]["clone_url"]
    broken["workflow_job"]["status"] = "running"
    broken["workflow_job"]["labels"] = "self-hosted"
    problems = " ".join(_problems(broken))
    assert "clone_url" in problems and "running" in problems and "labels" in problems
    unfinished = json.loads(json.dumps(completed))
    unfinished["workflow_job"]["conclusion"] = None
    assert _problems(unfinished)
    assert _problems({**queued, "action": "opened"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"hook_target": "enterprise"}, "hook_target must be one of"),
        ({"user_accounts": "alice"}, "user_accounts must be a list"),
        ({"installation_id": "42"}, "installation_id must be a positive integer"),
        ({"installation_id": 0}, "installation_id must be a positive integer"),
        ({"hook": "repository"}, "unknown field(s) ['hook']"),
    ],
)
def test_bad_hook_configurations_are_422(sandbox: SandboxServer, body: Any, message: str) -> None:
    response = control(sandbox, "POST", "/webhooks/hook", body)
    assert response.status_code == 422 and message in response.json()["message"]


def test_reset_restores_the_default_hook(sandbox: SandboxServer) -> None:
    assert control(sandbox, "POST", "/webhooks/hook", {"installation_id": 3}).status_code == 200
    assert control(sandbox, "GET", "/webhooks/hook").json()["installation_id"] == 3
    control(sandbox, "POST", "/reset")
    assert control(sandbox, "GET", "/webhooks/hook").json() == {
        "hook_target": None,
        "user_accounts": [],
        "installation_id": None,
    }
