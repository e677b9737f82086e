"""GithubClient against the sandbox GitHub over real HTTP (PyGithub transport, no LXD needed).

Each test works on its own repository or organisation name, so they share one sandbox server;
faults, forced rate limits and request counters are reset around every test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

import errors
from github_api.client import GithubClient
from github_api.types import GitHubOrg, GitHubRepo, GitHubRunnerStatus, JobStatus
from reactive.consumer import ConsumerSettings, JobConsumer, Outcome, publish_job
from sandbox.server import SandboxServer

ADMIN = "ghp_admin-sandbox-secret-0001"
READONLY = "ghp_readonly-sandbox-secret-0002"
RUNS_ROUTE = "/repos/{owner}/{repo}/actions/runners"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(
        token=ADMIN, readonly_token=READONLY, port=0, runner_version="2.330.0"
    ) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxServer) -> Iterator[None]:
    control(sandbox, "DELETE", "/faults")
    control(sandbox, "POST", "/stats/reset")
    yield
    control(sandbox, "DELETE", "/faults")


@pytest.fixture
def client(sandbox: SandboxServer) -> GithubClient:
    return GithubClient(ADMIN, sandbox.api_url, timeout=5, max_wait=30)


@pytest.fixture
def repo() -> GitHubRepo:
    return GitHubRepo("octo", f"r-{uuid.uuid4().hex[:10]}")


def control(sb: SandboxServer, method: str, route: str, body: Any = None) -> Any:
    response = requests.request(method, f"{sb.base_url}/_sandbox{route}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def counts(sb: SandboxServer) -> dict[str, int]:
    """REST API request counts since the last reset (control routes left out)."""
    stats = control(sb, "GET", "/stats")["requests"]
    return {k: v for k, v in stats.items() if " /_sandbox/" not in k}


def fault(sb: SandboxServer, **spec: Any) -> None:
    control(sb, "POST", "/faults", spec)


def repo_regex(repo: GitHubRepo) -> str:
    return f"^/repos/{repo.owner}/{repo.repo}/"


def rate_limit(sb: SandboxServer) -> dict[str, Any]:
    """The admin token's core rate limit, read from the sandbox's ``/rate_limit``."""
    headers = {"Authorization": f"token {ADMIN}"}
    response = requests.get(f"{sb.api_url}/rate_limit", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    core: dict[str, Any] = response.json()["resources"]["core"]
    return core


# --- runners ----------------------------------------------------------------------------------


def test_list_runners_pages_250_in_three_requests(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    names = [f"app-0-{i:04d}" for i in range(250)] + [f"other-1-{i}" for i in range(7)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda n: client.get_jit_config(repo, n, ["self-hosted", "x64"]), names))
    control(sandbox, "POST", "/stats/reset")

    mine = client.list_runners(repo, "app-0-")

    assert sorted(r.name for r in mine) == [f"app-0-{i:04d}" for i in range(250)]
    assert len({r.id for r in mine}) == 250
    assert all(r.status is GitHubRunnerStatus.OFFLINE and not r.busy for r in mine)
    assert "x64" in mine[0].labels
    assert counts(sandbox) == {f"GET {RUNS_ROUTE}": 3}  # ceil(257 / 100), nothing else
    others = client.list_runners(repo, "other-1-")
    assert len(others) == 7


def test_list_runners_org_and_empty(sandbox: SandboxServer, client: GithubClient) -> None:
    org = GitHubOrg(f"org-{uuid.uuid4().hex[:8]}")
    assert client.list_runners(org, "") == []
    client.get_jit_config(org, "app-0-a", ["self-hosted"])
    assert [r.name for r in client.list_runners(org, "app-0-")] == ["app-0-a"]
    assert counts(sandbox)["GET /orgs/{org}/actions/runners"] == 2


def test_delete_runner_idle_missing_and_busy(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    idle = client.get_jit_config(repo, "app-0-idle", ["self-hosted"])
    busy = client.get_jit_config(repo, "app-0-busy", ["self-hosted", "busy-label"])

    client.delete_runner(repo, idle.runner_id, "app-0-idle")
    assert [r.name for r in client.list_runners(repo, "")] == ["app-0-busy"]
    client.delete_runner(repo, idle.runner_id, "app-0-idle")  # already gone: no-op
    client.delete_runner(repo, 987654321)

    control(sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": ["busy-label"]})
    job = sandbox.state.try_assign(sandbox.state.runners[busy.runner_id])
    assert job is not None
    assert client.list_runners(repo, "app-0-busy")[0].busy
    with pytest.raises(errors.RunnerBusyError) as info:
        client.delete_runner(repo, busy.runner_id, "app-0-busy")
    assert info.value.runner_name == "app-0-busy"
    assert info.value.status == 422


# --- JIT config and tokens --------------------------------------------------------------------


def test_jit_config_for_repo(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    jit = client.get_jit_config(repo, "app-0-jit", iter(["self-hosted", "linux", "edge"]))
    runner = sandbox.state.runners[jit.runner_id]
    assert runner.name == "app-0-jit" and runner.jit
    assert "edge" in runner.label_names()
    assert jit.encoded_jit_config
    assert jit.encoded_jit_config not in repr(jit)
    with pytest.raises(errors.GithubConflictError) as info:
        client.get_jit_config(repo, "app-0-jit", ["self-hosted"])
    assert info.value.status == 409


def test_jit_config_for_org_resolves_group_once(
    sandbox: SandboxServer, client: GithubClient
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    group = control(sandbox, "POST", "/runner-groups", {"org": org, "name": "ci"})
    path = GitHubOrg(org, "ci")

    first = client.get_jit_config(path, "app-0-a", ["self-hosted"])
    second = client.get_jit_config(path, "app-0-b", ["self-hosted"])

    assert sandbox.state.runners[first.runner_id].group_id == group["id"]
    assert sandbox.state.runners[second.runner_id].group_name == "ci"
    stats = counts(sandbox)
    assert stats["GET /orgs/{org}/actions/runner-groups"] == 1
    assert stats["POST /orgs/{org}/actions/runners/generate-jitconfig"] == 2
    default = client.get_jit_config(GitHubOrg(org, "default"), "app-0-c", ["self-hosted"])
    assert sandbox.state.runners[default.runner_id].group_id == 1


def test_jit_config_for_org_missing_group(sandbox: SandboxServer, client: GithubClient) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    with pytest.raises(errors.GithubRunnerGroupNotFoundError) as info:
        client.get_jit_config(GitHubOrg(org, "no-such-group"), "app-0-a", ["self-hosted"])
    assert info.value.group == "no-such-group"
    assert "no-such-group" in str(info.value)
    assert "POST /orgs/{org}/actions/runners/generate-jitconfig" not in counts(sandbox)


def test_jit_config_from_parallel_threads(client: GithubClient, repo: GitHubRepo) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        jits = list(
            pool.map(lambda i: client.get_jit_config(repo, f"app-0-p{i}", ["x"]), range(32))
        )
    assert len({j.runner_id for j in jits}) == 32
    assert len(client.list_runners(repo, "app-0-p")) == 32


def test_registration_token(client: GithubClient, repo: GitHubRepo) -> None:
    token = client.get_registration_token(repo)
    now = datetime.now(timezone.utc)
    assert token.token
    assert now < token.expires_at <= now + timedelta(hours=2)
    assert token.token not in repr(token)
    org_token = client.get_registration_token(GitHubOrg("some-org"))
    assert org_token.token != token.token


# --- downloads --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["x64", "arm64"])
def test_runner_application_with_sha256(client: GithubClient, repo: GitHubRepo, arch: str) -> None:
    app = client.get_runner_application(repo, "linux", arch)
    assert app.os == "linux" and app.architecture == arch
    assert app.version == "2.330.0"
    assert app.sha256_checksum is not None and len(app.sha256_checksum) == 64
    data = requests.get(app.download_url, timeout=10).content
    assert hashlib.sha256(data).hexdigest() == app.sha256_checksum


def test_runner_application_missing(client: GithubClient) -> None:
    with pytest.raises(errors.RunnerApplicationNotFoundError) as info:
        client.get_runner_application(GitHubOrg("some-org"), "plan9", "mips")
    assert "plan9/mips" in str(info.value)


# --- jobs -------------------------------------------------------------------------------------


def test_get_job_by_url_and_by_id(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    queued = control(
        sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": ["self-hosted", "x64"]}
    )
    by_url = client.get_job_by_url(queued["url"])
    assert by_url.id == queued["id"]
    assert by_url.status is JobStatus.QUEUED
    assert by_url.labels == ("self-hosted", "x64")
    assert by_url.runner_name is None
    assert client.get_job(repo, queued["id"]) == by_url

    runner = client.get_jit_config(repo, "app-0-taker", ["self-hosted", "x64"])
    sandbox.state.try_assign(sandbox.state.runners[runner.runner_id])
    taken = client.get_job(repo, queued["id"])
    assert taken.status is JobStatus.IN_PROGRESS
    assert taken.runner_name == "app-0-taker" and taken.runner_id == runner.runner_id
    assert taken.started_at is not None and taken.started_at >= taken.created_at


def test_list_jobs_of_run(sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo) -> None:
    first = control(sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": ["x"]})
    run_id = first["run_id"]
    second = control(
        sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": ["y"], "run_id": run_id}
    )
    jobs = client.list_jobs_of_run(repo, run_id)
    assert sorted(j.id for j in jobs) == sorted([first["id"], second["id"]])
    assert all(j.run_id == run_id and j.status is JobStatus.QUEUED for j in jobs)


def test_get_missing_job(client: GithubClient, repo: GitHubRepo) -> None:
    with pytest.raises(errors.GithubNotFoundError) as info:
        client.get_job(repo, 99999999)
    assert info.value.status == 404


def test_job_url_outside_api_url_is_rejected(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    queued = control(sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": ["x"]})
    url = queued["url"]
    other_port = sandbox.port + 1 if sandbox.port < 65535 else sandbox.port - 1
    bad = [
        url.replace(f":{sandbox.port}/", f":{other_port}/"),
        url.replace("127.0.0.1", "localhost"),
        url.replace("/api/v3/", "/"),
        url.replace("http://", "https://"),
        url + "?token=x",
        url.replace("/actions/jobs/", "/actions/runs/"),
        f"{sandbox.base_url}/_sandbox/jobs/{queued['id']}",
    ]
    control(sandbox, "POST", "/stats/reset")
    for candidate in bad:
        with pytest.raises(errors.InvalidJobUrlError):
            client.get_job_by_url(candidate)
    assert not any(k.startswith("GET /repos") for k in counts(sandbox))


# --- rate limit and faults --------------------------------------------------------------------


def test_unknown_and_revoked_token(sandbox: SandboxServer, repo: GitHubRepo) -> None:
    with pytest.raises(errors.GithubTokenError) as info:
        GithubClient("ghp_unknown", sandbox.api_url).list_runners(repo, "")
    assert info.value.status == 401 and "ghp_unknown" not in str(info.value)

    control(sandbox, "POST", "/tokens", {"token": "ghp_temp-token"})
    temp = GithubClient("ghp_temp-token", sandbox.api_url)
    assert temp.list_runners(repo, "") == []
    control(sandbox, "POST", "/tokens", {"token": "ghp_temp-token", "revoke": True})
    with pytest.raises(errors.GithubTokenError):
        temp.list_runners(repo, "")


def test_read_only_token_is_permission_error_naming_path(
    sandbox: SandboxServer, repo: GitHubRepo
) -> None:
    readonly = GithubClient(READONLY, sandbox.api_url)
    with pytest.raises(errors.GithubPermissionError) as info:
        readonly.get_jit_config(repo, "app-0-x", ["x"])
    assert info.value.status == 403
    assert info.value.path == repo.path() and repo.path() in str(info.value)
    with pytest.raises(errors.GithubPermissionError) as info:
        readonly.list_runners(GitHubOrg("acme"), "")
    assert "acme" in str(info.value)


def test_primary_rate_limit_raises_with_reset(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    fault(sandbox, rate_limit={"remaining": 0, "reset_in": 60})
    start = time.monotonic()
    with pytest.raises(errors.GithubRateLimitError) as info:
        client.list_runners(repo, "")
    assert time.monotonic() - start < 2
    assert info.value.status == 403
    assert info.value.reset_at is not None
    delta = (info.value.reset_at - datetime.now(timezone.utc)).total_seconds()
    assert 50 <= delta <= 62
    assert counts(sandbox)[f"GET {RUNS_ROUTE}"] == 1
    core = rate_limit(sandbox)  # never refused, does not count
    assert core["remaining"] == 0
    reset_at = datetime.fromtimestamp(core["reset"], tz=timezone.utc)
    assert abs((reset_at - info.value.reset_at).total_seconds()) <= 1


def test_secondary_rate_limit_429(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    fault(sandbox, status=429, retry_after=30, path_regex=repo_regex(repo))
    start = time.monotonic()
    with pytest.raises(errors.GithubRateLimitError) as info:
        client.list_runners(repo, "")
    assert time.monotonic() - start < 10  # never waits for the 30 s retry-after
    assert info.value.status == 429
    assert info.value.reset_at is not None
    delta = (info.value.reset_at - datetime.now(timezone.utc)).total_seconds()
    assert 25 <= delta <= 31
    assert counts(sandbox)[f"GET {RUNS_ROUTE}"] == 1


def test_persistent_503_is_retried_then_api_error(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    fault(sandbox, status=503, probability=1.0, path_regex=repo_regex(repo))
    start = time.monotonic()
    with pytest.raises(errors.GithubApiError) as info:
        client.list_runners(repo, "")
    elapsed = time.monotonic() - start
    assert info.value.status == 503
    assert counts(sandbox)[f"GET {RUNS_ROUTE}"] == 4
    assert 3 <= elapsed < 10  # backoff 0.5 + 1 + 2


def test_single_503_recovers(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    client.get_jit_config(repo, "app-0-a", ["x"])
    fault(sandbox, status=503, count=1, path_regex=repo_regex(repo))
    assert [r.name for r in client.list_runners(repo, "app-0-")] == ["app-0-a"]
    assert counts(sandbox)[f"GET {RUNS_ROUTE}"] == 2


def test_latency_beyond_timeout_fails_within_budget(
    sandbox: SandboxServer, repo: GitHubRepo
) -> None:
    slow = GithubClient(ADMIN, sandbox.api_url, timeout=0.5, max_wait=1.8)
    fault(sandbox, latency_ms=2000, path_regex=repo_regex(repo))
    start = time.monotonic()
    with pytest.raises(errors.GithubApiError, match="did not answer"):
        slow.list_runners(repo, "")
    elapsed = time.monotonic() - start
    assert elapsed < 2.5
    assert counts(sandbox)[f"GET {RUNS_ROUTE}"] == 2


def test_connection_refused_is_api_error(repo: GitHubRepo) -> None:
    with socket_closed_port() as port:
        dead = GithubClient(ADMIN, f"http://127.0.0.1:{port}/api/v3", timeout=1, max_wait=3)
        start = time.monotonic()
        with pytest.raises(errors.GithubApiError):
            dead.list_runners(repo, "")
        assert time.monotonic() - start < 5


class socket_closed_port:  # noqa: N801 - used as a context manager
    """A loopback port nobody listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *args: object) -> None:
        return None


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_never_in_logs(
    sandbox: SandboxServer,
    client: GithubClient,
    repo: GitHubRepo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("github", "github.Requester", "urllib3", "requests", "github_api"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets: list[str] = [ADMIN]

    jit = client.get_jit_config(repo, "app-0-log", ["x"])
    secrets.append(jit.encoded_jit_config)
    secrets.append(client.get_registration_token(repo).token)
    client.list_runners(repo, "")
    fault(sandbox, status=503, count=1, path_regex=repo_regex(repo))
    client.list_runners(repo, "")
    with pytest.raises(errors.GithubNotFoundError):
        client.get_job(repo, 123456789)
    with pytest.raises(errors.GithubTokenError):
        GithubClient(ADMIN + "-wrong", sandbox.api_url).list_runners(repo, "")
    control(sandbox, "DELETE", "/faults")
    fault(sandbox, status=500, path_regex=repo_regex(repo))
    with pytest.raises(errors.GithubApiError) as info:
        client.get_registration_token(repo)

    assert caplog.records, "DEBUG logging was not captured"
    text = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records) + str(info.value)
    for secret in secrets:
        assert secret not in text
    assert ADMIN[:12] not in text


def test_a_dripping_answer_ends_at_the_deadline(sandbox: SandboxServer, repo: GitHubRepo) -> None:
    slow = GithubClient(ADMIN, sandbox.api_url, timeout=1.0, max_wait=1.0)
    fault(sandbox, drip_ms=500, path_regex=repo_regex(repo), count=1)  # 15 s for 30 bytes
    start = time.monotonic()
    with pytest.raises(errors.GithubTimeoutError, match="within"):
        slow.list_runners(repo, "")
    elapsed = time.monotonic() - start
    print(f"\nanswer dripped at 500 ms a byte: the call ended after {elapsed:.2f}s (deadline 1s)")
    assert elapsed < 3.0
    assert slow.list_runners(repo, "") == []  # the fault is spent: a new connection works


def test_consumer_picks_up_a_job_github_shows_late(
    sandbox: SandboxServer, client: GithubClient, repo: GitHubRepo
) -> None:
    labels = ["self-hosted", "x64"]
    queued = control(sandbox, "POST", "/jobs", {"repository": repo.path(), "labels": labels})
    fault(sandbox, status=404, path_regex=f"/actions/jobs/{queued['id']}$", count=2)

    class Spawner:
        def spawn_one(self) -> str:
            runner = client.get_jit_config(repo, "app-0-late", labels)
            sandbox.state.try_assign(sandbox.state.runners[runner.runner_id])
            return "app-0-late"

    queue = f"q-{uuid.uuid4().hex[:8]}"
    settings = ConsumerSettings(
        queue_name=queue,
        supported_labels=frozenset(labels),
        served=repo,
        pickup_poll_initial=0.05,
        not_found_grace=3.0,
        not_found_poll_initial=0.1,
        receive_timeout=0.05,
        poll_interval=0.01,
    )
    publish_job("memory://", queue, json.dumps({"labels": labels, "url": queued["url"]}))
    consumer = JobConsumer("memory://", settings, client, Spawner())
    consumer.run(max_messages=1, idle_timeout=5)
    assert consumer.counts == {Outcome.PICKED_UP: 1}
    job_gets = sum(n for route, n in counts(sandbox).items() if "/actions/jobs/" in route)
    assert job_gets >= 4  # two 404s (replication lag), the job, then the pickup check
