"""The webhook intake as a process (``python -m intake``) against the real RabbitMQ on loopback.

The intake reaches the broker through a TCP relay on 127.0.0.1 that the test can cut and
restore (the broker itself, shared by every test, keeps running): a cut broker makes the
delivery 503 with the claim released, and GitHub's redelivery (same delivery id) then succeeds.
Each test uses a queue of its own, deleted afterwards. Messages are read back with the
consumers' own queue declaration (``reactive.consumer``): a declaration that did not match the
publisher's would fail on RabbitMQ (PRECONDITION_FAILED).

Prepare the broker with ``sudo scripts/setup-rabbitmq.sh``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import requests

from intake.ledger import JobLedger
from reactive.broker import declare_queue as _declare
from reactive.broker import queue_size
from reactive.message import JobDetails, parse_job_message
from tests.unit.intake_payloads import API, SECRET, encode, headers, ping_event, queued_event

pytestmark = pytest.mark.broker

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER = ("127.0.0.1", 5672)
_kombu: Any = kombu


class Relay:
    """A TCP relay 127.0.0.1:<port> -> the broker that can be cut (listener and connections)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self._listener], [], [], 0.2)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            if not self._up.is_set():
                client.close()  # cut: the connection is refused at once
                continue
            try:
                upstream = socket.create_connection(BROKER, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        self._up.clear()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def restore(self) -> None:
        """Relay new connections again."""
        self._up.set()

    def close(self) -> None:
        self.cut()
        self._closed = True
        self._thread.join(5)
        self._listener.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def queue_name(broker: str) -> Iterator[str]:
    name = f"intake-test-{uuid.uuid4().hex[:10]}"
    yield name
    with _kombu.Connection(broker, connect_timeout=5) as connection:
        channel = connection.channel()
        with contextlib.suppress(Exception):
            channel.queue_delete(name)
        with contextlib.suppress(Exception):
            channel.exchange_delete(name)


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    yield relay
    relay.close()


@pytest.fixture
def intake(tmp_path: Path, relay: Relay, queue_name: str) -> Iterator[str]:
    """A running intake whose broker URI goes through the relay; yields its base URL."""
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "mq").write_text(f"amqp://guest:guest@127.0.0.1:{relay.port}//")
    port = _free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "secret_file": str(tmp_path / "secret"),
        "mq_uri_file": str(tmp_path / "mq"),
        "flavors": [{"queue_name": queue_name, "labels": ["small"]}],
        "ledger": str(tmp_path / "ledger.sqlite"),
        "max_body_bytes": 1048576,
        "api_url": API,
        "publish_timeout": 3,
    }
    (tmp_path / "intake.json").write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(REPO_ROOT / p) for p in ("src", "lib")))
    log = (tmp_path / "intake.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "intake", "--config", str(tmp_path / "intake.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)  # polling for readiness, not waiting for an outcome
        else:
            pytest.fail(f"the intake did not start: {(tmp_path / 'intake.log').read_text()}")
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()
    assert SECRET.decode() not in (tmp_path / "intake.log").read_text()


def deliver(base: str, body: bytes, delivery: str, event: str = "workflow_job") -> tuple[int, str]:
    answer = requests.post(
        f"{base}/webhook", data=body, headers=headers(body, event, delivery), timeout=30
    )
    return answer.status_code, answer.text.strip()


def take_all(broker: str, queue_name: str) -> list[JobDetails]:
    """Consume every ready message with the consumers' queue declaration, acking each."""
    taken: list[JobDetails] = []
    with _kombu.Connection(broker, connect_timeout=5) as connection:

        def on_message(body: Any, message: Any) -> None:
            taken.append(parse_job_message(message.body))
            message.ack()

        with (
            _kombu.Consumer(
                connection, queues=[_declare(queue_name)], callbacks=[on_message], accept=["json"]
            ),
            contextlib.suppress(socket.timeout, TimeoutError),
        ):
            while True:
                connection.drain_events(timeout=1)
    return taken


def test_a_delivery_is_confirmed_on_the_consumers_queue(
    broker: str, intake: str, queue_name: str
) -> None:
    assert deliver(intake, encode(ping_event()), str(uuid.uuid4()), "ping") == (200, "pong")
    body = encode(queued_event(4001, ["self-hosted", "small"]))
    assert deliver(intake, body, "d-4001") == (200, "queued")
    # The 200 came after the broker's confirm: the message is there now, persistent.
    assert queue_size(broker, queue_name) == 1
    assert deliver(intake, body, "d-4001") == (200, "duplicate")
    assert deliver(intake, body, "d-4001-bis") == (200, "duplicate")
    [message] = take_all(broker, queue_name)
    assert message.url == f"{API}/repos/octo-org/hello-runners/actions/jobs/4001"
    assert message.labels == ["self-hosted", "small"]


def test_a_broker_outage_is_503_then_the_redelivery_succeeds(
    broker: str, intake: str, queue_name: str, relay: Relay, tmp_path: Path
) -> None:
    relay.cut()
    body = encode(queued_event(4002, ["small"]))
    assert deliver(intake, body, "d-4002") == (503, "broker unavailable")
    assert not JobLedger(tmp_path / "ledger.sqlite").seen(4002)
    relay.restore()
    assert deliver(intake, body, "d-4002") == (200, "queued")  # GitHub's redelivery
    assert [m.url for m in take_all(broker, queue_name)] == [
        f"{API}/repos/octo-org/hello-runners/actions/jobs/4002"
    ]


def test_a_broker_cut_after_a_publish_does_not_lose_the_next_job(
    broker: str, intake: str, queue_name: str, relay: Relay
) -> None:
    assert deliver(intake, encode(queued_event(4003, ["small"])), "d-4003")[0] == 200
    relay.cut()
    body = encode(queued_event(4004, ["small"]))
    assert deliver(intake, body, "d-4004")[0] == 503
    relay.restore()
    assert deliver(intake, body, "d-4004") == (200, "queued")
    assert sorted(int(m.url.rsplit("/", 1)[1]) for m in take_all(broker, queue_name)) == [
        4003,
        4004,
    ]
