"""Unit tests of GithubClient's policy (retries, budget, error mapping, paging) over a fake seam.

The client is given a scripted transport (``github_api.retry.HttpTransport``) that answers plain
``HttpReply`` objects, and a fake clock and sleep; PyGithub itself (``github_api.transport``) is
exercised by tests/integration/test_github_client.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import errors
from github_api.client import GithubClient
from github_api.parse import HttpReply, parse_job_url
from github_api.types import GitHubOrg, GitHubRepo, GitHubRunnerStatus, JobStatus
from tests.unit.github_client_scripted import (
    API,
    JOB,
    ORG,
    REPO,
    TOKEN,
    make_client,
    reply,
    runner_json,
    runners_page,
)

# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://x/api/v3", "not a url", "https://user:pw@ghes.example/api/v3", "https://h/?q=1", ""],
)
def test_constructor_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        GithubClient(TOKEN, url)
    assert "user:pw" not in str(info.value)


def test_constructor_rejects_empty_token_and_bad_times() -> None:
    with pytest.raises(ValueError):
        GithubClient("  ", API)
    with pytest.raises(ValueError):
        GithubClient(TOKEN, API, timeout=0)
    with pytest.raises(ValueError):
        GithubClient(TOKEN, API, max_wait=-1)


def test_constructor_normalises_url_and_clamps_timeout() -> None:
    client = GithubClient(TOKEN, API + "/", timeout=60, max_wait=10)
    assert client.api_url == API
    assert client.timeout == 10
    assert TOKEN not in repr(client)


# --- runners ----------------------------------------------------------------------------------


def test_list_runners_reads_all_pages_and_filters_by_prefix() -> None:
    client, fake = make_client(runners_page(250, 1), runners_page(250, 2), runners_page(250, 3))
    runners = client.list_runners(REPO, "app-0-00")
    assert len(fake.calls) == 3
    assert [c[1] for c in fake.calls] == ["/repos/octo/hello/actions/runners"] * 3
    assert [r.name for r in runners] == [f"app-0-{i:04d}" for i in range(100)]
    assert runners[0].status is GitHubRunnerStatus.OFFLINE
    assert runners[0].labels == ("self-hosted",)


def test_list_runners_exact_multiple_of_page_size_stops_on_total() -> None:
    client, fake = make_client(runners_page(200, 1), runners_page(200, 2))
    assert len(client.list_runners(ORG, "")) == 200
    assert len(fake.calls) == 2
    assert fake.calls[0][1] == "/orgs/octo-org/actions/runners"


def test_list_runners_empty_is_one_request() -> None:
    client, fake = make_client(reply(200, {"total_count": 0, "runners": []}))
    assert client.list_runners(REPO, "app") == []
    assert len(fake.calls) == 1


def test_list_runners_malformed_answer_is_api_error() -> None:
    client, _ = make_client(reply(200, {"total_count": 1, "runners": [{"id": "x"}]}))
    with pytest.raises(errors.GithubApiError, match="malformed runners list"):
        client.list_runners(REPO, "")


def test_path_parts_are_quoted() -> None:
    client, fake = make_client(reply(200, {"total_count": 0, "runners": []}))
    client.list_runners(GitHubRepo("a/b", "c?d"), "")
    assert fake.calls[0][1] == "/repos/a%2Fb/c%3Fd/actions/runners"


def test_delete_runner_ok_and_missing_is_noop() -> None:
    client, fake = make_client(reply(204), reply(404, {"message": "Not Found"}))
    client.delete_runner(REPO, 7, "app-0-x")
    client.delete_runner(REPO, 8)
    assert [(c[0], c[1]) for c in fake.calls] == [
        ("DELETE", "/repos/octo/hello/actions/runners/7"),
        ("DELETE", "/repos/octo/hello/actions/runners/8"),
    ]


def test_delete_busy_runner_raises_runner_busy_with_name() -> None:
    client, _ = make_client(reply(422, {"message": "Runner is still running a job"}), reply(422))
    with pytest.raises(errors.RunnerBusyError) as info:
        client.delete_runner(ORG, 7, "app-0-busy")
    assert info.value.runner_name == "app-0-busy"
    assert info.value.status == 422
    with pytest.raises(errors.RunnerBusyError) as info:
        client.delete_runner(ORG, 9)
    assert info.value.runner_name == "#9"


# --- JIT and tokens ---------------------------------------------------------------------------


def jit_reply(rid: int = 42) -> HttpReply:
    return reply(201, {"runner": runner_json(rid, "app-0-new"), "encoded_jit_config": "c2VjcmV0"})


def groups_reply(*names: str, total: int | None = None) -> HttpReply:
    groups = [{"id": float(i + 1), "name": n} for i, n in enumerate(names)]
    return reply(200, {"total_count": total or len(groups), "runner_groups": groups})


def test_jit_config_for_repo_uses_default_group() -> None:
    client, fake = make_client(jit_reply())
    jit = client.get_jit_config(REPO, "app-0-new", ("self-hosted", "x64"))
    assert jit.runner_id == 42
    assert jit.encoded_jit_config == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(jit)
    verb, url, _, body = fake.calls[0]
    assert (verb, url) == ("POST", "/repos/octo/hello/actions/runners/generate-jitconfig")
    assert body == {"name": "app-0-new", "runner_group_id": 1, "labels": ["self-hosted", "x64"]}


def test_jit_config_for_org_resolves_group_once() -> None:
    client, fake = make_client(groups_reply("Default", "ci"), jit_reply(1), jit_reply(2))
    client.get_jit_config(ORG, "a", ["x"])
    client.get_jit_config(ORG, "b", ["x"])
    urls = [c[1] for c in fake.calls]
    assert urls == [
        "/orgs/octo-org/actions/runner-groups",
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        "/orgs/octo-org/actions/runners/generate-jitconfig",
    ]
    assert fake.calls[1][3] is not None and fake.calls[1][3]["runner_group_id"] == 2


def test_jit_config_group_name_falls_back_to_case_insensitive() -> None:
    client, fake = make_client(groups_reply("Default"), jit_reply())
    client.get_jit_config(GitHubOrg("octo-org", "default"), "a", ["x"])
    assert fake.calls[1][3] is not None and fake.calls[1][3]["runner_group_id"] == 1


def test_jit_config_group_lookup_pages() -> None:
    first = reply(
        200,
        {"total_count": 101, "runner_groups": [{"id": i, "name": f"g{i}"} for i in range(100)]},
    )
    client, fake = make_client(first, groups_reply("ci", total=101), jit_reply())
    client.get_jit_config(ORG, "a", ["x"])
    assert [c[2] for c in fake.calls[:2]] == [
        {"per_page": 100, "page": 1},
        {"per_page": 100, "page": 2},
    ]


def test_jit_config_missing_group_names_it() -> None:
    client, _ = make_client(groups_reply("Default"))
    with pytest.raises(errors.GithubRunnerGroupNotFoundError) as info:
        client.get_jit_config(ORG, "a", ["x"])
    assert info.value.group == "ci"
    assert "ci" in str(info.value) and "octo-org" in str(info.value)


def test_jit_config_conflict_and_labels() -> None:
    client, _ = make_client(reply(409, {"message": "Already exists"}))
    with pytest.raises(errors.GithubConflictError) as info:
        client.get_jit_config(REPO, "dup", ["x"])
    assert info.value.status == 409
    with pytest.raises(ValueError):
        client.get_jit_config(REPO, "a", [])
    with pytest.raises(ValueError):
        client.get_jit_config(REPO, "a", [str(i) for i in range(101)])


def test_registration_token() -> None:
    client, fake = make_client(
        reply(201, {"token": "AABBCC", "expires_at": "2026-01-02T03:04:05.000+00:00"})
    )
    token = client.get_registration_token(ORG)
    assert token.token == "AABBCC"
    assert token.expires_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert "AABBCC" not in repr(token)
    assert fake.calls[0][:2] == ("POST", "/orgs/octo-org/actions/runners/registration-token")


# --- downloads and jobs -----------------------------------------------------------------------


APPS = [
    {
        "os": "linux",
        "architecture": "arm64",
        "download_url": "https://x/a.tgz",
        "filename": "actions-runner-linux-arm64-2.330.0.tar.gz",
    },
    {
        "os": "linux",
        "architecture": "x64",
        "download_url": "https://x/b.tgz",
        "filename": "actions-runner-linux-x64-2.330.0.tar.gz",
        "sha256_checksum": "ab" * 32,
    },
]


def test_runner_application() -> None:
    client, fake = make_client(reply(200, APPS), reply(200, APPS))
    app = client.get_runner_application(REPO)
    assert app.architecture == "x64" and app.sha256_checksum == "ab" * 32
    assert app.version == "2.330.0"
    assert fake.calls[0][1] == "/repos/octo/hello/actions/runners/downloads"
    assert client.get_runner_application(REPO, arch="arm64").sha256_checksum is None


def test_runner_application_missing() -> None:
    client, _ = make_client(reply(200, APPS))
    with pytest.raises(errors.RunnerApplicationNotFoundError) as info:
        client.get_runner_application(REPO, "win", "x64")
    assert "win/x64" in str(info.value)
    assert isinstance(info.value, errors.GithubNotFoundError)


def test_get_job_and_by_url() -> None:
    client, fake = make_client(reply(200, JOB), reply(200, JOB))
    job = client.get_job(REPO, 99)
    assert job.status is JobStatus.IN_PROGRESS
    assert job.started_at is not None and (job.started_at - job.created_at).total_seconds() == 3
    assert job.labels == ("self-hosted", "x64") and job.runner_name == "app-0-abc"
    assert client.get_job_by_url(f"{API}/repos/octo/hello/actions/jobs/99") == job
    assert [c[1] for c in fake.calls] == ["/repos/octo/hello/actions/jobs/99"] * 2


def test_list_jobs_of_run_pages() -> None:
    page1 = reply(200, {"total_count": 101, "jobs": [{**JOB, "id": i} for i in range(100)]})
    page2 = reply(200, {"total_count": 101, "jobs": [{**JOB, "id": 100}]})
    client, fake = make_client(page1, page2)
    jobs = client.list_jobs_of_run(REPO, 5)
    assert [j.id for j in jobs] == list(range(101))
    assert [c[1] for c in fake.calls] == ["/repos/octo/hello/actions/runs/5/jobs"] * 2
    assert [c[2] for c in fake.calls] == [
        {"per_page": 100, "page": 1},
        {"per_page": 100, "page": 2},
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/api/v3/repos/o/r/actions/jobs/1",
        "http://ghes.example/api/v3/repos/o/r/actions/jobs/1",
        "https://ghes.example:8443/api/v3/repos/o/r/actions/jobs/1",
        "https://ghes.example/repos/o/r/actions/jobs/1",
        "https://ghes.example/api/v3/repos/o/r/actions/jobs/1?x=1",
        "https://ghes.example/api/v3/repos/o/r/actions/jobs/1#f",
        "https://u:p@ghes.example/api/v3/repos/o/r/actions/jobs/1",
        "https://ghes.example/api/v3/repos/o/../actions/jobs/1",
        "https://ghes.example/api/v3/repos/o/r/actions/jobs/abc",
        "https://ghes.example/api/v3/repos/o/r/actions/runs/1",
        "https://ghes.example/api/v3/repos/o/r/x/actions/jobs/1",
        "https://ghes.example/api/v3/repos/o%2Fx/r/actions/jobs/1",
        "https://ghes.example/api/v30/repos/o/r/actions/jobs/1",
        "https://ghes.example:notaport/api/v3/repos/o/r/actions/jobs/1",
        "",
        "x" * 5000,
    ],
)
def test_job_url_outside_api_is_rejected_without_request(url: str) -> None:
    client, fake = make_client()
    with pytest.raises(errors.InvalidJobUrlError):
        client.get_job_by_url(url)
    assert fake.calls == []


def test_job_url_default_port_and_case_are_equivalent() -> None:
    repo, job_id = parse_job_url(API, "HTTPS://GHES.example:443/api/v3/repos/o/r/actions/jobs/12")
    assert (repo, job_id) == (GitHubRepo("o", "r"), 12)


def test_get_job_missing_and_unknown_status() -> None:
    client, _ = make_client(
        reply(404, {"message": "Not Found"}), reply(200, {**JOB, "status": "weird"})
    )
    with pytest.raises(errors.GithubNotFoundError) as info:
        client.get_job(REPO, 1)
    assert info.value.status == 404 and info.value.path == "octo/hello"
    with pytest.raises(errors.GithubApiError, match="malformed job"):
        client.get_job(REPO, 1)
