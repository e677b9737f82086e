"""Runner liveness: lost jobs, killed runners going offline, scope restrictions, Python 3.9."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests

from sandbox.server import SandboxServer
from sandbox.state import Scope
from tests.sandbox.sandbox_openapi import checked
from tests.sandbox.sandbox_testlib import (
    ADMIN_TOKEN,
    REPO_API,
    install_runner,
    jit_config,
    queue_job,
    start_runner,
    wait_for,
)


def test_silent_busy_runner_loses_its_job(admin: requests.Session) -> None:
    with checked(SandboxServer(token=ADMIN_TOKEN, lost_timeout=0.3)) as sb:
        runner = sb.state.register_runner(Scope("repo", "canonical/demo"), "silent", [], jit=True)
        job = sb.state.queue_job("canonical/demo", ["self-hosted"], ["sleep 100"])
        assert sb.state.try_assign(runner) is job
        time.sleep(0.5)
        got = admin.get(f"{sb.api_url}/repos/canonical/demo/actions/jobs/{job.id}").json()
        assert got["status"] == "completed" and got["conclusion"] == "failure"
        assert admin.get(f"{sb.api_url}{REPO_API}").json()["total_count"] == 0
        detail = requests.get(f"{sb.base_url}/_sandbox/jobs/{job.id}", timeout=5).json()
        assert "lost communication" in detail["log"]


def test_killed_runner_goes_offline(admin: requests.Session, tmp_path: Path) -> None:
    with checked(SandboxServer(token=ADMIN_TOKEN, online_window=1.0)) as sb:
        runner_dir = install_runner(sb, admin, tmp_path / "r")
        jit = jit_config(admin, sb, "killed")
        url = f"{sb.api_url}{REPO_API}/{jit['runner']['id']}"
        proc = start_runner(runner_dir, "--jitconfig", jit["encoded_jit_config"])
        try:
            wait_for(lambda: admin.get(url).json()["status"] == "online", what="online")
            proc.kill()
            proc.wait(timeout=5)
            # a dropped long poll is noticed within 0.5 s, then online_window (1 s) runs out
            wait_for(lambda: admin.get(url).json()["status"] == "offline", timeout=4, what="off")
        finally:
            proc.kill()
        assert admin.delete(url).status_code == 204


def test_scope_restriction(sandbox: SandboxServer, admin: requests.Session) -> None:
    restrict = requests.post(
        f"{sandbox.base_url}/_sandbox/scopes", json={"allow": ["canonical"]}, timeout=5
    )
    assert restrict.status_code == 200
    assert admin.get(f"{sandbox.api_url}{REPO_API}").status_code == 200
    assert admin.get(f"{sandbox.api_url}/orgs/canonical/actions/runners").status_code == 200
    assert admin.get(f"{sandbox.api_url}/repos/other/x/actions/runners").status_code == 404
    assert admin.get(f"{sandbox.api_url}/orgs/other/actions/runners").status_code == 404
    requests.post(f"{sandbox.base_url}/_sandbox/scopes", json={"allow": None}, timeout=5)
    assert admin.get(f"{sandbox.api_url}/orgs/other/actions/runners").status_code == 200


def _python39() -> str | None:
    found = shutil.which("python3.9")
    candidates = [found] if found and "shims" not in found else []
    candidates += [str(p) for p in Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 interpreter here")
def test_runner_app_runs_on_python_39(
    sandbox: SandboxServer, admin: requests.Session, tmp_path: Path
) -> None:
    interpreter = _python39()
    assert interpreter is not None
    bin_dir = tmp_path / "py39"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(interpreter)
    runner_dir = install_runner(sandbox, admin, tmp_path / "r")
    job = queue_job(sandbox, steps=['python3 -c "import sys; print(sys.version_info[:2])"'])
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = start_runner(
        runner_dir,
        "--jitconfig",
        jit_config(admin, sandbox, "py39")["encoded_jit_config"],
        env=env,
    )
    try:
        assert proc.wait(timeout=30) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
    done = requests.get(f"{sandbox.base_url}/_sandbox/jobs/{job['id']}", timeout=5).json()
    assert done["conclusion"] == "success"
    assert "(3, 9)" in done["log"]


def test_concurrent_long_polls_each_job_goes_to_one_runner(sandbox: SandboxServer) -> None:
    scope = Scope("org", "canonical")
    runners = [sandbox.state.register_runner(scope, f"c{i}", ["pool"]) for i in range(20)]
    got: dict[str, int] = {}
    lock = threading.Lock()

    def poll(credential: str) -> None:
        response = requests.post(
            f"{sandbox.base_url}/_runner/poll?wait=5",
            headers={"Authorization": f"RunnerCredential {credential}"},
            timeout=10,
        )
        if response.status_code == 200:
            with lock:
                got[credential] = response.json()["id"]

    threads = [threading.Thread(target=poll, args=(r.credential,)) for r in runners]
    for thread in threads:
        thread.start()
    wait_for(lambda: all(r.polling for r in runners), what="all runners polling")
    assert all(r.polling for r in runners)
    online = requests.get(f"{sandbox.base_url}/_sandbox/stats", timeout=5).json()["runners"]
    assert online["online"] == 20
    jobs = [sandbox.state.queue_job(f"canonical/repo{i}", ["pool"], []) for i in range(20)]
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(got.values()) == [job.id for job in jobs]
    assert all(job.status == "in_progress" for job in jobs)
    assert len({job.runner_id for job in jobs}) == 20
