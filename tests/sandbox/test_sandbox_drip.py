"""Slow-answer and replication-lag faults: a dripping body, a job missing for N lookups."""

from __future__ import annotations

import socket
import time

import requests

from sandbox.server import SandboxServer
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN, queue_job

RUNNERS = "/repos/canonical/demo/actions/runners"


def _fault(sandbox: SandboxServer, **spec: object) -> requests.Response:
    return requests.post(f"{sandbox.base_url}/_sandbox/faults", json=spec, timeout=5)


def test_drip_sends_the_body_one_byte_at_a_time(
    sandbox: SandboxServer, admin: requests.Session
) -> None:
    assert _fault(sandbox, drip_ms=30, path_regex=r"/actions/runners$", count=1).status_code == 201
    url = f"{sandbox.api_url}{RUNNERS}"
    started = time.monotonic()
    with admin.get(url, stream=True, timeout=5) as dripped:
        assert dripped.status_code == 200
        first = next(dripped.raw.stream(1))
        body = first + dripped.raw.read()
    elapsed = time.monotonic() - started
    assert len(first) == 1
    assert body == admin.get(url, timeout=5).content  # the same answer, only slower
    print(f"\n{len(body)} bytes dripped at 30 ms a byte in {elapsed:.2f}s")
    faults = requests.get(f"{sandbox.base_url}/_sandbox/faults", timeout=5).json()
    assert faults[0]["drip_ms"] == 30 and faults[0]["hits"] == 1


def test_drip_holds_a_client_with_only_a_read_timeout(sandbox: SandboxServer) -> None:
    _fault(sandbox, drip_ms=200, path_regex=r"/actions/runners$")
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=1) as conn:
        conn.sendall(
            f"GET /api/v3{RUNNERS} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: token {ADMIN_TOKEN}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        gaps = []
        for _ in range(3):  # each byte arrives well within a 1 s read timeout
            before = time.monotonic()
            assert len(conn.recv(1)) == 1
            gaps.append(time.monotonic() - before)
    print(f"\ngaps between dripped bytes: {', '.join(f'{g * 1000:.0f} ms' for g in gaps)}")


def test_a_job_can_be_missing_for_its_first_lookups(
    sandbox: SandboxServer, admin: requests.Session
) -> None:
    job = queue_job(sandbox, repository="canonical/demo", labels=["self-hosted"])
    _fault(sandbox, status=404, path_regex=rf"/actions/jobs/{job['id']}$", count=2)
    statuses = [admin.get(job["url"], timeout=5) for _ in range(3)]
    assert [r.status_code for r in statuses] == [404, 404, 200]
    assert statuses[0].json()["message"] == "Not Found"
    assert statuses[2].json()["id"] == job["id"]
