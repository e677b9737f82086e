"""The PyGithub transport keeps the token out of its repr and PyGithub's DEBUG bodies out of logs.

Requests through it are exercised against the sandbox by tests/integration/test_github_client.py.
"""

from __future__ import annotations

import logging

import pytest

from github_api.client import GithubClient
from github_api.transport import PyGithubTransport

TOKEN = "ghp_transport-secret-0123456789"


def test_repr_hides_the_token() -> None:
    transport = PyGithubTransport(TOKEN, "https://ghes.example/api/v3", 5)
    client = GithubClient(TOKEN, "https://ghes.example/api/v3")
    assert TOKEN not in repr(transport)
    assert TOKEN not in repr(client)
    assert "ghes.example" in repr(transport)


def test_pygithub_debug_records_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    requester_log = logging.getLogger("github.Requester")
    with caplog.at_level(logging.DEBUG, logger="github.Requester"):
        requester_log.debug("GET /x {'token': %r}", TOKEN)
        requester_log.info("kept")
    assert [r.getMessage() for r in caplog.records] == ["kept"]
