"""The service as the charm runs it: the systemd unit template and ``python -m repo_policy``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from repo_policy.tokens import OneTimeTokenStore
from runner_manager import template_environment
from tests.unit.systemd_verify import verify

ROOT = Path(__file__).resolve().parents[2]
UNIT_VALUES = {
    "unit": "github-runner/0",
    "charm_dir": "/var/lib/juju/agents/unit-github-runner-0/charm",
    "python": "/usr/bin/python3",
    "host": "127.0.0.1",
    "port": 8080,
    "service_token_file": "/etc/github-runner/repo-policy/service-token",
    "github_token_file": "/etc/github-runner/repo-policy/github-token",
    "github_api_url": "https://api.github.com",
    "config_file": "/etc/github-runner/repo-policy/policy.json",
    "state_directory": "github-runner-repo-policy-github-runner-0",
}


def render_unit() -> str:
    return template_environment().get_template("repo-policy.service.j2").render(**UNIT_VALUES)


def test_unit_passes_paths_never_secrets() -> None:
    text = render_unit()
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert "-m repo_policy serve" in exec_start
    assert "${CREDENTIALS_DIRECTORY}/service-token" in exec_start
    assert "${CREDENTIALS_DIRECTORY}/github-token" in exec_start
    assert "--state-file ${STATE_DIRECTORY}/one-time-tokens.json" in exec_start
    assert "LoadCredential=service-token:/etc/github-runner/repo-policy/service-token" in text
    assert "{{" not in text and "}}" not in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies_clean(tmp_path: Path) -> None:
    path = tmp_path / "github-runner-repo-policy.service"
    path.write_text(render_unit())
    # systemd-analyze only warns (rc 0) about many mistakes: any finding is a failure.
    assert verify(path) == (0, [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(tmp_path: Path, port: int, config: str = "{}") -> list[str]:
    (tmp_path / "service-token").write_text("svc-token-123\n")
    (tmp_path / "github-token").write_text("ghp_x\n")
    (tmp_path / "policy.json").write_text(config)
    return [
        sys.executable,
        "-m",
        "repo_policy",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-file",
        str(tmp_path / "service-token"),
        "--github-token-file",
        str(tmp_path / "github-token"),
        "--github-api-url",
        "http://127.0.0.1:9/api/v3",
        "--config-file",
        str(tmp_path / "policy.json"),
        "--state-file",
        str(tmp_path / "tokens.json"),
    ]


def service_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_python_m_repo_policy_serve(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        serve_command(tmp_path, port),
        env=service_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = get(f"{base}/health")
                break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        assert status == 200 and json.loads(body) == {"ok": True}
        assert get(f"{base}/one-time-token", "wrong")[0] == 401
        status, token = get(f"{base}/one-time-token", "svc-token-123")
        assert status == 200 and len(token) > 40
        store = OneTimeTokenStore(state_file=tmp_path / "tokens.json")  # its tokens.sqlite3
        assert store.path == tmp_path / "tokens.sqlite3" and len(store) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert "svc-token-123" not in output and token.decode() not in output
    assert "listening on 127.0.0.1" in output


def test_invalid_config_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(tmp_path, free_port(), '{"default": "perhaps"}'),
        check=False,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "default must be" in result.stderr
