"""The policy service's checks in flight, served on 127.0.0.1 and read by the charm's client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import errors
from repo_policy.app import PolicyApp
from repo_policy.client import RepoPolicyComplianceClient
from repo_policy.config import PolicyConfig
from repo_policy.in_flight import ChecksInFlight, token_digest
from repo_policy.policy import CheckRequest
from repo_policy.service import BackgroundServer
from repo_policy.tokens import OneTimeTokenStore
from tests.unit.test_repo_policy_decision import FakeGithub

SERVICE_TOKEN = "svc-token-0123456789"
BODY = {"repository": "octo/app", "event": "push", "ref": "refs/heads/main", "payload": {}}


class Gate:
    """Holds every check inside the service until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, check: CheckRequest) -> None:
        self.entered.set()
        assert self.release.wait(30)


@pytest.fixture
def served() -> Iterator[tuple[str, Gate]]:
    gate = Gate()
    app = PolicyApp(
        lambda: SERVICE_TOKEN, OneTimeTokenStore(), FakeGithub, PolicyConfig, before_check=gate
    )
    with BackgroundServer(app, threads=3) as server:
        yield server.url, gate
    gate.release.set()


def post_check(url: str, token: str, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        out["reply"] = requests.post(
            f"{url}/check", json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_check_is_in_flight_while_it_is_answered(served: tuple[str, Gate]) -> None:
    url, gate = served
    client = RepoPolicyComplianceClient(url, SERVICE_TOKEN)
    token, other = client.get_one_time_token(), client.get_one_time_token()
    assert client.checks_in_flight() == frozenset()
    out: dict[str, Any] = {}
    poster = post_check(url, token, out)
    assert gate.entered.wait(10)
    assert client.checks_in_flight() == {token_digest(token)}
    assert token_digest(other) not in client.checks_in_flight()
    gate.release.set()
    poster.join(30)
    assert "token" not in out["reply"].json()["reason"], "the check itself was answered"
    assert client.checks_in_flight() == frozenset()


def test_a_used_token_is_not_in_flight_for_long(served: tuple[str, Gate]) -> None:
    """A job replaying its runner's used token is refused before any wait: nothing to see."""
    url, gate = served
    gate.release.set()
    client = RepoPolicyComplianceClient(url, SERVICE_TOKEN)
    token = client.get_one_time_token()
    out: dict[str, Any] = {}
    post_check(url, token, out).join(30)
    post_check(url, token, out).join(30)
    assert out["reply"].status_code == 403
    assert client.checks_in_flight() == frozenset()


def test_checks_in_flight_needs_the_service_token(served: tuple[str, Gate]) -> None:
    url, _ = served
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        reply = requests.get(f"{url}/checks-in-flight", headers=headers, timeout=10)
        assert reply.status_code == 401
    with pytest.raises(errors.RepoPolicyError) as caught:
        RepoPolicyComplianceClient(url, "wrong").checks_in_flight()
    assert caught.value.status == 401
    reply = requests.post(f"{url}/checks-in-flight", timeout=10)
    assert reply.status_code == 405


def test_client_refuses_malformed_answers(served: tuple[str, Gate]) -> None:
    url, _ = served
    with pytest.raises(errors.RepoPolicyError, match="malformed"):
        RepoPolicyComplianceClient(url + "/health#", SERVICE_TOKEN).checks_in_flight()
    with pytest.raises(errors.RepoPolicyError, match="unreachable"):
        RepoPolicyComplianceClient("http://127.0.0.1:9", SERVICE_TOKEN).checks_in_flight()
    with pytest.raises(errors.RepoPolicyError, match="not configured"):
        RepoPolicyComplianceClient("", SERVICE_TOKEN).checks_in_flight()


def test_the_record_counts_overlapping_checks() -> None:
    record = ChecksInFlight()
    with record.checking("a"), record.checking("a"):
        assert record.digests() == [token_digest("a")]
    with record.checking("a"):
        pass
    assert record.digests() == []
    with pytest.raises(RuntimeError), record.checking("b"):
        raise RuntimeError
    assert record.digests() == []


class RecordingInFlight(ChecksInFlight):
    """The real record, also noting every token a check was counted for."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[str] = []

    def checking(self, token: str) -> Any:
        self.counted.append(token)
        return super().checking(token)


def test_a_replayed_or_unknown_token_is_never_counted_in_flight() -> None:
    """Only a check whose token the service just spent counts: a replay cannot hold a flush."""
    app = PolicyApp(lambda: SERVICE_TOKEN, OneTimeTokenStore(), FakeGithub, PolicyConfig)
    record = RecordingInFlight()
    app.in_flight = record
    with BackgroundServer(app, threads=2) as server:
        client = RepoPolicyComplianceClient(server.url, SERVICE_TOKEN)
        token = client.get_one_time_token()
        replies: list[tuple[int, str]] = []
        for presented in (token, token, token, "never-issued"):
            out: dict[str, Any] = {}
            post_check(server.url, presented, out).join(30)
            replies.append((out["reply"].status_code, out["reply"].json()["reason"]))
    assert "token" not in replies[0][1], "the first check itself was answered"
    assert [status for status, _ in replies[1:]] == [403, 403, 403]
    assert all("token" in reason for _, reason in replies[1:]), replies
    assert record.counted == [token], "counted once: the check that spent it"
