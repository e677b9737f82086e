"""Event models, the JSON-lines log, issue_events rules and reconciliation counts."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from pydantic import ValidationError

from errors import IssueMetricEventError
from metrics import events
from metrics.events import (
    Event,
    Reconciliation,
    RunnerInstalled,
    RunnerStart,
    RunnerStop,
    issue_event,
    metrics_log_path,
)
from metrics.github import GithubJobMetrics
from metrics.runner import crashed_runners, issue_events, reconciliation_event
from metrics.type import (
    CodeInformation,
    PostJobMetrics,
    PostJobStatus,
    PreJobMetrics,
    RunnerMetrics,
)

INSTALLED = 1_763_884_800.0
PRE = PreJobMetrics(
    timestamp=INSTALLED + 30,
    workflow="CI",
    workflow_run_id=1,
    repository="o/r",
    event="pull_request",
)
POST = PostJobMetrics(
    timestamp=INSTALLED + 100,
    status=PostJobStatus.REPO_POLICY_CHECK_FAILURE,
    status_info=CodeInformation(code=403),
)


@pytest.fixture(name="log_path")
def log_path_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics.log"
    monkeypatch.setenv(events.METRICS_LOG_PATH_ENV, str(path))
    return path


def read_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_log_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(events.METRICS_LOG_PATH_ENV, raising=False)
    assert metrics_log_path() == Path("/var/log/github-runner-metrics.log")


def test_event_names() -> None:
    assert RunnerInstalled(timestamp=1, flavor="f", duration=2).event == "runner_installed"
    assert RunnerStart.event_name == "runner_start"
    assert RunnerStop.event_name == "runner_stop"
    assert Reconciliation.event_name == "reconciliation"


def test_wrong_event_name_rejected() -> None:
    with pytest.raises(ValidationError):
        RunnerInstalled(timestamp=1, flavor="f", duration=2, event="runner_stop")


def test_negative_duration_rejected() -> None:
    with pytest.raises(ValidationError):
        RunnerInstalled(timestamp=1, flavor="f", duration=-1)


def test_issue_event_appends_one_line(log_path: Path) -> None:
    issue_event(RunnerInstalled(timestamp=1.5, flavor="small", duration=3.25))
    issue_event(
        Reconciliation(
            timestamp=2,
            flavor="small",
            crashed_runners=1,
            idle_runners=2,
            active_runners=3,
            expected_runners=5,
            duration=4.5,
        )
    )
    assert read_lines(log_path) == [
        {"timestamp": 1.5, "event": "runner_installed", "flavor": "small", "duration": 3.25},
        {
            "timestamp": 2.0,
            "event": "reconciliation",
            "flavor": "small",
            "crashed_runners": 1,
            "idle_runners": 2,
            "active_runners": 3,
            "expected_runners": 5,
            "duration": 4.5,
        },
    ]


def test_issue_event_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(events.METRICS_LOG_PATH_ENV, str(tmp_path / "missing" / "x.log"))
    with pytest.raises(IssueMetricEventError):
        issue_event(RunnerInstalled(timestamp=1, flavor="f", duration=1))


def _write_many(path: str, worker: int) -> None:
    import os

    os.environ[events.METRICS_LOG_PATH_ENV] = path
    for i in range(200):
        issue_event(RunnerInstalled(timestamp=i, flavor="x" * 500 + str(worker), duration=i))


def test_concurrent_writers_never_interleave(log_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(log_path), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    lines = read_lines(log_path)
    assert len(lines) == 800
    assert all(line["event"] == "runner_installed" for line in lines)


def test_issue_events_start_and_stop(log_path: Path) -> None:
    metrics = RunnerMetrics(
        installed_timestamp=INSTALLED, pre_job=PRE, post_job=POST, runner_name="r"
    )
    job = GithubJobMetrics(queue_duration=4.5, conclusion="failure")
    assert issue_events(metrics, "small", job) == {RunnerStart, RunnerStop}
    start, stop = read_lines(log_path)
    assert start == {
        "timestamp": INSTALLED + 30,
        "event": "runner_start",
        "flavor": "small",
        "workflow": "CI",
        "repo": "o/r",
        "github_event": "pull_request",
        "idle": 30.0,
        "queue_duration": 4.5,
    }
    assert stop == {
        "timestamp": INSTALLED + 100,
        "event": "runner_stop",
        "flavor": "small",
        "workflow": "CI",
        "repo": "o/r",
        "github_event": "pull_request",
        "status": "repo-policy-check-failure",
        "status_info": {"code": 403},
        "job_duration": 70.0,
        "job_conclusion": "failure",
    }


def test_issue_events_without_job_metrics(log_path: Path) -> None:
    metrics = RunnerMetrics(installed_timestamp=INSTALLED, pre_job=PRE, runner_name="r")
    assert issue_events(metrics, "f", None) == {RunnerStart}
    [start] = read_lines(log_path)
    assert start["queue_duration"] is None


def test_no_pre_job_no_events(log_path: Path) -> None:
    metrics = RunnerMetrics(installed_timestamp=INSTALLED, post_job=POST, runner_name="r")
    assert issue_events(metrics, "f", None) == set()
    assert read_lines(log_path) == []


def test_clock_skew_is_clamped(log_path: Path) -> None:
    early_post = POST.model_copy(update={"timestamp": PRE.timestamp - 10})
    metrics = RunnerMetrics(
        installed_timestamp=PRE.timestamp + 50, pre_job=PRE, post_job=early_post, runner_name="r"
    )
    issue_events(metrics, "f", None)
    start, stop = read_lines(log_path)
    assert start["idle"] == 0.0
    assert stop["job_duration"] == 0.0


def test_write_failure_stops_issuing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(events.METRICS_LOG_PATH_ENV, str(tmp_path / "no" / "log"))
    metrics = RunnerMetrics(
        installed_timestamp=INSTALLED, pre_job=PRE, post_job=POST, runner_name="r"
    )
    assert issue_events(metrics, "f", None) == set()


def test_crashed_runner_count_and_reconciliation() -> None:
    issued: list[set[type[Event]]] = [
        {RunnerStart, RunnerStop},
        {RunnerStart},
        set(),
        {RunnerStart},
    ]
    assert crashed_runners(issued) == 2
    event = reconciliation_event(
        "small",
        issued_per_runner=issued,
        idle_runners=1,
        active_runners=2,
        expected_runners=3,
        duration=-0.1,
        timestamp=INSTALLED,
    )
    assert event.crashed_runners == 2
    assert event.duration == 0.0
    assert event.model_dump()["event"] == "reconciliation"


def test_reconciliation_default_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("metrics.runner.now", lambda: 42.0)
    event = reconciliation_event(
        "f", issued_per_runner=[], idle_runners=0, active_runners=0, expected_runners=0, duration=1
    )
    assert event.timestamp == 42.0
