"""Every GitHub request has a wall-clock deadline, even against a server that drips bytes.

A real server on 127.0.0.1 (a socket server in this module) answers slowly, one byte at a time,
each byte well within the per-read socket timeout: without the deadline one call would last the
whole drip (30 s here; 46 s was seen with a byte every 2 s). The call must end with
``GithubTimeoutError`` soon after its deadline; the figures are printed, and the only time bound
asserted is a generous 3x the deadline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import errors
from github_api.client import GithubClient
from github_api.types import GitHubRepo

REPO = GitHubRepo("o", "r")
DRIP_INTERVAL = 0.25
DRIP_BYTES = 120  # 30 s of drip
JOB = json.dumps(
    {"id": 1, "status": "queued", "created_at": "2026-01-01T00:00:00Z", "labels": []}
).encode()


class DripServer:
    """Answers every request on 127.0.0.1; ``mode`` says how.

    ``ok``: a job at once (keep-alive); ``body``: headers at once, then the body one byte every
    ``DRIP_INTERVAL``; ``headers``: the status line and headers one byte at a time.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        buffer += chunk
                    buffer = buffer.split(b"\r\n\r\n", 1)[1]
                    if self.mode == "ok":
                        conn.sendall(self._head(len(JOB)) + JOB)
                        continue
                    body = b" " * DRIP_BYTES
                    if self.mode == "body":
                        conn.sendall(self._head(len(body)))
                        self._drip(conn, body)
                    else:
                        self._drip(conn, self._head(2)[:DRIP_BYTES])
                    return
                except OSError:
                    return

    @staticmethod
    def _head(length: int) -> bytes:
        return (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n" + "X-Padding: " + "p" * 200 + "\r\n\r\n"
        ).encode()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(DRIP_INTERVAL):
                return
            conn.sendall(data[i : i + 1])

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    srv = DripServer(request.param)
    yield srv
    srv.close()


def client(port: int, timeout: float, max_wait: float) -> GithubClient:
    return GithubClient(
        "ghp_deadline", f"http://127.0.0.1:{port}/api/v3", timeout=timeout, max_wait=max_wait
    )


@pytest.mark.parametrize("server", ["body", "headers"], indirect=True)
def test_a_dripping_server_cannot_hold_a_call_past_its_deadline(server: DripServer) -> None:
    deadline = 1.5
    started = time.monotonic()
    with pytest.raises(errors.GithubTimeoutError) as caught:
        client(server.port, timeout=deadline, max_wait=deadline).get_job(REPO, 1)
    elapsed = time.monotonic() - started
    print(
        f"\ndrip in the {server.mode}: call ended after {elapsed:.2f}s "
        f"(deadline {deadline}s; the drip alone lasts {DRIP_BYTES * DRIP_INTERVAL:.0f}s)"
    )
    assert isinstance(caught.value, errors.GithubApiError)  # the existing family still catches it
    assert "within" in str(caught.value)
    assert elapsed < 3 * deadline


@pytest.mark.parametrize("server", ["body"], indirect=True)
def test_retries_stay_inside_the_calls_budget(server: DripServer) -> None:
    started = time.monotonic()
    with pytest.raises(errors.GithubTimeoutError):
        client(server.port, timeout=1.0, max_wait=3.0).get_job(REPO, 1)
    elapsed = time.monotonic() - started
    print(f"\ntwo attempts of 1s deadline in a 3s budget: ended after {elapsed:.2f}s")
    assert server.connections == 2  # the timed-out connection is dropped, not reused
    assert elapsed < 3 * 3.0


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_prompt_answers_keep_one_connection(server: DripServer) -> None:
    github = client(server.port, timeout=5, max_wait=5)
    for _ in range(3):
        assert github.get_job(REPO, 1).id == 1
    assert server.connections == 1
