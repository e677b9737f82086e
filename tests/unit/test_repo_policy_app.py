"""The policy service's WSGI app over a fake GitHub seam: auth, one-time tokens, checks, logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

import errors
from github_api.types import BranchProtection
from repo_policy.app import MAX_BODY, PolicyApp
from repo_policy.config import ConfigSource, PolicyConfig
from repo_policy.policy import CheckRequest
from repo_policy.service import ServiceFiles, build_app
from repo_policy.tokens import OneTimeTokenStore
from tests.unit.test_repo_policy_decision import RUN, FakeGithub, branch_run, fork, pr_run

SERVICE_TOKEN = "service-secret-0123456789"


def call(
    app: Any,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    content_length: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": content_length if content_length is not None else str(len(data)),
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    out = b"".join(app(environ, start_response))
    assert seen["headers"]["Content-Length"] == str(len(out))
    return int(seen["status"].split()[0]), seen["headers"], out


def make_app(
    github: FakeGithub | None = None, config: PolicyConfig | None = None, **kwargs: Any
) -> PolicyApp:
    fake = github or FakeGithub()
    return PolicyApp(
        service_token=lambda: SERVICE_TOKEN,
        tokens=OneTimeTokenStore(),
        github=lambda: fake,
        config=lambda: config or PolicyConfig(),
        **kwargs,
    )


def one_time(app: PolicyApp) -> str:
    status, headers, body = call(app, "GET", "/one-time-token", SERVICE_TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return body.decode()


def job(event: str = "pull_request", ref: str = "refs/pull/7/merge") -> dict[str, Any]:
    return {
        "repository": "octo/app",
        "event": event,
        "ref": ref,
        "head_ref": "feature",
        "base_ref": "main",
        "sha": "c" * 40,
        "actor": "eve",
        "run_id": str(RUN),
        "payload": {"pull_request": {"number": 7}},
    }


def test_health() -> None:
    status, _, body = call(make_app(), "GET", "/health")
    assert status == 200 and json.loads(body) == {"ok": True}


@pytest.mark.parametrize("token", [None, "wrong", SERVICE_TOKEN + "x"])
def test_one_time_token_needs_the_service_token(token: str | None) -> None:
    status, _, body = call(make_app(), "GET", "/one-time-token", token)
    assert status == 401 and "service token" in json.loads(body)["reason"]


def test_no_service_token_configured_gives_503() -> None:
    app = make_app()
    app._service_token = lambda: None
    assert call(app, "GET", "/one-time-token", "")[0] == 503
    assert call(app, "GET", "/one-time-token", "anything")[0] == 503


def test_fork_pull_request_of_a_reader_is_refused_and_of_a_writer_allowed() -> None:
    github = FakeGithub(
        pulls={7: fork("eve")}, permissions={"eve": "read"}, runs={RUN: pr_run(fork("eve"))}
    )
    app = make_app(github)
    status, _, body = call(app, "POST", "/check", one_time(app), job())
    answer = json.loads(body)
    assert status == 403 and answer["allowed"] is False
    assert "eve has read permission on octo/app" in answer["reason"]
    github.permissions["eve"] = "write"
    status, _, body = call(app, "POST", "/check", one_time(app), job())
    assert status == 200 and json.loads(body)["allowed"] is True


def test_a_one_time_token_is_used_once() -> None:
    github = FakeGithub(protections={"main": BranchProtection(1)}, runs={RUN: branch_run()})
    app = make_app(github)
    token = one_time(app)
    assert call(app, "POST", "/check", token, job("push", "refs/heads/main"))[0] == 200
    status, _, body = call(app, "POST", "/check", token, job("push", "refs/heads/main"))
    assert status == 403 and "already used" in json.loads(body)["reason"]


def test_check_without_or_with_a_made_up_token() -> None:
    app = make_app()
    assert call(app, "POST", "/check", None, job())[0] == 401
    status, _, body = call(app, "POST", "/check", "invented", job())
    assert status == 403 and "unknown or expired" in json.loads(body)["reason"]
    # The service token is not a one-time token.
    assert call(app, "POST", "/check", SERVICE_TOKEN, job())[0] == 403


def test_github_failure_answers_503_retry_later() -> None:
    app = make_app(FakeGithub(fail=errors.GithubApiError("down", status=502)))
    status, _, body = call(app, "POST", "/check", one_time(app), job())
    answer = json.loads(body)
    assert status == 503 and answer["allowed"] is False and "retry later" in answer["reason"]


@pytest.mark.parametrize(
    ("raw", "length", "status"),
    [
        (b"not json", None, 400),
        (b'{"repository": "x"}', None, 400),
        (b"[]", None, 400),
        (b"{}", "", 411),
        (b"{}", str(MAX_BODY + 1), 413),
    ],
)
def test_malformed_bodies(raw: bytes, length: str | None, status: int) -> None:
    app = make_app()
    token = one_time(app)
    assert call(app, "POST", "/check", token, raw=raw, content_length=length)[0] == status
    # The token was used up all the same.
    assert call(app, "POST", "/check", token, job())[0] == 403


def test_routes_and_methods() -> None:
    app = make_app()
    assert call(app, "GET", "/nowhere")[0] == 404
    status, headers, _ = call(app, "GET", "/check")
    assert status == 405 and headers["Allow"] == "POST"
    assert call(app, "POST", "/one-time-token", SERVICE_TOKEN)[0] == 405
    assert call(app, "GET", "/health/")[0] == 200


def test_before_check_hook_sees_valid_requests_only() -> None:
    seen: list[CheckRequest] = []
    app = make_app(FakeGithub(runs={RUN: branch_run("release", None)}), before_check=seen.append)
    call(app, "POST", "/check", one_time(app), job("release"))
    call(app, "POST", "/check", one_time(app), {"event": "x"})
    assert [c.event for c in seen] == ["release"]


def test_a_bug_answers_500_and_never_allows() -> None:
    def broken() -> FakeGithub:
        raise RuntimeError("bug")

    app = PolicyApp(lambda: SERVICE_TOKEN, OneTimeTokenStore(), broken, PolicyConfig)
    status, _, body = call(app, "POST", "/check", one_time(app), job())
    assert status == 500 and "allowed" not in json.loads(body)


def test_tokens_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    github = FakeGithub(
        pulls={7: fork("eve")}, permissions={"eve": "none"}, runs={RUN: pr_run(fork("eve"))}
    )
    app = make_app(github)
    token = one_time(app)
    call(app, "POST", "/check", token, job())
    call(app, "POST", "/check", token, job())
    call(app, "GET", "/one-time-token", "wrong-guess")
    text = caplog.text
    assert "octo/app pull_request" in text and "refused 403" in text
    for secret in (token, SERVICE_TOKEN, "wrong-guess"):
        assert secret not in text


def test_invalid_config_refuses_with_503(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"default": "sometimes"}')
    app = make_app(FakeGithub(runs={RUN: branch_run("release", None)}))
    app._config = ConfigSource(path).get
    status, _, body = call(app, "POST", "/check", one_time(app), job("release"))
    assert status == 503 and "misconfigured" in json.loads(body)["reason"]


def test_service_files_are_rereads_on_change(tmp_path: Path) -> None:
    token_file, github_file, config_file = (
        tmp_path / "service-token",
        tmp_path / "github-token",
        tmp_path / "policy.json",
    )
    token_file.write_text("first\n")
    config_file.write_text(json.dumps({"default": "allow"}))
    app = build_app(
        ServiceFiles(token_file, github_file, "http://127.0.0.1:9/api/v3", config_file)
    )
    assert call(app, "GET", "/one-time-token", "first")[0] == 200
    token_file.write_text("second-and-longer\n")
    assert call(app, "GET", "/one-time-token", "first")[0] == 401
    assert app._config().default == "allow"
    config_file.write_text(json.dumps({"default": "deny", "token_ttl": 3600}))
    assert app._config().default == "deny"
    # No GitHub token configured: the run cannot be looked up, every check fails as 503.
    status, _, body = call(app, "POST", "/check", one_time_with(app, "second-and-longer"), job())
    assert status == 503 and "retry later" in json.loads(body)["reason"]


def one_time_with(app: PolicyApp, service_token: str) -> str:
    status, _, body = call(app, "GET", "/one-time-token", service_token)
    assert status == 200
    return body.decode()


def test_load_config_file(tmp_path: Path) -> None:
    from repo_policy.config import load_config

    path = tmp_path / "policy.json"
    assert load_config(path) == PolicyConfig()  # missing: the safe defaults
    path.write_text('{"allow_unprotected_branches": true}')
    assert load_config(path).allow_unprotected_branches
    path.write_text("{not json")
    with pytest.raises(errors.RepoPolicyConfigError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(errors.RepoPolicyConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory
    source = ConfigSource(tmp_path / "absent.json")
    assert source.get() == PolicyConfig()
    assert ConfigSource(None).get() == PolicyConfig()


def test_no_github_token_fails_every_question() -> None:
    from github_api.types import GitHubRepo
    from repo_policy.service import _NoGithub

    repo = GitHubRepo("octo", "app")
    for ask in (
        lambda: _NoGithub().get_collaborator_permission(repo, "eve"),
        lambda: _NoGithub().get_branch_protection(repo, "main"),
        lambda: _NoGithub().get_pull_request(repo, 1),
    ):
        with pytest.raises(errors.GithubApiError, match="no GitHub token"):
            ask()
