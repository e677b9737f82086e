"""Metrics pushed by cloud runners land in their store and pass the same extract() as LXD's."""

from __future__ import annotations

import io
import json
import os
import stat
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from metrics.push import MetricsPushApp, MetricsPushReceiver, load_or_create_key, push_token
from metrics.runner import extract
from metrics.storage import DirectoryStorageManager
from metrics.type import RUNNER_INSTALLED_TS_FILE_NAME
from repo_policy.app import PolicyApp
from repo_policy.config import PolicyConfig
from repo_policy.policy import PolicyGitHub
from repo_policy.service import BackgroundServer, ServiceFiles, build_app
from repo_policy.tokens import OneTimeTokenStore

RUNNER = "gh-0-0123abcd"
KEY = b"k" * 32


def _pre_job() -> bytes:
    return json.dumps(
        {
            "timestamp": time.time(),
            "workflow": "ci",
            "workflow_run_id": 42,
            "repository": "canonical/repo",
            "event": "push",
        }
    ).encode()


def _post_job() -> bytes:
    return json.dumps({"timestamp": time.time(), "status": "normal"}).encode()


@pytest.fixture
def storage(tmp_path: Path) -> DirectoryStorageManager:
    manager = DirectoryStorageManager(tmp_path / "stores", tmp_path / "quarantine")
    store = manager.create(RUNNER)
    (store.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text(str(time.time() - 60))
    return manager


def _receiver(storage: DirectoryStorageManager) -> MetricsPushReceiver:
    return MetricsPushReceiver(storage, KEY)


def test_pushed_files_are_extracted_like_a_shared_store(storage: DirectoryStorageManager) -> None:
    receiver, token = _receiver(storage), push_token(KEY, RUNNER)
    assert receiver.receive(RUNNER, "pre-job-metrics.json", token, _pre_job()) == 204
    assert receiver.receive(RUNNER, "post-job-metrics.json", token, _post_job()) == 204
    (metrics,) = list(extract(storage, ignore_runners=set()))
    assert metrics.runner_name == RUNNER
    assert metrics.pre_job is not None
    assert metrics.pre_job.workflow_run_id == 42
    assert metrics.post_job is not None


def test_a_pushed_file_that_fails_the_schema_quarantines_the_store(
    storage: DirectoryStorageManager, tmp_path: Path
) -> None:
    token = push_token(KEY, RUNNER)
    assert _receiver(storage).receive(RUNNER, "pre-job-metrics.json", token, b'{"x": 1}') == 204
    assert list(extract(storage, ignore_runners=set())) == []
    assert next(p.name for p in (tmp_path / "quarantine").iterdir()).startswith(RUNNER)


@pytest.mark.parametrize(
    ("runner", "file_name", "token", "body", "status"),
    [
        ("../etc", "pre-job-metrics.json", None, b"{}", 400),
        (RUNNER, "pre-job-metrics.json", "0" * 64, b"{}", 403),
        (RUNNER, "pre-job-metrics.json", push_token(KEY, "gh-0-ffffffff"), b"{}", 403),
        (RUNNER, "runner-installed.timestamp", None, b"1", 404),
        (RUNNER, "pre-job-metrics.json", None, b" " * 1025, 413),
        ("gh-0-99999999", "pre-job-metrics.json", None, b"{}", 404),
    ],
)
def test_refusals(
    storage: DirectoryStorageManager,
    runner: str,
    file_name: str,
    token: str | None,
    body: bytes,
    status: int,
) -> None:
    token = token if token is not None else push_token(KEY, runner)
    assert _receiver(storage).receive(runner, file_name, token, body) == status
    assert not (storage.get(RUNNER).path / "pre-job-metrics.json").exists()


def test_each_file_is_accepted_once(storage: DirectoryStorageManager) -> None:
    receiver, token = _receiver(storage), push_token(KEY, RUNNER)
    first = _pre_job()
    assert receiver.receive(RUNNER, "pre-job-metrics.json", token, first) == 204
    assert receiver.receive(RUNNER, "pre-job-metrics.json", token, _pre_job() + b" ") == 409
    assert (storage.get(RUNNER).path / "pre-job-metrics.json").read_bytes() == first


def test_a_symlink_in_the_store_is_never_followed(
    storage: DirectoryStorageManager, tmp_path: Path
) -> None:
    target = tmp_path / "outside"
    os.symlink(target, storage.get(RUNNER).path / "post-job-metrics.json")
    token = push_token(KEY, RUNNER)
    assert _receiver(storage).receive(RUNNER, "post-job-metrics.json", token, _post_job()) == 409
    assert not target.exists()


def test_tokens_are_per_runner_and_per_key() -> None:
    assert push_token(KEY, RUNNER) == push_token(KEY, RUNNER)
    assert push_token(KEY, RUNNER) != push_token(KEY, "gh-0-0123abce")
    assert push_token(KEY, RUNNER) != push_token(b"j" * 32, RUNNER)


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "metrics-push.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.write_bytes(b"short")
    assert load_or_create_key(path) != key


def _call(
    app: MetricsPushApp | PolicyApp, method: str, path: str, body: bytes, **headers: str
) -> str:
    answers: list[str] = []
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **headers,
    }
    app(environ, lambda status, _headers: answers.append(status))
    return answers[0]


def test_the_wsgi_route(storage: DirectoryStorageManager) -> None:
    app = MetricsPushApp(_receiver(storage))
    url = f"/metrics/{RUNNER}/pre-job-metrics.json"
    bearer = f"Bearer {push_token(KEY, RUNNER)}"
    assert app.handles(url) and not app.handles("/check")
    assert _call(app, "PUT", url, _pre_job()) == "401 Unauthorized"
    assert _call(app, "POST", url, _pre_job(), HTTP_AUTHORIZATION=bearer).startswith("405")
    assert _call(app, "PUT", "/metrics/x", b"", HTTP_AUTHORIZATION=bearer).startswith("404")
    big = b" " * 2048
    assert _call(app, "PUT", url, big, HTTP_AUTHORIZATION=bearer).startswith("413")
    assert _call(app, "PUT", url, _pre_job(), HTTP_AUTHORIZATION=bearer) == "204 No Content"


def test_the_policy_service_serves_the_push_route(storage: DirectoryStorageManager) -> None:
    policy = PolicyApp(
        lambda: "svc",
        OneTimeTokenStore(),
        _no_github,
        PolicyConfig,
        metrics_push=MetricsPushApp(_receiver(storage)),
    )
    url = f"/metrics/{RUNNER}/post-job-metrics.json"
    bearer = f"Bearer {push_token(KEY, RUNNER)}"
    assert _call(policy, "PUT", url, _post_job(), HTTP_AUTHORIZATION=bearer) == "204 No Content"
    assert (storage.get(RUNNER).path / "post-job-metrics.json").exists()
    plain = PolicyApp(lambda: "svc", OneTimeTokenStore(), _no_github, PolicyConfig)
    assert _call(plain, "PUT", url, _post_job(), HTTP_AUTHORIZATION=bearer).startswith("404")


def _no_github() -> PolicyGitHub:
    raise AssertionError("a push never asks GitHub")


def test_the_service_built_from_its_files_takes_pushes_over_http(
    storage: DirectoryStorageManager, tmp_path: Path
) -> None:
    token_file = tmp_path / "svc-token"
    token_file.write_text("svc")
    key_file = tmp_path / "state" / "metrics-push.key"
    files = ServiceFiles(
        token_file=token_file,
        github_token_file=tmp_path / "absent",
        github_api_url="http://127.0.0.1:9",
        metrics_stores=tmp_path / "stores",
        metrics_push_key=key_file,
    )
    with BackgroundServer(build_app(files), threads=1) as server:
        token = push_token(key_file.read_bytes(), RUNNER)
        request = urllib.request.Request(  # noqa: S310 -- loopback
            f"{server.url}/metrics/{RUNNER}/pre-job-metrics.json",
            data=_pre_job(),
            method="PUT",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 -- loopback
            assert answer.status == 204
    (metrics,) = list(extract(storage, ignore_runners=set()))
    assert metrics.pre_job is not None
    assert metrics.post_job is None
