"""workflow_job webhooks (signature, payload) and the command line server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.server import SandboxServer
from sandbox.state import Scope
from sandbox.webhooks import sign, verify
from tests.sandbox.sandbox_openapi import checked
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_signature_matches_githubs_published_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign("It's a Secret to Everybody", b"Hello, World!") == expected
    assert verify("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not verify("another secret", b"Hello, World!", expected)


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[tuple[list[tuple[str, str]], bytes]] = []
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((list(self.headers.items()), body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_workflow_job_webhooks(receiver: _Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    with checked(SandboxServer(token=ADMIN_TOKEN, webhook_url=url, webhook_secret="s3cret")) as sb:
        runner = sb.state.register_runner(Scope("org", "canonical"), "w1", ["hooks"])
        job = sb.state.queue_job("canonical/demo", ["self-hosted", "hooks"], ["true"])
        assert sb.state.try_assign(runner) is job
        sb.state.complete_job(runner, job, "success")
        deadline = time.monotonic() + 10
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        deliveries = requests.get(f"{sb.base_url}/_sandbox/webhooks", timeout=5).json()
    assert [d["status"] for d in deliveries] == [204, 204, 204]
    actions = []
    for raw_headers, body in receiver.received:
        headers = dict(raw_headers)  # exact spelling, as GitHub sends them
        assert headers["X-GitHub-Event"] == "workflow_job"
        assert headers["X-GitHub-Delivery"]
        assert verify("s3cret", body, headers["X-Hub-Signature-256"])
        payload = json.loads(body)
        assert payload["repository"]["full_name"] == "canonical/demo"
        assert payload["workflow_job"]["id"] == job.id
        assert payload["workflow_job"]["labels"] == ["self-hosted", "hooks"]
        actions.append((payload["action"], payload["workflow_job"]["status"]))
    assert actions == [
        ("queued", "queued"),
        ("in_progress", "in_progress"),
        ("completed", "completed"),
    ]
    final = json.loads(receiver.received[-1][1])["workflow_job"]
    assert final["conclusion"] == "success" and final["runner_name"] == "w1"


def test_webhook_to_nowhere_is_recorded_not_fatal() -> None:
    with checked(SandboxServer(token=ADMIN_TOKEN, webhook_url="http://127.0.0.1:9/none")) as sb:
        sb.state.queue_job("canonical/demo", ["self-hosted"], [])
        deadline = time.monotonic() + 10
        while not sb.webhooks.deliveries and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sb.webhooks.deliveries[0].status is None
        assert sb.webhooks.deliveries[0].error


def test_cli_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--port", "0", "--token", "cli-token"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = requests.get(
            f"{base_url}/api/v3/orgs/canonical/actions/runners",
            headers={"Authorization": "Bearer cli-token"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json() == {"total_count": 0, "runners": []}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_cli_control_commands(sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]) -> None:
    from sandbox.__main__ import main

    url = ["--url", sandbox.base_url]
    assert main(["queue-job", *url, "--repository", "canonical/demo", "--step", "true"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "queued" and job["commands"] == ["true"]
    assert main(["show-job", *url, str(job["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == job["id"]
    assert main(["stats", *url]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == {"queued": 1}
    waited = ["queue-job", *url, "--repository", "canonical/demo", "--wait", "0.2"]
    assert main(waited) == 1
    assert "queued" in capsys.readouterr().err
    assert main(["show-job", *url, "99999"]) == 1
