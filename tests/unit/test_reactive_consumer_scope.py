"""Untrusted job messages: only the served repository, escaped logs, GitHub's replication lag.

The consumer runs against kombu's memory transport; GitHub and the spawner are ``FakeJobs``.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import errors
from config.settings import RunnerManagerSettings
from config.state import ReactiveConfig
from github_api.types import GitHubOrg, GitHubPath, GitHubRepo, JobStatus
from reactive.consumer import ConsumerSettings, JobConsumer, Outcome, publish_job
from reactive.message import parse_job_message
from reactive.pool import consumer_pool_for
from reactive.runner import load_consumer_settings
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_core import make_state
from tests.unit.fakes_reactive import FakeJobs

MQ = "memory://"
SERVED = GitHubRepo("canonical", "test")
URL = "https://api.github.com/repos/{}/actions/jobs/{}"


def settings(queue: str, **kwargs: Any) -> ConsumerSettings:
    base: dict[str, Any] = {
        "served": SERVED,
        "pickup_timeout": 0.3,
        "pickup_poll_initial": 0.01,
        "pickup_poll_max": 0.05,
        "error_delay_initial": 0.01,
        "error_delay_max": 0.02,
        "receive_timeout": 0.05,
        "poll_interval": 0.01,
        "not_found_grace": 2.0,
        "not_found_poll_initial": 0.01,
    }
    base.update(kwargs)
    return ConsumerSettings(queue_name=queue, **base)


def consume(body: str, github: FakeJobs, **kwargs: Any) -> JobConsumer:
    queue = f"q-{uuid.uuid4().hex[:10]}"
    publish_job(MQ, queue, body)
    consumer = JobConsumer(MQ, settings(queue, **kwargs), github, github)
    consumer.run(max_messages=1, idle_timeout=2.0)
    return consumer


def job(repository: str, job_id: int = 1, labels: list[str] | None = None) -> str:
    return json.dumps({"labels": labels or ["self-hosted"], "url": URL.format(repository, job_id)})


@pytest.mark.parametrize(
    ("served", "repository"),
    [
        (SERVED, "canonical/other"),
        (SERVED, "other/test"),
        (GitHubOrg("canonical"), "other/test"),
    ],
)
def test_a_job_of_another_repository_is_rejected_without_a_runner(
    served: GitHubPath, repository: str, caplog: pytest.LogCaptureFixture
) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    with caplog.at_level(logging.WARNING, logger="reactive.consumer"):
        consumer = consume(job(repository), github, served=served)
    assert consumer.counts == {Outcome.FOREIGN_REPOSITORY: 1}
    assert Outcome.FOREIGN_REPOSITORY.settlement == "reject"
    assert github.spawned == [] and github.checks == []
    assert any(repository in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("repository", ["canonical/test", "CANONICAL/Test"])
def test_a_job_of_the_served_repository_or_organisation_gets_a_runner(repository: str) -> None:
    for served in (SERVED, GitHubOrg("Canonical")):
        github = FakeJobs(statuses={1: JobStatus.QUEUED})
        consumer = consume(job(repository), github, served=served)
        assert consumer.counts == {Outcome.PICKED_UP: 1}
        assert github.spawned == ["runner-0"]


@pytest.mark.parametrize(
    "url",
    [
        "https://x\nWARNING forged entry/repos/canonical/test/actions/jobs/1",
        "https://api.github.com/repos/canonical/test/actions/jo\nbs/1",
        "https://api.github.com/repos/canonical/test/actions/jobs/1\r\n",
        "https://api.github.com/repos/canonical/my repo/actions/jobs/1",
        "https://api.github.com/repos/../test/actions/jobs/1",
        "https://api.github.com/repos/canonical/../actions/jobs/1",
        "https://api.github.com/repos/canonical/%2e%2e/actions/jobs/1",
    ],
)
def test_a_url_with_control_characters_or_bad_names_never_reaches_a_log_raw(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    body = json.dumps({"labels": ["unsupported-label"], "url": url})
    with caplog.at_level(logging.DEBUG, logger="reactive.consumer"):
        consumer = consume(body, github)
    assert github.spawned == [] and github.checks == []
    assert consumer.counts == {Outcome.INVALID: 1}
    for record in caplog.records:
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
    with pytest.raises(errors.JobMessageError):
        parse_job_message(body)


def test_logs_escape_what_the_queue_and_github_said(caplog: pytest.LogCaptureFixture) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    with caplog.at_level(logging.DEBUG, logger="reactive.consumer"):
        consume(job("canonical/test", labels=["bad\nlabel"]), github)
    assert caplog.records
    for record in caplog.records:
        assert "\n" not in record.getMessage()


def test_a_job_github_does_not_show_yet_is_picked_up_after_the_lag() -> None:
    lag: list[errors.GithubClientError] = [
        errors.GithubNotFoundError("Not Found", status=404) for _ in range(3)
    ]
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, errors=lag)
    consumer = consume(job("canonical/test"), github)
    assert consumer.counts == {Outcome.PICKED_UP: 1}
    assert github.spawned == ["runner-0"]
    assert len(github.checks) >= 4


def test_a_job_that_stays_missing_is_dropped_after_the_grace() -> None:
    github = FakeJobs(statuses={})
    consumer = consume(job("canonical/test"), github, not_found_grace=0.2)
    assert consumer.counts == {Outcome.JOB_NOT_FOUND: 1}
    assert github.spawned == []
    assert 2 <= len(github.checks) <= 20


def test_without_grace_a_missing_job_is_dropped_at_once() -> None:
    github = FakeJobs(statuses={})
    consumer = consume(job("canonical/test"), github, not_found_grace=0.0)
    assert consumer.counts == {Outcome.JOB_NOT_FOUND: 1}
    assert len(github.checks) == 1


def test_settings_read_the_served_path_and_the_grace() -> None:
    got = ConsumerSettings.from_mapping("app", {"served": "o/r", "not_found_grace": 3})
    assert got.served == GitHubRepo("o", "r") and got.not_found_grace == 3.0
    assert ConsumerSettings.from_mapping("app", {"served": "org"}).served == GitHubOrg("org")
    for bad in ("../x", 5, "a/b/c"):
        with pytest.raises(errors.ReactiveError):
            ConsumerSettings.from_mapping("app", {"served": bad})


def test_the_consumers_config_names_the_path_the_unit_serves(tmp_path: Path) -> None:
    state = make_state(
        reactive_config=ReactiveConfig(
            mq_uri=SecretStr("amqp://u:pw@127.0.0.1//"), queue_name="gh"
        )
    )
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=tmp_path / "lxd",
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
        reactive_config=state.reactive_config,
    )
    settings = RunnerManagerSettings(state_dir=tmp_path / "state", runner_log_dir=tmp_path / "l")
    pool = consumer_pool_for("gh", 0, config, settings)
    assert pool is not None
    pool.reconcile(0)
    got = load_consumer_settings(pool.processes.config_path, "gh")
    assert got.served == state.path
