"""The policy service's inputs: the check request body and the policy configuration."""

from __future__ import annotations

from typing import Any

import pytest

import errors
from github_api.types import GitHubRepo
from repo_policy.config import PolicyConfig
from repo_policy.policy import BadCheckRequestError, CheckRequest
from tests.unit.test_repo_policy_decision import REPO

# --- the request body -------------------------------------------------------------------------


def body(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "repository": REPO,
        "event": "pull_request",
        "ref": "refs/pull/7/merge",
        "head_ref": "feature",
        "base_ref": "main",
        "sha": "b" * 40,
        "actor": "eve",
        "payload": {"pull_request": {"number": 7}},
    }
    data.update(changes)
    return data


def test_check_request_reads_the_pull_request_number() -> None:
    request = CheckRequest.from_json(body())
    assert request.pull_request_number == 7
    assert request.repo == GitHubRepo("octo", "app")
    assert CheckRequest.from_json(body(payload={"number": 9})).pull_request_number == 9
    assert CheckRequest.from_json(body(payload={})).pull_request_number is None
    assert CheckRequest.from_json(body(payload=None)).pull_request_number is None
    bad = {"pull_request": {"number": True}}
    assert CheckRequest.from_json(body(payload=bad)).pull_request_number is None


@pytest.mark.parametrize(
    "data",
    [
        [],
        body(repository="no-slash"),
        body(repository="a/b/c"),
        body(repository="../x"),
        body(repository="octo/.."),
        body(repository="octo/."),
        body(event=""),
        body(event=3),
        body(ref="x" * 2000),
        body(payload=[1]),
    ],
)
def test_malformed_check_requests(data: Any) -> None:
    with pytest.raises(BadCheckRequestError):
        CheckRequest.from_json(data)


# --- configuration ------------------------------------------------------------------------------


def test_config_defaults_are_safe() -> None:
    config = PolicyConfig.from_json({})
    assert config == PolicyConfig()
    assert not config.allow_pull_request_target
    assert not config.allow_unprotected_branches
    assert config.default == "deny"


@pytest.mark.parametrize(
    "data",
    [
        {"allow_pull_request_target": "yes"},
        {"default": "maybe"},
        {"token_ttl": 1},
        {"token_ttl": True},
        {"surprise": 1},
        [],
    ],
)
def test_invalid_config(data: Any) -> None:
    with pytest.raises(errors.RepoPolicyConfigError):
        PolicyConfig.from_json(data)
