"""Consumer rules against kombu's memory transport and its MongoDB transport over mongomock.

The GitHub checker and the runner spawner are fakes (``FakeJobs``); the broker side is real
kombu code. The message schema and the settings, pure, are in test_reactive_message.py.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import kombu
import mongomock
import pytest
from kombu.transport import mongodb as kombu_mongodb

import errors
from github_api.types import JobInfo, JobStatus
from reactive.consumer import (
    ConsumerSettings,
    JobConsumer,
    Outcome,
    build_supported_labels,
    publish_job,
)
from tests.unit.fakes_reactive import FakeJobs

JOB_URL = "https://api.github.com/repos/canonical/test/actions/jobs/{}"
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def message(job_id: int, labels: list[str] | None = None) -> str:
    return json.dumps(
        {"labels": labels or ["self-hosted", "linux"], "url": JOB_URL.format(job_id)}
    )


def settings(queue: str, **kwargs: Any) -> ConsumerSettings:
    base: dict[str, Any] = {
        "supported_labels": build_supported_labels(["large"], "test-app", "jammy", "x64"),
        "pickup_timeout": 0.3,
        "pickup_poll_initial": 0.01,
        "pickup_poll_max": 0.05,
        "error_delay_initial": 0.01,
        "error_delay_max": 0.02,
        "receive_timeout": 0.05,
        "poll_interval": 0.01,
        "not_found_grace": 0.05,  # GitHub's replication lag: see test_reactive_consumer_scope
        "not_found_poll_initial": 0.01,
    }
    base.update(kwargs)
    return ConsumerSettings(queue_name=queue, **base)


@pytest.fixture(params=["memory", "mongodb"])
def mq_uri(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broker URI: kombu memory transport, or kombu's MongoDB transport over mongomock."""
    if request.param == "memory":
        yield "memory://"
        return
    client: mongomock.MongoClient[Any] = mongomock.MongoClient()
    # kombu asks for a capped collection, which mongomock refuses: create it first.
    client["reactive"].create_collection("messages.broadcast")

    def fake_mongo_client(**_: Any) -> mongomock.MongoClient[Any]:
        return client

    # The kombu boundary: its MongoDB transport builds pymongo.MongoClient(**conf).
    monkeypatch.setattr(kombu_mongodb, "MongoClient", fake_mongo_client)
    yield "mongodb://127.0.0.1:27017/reactive"


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


def drain(mq_uri: str, queue: str) -> list[str]:
    """Take (and ack) every message left in the queue; return their bodies."""
    bodies = []
    with kombu.Connection(mq_uri, transport_options={"polling_interval": 0.01}) as conn:
        simple = conn.SimpleQueue(queue)
        while True:
            try:
                msg = simple.get(block=True, timeout=0.1)
            except simple.Empty:
                break
            bodies.append(msg.body.decode() if isinstance(msg.body, bytes) else msg.body)
            msg.ack()
        simple.close()
    return bodies


def run(mq_uri: str, queue: str, github: FakeJobs, count: int, **kwargs: Any) -> JobConsumer:
    consumer = JobConsumer(mq_uri, settings(queue, **kwargs), github, github)
    consumer.run(max_messages=count, idle_timeout=2.0)
    return consumer


def test_valid_job_spawns_once_and_acks_when_picked_up(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=2)
    publish_job(mq_uri, queue, message(1))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.PICKED_UP: 1}
    assert github.spawned == ["runner-0"]
    assert drain(mq_uri, queue) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json {",
        b"\xff\xfe",
        "[]",
        '"a string"',
        json.dumps({"labels": ["linux"]}),
        json.dumps({"labels": "linux", "url": JOB_URL.format(1)}),
        json.dumps({"labels": [1], "url": JOB_URL.format(1)}),
        json.dumps({"labels": ["linux"], "url": "https://example.com/not/a/job"}),
        json.dumps({"labels": ["linux"], "url": "ftp://h/repos/o/r/actions/jobs/1"}),
        json.dumps({"labels": ["linux"], "url": "https://u:p@h/repos/o/r/actions/jobs/1"}),
        json.dumps({"labels": [""], "url": JOB_URL.format(1)}),
        "x" * 70_000,
    ],
)
def test_invalid_messages_rejected_without_spawn(mq_uri: str, queue: str, body: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    publish_job(mq_uri, queue, body)
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.INVALID: 1}
    assert github.spawned == []
    assert github.checks == []
    assert drain(mq_uri, queue) == []


@pytest.mark.parametrize("labels", [["self-hosted", "gpu"], ["LINUX", "arm64"], ["windows"]])
def test_unsupported_labels_rejected(mq_uri: str, queue: str, labels: list[str]) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    publish_job(mq_uri, queue, message(1, labels))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.UNSUPPORTED_LABELS: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == []


def test_supported_labels_are_case_insensitive(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    labels = ["Self-Hosted", "LINUX", "Large", "TEST-APP", "Jammy", "X64"]
    publish_job(mq_uri, queue, message(1, labels))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.PICKED_UP: 1}
    assert len(github.spawned) == 1


def test_job_not_found_is_rejected(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={})
    publish_job(mq_uri, queue, message(404))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.JOB_NOT_FOUND: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == []


def test_job_url_refused_by_client_is_rejected(mq_uri: str, queue: str) -> None:
    github = FakeJobs(
        statuses={1: JobStatus.QUEUED},
        errors=[errors.InvalidJobUrlError(JOB_URL.format(1), "not on the API URL")],
    )
    publish_job(mq_uri, queue, message(1))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.INVALID: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == []


@pytest.mark.parametrize("status", [JobStatus.IN_PROGRESS, JobStatus.COMPLETED])
def test_already_picked_up_is_acked_without_spawn(
    mq_uri: str, queue: str, status: JobStatus
) -> None:
    github = FakeJobs(statuses={1: status})
    publish_job(mq_uri, queue, message(1))
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.ALREADY_TAKEN: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == []


def test_not_picked_up_in_time_is_requeued(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=None)
    body = message(1)
    publish_job(mq_uri, queue, body)
    consumer = run(mq_uri, queue, github, 1, pickup_timeout=0.2)
    assert consumer.counts == {Outcome.NOT_PICKED_UP: 1}
    assert github.spawned == ["runner-0"]  # one runner for the one delivery
    assert len(github.checks) >= 2  # polled more than once within the deadline
    assert drain(mq_uri, queue) == [body]  # the very same message is back in the queue


def test_redelivered_job_taken_by_first_runner_is_acked_without_second_spawn(
    mq_uri: str, queue: str
) -> None:
    # First delivery: the runner takes the job only after the deadline (on the 100th check).
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=100)
    publish_job(mq_uri, queue, message(1))
    run(mq_uri, queue, github, 1, pickup_timeout=0.05, pickup_poll_initial=0.05)
    github.statuses[1] = JobStatus.IN_PROGRESS  # it got there eventually
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.ALREADY_TAKEN: 1}
    assert github.spawned == ["runner-0"]
    assert drain(mq_uri, queue) == []


@pytest.mark.parametrize(
    "error",
    [
        errors.GithubApiError("server error", status=502),
        errors.GithubRateLimitError(NOW + timedelta(seconds=1)),
        errors.GithubRateLimitError(None, status=429),
    ],
)
def test_github_error_requeues_after_delay(
    mq_uri: str, queue: str, error: errors.GithubClientError
) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, errors=[error])
    body = message(1)
    publish_job(mq_uri, queue, body)
    consumer = run(mq_uri, queue, github, 1)
    assert consumer.counts == {Outcome.GITHUB_ERROR: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == [body]


def test_github_errors_then_recovery_handles_job_once(mq_uri: str, queue: str) -> None:
    github = FakeJobs(
        statuses={1: JobStatus.QUEUED},
        errors=[errors.GithubApiError("boom", status=500) for _ in range(3)],
    )
    publish_job(mq_uri, queue, message(1))
    consumer = run(mq_uri, queue, github, 4)
    assert consumer.counts == {Outcome.GITHUB_ERROR: 3, Outcome.PICKED_UP: 1}
    assert github.spawned == ["runner-0"]
    assert drain(mq_uri, queue) == []


def test_error_delay_backs_off_exponentially_and_is_capped() -> None:
    consumer = JobConsumer(
        "memory://",
        settings("q", error_delay_initial=1.0, error_delay_max=8.0),
        FakeJobs(),
        FakeJobs(),
    )
    delays = [consumer._next_error_delay() for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    reset = errors.GithubRateLimitError(datetime.now(timezone.utc) + timedelta(hours=1))
    assert consumer._next_error_delay(reset) == 8.0  # a far reset is capped


def test_errors_during_pickup_wait_are_retried(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=1)
    publish_job(mq_uri, queue, message(1))

    calls = {"n": 0}
    real = github.get_job_by_url

    def flaky(url: str) -> JobInfo:
        calls["n"] += 1
        if calls["n"] == 2:  # first poll after the spawn fails
            raise errors.GithubApiError("timeout")
        return real(url)

    consumer = JobConsumer(mq_uri, settings(queue), checker=_Checker(flaky), spawner=github)
    consumer.run(max_messages=1, idle_timeout=2.0)
    assert consumer.counts == {Outcome.PICKED_UP: 1}
    assert github.spawned == ["runner-0"]


@dataclass
class _Checker:
    fn: Any

    def get_job_by_url(self, url: str) -> JobInfo:
        return self.fn(url)  # type: ignore[no-any-return]


class _FailingSpawner:
    def __init__(self) -> None:
        self.calls = 0

    def spawn_one(self) -> str:
        self.calls += 1
        raise errors.RunnerCreateError("LXD said no")


def test_spawn_failure_requeues(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    spawner = _FailingSpawner()
    body = message(1)
    publish_job(mq_uri, queue, body)
    consumer = JobConsumer(mq_uri, settings(queue), github, spawner)
    consumer.run(max_messages=1, idle_timeout=2.0)
    assert consumer.counts == {Outcome.SPAWN_FAILED: 1}
    assert spawner.calls == 1
    assert drain(mq_uri, queue) == [body]


def test_job_deleted_while_waiting_is_rejected(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=None)
    publish_job(mq_uri, queue, message(1))

    def spawn() -> str:
        del github.statuses[1]
        return "runner-x"

    spawner = _Spawner(spawn)
    consumer = JobConsumer(mq_uri, settings(queue), github, spawner)
    consumer.run(max_messages=1, idle_timeout=2.0)
    assert consumer.counts == {Outcome.JOB_NOT_FOUND: 1}
    assert drain(mq_uri, queue) == []


@dataclass
class _Spawner:
    fn: Any

    def spawn_one(self) -> str:
        return self.fn()  # type: ignore[no-any-return]


def test_stop_while_waiting_requeues_at_once(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=None)
    body = message(1)
    publish_job(mq_uri, queue, body)
    stop = threading.Event()

    def spawn() -> str:
        stop.set()  # SIGTERM arrives while the runner is being created
        return "runner-0"

    consumer = JobConsumer(
        mq_uri, settings(queue, pickup_timeout=60.0), github, _Spawner(spawn), stop=stop
    )
    consumer.run(max_messages=5, idle_timeout=2.0)
    assert consumer.counts == {Outcome.STOPPED: 1}
    assert drain(mq_uri, queue) == [body]


def test_stop_during_error_delay_requeues_at_once(mq_uri: str, queue: str) -> None:
    stop = threading.Event()
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, errors=[errors.GithubApiError("x")])
    body = message(1)
    publish_job(mq_uri, queue, body)
    consumer = JobConsumer(
        mq_uri,
        settings(queue, error_delay_initial=60.0, error_delay_max=60.0),
        github,
        github,
        stop=stop,
    )
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    consumer.run(max_messages=5, idle_timeout=5.0)
    timer.join()
    assert consumer.counts == {Outcome.GITHUB_ERROR: 1}
    assert drain(mq_uri, queue) == [body]


def test_poison_queue_of_100_drains_without_spawn(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    poison = [
        "{",
        "null",
        json.dumps({"labels": ["linux"], "url": 5}),
        json.dumps({"labels": ["cuda"], "url": JOB_URL.format(1)}),
        json.dumps({"labels": ["linux"], "url": JOB_URL.format(404)}),
    ]
    for i in range(100):
        publish_job(mq_uri, queue, poison[i % len(poison)])
    consumer = run(mq_uri, queue, github, 100)
    assert sum(consumer.counts.values()) == 100
    assert consumer.counts == {
        Outcome.INVALID: 60,
        Outcome.UNSUPPORTED_LABELS: 20,
        Outcome.JOB_NOT_FOUND: 20,
    }
    assert github.spawned == []
    assert drain(mq_uri, queue) == []


def test_many_jobs_one_runner_each(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses=dict.fromkeys(range(10), JobStatus.QUEUED))
    for i in range(10):
        publish_job(mq_uri, queue, message(i))
    consumer = run(mq_uri, queue, github, 10)
    assert consumer.counts == {Outcome.PICKED_UP: 10}
    assert len(github.spawned) == 10
    assert all(github.statuses[i] == JobStatus.IN_PROGRESS for i in range(10))


def test_unacked_message_returns_when_connection_closes(mq_uri: str, queue: str) -> None:
    """What the consumer relies on when it dies: unacked deliveries go back to the queue."""
    if mq_uri == "memory://":
        pytest.skip("kombu's memory transport does not redeliver unacked messages on close")
    body = message(1)
    publish_job(mq_uri, queue, body)
    with kombu.Connection(mq_uri) as conn:
        simple = conn.SimpleQueue(queue)
        msg = simple.get(block=True, timeout=2)
        assert msg.body in (body, body.encode())
        # no ack: closing the connection must restore it
    assert drain(mq_uri, queue) == [body]


def test_consumer_repr_hides_uri() -> None:
    consumer = JobConsumer("amqp://u:secret@127.0.0.1//", settings("q"), FakeJobs(), FakeJobs())
    assert "secret" not in repr(consumer)


def test_broker_unreachable_retries_until_stopped() -> None:
    stop = threading.Event()
    consumer = JobConsumer(
        "amqp://guest:guest@127.0.0.1:1//",
        settings("q", connect_timeout=0.2),
        FakeJobs(),
        FakeJobs(),
        stop=stop,
    )
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    consumer.run()
    timer.join()
    assert consumer.counts == {}


def test_publish_to_unreachable_broker_raises_queue_error() -> None:
    with pytest.raises(errors.QueueError):
        publish_job("amqp://guest:guest@127.0.0.1:1//", "q", "{}", connect_timeout=0.2)


def test_unexpected_checker_error_requeues_and_consumer_survives(mq_uri: str, queue: str) -> None:
    calls = {"n": 0}
    github = FakeJobs(statuses={1: JobStatus.QUEUED})

    def buggy(url: str) -> JobInfo:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug, or an error the client did not map")
        return github.get_job_by_url(url)

    body = message(1)
    publish_job(mq_uri, queue, body)
    consumer = JobConsumer(mq_uri, settings(queue), _Checker(buggy), github)
    consumer.run(max_messages=2, idle_timeout=2.0)
    assert consumer.counts == {Outcome.ERROR: 1, Outcome.PICKED_UP: 1}
    assert github.spawned == ["runner-0"]
    assert drain(mq_uri, queue) == []
