"""RepoPolicyComplianceClient against the real policy app served on 127.0.0.1 (waitress)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import errors
from repo_policy.app import PolicyApp
from repo_policy.client import RepoPolicyComplianceClient
from repo_policy.config import PolicyConfig
from repo_policy.service import BackgroundServer
from repo_policy.tokens import OneTimeTokenStore
from tests.unit.test_repo_policy_decision import FakeGithub


@pytest.fixture
def service() -> Iterator[tuple[str, PolicyApp]]:
    app = PolicyApp(lambda: "svc-token", OneTimeTokenStore(), FakeGithub, PolicyConfig)
    with BackgroundServer(app, threads=2) as server:
        yield f"{server.url}/", app


def test_one_time_tokens_from_the_service(service: tuple[str, PolicyApp]) -> None:
    url, app = service
    client = RepoPolicyComplianceClient(url, "svc-token")
    first, second = client.get_one_time_token(), client.get_one_time_token()
    assert first != second and len(app.tokens) == 2
    assert "svc-token" not in repr(client)


def test_refusals_and_unreachable(service: tuple[str, PolicyApp]) -> None:
    url, _ = service
    with pytest.raises(errors.RepoPolicyError) as caught:
        RepoPolicyComplianceClient(url, "wrong").get_one_time_token()
    assert caught.value.status == 401
    with pytest.raises(errors.RepoPolicyError, match="unreachable"):
        RepoPolicyComplianceClient("http://127.0.0.1:9", "svc-token").get_one_time_token()
    with pytest.raises(errors.RepoPolicyError, match="not configured"):
        RepoPolicyComplianceClient("", "svc-token").get_one_time_token()
    with pytest.raises(errors.RepoPolicyError, match="malformed"):
        RepoPolicyComplianceClient(url.rstrip("/") + "/health#", "x").get_one_time_token()
