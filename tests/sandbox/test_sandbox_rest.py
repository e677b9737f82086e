"""The REST API: pagination, tokens, JIT config, auth, busy delete, groups, jobs, PyGithub."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
import requests
from github import Auth, Github, GithubException

from sandbox import jitconfig
from sandbox.server import SandboxServer
from sandbox.state import Scope
from tests.sandbox.sandbox_openapi import Checker, spec_operations, spec_statuses
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN, RO_TOKEN

REPO = "/repos/canonical/demo/actions/runners"


def _github(
    sandbox: SandboxServer, token: str = ADMIN_TOKEN, per_page: int = 30, lazy: bool = False
) -> Github:
    # PyGithub throttles by default (0.25 s between requests, 1 s between writes).
    return Github(
        auth=Auth.Token(token),
        base_url=sandbox.api_url,
        per_page=per_page,
        retry=None,
        lazy=lazy,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def _links(response: requests.Response) -> dict[str, str]:
    return {
        rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["Link"])
    }


def _populate(sandbox: SandboxServer, count: int, scope: Scope) -> None:
    for i in range(count):
        sandbox.state.register_runner(scope, f"runner-{i:03d}", ["x"], jit=True)


def test_pagination_250_runners(sandbox: SandboxServer, admin: requests.Session) -> None:
    _populate(sandbox, 250, Scope("repo", "canonical/demo"))
    url = f"{sandbox.api_url}{REPO}"

    first = admin.get(url, params={"per_page": 100})
    assert first.status_code == 200
    assert first.json()["total_count"] == 250
    assert len(first.json()["runners"]) == 100
    links = _links(first)
    assert set(links) == {"next", "last"}
    assert links["next"].startswith(url) and "page=2" in links["next"]
    assert "per_page=100" in links["last"] and "page=3" in links["last"]

    second = admin.get(links["next"])
    assert set(_links(second)) == {"prev", "next", "last", "first"}
    third = admin.get(_links(second)["next"])
    assert len(third.json()["runners"]) == 50
    assert set(_links(third)) == {"prev", "first"}
    ids = [r["id"] for page in (first, second, third) for r in page.json()["runners"]]
    assert len(set(ids)) == 250

    default = admin.get(url)
    assert len(default.json()["runners"]) == 30
    assert "page=9" in _links(default)["last"]
    capped = admin.get(url, params={"per_page": 500})
    assert len(capped.json()["runners"]) == 100


def test_name_filter(sandbox: SandboxServer, admin: requests.Session) -> None:
    _populate(sandbox, 5, Scope("repo", "canonical/demo"))
    found = admin.get(f"{sandbox.api_url}{REPO}", params={"name": "runner-003"}).json()
    assert found["total_count"] == 1
    assert found["runners"][0]["name"] == "runner-003"
    none = admin.get(f"{sandbox.api_url}{REPO}", params={"name": "nope"}).json()
    assert none == {"total_count": 0, "runners": []}


def test_pygithub_paginates_and_deletes(sandbox: SandboxServer) -> None:
    _populate(sandbox, 120, Scope("org", "canonical"))
    gh = _github(sandbox, per_page=50)
    org = gh.get_organization("canonical")
    runners = list(org.get_self_hosted_runners())
    assert len(runners) == 120
    assert runners[0].labels[0] == {"id": 1, "name": "self-hosted", "type": "read-only"}
    org.delete_self_hosted_runner(runners[0].id)
    assert org.get_self_hosted_runners().totalCount == 119

    jit = org.create_self_hosted_runner_jitconfig("gh-1", 1, ["large"])
    assert jit.runner.name == "gh-1"
    assert jit.encoded_jit_config

    repo = gh.get_repo("canonical/demo")
    _, data = gh.requester.requestJsonAndCheck(
        "POST",
        f"{repo.url}/actions/runners/generate-jitconfig",
        input={"name": "gh-2", "runner_group_id": 1, "labels": ["large"]},
    )
    runner_id = data["runner"]["id"]
    assert repo.get_self_hosted_runner(runner_id).status == "offline"
    assert repo.remove_self_hosted_runner(runner_id)
    assert repo.get_self_hosted_runners().totalCount == 0


def test_registration_and_remove_tokens(sandbox: SandboxServer, admin: requests.Session) -> None:
    for scope in (f"{sandbox.api_url}{REPO}", f"{sandbox.api_url}/orgs/canonical/actions/runners"):
        for kind in ("registration-token", "remove-token"):
            response = admin.post(f"{scope}/{kind}")
            assert response.status_code == 201
            body = response.json()
            expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            left = (expires - datetime.now(timezone.utc)).total_seconds()
            assert 3500 < left <= 3600
            assert body["token"]


def test_jitconfig(sandbox: SandboxServer, admin: requests.Session) -> None:
    url = f"{sandbox.api_url}{REPO}/generate-jitconfig"
    body = {"name": "jit-1", "runner_group_id": 1, "labels": ["large", "self-hosted"]}
    response = admin.post(url, json=body)
    assert response.status_code == 201
    runner = response.json()["runner"]
    assert runner["name"] == "jit-1" and runner["status"] == "offline" and not runner["busy"]
    labels = {label["name"]: label["type"] for label in runner["labels"]}
    assert labels == {"self-hosted": "read-only", "linux": "read-only", "x64": "read-only"} | {
        "large": "custom"
    }
    files = jitconfig.decode(response.json()["encoded_jit_config"])
    assert files[".runner"]["agentId"] == runner["id"]
    assert files[".runner"]["serverUrl"] == sandbox.base_url
    credential = files[".credentials"]["data"]["token"]
    assert credential and credential not in (ADMIN_TOKEN, RO_TOKEN)

    assert admin.post(url, json=body).status_code == 409
    for bad in (
        {"runner_group_id": 1, "labels": ["a"]},
        {"name": "x", "labels": ["a"]},
        {"name": "x", "runner_group_id": "1", "labels": ["a"]},
        {"name": "x", "runner_group_id": 1, "labels": []},
        {"name": "x", "runner_group_id": 1},
        {"name": "", "runner_group_id": 1, "labels": ["a"]},
    ):
        response = admin.post(url, json=bad)
        assert response.status_code == 422, bad
        assert response.json()["documentation_url"]
    org_url = f"{sandbox.api_url}/orgs/canonical/actions/runners/generate-jitconfig"
    assert admin.post(org_url, json={**body, "runner_group_id": 77}).status_code == 404


def test_org_runner_groups(sandbox: SandboxServer, admin: requests.Session) -> None:
    created = requests.post(
        f"{sandbox.base_url}/_sandbox/runner-groups",
        json={"org": "canonical", "name": "gpu"},
        timeout=5,
    )
    assert created.status_code == 201
    groups = admin.get(f"{sandbox.api_url}/orgs/canonical/actions/runner-groups").json()
    assert groups["total_count"] == 2
    assert [(g["id"], g["name"], g["default"]) for g in groups["runner_groups"]] == [
        (1, "default", True),
        (created.json()["id"], "gpu", False),
    ]
    jit = admin.post(
        f"{sandbox.api_url}/orgs/canonical/actions/runners/generate-jitconfig",
        json={"name": "g1", "runner_group_id": created.json()["id"], "labels": ["gpu"]},
    )
    assert jit.status_code == 201
    assert jit.json()["runner"]["runner_group_id"] == created.json()["id"]


def test_auth(sandbox: SandboxServer, admin: requests.Session, readonly: requests.Session) -> None:
    url = f"{sandbox.api_url}{REPO}"
    bad = requests.get(url, headers={"Authorization": "token nope"}, timeout=5)
    assert bad.status_code == 401
    assert bad.json()["message"] == "Bad credentials"
    assert requests.get(url, timeout=5).status_code == 401

    for method, path in (
        ("GET", REPO),
        ("POST", f"{REPO}/registration-token"),
        ("POST", f"{REPO}/remove-token"),
        ("POST", f"{REPO}/generate-jitconfig"),
        ("DELETE", f"{REPO}/1"),
        ("GET", "/orgs/canonical/actions/runner-groups"),
    ):
        response = readonly.request(method, f"{sandbox.api_url}{path}", json={})
        assert response.status_code == 403, path
        assert response.json()["message"] == "Resource not accessible by personal access token"

    job = sandbox.state.queue_job("canonical/demo", ["self-hosted"], ["true"])
    read = readonly.get(f"{sandbox.api_url}/repos/canonical/demo/actions/jobs/{job.id}")
    assert read.status_code == 200
    assert readonly.get(f"{sandbox.api_url}{REPO}/downloads").status_code == 200

    revoked = requests.post(
        f"{sandbox.base_url}/_sandbox/tokens",
        json={"token": ADMIN_TOKEN, "revoke": True},
        timeout=5,
    )
    assert revoked.json()["revoked"] is True
    assert admin.get(url).status_code == 401
    requests.post(f"{sandbox.base_url}/_sandbox/tokens", json={"token": "new"}, timeout=5)
    assert requests.get(url, headers={"Authorization": "token new"}, timeout=5).status_code == 200


def test_rate_limit_headers_count(sandbox: SandboxServer, admin: requests.Session) -> None:
    first = admin.get(f"{sandbox.api_url}{REPO}")
    second = admin.get(f"{sandbox.api_url}{REPO}")
    assert first.headers["x-ratelimit-limit"] == "5000"
    assert first.headers["x-ratelimit-resource"] == "core"
    assert (
        int(second.headers["x-ratelimit-remaining"])
        == int(first.headers["x-ratelimit-remaining"]) - 1
    )
    assert int(second.headers["x-ratelimit-used"]) == 2
    assert int(first.headers["x-ratelimit-reset"]) > time.time()
    overview = admin.get(f"{sandbox.api_url}/rate_limit")
    assert overview.json()["resources"]["core"]["used"] == 2  # /rate_limit does not count
    assert overview.json()["rate"] == overview.json()["resources"]["core"]


def test_busy_runner_delete_is_422(sandbox: SandboxServer, admin: requests.Session) -> None:
    scope = Scope("repo", "canonical/demo")
    runner = sandbox.state.register_runner(scope, "busy-1", ["x"], jit=True)
    sandbox.state.queue_job("canonical/demo", ["self-hosted", "X"], ["sleep 1"])
    job = sandbox.state.try_assign(runner)
    assert job is not None
    listed = admin.get(f"{sandbox.api_url}{REPO}/{runner.id}").json()
    assert listed["busy"] is True and listed["status"] == "online"
    response = admin.delete(f"{sandbox.api_url}{REPO}/{runner.id}")
    assert response.status_code == 422
    assert response.json()["documentation_url"]
    sandbox.state.complete_job(runner, job, "success")
    assert admin.get(f"{sandbox.api_url}{REPO}/{runner.id}").status_code == 404  # ephemeral


def test_delete_idle_and_unknown(sandbox: SandboxServer, admin: requests.Session) -> None:
    runner = sandbox.state.register_runner(Scope("repo", "canonical/demo"), "idle", [], jit=True)
    assert admin.delete(f"{sandbox.api_url}{REPO}/{runner.id}").status_code == 204
    assert admin.delete(f"{sandbox.api_url}{REPO}/{runner.id}").status_code == 404
    other = admin.get(f"{sandbox.api_url}/repos/canonical/other/actions/runners/{runner.id}")
    assert other.status_code == 404


def test_jobs_api(sandbox: SandboxServer, admin: requests.Session) -> None:
    queued = requests.post(
        f"{sandbox.base_url}/_sandbox/jobs",
        json={"repository": "canonical/demo", "labels": ["self-hosted"], "steps": ["true"]},
        timeout=5,
    )
    assert queued.status_code == 201
    job = queued.json()
    assert job["status"] == "queued" and job["conclusion"] is None and job["created_at"]
    assert job["url"] == f"{sandbox.api_url}/repos/canonical/demo/actions/jobs/{job['id']}"
    second = requests.post(
        f"{sandbox.base_url}/_sandbox/jobs",
        json={"repository": "canonical/demo", "run_id": job["run_id"], "name": "test"},
        timeout=5,
    ).json()
    got = admin.get(job["url"]).json()
    assert got["id"] == job["id"] and got["head_branch"] == "main"
    run = admin.get(
        f"{sandbox.api_url}/repos/canonical/demo/actions/runs/{job['run_id']}/jobs"
    ).json()
    assert [j["id"] for j in run["jobs"]] == [job["id"], second["id"]]
    assert admin.get(job["url"].replace("demo", "other")).status_code == 404

    gh = _github(sandbox, lazy=True)
    workflow_job = gh.get_repo("canonical/demo").get_workflow_job(job["id"])
    assert workflow_job.status == "queued"

    bad = requests.post(f"{sandbox.base_url}/_sandbox/jobs", json={"repository": "x"}, timeout=5)
    assert bad.status_code == 422


def test_pygithub_maps_errors(sandbox: SandboxServer) -> None:
    gh = _github(sandbox, token="wrong", lazy=True)
    with pytest.raises(GithubException) as info:
        gh.get_repo("canonical/demo").get_self_hosted_runners().totalCount  # noqa: B018
    assert info.value.status == 401


def test_unknown_routes(sandbox: SandboxServer, admin: requests.Session) -> None:
    assert admin.get(f"{sandbox.api_url}/nope").status_code == 404
    assert admin.put(f"{sandbox.api_url}{REPO}").status_code == 405
    assert requests.get(f"{sandbox.base_url}/elsewhere", timeout=5).status_code == 404


def test_stats(sandbox: SandboxServer, admin: requests.Session) -> None:
    admin.get(f"{sandbox.api_url}{REPO}")
    admin.get(f"{sandbox.api_url}{REPO}")
    admin.post(f"{sandbox.api_url}/orgs/canonical/actions/runners/registration-token")
    stats = requests.get(f"{sandbox.base_url}/_sandbox/stats", timeout=5).json()
    assert stats["requests"]["GET /repos/{owner}/{repo}/actions/runners"] == 2
    assert stats["requests"]["POST /orgs/{org}/actions/runners/registration-token"] == 1
    assert stats["runners"] == {"registered": 0, "online": 0, "busy": 0}
    requests.post(f"{sandbox.base_url}/_sandbox/stats/reset", timeout=5)
    stats = requests.get(f"{sandbox.base_url}/_sandbox/stats", timeout=5).json()
    assert "GET /repos/{owner}/{repo}/actions/runners" not in stats["requests"]


def test_every_operation_and_status_is_validated(
    sandbox: SandboxServer, admin: requests.Session, api_checker: Checker
) -> None:
    """Drive every operation of the spec through each documented status the sandbox can give."""
    api = sandbox.api_url
    for prefix in ("/repos/canonical/demo", "/orgs/canonical"):
        base = f"{api}{prefix}/actions/runners"
        assert admin.get(base).ok and admin.get(f"{base}/downloads").ok
        assert admin.post(f"{base}/registration-token").status_code == 201
        assert admin.post(f"{base}/remove-token").status_code == 201
        body = {"name": "cover", "runner_group_id": 1, "labels": ["cover"]}
        created = admin.post(f"{base}/generate-jitconfig", json=body)
        assert created.status_code == 201
        assert admin.post(f"{base}/generate-jitconfig", json=body).status_code == 409
        assert admin.post(f"{base}/generate-jitconfig", json={}).status_code == 422
        missing_group = {**body, "name": "other", "runner_group_id": 999}
        assert admin.post(f"{base}/generate-jitconfig", json=missing_group).status_code == 404
        runner_id = created.json()["runner"]["id"]
        assert admin.get(f"{base}/{runner_id}").ok
        runner = sandbox.state.runners[runner_id]
        job = sandbox.state.queue_job("canonical/demo", ["cover"], [])
        assert sandbox.state.try_assign(runner) is job
        assert admin.delete(f"{base}/{runner_id}").status_code == 422
        sandbox.state.complete_job(runner, job, "success")
        idle = sandbox.state.register_runner(runner.scope, "idle", [], jit=True)
        assert admin.delete(f"{base}/{idle.id}").status_code == 204
    job = sandbox.state.queue_job("canonical/demo", ["self-hosted"], [])
    assert admin.get(f"{api}/repos/canonical/demo/actions/jobs/{job.id}").ok
    assert admin.get(f"{api}/repos/canonical/demo/actions/runs/{job.run_id}/jobs").ok
    assert admin.get(f"{api}/orgs/canonical/actions/runner-groups").ok
    assert admin.get(f"{api}/rate_limit").ok

    seen = {(method, route) for method, route, _ in api_checker.operations}
    assert spec_operations() <= seen, spec_operations() - seen
    unreachable = {("GET", "/rate_limit", 304), ("GET", "/rate_limit", 404)}
    assert spec_statuses() - unreachable <= api_checker.operations
