"""The typed control client, against a live sandbox."""

from __future__ import annotations

import threading

import pytest
import requests

from sandbox.control_client import ControlError, SandboxControl
from sandbox.server import SandboxServer
from sandbox.state import Scope
from tests.sandbox.sandbox_testlib import REPO_API


def test_control_client_round_trip(sandbox: SandboxServer, admin: requests.Session) -> None:
    control = SandboxControl(sandbox.base_url)
    job = control.queue_job("canonical/demo", ["self-hosted"], ["true"], workflow="wf")
    assert job["status"] == "queued" and job["workflow_name"] == "wf"
    assert [j["id"] for j in control.jobs("queued")] == [job["id"]]

    runner = sandbox.state.register_runner(Scope("repo", "canonical/demo"), "c1", [], jit=True)
    assert control.runners()[0]["scope"] == {"kind": "repo", "name": "canonical/demo"}

    def finish() -> None:
        picked = sandbox.state.try_assign(runner)
        assert picked is not None
        sandbox.state.complete_job(runner, picked, "success")

    timer = threading.Timer(0.2, finish)
    timer.start()
    done = control.wait_job(job["id"], timeout=5)
    timer.join()
    assert done["conclusion"] == "success"
    assert set(done["events"]) == {"queued", "in_progress", "completed"}
    with pytest.raises(TimeoutError):
        control.wait_job(control.queue_job("canonical/demo", ["x"], [])["id"], timeout=0.2)

    control.add_fault(status=503, count=1)
    assert admin.get(f"{sandbox.api_url}{REPO_API}").status_code == 503
    control.clear_faults()
    control.add_token("extra", "readonly")
    assert control.revoke_token("extra") and not control.revoke_token("extra")
    assert control.stats()["requests"]["GET /repos/{owner}/{repo}/actions/runners"] == 1
    control.reset_stats()
    control.set_runner_version("2.340.1")
    assert sandbox.state.runner_version == "2.340.1"
    with pytest.raises(ControlError) as info:
        control.set_runner_version("nope")
    assert info.value.status == 422
    with pytest.raises(ControlError) as info:
        control.job(424242)
    assert info.value.status == 404


def test_control_client_unreachable() -> None:
    with pytest.raises(ControlError) as info:
        SandboxControl("http://127.0.0.1:9", timeout=1).stats()
    assert info.value.status == 0
    with pytest.raises(ValueError, match="http"):
        SandboxControl("file:///etc/passwd")


def test_reset(sandbox: SandboxServer, admin: requests.Session) -> None:
    control = SandboxControl(sandbox.base_url)
    sandbox.state.register_runner(Scope("repo", "canonical/demo"), "gone", [], jit=True)
    queued = control.queue_job("canonical/demo", ["self-hosted"], [])
    assert control.jobs("queued")[0]["id"] == queued["id"]
    control.add_fault(status=500, path_regex="nothing-matches")
    admin.get(f"{sandbox.api_url}{REPO_API}")
    assert requests.post(f"{sandbox.base_url}/_sandbox/reset", timeout=5).status_code == 204
    assert control.jobs() == [] and control.runners() == []
    assert requests.get(f"{sandbox.base_url}/_sandbox/faults", timeout=5).json() == []
    assert "GET /repos/{owner}/{repo}/actions/runners" not in control.stats()["requests"]
    assert control.queue_job("canonical/demo", ["self-hosted"], [])["id"] > queued["id"]
