"""The intake's publisher on kombu's MongoDB transport (over mongomock).

The consumers' queue gets the message; unacknowledged write concerns are refused; a dead
broker is an error.

AMQP with broker confirms against a real RabbitMQ: tests/integration/test_intake_broker.py.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import kombu
import mongomock
import pytest
from kombu.transport import mongodb as kombu_mongodb

from intake import errors as intake_errors
from intake.publisher import _bounded_mongodb_uri, publish_job
from reactive.message import JobDetails, parse_job_message

_kombu: Any = kombu


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


MESSAGE = JobDetails(
    labels=["self-hosted", "small"], url="https://api.github.com/repos/o/r/actions/jobs/42"
)


@pytest.fixture
def mongo(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    client: mongomock.MongoClient[Any] = mongomock.MongoClient()
    client["reactive"].create_collection("messages.broadcast")  # mongomock refuses capped ones
    seen: dict[str, Any] = {}

    def fake_mongo_client(**conf: Any) -> mongomock.MongoClient[Any]:
        seen.update(conf)
        return client

    # The kombu boundary: its MongoDB transport builds pymongo.MongoClient(**conf).
    monkeypatch.setattr(kombu_mongodb, "MongoClient", fake_mongo_client)
    yield seen


def test_mongodb_publish_reaches_the_consumers_queue(mongo: dict[str, Any]) -> None:
    uri = "mongodb://127.0.0.1:27017/reactive"
    publish_job(uri, "runner-small", MESSAGE, timeout=3)
    # pymongo got bounded timeouts, and the default (acknowledged) write concern.
    assert mongo["serverselectiontimeoutms"] == "3000"
    assert mongo["sockettimeoutms"] == "3000"
    assert "w" not in mongo
    with _kombu.Connection(uri) as connection:
        queue = connection.SimpleQueue("runner-small")
        got = queue.get(timeout=5)
        assert parse_job_message(got.body) == MESSAGE
        got.ack()
        queue.close()


@pytest.mark.parametrize("uri", ["mongodb://h/db?w=0", "mongodb://h/db?retryWrites=true&w=0"])
def test_unacknowledged_writes_are_refused(uri: str) -> None:
    with pytest.raises(intake_errors.IntakePublishError) as caught:
        publish_job(uri, "runner-small", MESSAGE)
    assert caught.value.queue == "runner-small"
    assert caught.value.job_url == MESSAGE.url
    assert "w=0" in caught.value.reason


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1//", "amqp://guest:guest@127.0.0.1//"),
        (
            "mongodb://u:p@h1,h2/db?socketTimeoutMS=9",
            "mongodb://u:p@h1,h2/db?socketTimeoutMS=9"
            "&serverSelectionTimeoutMS=2000&wTimeoutMS=2000",
        ),
        (
            "mongodb://h",
            "mongodb://h/?serverSelectionTimeoutMS=2000&socketTimeoutMS=2000&wTimeoutMS=2000",
        ),
    ],
)
def test_mongodb_uris_get_the_missing_timeouts(uri: str, expected: str) -> None:
    assert _bounded_mongodb_uri(uri, 2.0) == expected


def test_an_unreachable_amqp_broker_is_an_error_without_the_uri() -> None:
    with socket_closed_port() as port:
        uri = f"amqp://guest:hunter2@127.0.0.1:{port}//"
        with pytest.raises(intake_errors.IntakePublishError) as caught:
            publish_job(uri, "runner-small", MESSAGE, timeout=2)
    assert "hunter2" not in str(caught.value)
    assert caught.value.queue == "runner-small"
