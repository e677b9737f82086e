"""A scripted GitHub transport and reply builders for GithubClient's unit tests.

:class:`FakeTransport` stands in for ``github_api.retry.HttpTransport``: it answers plain
``HttpReply`` objects from a script and records every call; :func:`make_client` builds a
GithubClient over it with a fake clock and sleep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from github_api.client import GithubClient
from github_api.parse import HttpReply
from github_api.types import GitHubOrg, GitHubRepo

TOKEN = "ghp_unit-secret-token-0123456789"
API = "https://ghes.example/api/v3"
REPO = GitHubRepo("octo", "hello")
ORG = GitHubOrg("octo-org", "ci")

Call = tuple[str, str, "dict[str, Any] | None", "dict[str, Any] | None"]


def reply(status: int = 200, body: Any = None, **headers: str) -> HttpReply:
    text = "" if body is None else json.dumps(body)
    return HttpReply(status, {k.replace("_", "-"): v for k, v in headers.items()}, text)


class FakeTransport:
    """Scripted answers; a fake clock advanced by sends (latency) and sleeps."""

    def __init__(self, *steps: Any, latency: float = 0.0) -> None:
        self.steps = list(steps)
        self.calls: list[Call] = []
        self.sleeps: list[float] = []
        self.now = 1000.0
        self.latency = latency

    def send(
        self, verb: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> HttpReply:
        self.calls.append((verb, url, params, body))
        self.now += self.latency
        if not self.steps:
            raise AssertionError(f"unexpected request {verb} {url}")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(verb, url, params, body)  # type: ignore[no-any-return]
        return step  # type: ignore[no-any-return]

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_client(*steps: Any, timeout: float = 5, max_wait: float = 30, latency: float = 0.0):
    fake = FakeTransport(*steps, latency=latency)
    client = GithubClient(
        TOKEN,
        API,
        timeout=timeout,
        max_wait=max_wait,
        transport=fake,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    return client, fake


def runner_json(
    rid: int, name: str, status: str = "offline", busy: bool = False
) -> dict[str, Any]:
    return {
        "id": rid,
        "name": name,
        "os": "linux",
        "status": status,
        "busy": busy,
        "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}],
    }


def runners_page(total: int, page: int, prefix: str = "app-0-") -> Callable[..., HttpReply]:
    def answer(verb: str, url: str, params: dict[str, Any] | None, body: Any) -> HttpReply:
        assert params is not None and params["page"] == page and params["per_page"] == 100
        first = (page - 1) * 100
        items = [
            runner_json(i + 1, f"{prefix}{i:04d}") for i in range(first, min(total, first + 100))
        ]
        return reply(200, {"total_count": total, "runners": items})

    return answer


JOB = {
    "id": 99,
    "run_id": 5,
    "status": "in_progress",
    "conclusion": None,
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": "2026-01-01T00:00:03Z",
    "completed_at": None,
    "name": "build",
    "workflow_name": "ci",
    "labels": ["self-hosted", "x64"],
    "runner_id": 3,
    "runner_name": "app-0-abc",
}
