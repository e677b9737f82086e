"""Constants and helpers shared by the sandbox tests."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from sandbox.server import SandboxServer

ADMIN_TOKEN = "admin-token"
RO_TOKEN = "ro-token"
TOTALS = {"validated": 0, "skipped": 0}
REPO_API = "/repos/canonical/demo/actions/runners"
FAST_ENV = {
    "SANDBOX_RUNNER_POLL_WAIT": "0.5",
    "SANDBOX_RUNNER_HEARTBEAT": "0.2",
    "SANDBOX_RUNNER_MAX_IDLE": "20",
    "SANDBOX_RUNNER_UNREACHABLE_TIMEOUT": "3",
    "RUNNER_ALLOW_RUNASROOT": "1",
}


def _fast_python_path() -> str:
    """PATH whose python3 starts fast: pyenv's python3 shim costs ~0.3 s a start."""
    shim_dir = Path(tempfile.gettempdir()) / "sandbox-test-python"
    shim_dir.mkdir(exist_ok=True)
    link = shim_dir / "python3"
    target = (
        Path("/usr/bin/python3") if Path("/usr/bin/python3").exists() else Path(sys.executable)
    )
    if not link.exists():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(target)
    return f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"


FAST_ENV["PATH"] = _fast_python_path()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def install_runner(sandbox: SandboxServer, admin: requests.Session, target: Path) -> Path:
    """Download the runner the way the charm does: downloads API, sha256 check, extract."""
    apps = admin.get(f"{sandbox.api_url}{REPO_API}/downloads").json()
    app = next(a for a in apps if a["os"] == "linux" and a["architecture"] == "x64")
    assert app["filename"] == "actions-runner-linux-x64-2.330.0.tar.gz"
    data = requests.get(app["download_url"], timeout=10).content
    assert hashlib.sha256(data).hexdigest() == app["sha256_checksum"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Python before 3.10.12/3.11.4: the members are checked instead
            for member in tar.getmembers():
                assert not member.name.startswith("/") and ".." not in member.name.split("/")
                assert member.isfile() or member.isdir()
            tar.extractall(target)  # noqa: S202 - members checked above
    return target


def start_runner(
    runner_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(runner_dir / "run.sh"), *args],
        cwd=runner_dir,
        env={**os.environ, **FAST_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def queue_job(sandbox: SandboxServer, **fields: Any) -> dict[str, Any]:
    body = {"repository": "canonical/demo", "labels": ["self-hosted", "sandbox"], **fields}
    response = requests.post(f"{sandbox.base_url}/_sandbox/jobs", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return dict(response.json())


def get_job(sandbox: SandboxServer, job_id: int) -> dict[str, Any]:
    return dict(requests.get(f"{sandbox.base_url}/_sandbox/jobs/{job_id}", timeout=5).json())


def jit_config(admin: requests.Session, sandbox: SandboxServer, name: str) -> dict[str, Any]:
    body = {"name": name, "runner_group_id": 1, "labels": ["sandbox"]}
    response = admin.post(f"{sandbox.api_url}{REPO_API}/generate-jitconfig", json=body)
    assert response.status_code == 201
    return dict(response.json())
