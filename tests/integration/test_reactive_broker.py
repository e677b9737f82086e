"""Reactive consumers as real processes against a real RabbitMQ on 127.0.0.1:5672.

The consumers are started by ``reactive.runner_manager.reconcile``, running this module as their
entry (``ReactiveRunnerConfig.entry_module``): it calls ``reactive.runner.main`` with the factory
:func:`file_fakes`: a directory shared by all processes stands in for GitHub (jobs, their
status) and records every spawned runner.

Semantics asserted ("one runner per delivery"): every delivery of a message makes at most one
runner. A message is delivered again only when its consumer died or requeued it; then it gets
one more runner only if GitHub still shows the job queued (the earlier runner never took it).

Prepare the broker with ``sudo scripts/setup-rabbitmq.sh``. Outside CI the tests skip when no
broker answers; with ``CI`` set they fail.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kombu
import pytest

import errors
from github_api.types import JobInfo, JobStatus
from reactive.consumer import publish_job
from reactive.pid_files import is_alive
from reactive.runner import main
from reactive.runner_manager import ReactiveRunnerConfig, list_processes, reconcile

pytestmark = pytest.mark.broker

JOB_URL = "http://127.0.0.1:9/api/v3/repos/o/r/actions/jobs/{}"
ENTRY_MODULE = "tests.integration.test_reactive_broker"


# --- the fake GitHub shared by processes (loaded in the consumer processes by the factory) ----


@dataclass
class FileGithub:
    """GitHub jobs and runners in a directory, safe across processes.

    ``jobs/<id>.json`` holds ``{"picks_on_spawn": n, "missing_checks": m, "fail_checks": k,
    "status": s}``: the job turns in_progress ``pickup_delay`` s after its n-th runner is
    spawned; its first m checks answer 404 (GitHub's replication lag), the k next fail with a
    502; ``status`` forces a status; ``pickup_delay`` replaces :attr:`pickup_delay`. No file:
    404. ``spawns.log`` gets one line per runner: ``<consumer pid> <job id> <runner name>
    <unix time>``.
    """

    state_dir: Path
    pickup_delay: float = 0.2
    _last_job: int | None = None

    def _job(self, job_id: int) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / "jobs" / f"{job_id}.json").read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def _append(self, name: str, line: str) -> None:
        fd = os.open(self.state_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def get_job_by_url(self, url: str) -> JobInfo:
        job_id = int(url.rstrip("/").rsplit("/", 1)[1])
        self._last_job = job_id
        job = self._job(job_id)
        if job is None:
            raise errors.GithubNotFoundError("job not found", status=404)
        self._append(f"checks-{job_id}.log", str(os.getpid()))
        checks = len(read_lines(self.state_dir / f"checks-{job_id}.log"))
        missing = job.get("missing_checks", 0)
        if checks <= missing:
            raise errors.GithubNotFoundError("job not found (yet)", status=404)
        if checks <= missing + job.get("fail_checks", 0):
            raise errors.GithubApiError("server error", status=502)
        status = JobStatus(job.get("status", "queued"))
        spawns = [s for s in read_spawns(self.state_dir) if s.job_id == job_id]
        picks_on = job.get("picks_on_spawn", 1)
        if (
            status == JobStatus.QUEUED
            and len(spawns) >= picks_on
            and time.time() - spawns[picks_on - 1].at >= job.get("pickup_delay", self.pickup_delay)
        ):
            status = JobStatus.IN_PROGRESS
        return JobInfo(
            id=job_id,
            status=status,
            conclusion=None,
            created_at=datetime.now(timezone.utc),
            started_at=None,
            runner_name=None,
        )

    def spawn_one(self) -> str:
        name = f"runner-{uuid.uuid4().hex[:8]}"
        self._append("spawns.log", f"{os.getpid()} {self._last_job} {name} {time.time()}")
        return name


def file_fakes(section: Mapping[str, Any]) -> tuple[FileGithub, FileGithub]:
    """The factory of the consumers this module runs (see the end of the module)."""
    github = FileGithub(Path(section["state_dir"]))
    return github, github


@dataclass(frozen=True)
class Spawn:
    pid: int
    job_id: int
    name: str
    at: float


def read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def read_spawns(state_dir: Path) -> list[Spawn]:
    spawns = []
    for line in read_lines(state_dir / "spawns.log"):
        pid, job, name, at = line.split()
        spawns.append(Spawn(int(pid), int(job), name, float(at)))
    return spawns


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    name = f"itest-{uuid.uuid4().hex[:8]}"
    yield name
    with kombu.Connection(broker, connect_timeout=5) as conn:
        channel = conn.default_channel
        channel.queue_delete(name)
        channel.exchange_delete(name)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    (tmp_path / "state" / "jobs").mkdir(parents=True)
    return tmp_path / "state"


@pytest.fixture
def consumers(
    broker: str, queue: str, state_dir: Path, tmp_path: Path
) -> Iterator[ReactiveRunnerConfig]:
    config_path = tmp_path / "reactive.json"
    config_path.write_text(
        json.dumps(
            {
                "consumer": {
                    "pickup_timeout": 30,
                    "pickup_poll_initial": 0.1,
                    "pickup_poll_max": 0.5,
                    "error_delay_initial": 0.2,
                    "error_delay_max": 1,
                    "receive_timeout": 0.5,
                    "connect_timeout": 5,
                    "served": "o/r",
                    "not_found_grace": 1,
                    "not_found_poll_initial": 0.1,
                },
                "runner_manager": {"state_dir": str(state_dir)},
            }
        )
    )
    config = ReactiveRunnerConfig(
        broker,
        queue,
        config_path=config_path,
        pid_dir=tmp_path / "pids",
        log_dir=tmp_path / "logs",
        timeout="10m",
        kill_grace=10,
        user=None,
        entry_module=ENTRY_MODULE,
    )
    yield config
    reconcile(0, config, drain=False)
    for log in sorted(config.log_dir.glob("*.log")):
        assert "guest:guest" not in log.read_text(), f"broker credentials in {log.name}"


def add_job(state_dir: Path, job_id: int, **fields: Any) -> str:
    (state_dir / "jobs" / f"{job_id}.json").write_text(json.dumps(fields))
    return json.dumps({"labels": ["self-hosted", "linux"], "url": JOB_URL.format(job_id)})


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def ready_count(broker: str, queue: str) -> int:
    with kombu.Connection(broker, connect_timeout=5) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
        return int(count)


def picked(github: FileGithub, job_id: int) -> bool:
    try:
        return github.get_job_by_url(JOB_URL.format(job_id)).status == JobStatus.IN_PROGRESS
    except errors.GithubClientError:
        return False


def wait_consumers_ready(config: ReactiveRunnerConfig, count: int) -> None:
    def ready() -> bool:
        logs = [p.read_text() for p in config.log_dir.glob("*.log") if p.name[0].isdigit()]
        return sum("Consuming queue" in text for text in logs) >= count

    wait_for(ready, 60, "consumers to start")


def acks(config: ReactiveRunnerConfig) -> int:
    """How many messages the consumers acked, from their logs."""
    logs = [p.read_text() for p in config.log_dir.glob("*.log") if p.name[0].isdigit()]
    return sum(text.count("Message ack (") for text in logs)


def consumer_pid(timeout_pid: int) -> int:
    children = Path(f"/proc/{timeout_pid}/task/{timeout_pid}/children").read_text().split()
    return int(children[0])


# --- tests -----------------------------------------------------------------------------------


def test_five_jobs_each_get_exactly_one_runner(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    assert reconcile(3, consumers) == 3
    wait_consumers_ready(consumers, 3)
    github = FileGithub(state_dir)
    started = time.monotonic()
    for job_id in range(1, 6):
        publish_job(broker, queue, add_job(state_dir, job_id))
    wait_for(lambda: all(picked(github, j) for j in range(1, 6)), 60, "all jobs picked up")
    elapsed = time.monotonic() - started
    wait_for(lambda: acks(consumers) == 5, 30, "five acks")
    print(f"\n5 jobs over 3 consumers picked up in {elapsed:.2f}s")
    # SIGTERM: anything still held would be requeued
    assert reconcile(0, consumers, drain=False) == -3
    assert ready_count(broker, queue) == 0  # all five were acked
    spawns = read_spawns(state_dir)
    assert sorted(s.job_id for s in spawns) == [1, 2, 3, 4, 5]
    assert len({s.pid for s in spawns}) >= 2  # shared among the consumers (prefetch 1)


def test_sigkilled_consumer_message_is_redelivered_and_handled(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    assert reconcile(2, consumers) == 2
    wait_consumers_ready(consumers, 2)
    github = FileGithub(state_dir)
    redelivery_times = []
    for trial in range(1, 11):
        # The first runner never takes the job; the job is taken after the second spawn.
        publish_job(broker, queue, add_job(state_dir, trial, picks_on_spawn=2))

        def first_spawn(job: int = trial) -> bool:
            return any(s.job_id == job for s in read_spawns(state_dir))

        wait_for(first_spawn, 30, f"trial {trial}: first spawn")
        (victim,) = [s for s in read_spawns(state_dir) if s.job_id == trial]
        os.kill(victim.pid, signal.SIGKILL)  # while it waits for GitHub to show the job taken
        killed_at = time.time()
        wait_for(lambda job=trial: picked(github, job), 30, f"trial {trial}: pickup")
        spawns = [s for s in read_spawns(state_dir) if s.job_id == trial]
        assert len(spawns) == 2, f"trial {trial}: one runner per delivery, two deliveries"
        assert spawns[1].pid != victim.pid
        redelivery_times.append(spawns[1].at - killed_at)
        wait_for(lambda: len(list_processes(consumers.pid_dir)) == 1, 10, "victim gone")
        wait_for(lambda job=trial: acks(consumers) == job, 30, f"trial {trial}: ack")
        assert reconcile(2, consumers) == 1  # replace the killed consumer
        wait_consumers_ready(consumers, 2 + trial)
    redelivery_times.sort()
    print(
        f"\nSIGKILL -> redelivered and re-spawned: median {redelivery_times[5] * 1000:.0f} ms, "
        f"max {redelivery_times[-1] * 1000:.0f} ms over 10 trials"
    )
    assert reconcile(0, consumers, drain=False) == -2
    assert ready_count(broker, queue) == 0  # every message acked: none lost, none left
    assert len(read_spawns(state_dir)) == 20


def test_poison_messages_never_crash_or_loop(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    assert reconcile(2, consumers) == 2
    wait_consumers_ready(consumers, 2)
    before = {p.pid: consumer_pid(p.pid) for p in list_processes(consumers.pid_dir)}
    poison = [
        "{not json",
        "\xff garbage",
        "[]",
        json.dumps({"labels": "linux", "url": JOB_URL.format(1)}),
        json.dumps({"labels": ["linux"], "url": "http://127.0.0.1:9/nope"}),
        json.dumps({"labels": ["gpu"], "url": JOB_URL.format(1)}),
        json.dumps({"labels": ["linux"], "url": JOB_URL.format(404)}),  # 404 on GitHub
    ]
    for i in range(35):
        publish_job(broker, queue, poison[i % len(poison)])
    publish_job(broker, queue, add_job(state_dir, 1))
    publish_job(broker, queue, add_job(state_dir, 2, fail_checks=3))  # 502 three times
    publish_job(broker, queue, add_job(state_dir, 3, status="completed"))  # taken already
    github = FileGithub(state_dir)
    elapsed = wait_for(lambda: picked(github, 1) and picked(github, 2), 60, "valid jobs picked")
    wait_for(lambda: ready_count(broker, queue) == 0, 30, "queue drained")
    wait_for(lambda: acks(consumers) == 3, 30, "three acks")
    print(f"\n35 poison + 3 valid messages handled in {elapsed:.2f}s")
    # the consumers that ate the poison are the same processes, still running
    assert reconcile(2, consumers) == 0
    after = {p.pid: consumer_pid(p.pid) for p in list_processes(consumers.pid_dir)}
    assert after == before
    assert reconcile(0, consumers, drain=False) == -2
    assert ready_count(broker, queue) == 0
    assert sorted(s.job_id for s in read_spawns(state_dir)) == [1, 2]
    logs = "".join(p.read_text() for p in consumers.log_dir.glob("*.log"))
    assert "Rejecting message" in logs
    assert "unsupported labels" in logs
    assert "not found on GitHub" in logs
    assert "Traceback" not in logs


def test_foreign_jobs_are_dropped_and_lagging_jobs_picked_up(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    assert reconcile(1, consumers) == 1
    wait_consumers_ready(consumers, 1)
    add_job(state_dir, 7)  # GitHub would show it: only the URL's repository is wrong
    foreign = JOB_URL.format(7).replace("/repos/o/r/", "/repos/other/r/")
    publish_job(broker, queue, json.dumps({"labels": ["linux"], "url": foreign}))
    publish_job(broker, queue, add_job(state_dir, 8, missing_checks=2))  # 404 twice, then seen
    elapsed = wait_for(lambda: acks(consumers) == 1, 30, "the lagging job acked")
    wait_for(lambda: ready_count(broker, queue) == 0, 30, "queue drained")
    print(f"\nforeign job dropped, job seen after two 404s picked up in {elapsed:.2f}s")
    assert reconcile(0, consumers, drain=False) == -1
    assert [s.job_id for s in read_spawns(state_dir)] == [8]
    assert len(read_lines(state_dir / "checks-7.log")) == 0  # never asked GitHub
    logs = "".join(p.read_text() for p in consumers.log_dir.glob("*.log"))
    assert "is not served here" in logs and "not on GitHub yet" in logs
    assert "Message reject (foreign-repository)" in logs


def test_sigterm_while_waiting_requeues_for_another_consumer(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    assert reconcile(2, consumers) == 2
    wait_consumers_ready(consumers, 2)
    github = FileGithub(state_dir)
    publish_job(broker, queue, add_job(state_dir, 7, picks_on_spawn=2))
    wait_for(lambda: any(s.job_id == 7 for s in read_spawns(state_dir)), 30, "first spawn")
    (first,) = read_spawns(state_dir)
    os.kill(first.pid, signal.SIGTERM)
    stopped_in = wait_for(lambda: not Path(f"/proc/{first.pid}").exists(), 10, "clean exit")
    wait_for(lambda: picked(github, 7), 30, "pickup after requeue")
    wait_for(lambda: acks(consumers) == 1, 30, "one ack")
    spawns = read_spawns(state_dir)
    assert [s.job_id for s in spawns] == [7, 7]
    assert spawns[1].pid != first.pid
    log = (consumers.log_dir / f"{first.pid}.log").read_text()
    assert "Stopping while job" in log
    assert "Message requeue (stopped)" in log
    print(f"\nSIGTERM while waiting: consumer requeued and exited in {stopped_in * 1000:.0f} ms")
    # the one left; the stopped one's pid file was stale
    assert reconcile(0, consumers, drain=False) == -1
    assert ready_count(broker, queue) == 0


def test_scale_down_drains_the_consumer_holding_a_message(
    broker: str, queue: str, state_dir: Path, consumers: ReactiveRunnerConfig
) -> None:
    """Its runner takes a slot (ceiling 1): the consumer waiting for it is drained, not stopped.

    Stopped, it would requeue the message, and the next consumer, seeing no idle runner while
    that one boots, would spawn a second runner for the job.
    """
    assert reconcile(1, consumers) == 1
    wait_consumers_ready(consumers, 1)
    (holder,) = list_processes(consumers.pid_dir)
    github = FileGithub(state_dir)
    publish_job(broker, queue, add_job(state_dir, 9, pickup_delay=3))  # the runner boots 3 s
    wait_for(lambda: any(s.job_id == 9 for s in read_spawns(state_dir)), 30, "the spawn")
    assert reconcile(0, consumers) == -1  # consumers = ceiling - runners alive = 0
    assert reconcile(1, consumers) == 1, "the draining consumer does not count"
    assert reconcile(1, consumers) == 0
    wait_for(lambda: picked(github, 9), 30, "pickup by the first runner")
    wait_for(lambda: acks(consumers) == 1, 30, "the ack")
    wait_for(lambda: not is_alive(holder.pid, holder.start_time), 10, "the drained exit")
    assert [s.job_id for s in read_spawns(state_dir)] == [9], "one runner for the job"
    log = (consumers.log_dir / f"{read_spawns(state_dir)[0].pid}.log").read_text()
    assert log.count("Received signal") == 1, "asked once"
    assert "draining" in log and "Message ack (picked-up)" in log
    assert "requeue" not in log
    assert f"Consumer for queue {queue} drained" in log
    assert len(list_processes(consumers.pid_dir)) == 1  # the one started in its place
    assert ready_count(broker, queue) == 0


if __name__ == "__main__":  # a consumer process of these tests: the fakes as its factory
    sys.exit(main(factory=file_fakes))
