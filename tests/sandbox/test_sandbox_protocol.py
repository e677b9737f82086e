"""The private runner protocol's error paths (the runner app covers the happy ones)."""

from __future__ import annotations

from typing import Any

import requests

from sandbox.server import SandboxServer
from sandbox.state import Scope
from tests.sandbox.sandbox_testlib import REPO_API


def _post(sandbox: SandboxServer, path: str, auth: str, body: Any = None) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/_runner{path}",
        json=body if body is not None else {},
        headers={"Authorization": auth} if auth else {},
        timeout=5,
    )


def test_registration_errors(sandbox: SandboxServer, admin: requests.Session) -> None:
    token = admin.post(f"{sandbox.api_url}{REPO_API}/registration-token").json()["token"]
    remove = admin.post(f"{sandbox.api_url}{REPO_API}/remove-token").json()["token"]
    auth = f"RemoteAuth {token}"
    body = {"url_path": "/canonical/demo", "name": "p1", "labels": ["a"]}
    assert _post(sandbox, "/register", "", body).status_code == 401
    assert _post(sandbox, "/register", f"RemoteAuth {remove}", body).status_code == 401
    assert _post(sandbox, "/register", auth, {**body, "url_path": "/other/x"}).status_code == 403
    assert _post(sandbox, "/register", auth, {**body, "url_path": "/a/b/c"}).status_code == 422
    assert _post(sandbox, "/register", auth, {**body, "name": ""}).status_code == 422
    assert _post(sandbox, "/register", auth, {**body, "labels": [1]}).status_code == 422
    created = _post(sandbox, "/register", auth, body)
    assert created.status_code == 201
    assert _post(sandbox, "/register", auth, body).status_code == 409
    replaced = _post(sandbox, "/register", auth, {**body, "replace": True})
    assert replaced.status_code == 201
    assert replaced.json()[".runner"]["agentId"] != created.json()[".runner"]["agentId"]

    org_token = admin.post(
        f"{sandbox.api_url}/orgs/canonical/actions/runners/registration-token"
    ).json()["token"]
    org_body = {"url_path": "/canonical", "name": "o1", "labels": [], "runner_group": "nope"}
    assert _post(sandbox, "/register", f"RemoteAuth {org_token}", org_body).status_code == 404

    runner_id = replaced.json()[".runner"]["agentId"]
    assert _post(sandbox, "/deregister", f"RemoteAuth {remove}", {}).status_code == 422
    gone = _post(sandbox, "/deregister", f"RemoteAuth {remove}", {"runner_id": runner_id})
    assert gone.status_code == 204
    again = _post(sandbox, "/deregister", f"RemoteAuth {remove}", {"runner_id": runner_id})
    assert again.status_code == 404


def test_runner_call_errors(sandbox: SandboxServer) -> None:
    runner = sandbox.state.register_runner(Scope("repo", "canonical/demo"), "p2", [], jit=True)
    auth = f"RunnerCredential {runner.credential}"
    assert _post(sandbox, "/connect", "RunnerCredential nope").status_code == 401
    assert _post(sandbox, "/connect", "Bearer x").status_code == 401
    assert _post(sandbox, "/poll?wait=abc", auth).status_code == 400
    assert _post(sandbox, "/poll?wait=0", auth).status_code == 204
    assert _post(sandbox, "/jobs/1/log", auth, {"text": "x"}).status_code == 404
    assert _post(sandbox, "/jobs/x/log", auth, {"text": "x"}).status_code == 404
    bad_json = requests.post(
        f"{sandbox.base_url}/_runner/connect",
        data=b"{not json",
        headers={"Authorization": auth},
        timeout=5,
    )
    assert bad_json.status_code == 400

    job = sandbox.state.queue_job("canonical/demo", ["self-hosted"], ["true"])
    polled = _post(sandbox, "/poll?wait=1", auth)
    assert polled.status_code == 200 and polled.json()["id"] == job.id
    base = f"/jobs/{job.id}"
    assert _post(sandbox, f"{base}/log", auth, {"text": 5}).status_code == 422
    assert _post(sandbox, f"{base}/steps", auth, {"number": 1}).status_code == 422
    step = {"number": 1, "name": "s", "status": "done"}
    assert _post(sandbox, f"{base}/steps", auth, step).status_code == 422
    step = {"number": 1, "name": "s", "status": "completed", "conclusion": 3}
    assert _post(sandbox, f"{base}/steps", auth, step).status_code == 422
    assert _post(sandbox, f"{base}/complete", auth, {"conclusion": "meh"}).status_code == 422
    assert _post(sandbox, "/heartbeat", auth).json() == {
        "busy": True,
        "job_id": job.id,
        "cancel": False,
    }
    assert _post(sandbox, f"{base}/complete", auth, {"conclusion": "success"}).json() == {
        "deleted": True
    }
    assert _post(sandbox, "/heartbeat", auth).status_code == 401
