"""The policy service under hostile clients: idle connections, deep JSON, HEAD, big requests.

The starvation tests run the real waitress server on loopback with real sockets: the hostile
client binds 127.0.0.2 (all of 127/8 is loopback on Linux), the honest one 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest
import requests

from repo_policy.app import PolicyApp
from repo_policy.service import BackgroundServer
from tests.unit.test_repo_policy_app import SERVICE_TOKEN, call, job, make_app, one_time
from tests.unit.test_repo_policy_decision import RUN, FakeGithub, fork, pr_run

HOSTILE = "127.0.0.2"


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_json_is_a_bad_request_not_a_crash(depth: int) -> None:
    app = make_app()
    status, _, body = call(app, "POST", "/check", one_time(app), raw=deep(depth))
    assert status == 400, body
    assert "nested" in json.loads(body)["reason"]


def test_deep_json_inside_the_payload_is_refused() -> None:
    app = make_app()
    raw = (
        json.dumps(job())
        .encode()
        .replace(b'"payload": {', b'"payload": {"x": ' + deep(5000) + b", ")
    )
    status, _, body = call(app, "POST", "/check", one_time(app), raw=raw)
    assert status == 400, body


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    github = FakeGithub(
        pulls={7: fork("eve")}, permissions={"eve": "write"}, runs={RUN: pr_run(fork("eve"))}
    )
    app = make_app(github)
    data = job()
    data["payload"]["title"] = "[" * 10_000 + '\\"{' * 1000
    status, _, body = call(app, "POST", "/check", one_time(app), body=data)
    assert status == 200, body


def test_head_mints_no_token() -> None:
    app = make_app()
    status, headers, _ = call(app, "HEAD", "/one-time-token", SERVICE_TOKEN)
    assert status == 405 and headers["Allow"] == "GET"
    assert len(app.tokens) == 0
    assert call(app, "HEAD", "/health")[0] == 200


@contextlib.contextmanager
def idle_connections(
    port: int, count: int, source: str = HOSTILE
) -> Iterator[list[socket.socket]]:
    """Hold ``count`` connections that never finish a request (half sent, or nothing)."""
    held: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", port))
                if index % 2:
                    sock.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            except OSError:
                sock.close()  # refused at once by the server: fine, it keeps nothing
                continue
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def served() -> Iterator[tuple[BackgroundServer, PolicyApp]]:
    github = FakeGithub(
        pulls={7: fork("eve")}, permissions={"eve": "write"}, runs={RUN: pr_run(fork("eve"))}
    )
    app = make_app(github)
    with BackgroundServer(app) as server:
        yield server, app


def test_idle_connections_of_one_client_do_not_starve_another(
    served: tuple[BackgroundServer, PolicyApp],
) -> None:
    server, _ = served
    with idle_connections(server.port, 200):
        health = requests.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 200
        token = requests.get(
            f"{server.url}/one-time-token",
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
            timeout=10,
        ).text
        check = requests.post(
            f"{server.url}/check",
            json=job(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert check.status_code == 200, check.text


def test_a_client_beyond_its_connection_cap_is_closed_at_once(
    served: tuple[BackgroundServer, PolicyApp],
) -> None:
    server, _ = served
    cap = server.limits.connections_per_client
    with idle_connections(server.port, cap):
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        extra.close()
        # The same client's next connection is accepted and closed without an answer: the
        # reset may come at connect, send or receive, whichever the close overtakes.
        sock = socket.socket()
        sock.bind((HOSTILE, 0))
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            sock.close()


def test_oversized_request_bodies_and_headers_are_refused(
    served: tuple[BackgroundServer, PolicyApp],
) -> None:
    server, _ = served
    big = requests.post(
        f"{server.url}/check",
        data=b"x" * (server.limits.max_request_body + 1),
        headers={"Authorization": "Bearer t" * 3, "Content-Type": "application/json"},
        timeout=10,
    )
    assert big.status_code == 413
    huge_header = requests.get(
        f"{server.url}/health", headers={"X-Big": "y" * (server.limits.max_header + 1)}, timeout=10
    )
    assert huge_header.status_code == 431
