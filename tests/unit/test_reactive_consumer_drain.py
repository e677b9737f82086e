"""The consumer's drain (SIGUSR1): see the held message through, then take no other.

Against kombu's memory transport and its MongoDB transport over mongomock (the fixtures of
test_reactive_consumer); GitHub and the spawner are ``FakeJobs``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

import errors
from github_api.types import JobInfo, JobStatus
from reactive.consumer import JobConsumer, Outcome, publish_job
from reactive.settling import StopRequests
from reactive.types import RunnerActivity, RunnerView
from tests.unit import test_reactive_consumer as base
from tests.unit.fakes_reactive import FakeJobs
from tests.unit.test_reactive_consumer import drain, message, settings

mq_uri = base.mq_uri  # the fixtures: the memory transport, and MongoDB over mongomock
queue = base.queue


@dataclass
class _DrainOnSpawn:
    """A spawner that is asked to drain while it creates the runner (the reconcile's SIGUSR1)."""

    github: FakeJobs
    event: threading.Event

    def spawn_one(self) -> str:
        self.event.set()
        return self.github.spawn_one()


def _drained_on_spawn(
    mq_uri: str, queue: str, github: FakeJobs, *, pickup_timeout: float
) -> JobConsumer:
    """A consumer asked to drain the moment it spawns a runner (the scale-down's race)."""
    asked = threading.Event()
    return JobConsumer(
        mq_uri,
        settings(queue, pickup_timeout=pickup_timeout),
        github,
        _DrainOnSpawn(github, asked),
        drain=asked,
    )


def test_draining_consumer_sees_its_message_through_then_takes_no_other(
    mq_uri: str, queue: str
) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED, 2: JobStatus.QUEUED}, pickup_after=3)
    publish_job(mq_uri, queue, message(1))
    publish_job(mq_uri, queue, message(2))
    consumer = _drained_on_spawn(mq_uri, queue, github, pickup_timeout=5.0)
    consumer.run(max_messages=5, idle_timeout=2.0)  # returns: drained
    assert consumer.counts == {Outcome.PICKED_UP: 1}, "settled as usual: acked on pickup"
    assert github.spawned == ["runner-0"]
    assert github.statuses[1] == JobStatus.IN_PROGRESS
    assert drain(mq_uri, queue) == [message(2)], "the next message was not taken"


def test_draining_consumer_whose_job_is_not_taken_requeues_after_the_deadline(
    mq_uri: str, queue: str
) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED}, pickup_after=None)
    publish_job(mq_uri, queue, message(1))
    consumer = _drained_on_spawn(mq_uri, queue, github, pickup_timeout=0.3)
    started = time.monotonic()
    consumer.run(max_messages=5, idle_timeout=2.0)
    assert time.monotonic() - started >= 0.3, "the pickup wait was not cut short"
    assert consumer.counts == {Outcome.NOT_PICKED_UP: 1}
    assert github.spawned == ["runner-0"]
    assert drain(mq_uri, queue) == [message(1)]


@dataclass
class _Message:
    """A delivery as the consumer settles it (the kombu message's seam)."""

    body: str
    delivery_info: dict[str, Any] = field(default_factory=dict)
    settled: list[str] = field(default_factory=list)

    def ack(self) -> None:
        self.settled.append("ack")

    def reject(self, requeue: bool) -> None:
        self.settled.append("requeue" if requeue else "reject")

    def requeue(self) -> None:
        self.settled.append("requeue")


def test_message_received_while_draining_is_requeued_unread() -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    consumer = JobConsumer("memory://", settings("q"), github, github)
    consumer.drain()
    delivery = _Message(message(1))
    consumer._handle(delivery)
    assert delivery.settled == ["requeue"]
    assert consumer.counts == {Outcome.STOPPED: 1}
    assert github.checks == [], "GitHub not asked"
    assert github.spawned == []


def test_drain_before_the_spawn_requeues_at_once(mq_uri: str, queue: str) -> None:
    github = FakeJobs(statuses={1: JobStatus.QUEUED})
    asked = threading.Event()

    @dataclass
    class Checker:
        def get_job_by_url(self, url: str) -> JobInfo:
            asked.set()  # SIGUSR1 while GitHub is asked about the job
            return github.get_job_by_url(url)

    publish_job(mq_uri, queue, message(1))
    consumer = JobConsumer(mq_uri, settings(queue), Checker(), github, drain=asked)
    consumer.run(max_messages=5, idle_timeout=2.0)
    assert consumer.counts == {Outcome.STOPPED: 1}
    assert github.spawned == [], "nothing spawned for it"
    assert drain(mq_uri, queue) == [message(1)]


def _run_drained_after(
    mq_uri: str, queue: str, github: FakeJobs, seconds: float, **extra: Any
) -> JobConsumer:
    """Run a consumer asked to drain ``seconds`` in; it must return well within 5 s."""
    asked = threading.Event()
    consumer = JobConsumer(mq_uri, settings(queue, **extra), github, github, drain=asked)
    timer = threading.Timer(seconds, asked.set)
    timer.start()
    started = time.monotonic()
    consumer.run(max_messages=5, idle_timeout=10.0)
    timer.join()
    assert time.monotonic() - started < 5
    return consumer


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        # a 404 (GitHub's replication lag): the grace is cut short, the message requeued
        (None, {"not_found_grace": 60.0}),
        # a GitHub fault: its backoff is cut short
        (errors.GithubApiError("x"), {"error_delay_initial": 60.0, "error_delay_max": 60.0}),
    ],
)
def test_drain_cuts_the_waits_before_a_spawn_short(
    mq_uri: str, queue: str, fault: errors.GithubClientError | None, extra: dict[str, Any]
) -> None:
    if fault is None:
        github = FakeJobs(statuses={})
    else:
        github = FakeJobs(statuses={1: JobStatus.QUEUED}, errors=[fault])
    publish_job(mq_uri, queue, message(1))
    consumer = _run_drained_after(mq_uri, queue, github, 0.3, **extra)
    assert sum(consumer.counts.values()) == 1
    assert consumer.counts.keys() <= {Outcome.STOPPED, Outcome.GITHUB_ERROR}
    assert github.spawned == []
    assert drain(mq_uri, queue) == [message(1)], "requeued, not dropped"


class _WarmFleet(FakeJobs):
    """One idle runner of the unit online that never takes the job."""

    def watch(self, name: str | None) -> RunnerView:
        return RunnerView(RunnerActivity.GONE, others_idle=1)


def test_drain_during_the_warm_grace_requeues_without_a_spawn(mq_uri: str, queue: str) -> None:
    github = _WarmFleet(statuses={1: JobStatus.QUEUED})
    publish_job(mq_uri, queue, message(1))
    consumer = _run_drained_after(mq_uri, queue, github, 0.3, warm_grace=60.0)
    assert consumer.counts == {Outcome.STOPPED: 1}
    assert github.spawned == []
    assert drain(mq_uri, queue) == [message(1)]


def test_idle_consumer_exits_at_the_next_receive_timeout(mq_uri: str, queue: str) -> None:
    asked = threading.Event()
    consumer = JobConsumer(
        mq_uri, settings(queue, receive_timeout=0.2), FakeJobs(), FakeJobs(), drain=asked
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    time.sleep(0.3)
    asked.set()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert consumer.counts == {}


def test_stop_requests_wait() -> None:
    requests = StopRequests()
    assert not requests.finishing()
    assert requests.wait_finishing(0.05) is False
    threading.Timer(0.1, requests.drain.set).start()
    started = time.monotonic()
    assert requests.wait_finishing(10) is True
    assert time.monotonic() - started < 2
    assert requests.wait_stop(0.05) is False, "a drain does not end a wait for the pickup"
    requests.stop.set()
    assert requests.wait_stop(10) is True
