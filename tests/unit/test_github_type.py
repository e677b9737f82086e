"""Unit tests of github_api.types and github_api.parse: paths, JSON answers, error mapping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import errors
from github_api.parse import (
    HttpReply,
    error_from_reply,
    job_from_json,
    json_int,
    parse_job_url,
    parse_time,
    rate_limit_reset,
    runner_from_json,
)
from github_api.types import (
    GitHubOrg,
    GitHubRepo,
    GitHubRunnerStatus,
    RunnerApplication,
    api_base_url,
    parse_github_path,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_parse_github_path_and_api_url() -> None:
    assert parse_github_path("octo/hello") == GitHubRepo("octo", "hello")
    assert parse_github_path(" octo ", "ci") == GitHubOrg("octo", "ci")
    for bad in ("", "a/b/c", "../x", "-a"):
        with pytest.raises(ValueError):
            parse_github_path(bad)
    assert api_base_url("https://github.com/") == "https://api.github.com"
    assert api_base_url("https://ghes.example") == "https://ghes.example/api/v3"


def test_parse_time_and_json_int() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == NOW
    assert parse_time("2026-01-01T01:00:00+01:00") == NOW
    assert parse_time("2026-01-01T00:00:00") == NOW
    with pytest.raises(TypeError):
        parse_time(None)
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert json_int(3) == 3 and json_int(3.0) == 3
    for bad in (True, "3", 3.5, None):
        with pytest.raises(TypeError):
            json_int(bad)


def test_runner_from_json() -> None:
    item = {"id": 1, "name": "a", "status": "online", "busy": True, "labels": [{"name": "x"}]}
    runner = runner_from_json(item)
    assert runner.status is GitHubRunnerStatus.ONLINE and runner.busy and runner.labels == ("x",)
    assert runner_from_json({**item, "status": "weird"}).status is GitHubRunnerStatus.OFFLINE
    with pytest.raises(TypeError):
        runner_from_json({**item, "busy": "yes"})
    with pytest.raises(KeyError):
        runner_from_json({"id": 1})


def test_job_from_json_nullable_fields() -> None:
    job = job_from_json(
        {"id": 1, "status": "queued", "created_at": "2026-01-01T00:00:00Z", "runner_name": ""}
    )
    assert job.started_at is None and job.runner_name is None and job.labels == ()
    with pytest.raises(ValueError):
        job_from_json({"id": 1, "status": "nope", "created_at": "2026-01-01T00:00:00Z"})


def test_runner_application_version() -> None:
    app = RunnerApplication("linux", "x64", "u", "actions-runner-linux-x64-2.330.0.tar.gz")
    assert app.version == "2.330.0"
    assert RunnerApplication("linux", "x64", "u", "runner.tgz").version == "unknown"


def test_rate_limit_reset() -> None:
    assert rate_limit_reset({"retry-after": "30"}, NOW) == NOW + timedelta(seconds=30)
    assert rate_limit_reset({"retry-after": "-5"}, NOW) == NOW
    assert rate_limit_reset({"x-ratelimit-reset": "1767225600"}, NOW) == NOW
    assert rate_limit_reset({"x-ratelimit-reset": "x"}, NOW) is None
    assert rate_limit_reset({}, NOW) is None
    assert rate_limit_reset({"retry-after": "inf", "x-ratelimit-reset": "1767225600"}, NOW) == NOW


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (401, {}, errors.GithubTokenError),
        (403, {}, errors.GithubPermissionError),
        (403, {"x-ratelimit-remaining": "0"}, errors.GithubRateLimitError),
        (403, {"retry-after": "1"}, errors.GithubRateLimitError),
        (429, {}, errors.GithubRateLimitError),
        (404, {}, errors.GithubNotFoundError),
        (409, {}, errors.GithubConflictError),
        (422, {}, errors.GithubApiError),
        (503, {}, errors.GithubApiError),
    ],
)
def test_error_from_reply(status: int, headers: dict[str, str], kind: type[Exception]) -> None:
    error = error_from_reply(HttpReply(status, headers, '{"message": "m"}'), "GET", "/x", "o/r")
    assert type(error) is kind
    assert error.status == status


def test_error_from_reply_keeps_server_message_short() -> None:
    error = error_from_reply(
        HttpReply(400, {}, '{"message": "' + "m" * 500 + '"}'), "GET", "/x", None
    )
    assert len(str(error)) < 260
    error = error_from_reply(HttpReply(400, {}, "<html>"), "GET", "/x", None)
    assert str(error) == "GET /x: GitHub answered 400"


def test_parse_job_url_with_root_api() -> None:
    url = "https://api.github.com/repos/o/r/actions/jobs/5"
    assert parse_job_url("https://api.github.com", url) == (GitHubRepo("o", "r"), 5)
    with pytest.raises(errors.InvalidJobUrlError):
        parse_job_url(
            "https://api.github.com", "https://api.github.com.evil/repos/o/r/actions/jobs/5"
        )
