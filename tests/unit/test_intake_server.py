"""The intake's WSGI app: signatures, events, routing, dedupe, size cap, broker failures.

Deliveries are in GitHub's full shape (tests/unit/intake_payloads.py); the ledger is the real
sqlite one; the publisher is a fake behind the app's ``JobPublisher`` seam (the real kombu one
is exercised in tests/integration/test_intake_broker.py). A few tests run the production
waitress server on loopback.
"""

from __future__ import annotations

import io
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests

from intake import errors as intake_errors
from intake.ledger import JobLedger
from intake.routing import Flavor
from intake.server import IntakeApp
from reactive.message import JobDetails, parse_job_message
from repo_policy.server_limits import ServerLimits
from repo_policy.service import BackgroundServer
from tests.unit.intake_payloads import API, SECRET, encode, headers, ping_event, queued_event

FLAVORS = (
    Flavor("runner-small", frozenset({"small"})),
    Flavor("runner-arm", frozenset({"large", "arm64"})),
)


class FakePublisher:
    """Records what it publishes; fails the next ``failures`` publishes."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[tuple[str, JobDetails]] = []

    def publish(self, queue_name: str, message: JobDetails) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise intake_errors.IntakePublishError(
                queue_name, message.url, "ConnectionRefusedError"
            )
        self.published.append((queue_name, message))


class CountingInput(io.BytesIO):
    """A wsgi.input that counts the bytes the app read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def make_app(
    tmp_path: Path, publisher: FakePublisher | None = None, max_body: int = 64 * 1024
) -> IntakeApp:
    return IntakeApp(
        secret=SECRET,
        flavors=FLAVORS,
        ledger=JobLedger(tmp_path / "ledger.sqlite"),
        publisher=publisher or FakePublisher(),
        api_url=API,
        max_body_bytes=max_body,
    )


def post(
    app: IntakeApp,
    body: bytes,
    hdrs: dict[str, str] | None = None,
    content_length: str | None = None,
    stream: CountingInput | None = None,
) -> tuple[int, str]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhook",
        "wsgi.input": stream or io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if content_length is None else content_length,
    }
    for name, value in (headers(body) if hdrs is None else hdrs).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, str] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    out = b"".join(app(environ, start_response)).decode()
    return int(seen["status"].split()[0]), out.strip()


def test_a_queued_job_is_published_to_its_flavor_queue(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    body = encode(queued_event(101, ["self-hosted", "Linux", "X64", "small"]))
    assert post(app, body) == (200, "queued")
    [(queue, message)] = publisher.published
    assert queue == "runner-small"
    assert message.url == f"{API}/repos/octo-org/hello-runners/actions/jobs/101"
    assert message.labels == ["self-hosted", "Linux", "X64", "small"]
    # What the consumer reads back is the same message.
    assert parse_job_message(message.model_dump_json()) == message
    assert app.ledger.seen(101)


def test_routing_picks_the_flavor_with_the_job_labels(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    assert post(app, encode(queued_event(102, ["self-hosted", "ARM64", "large"])))[0] == 200
    assert [queue for queue, _ in publisher.published] == ["runner-arm"]


def test_no_flavor_is_answered_200_and_nothing_is_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    caplog.set_level(logging.INFO, logger="intake.server")
    assert post(app, encode(queued_event(103, ["self-hosted", "gpu"]))) == (200, "no flavor")
    assert post(app, encode(queued_event(104, ["ubuntu-latest"]))) == (200, "no flavor")
    assert publisher.published == []
    assert not app.ledger.seen(103)
    assert "no flavor offers labels ['self-hosted', 'gpu'] of job 103" in caplog.text


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha1=abc", "sha256=zz"],
    ids=["missing", "empty", "wrong", "sha1", "garbage"],
)
def test_a_bad_or_missing_signature_is_401_logged_without_the_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, signature: str | None
) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    body = encode(queued_event(105, ["small"]))
    hdrs = headers(body, delivery="d-105")
    if signature is None:
        del hdrs["X-Hub-Signature-256"]
    else:
        hdrs["X-Hub-Signature-256"] = signature
    caplog.set_level(logging.DEBUG)
    assert post(app, body, hdrs) == (401, "bad signature")
    assert publisher.published == []
    assert "'d-105'" in caplog.text
    assert "hello-runners" not in caplog.text
    assert SECRET.decode() not in caplog.text


def test_a_body_signed_with_another_secret_is_refused(tmp_path: Path) -> None:
    body = encode(queued_event(106, ["small"]))
    assert post(make_app(tmp_path), body, headers(body, secret=b"other"))[0] == 401


def test_a_tampered_body_is_refused(tmp_path: Path) -> None:
    body = encode(queued_event(107, ["small"]))
    hdrs = headers(body)
    assert post(make_app(tmp_path), body.replace(b"107", b"108"), hdrs)[0] == 401


def test_ping_is_answered(tmp_path: Path) -> None:
    body = encode(ping_event())
    assert post(make_app(tmp_path), body, headers(body, event="ping")) == (200, "pong")


@pytest.mark.parametrize("action", ["in_progress", "completed", "waiting"])
def test_other_actions_are_ignored(tmp_path: Path, action: str) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    assert post(app, encode(queued_event(109, ["small"], action=action))) == (202, "ignored")
    assert publisher.published == []
    assert not app.ledger.seen(109)


def test_other_events_are_ignored(tmp_path: Path) -> None:
    body = encode({"action": "completed", "workflow_run": {"id": 1}})
    assert post(make_app(tmp_path), body, headers(body, event="workflow_run"))[0] == 202


def test_a_redelivery_and_a_second_delivery_of_the_job_are_duplicates(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    body = encode(queued_event(110, ["small"]))
    assert post(app, body, headers(body, delivery="d-1")) == (200, "queued")
    assert post(app, body, headers(body, delivery="d-1")) == (200, "duplicate")
    assert post(app, body, headers(body, delivery="d-2")) == (200, "duplicate")
    assert len(publisher.published) == 1


def test_a_published_job_is_confirmed_and_stays_a_duplicate_for_good(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    body = encode(queued_event(112, ["small"]))
    assert post(app, body, headers(body, delivery="d-112")) == (200, "queued")
    with sqlite3.connect(app.ledger.path) as db:
        db.execute("UPDATE jobs SET claimed_at = claimed_at - 86000")  # long past stale
    assert post(app, body, headers(body, delivery="d-112")) == (200, "duplicate")
    assert len(publisher.published) == 1


def test_a_broker_failure_is_503_and_the_redelivery_succeeds(tmp_path: Path) -> None:
    publisher = FakePublisher(failures=1)
    app = make_app(tmp_path, publisher)
    body = encode(queued_event(111, ["small"]))
    assert post(app, body, headers(body, delivery="d-111")) == (503, "broker unavailable")
    assert not app.ledger.seen(111)
    assert post(app, body, headers(body, delivery="d-111")) == (200, "queued")
    assert len(publisher.published) == 1


def test_a_ledger_failure_is_503(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    (tmp_path / "ledger.sqlite").write_bytes(b"not a database" * 100)
    assert post(app, encode(queued_event(112, ["small"])))[0] == 503
    assert publisher.published == []


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda job: job.update(url="https://evil.example/repos/o/r/actions/jobs/113"), "api"),
        (lambda job: job.update(url=f"{API}/repos/o/r/actions/jobs/999"), "other id"),
        (lambda job: job.update(url=f"{API}/repos/o/r/actions/runs/113"), "not a job"),
        (lambda job: job.update(url=f"{API}/repos/o/r%0a/actions/jobs/113"), "bad repo"),
        (lambda job: job.pop("labels"), "no labels"),
        (lambda job: job.update(id="113"), "id as text"),
        (lambda job: job.update(labels=["small", 3]), "label type"),
    ],
)
def test_a_malformed_job_is_400(tmp_path: Path, mutate: Any, why: str) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher)
    event = queued_event(113, ["small"])
    mutate(event["workflow_job"])
    assert post(app, encode(event))[0] == 400, why
    assert publisher.published == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"[" * 20_000 + b"]" * 20_000])
def test_a_body_that_is_not_an_object_is_400(tmp_path: Path, body: bytes) -> None:
    assert post(make_app(tmp_path), body)[0] == 400


def test_a_declared_oversized_body_is_413_without_reading_it(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_body=2048)
    body = encode(queued_event(114, ["small"])) + b" " * 4096
    stream = CountingInput(body)
    assert post(app, body, stream=stream)[0] == 413
    assert stream.taken == 0


def test_an_undeclared_body_is_read_up_to_the_cap_plus_one(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_body=2048)
    body = b"x" * 10_000
    stream = CountingInput(body)
    assert post(app, body, content_length="", stream=stream)[0] == 413
    assert stream.taken == 2049


def test_an_undeclared_body_within_the_cap_is_taken(tmp_path: Path) -> None:
    body = encode(queued_event(115, ["small"]))
    assert post(make_app(tmp_path), body, headers(body), content_length="") == (200, "queued")


def test_a_bad_content_length_is_400(tmp_path: Path) -> None:
    body = encode(queued_event(116, ["small"]))
    assert post(make_app(tmp_path), body, content_length="12abc")[0] == 400
    assert post(make_app(tmp_path), body, content_length="-5")[0] == 400


def test_health_and_unknown_paths(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with BackgroundServer(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
        assert requests.get(f"{base}/webhook", timeout=5).status_code == 405


def test_the_app_never_shows_its_secret(tmp_path: Path) -> None:
    assert SECRET.decode() not in repr(make_app(tmp_path))


def test_over_waitress_a_delivery_and_an_oversized_chunked_body(tmp_path: Path) -> None:
    publisher = FakePublisher()
    app = make_app(tmp_path, publisher, max_body=64 * 1024)
    limits = ServerLimits(max_request_body=64 * 1024)
    with BackgroundServer(app, limits=limits) as server:
        url = f"http://127.0.0.1:{server.port}/webhook"
        body = encode(queued_event(117, ["small"]))
        answer = requests.post(url, data=body, headers=headers(body), timeout=10)
        assert (answer.status_code, answer.text.strip()) == (200, "queued")

        def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 4096

        answer = requests.post(url, data=chunks(), headers=headers(b""), timeout=10)
        assert answer.status_code == 413
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 413")
    assert len(publisher.published) == 1
