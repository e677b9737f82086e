"""The intake's WSGI application: ``POST /webhook`` takes GitHub deliveries, ``GET /healthz``.

A delivery goes through, in order:

======================================================  ===================================
the body exceeds ``max_body_bytes`` (Content-Length or  413 (the body is not read past the
what is read)                                           cap)
``X-Hub-Signature-256`` missing or wrong                401 (logged without the body)
``ping`` event                                          200 ``pong``
another event, or a ``workflow_job`` not ``queued``     202 ``ignored``
not JSON, or a ``workflow_job`` lacking a field, a job  400
URL not under ``api_url`` or not naming the job
no flavor offers every label of the job                 200 ``no flavor`` (logged)
delivery id or job id already claimed in the ledger     200 ``duplicate``
the broker confirmed the message                        200 ``queued``
the ledger or the broker failed                         503, the claim released: GitHub's
                                                        redelivery (or the safety net)
                                                        enqueues the job later
======================================================  ===================================

The publisher is a seam (:class:`JobPublisher`): the default publishes through kombu with
broker confirms (:func:`intake.publisher.publish_job`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from intake import errors as intake_errors
from intake import payload
from intake.config import IntakeConfig
from intake.ledger import JobLedger
from intake.publisher import publish_job
from intake.routing import Flavor, route
from intake.signature import signature_valid
from reactive.message import JobDetails
from repo_policy.server import ClientCappedServer
from repo_policy.server import create_server as create_bounded_server
from repo_policy.server_limits import ServerLimits

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    503: "Service Unavailable",
}
_READ_CHUNK = 64 * 1024


class JobPublisher(Protocol):
    """Puts a job message on a queue and returns once the broker confirmed it."""

    def publish(self, queue_name: str, message: JobDetails) -> None:
        """Publish one message.

        Args:
            queue_name: The flavor's queue.
            message: The job message.

        Raises:
            IntakePublishError: The broker did not take the message.
        """


@dataclass(frozen=True)
class BrokerPublisher:
    """The kombu publisher (:func:`intake.publisher.publish_job`).

    Attributes:
        mq_uri: The broker URI (secret: kept out of ``repr``).
        timeout: Seconds for each of connecting, sending and the confirm.
    """

    mq_uri: str
    timeout: float = 5.0

    def __repr__(self) -> str:
        """Return a description without the URI (it holds credentials)."""
        return f"BrokerPublisher(timeout={self.timeout})"

    def publish(self, queue_name: str, message: JobDetails) -> None:
        """Publish one message with broker confirms.

        Args:
            queue_name: The flavor's queue.
            message: The job message.
        """
        publish_job(self.mq_uri, queue_name, message, timeout=self.timeout)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer.

    Attributes:
        status: The status code.
        text: The short plain-text body.
    """

    status: int
    text: str


class IntakeApp:
    """The WSGI application (thread-safe: the ledger and the publisher open per-call connections).

    Attributes:
        flavors: The flavors jobs are routed to.
        ledger: The job ledger.
        publisher: The queue publisher.
        api_url: The GitHub API base job URLs must start with (no trailing slash).
        max_body_bytes: Largest body accepted.
    """

    def __init__(
        self,
        *,
        secret: bytes,
        flavors: Sequence[Flavor],
        ledger: JobLedger,
        publisher: JobPublisher,
        api_url: str,
        max_body_bytes: int = 1024 * 1024,
    ) -> None:
        """Build the application.

        Args:
            secret: The webhook secret (never logged).
            flavors: The flavors, in configuration order.
            ledger: The job ledger.
            publisher: The queue publisher.
            api_url: The GitHub API base job URLs must start with.
            max_body_bytes: Largest body accepted (413 beyond).

        Raises:
            ValueError: The secret is empty.
        """
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._secret = secret
        self.flavors = tuple(flavors)
        self.ledger = ledger
        self.publisher = publisher
        self.api_url = api_url.rstrip("/")
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        """Return a description without the secret."""
        return (
            f"IntakeApp(flavors={[f.queue_name for f in self.flavors]}, api_url={self.api_url!r})"
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request.

        Args:
            environ: The WSGI environment.
            start_response: The WSGI callback.

        Returns:
            The body.
        """
        answer = self._dispatch(environ)
        body = (answer.text + "\n").encode()
        start_response(
            f"{answer.status} {_REASONS.get(answer.status, 'Unknown')}",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    def _dispatch(self, environ: dict[str, Any]) -> Answer:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return Answer(200, "ok") if method in ("GET", "HEAD") else Answer(405, "use GET")
        if path != "/webhook":
            return Answer(404, "not found")
        if method != "POST":
            return Answer(405, "use POST")
        body = self._read_body(environ)
        if isinstance(body, Answer):
            return body
        return self.handle(
            body,
            event=environ.get("HTTP_X_GITHUB_EVENT"),
            delivery_id=environ.get("HTTP_X_GITHUB_DELIVERY") or None,
            signature=environ.get("HTTP_X_HUB_SIGNATURE_256"),
        )

    def _read_body(self, environ: dict[str, Any]) -> bytes | Answer:
        """Read the body, never more than ``max_body_bytes + 1`` bytes.

        Args:
            environ: The WSGI environment.

        Returns:
            The body, or the answer for a body too large or a bad Content-Length.
        """
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.strip():
            try:
                length = int(declared)
            except ValueError:
                return Answer(400, "bad Content-Length")
            if length < 0:
                return Answer(400, "bad Content-Length")
            if length > self.max_body_bytes:
                return Answer(413, f"body larger than {self.max_body_bytes} bytes")
            budget = length
        else:
            budget = self.max_body_bytes + 1
        stream = environ["wsgi.input"]
        chunks: list[bytes] = []
        got = 0
        while got < budget:
            chunk = stream.read(min(_READ_CHUNK, budget - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > self.max_body_bytes:
            return Answer(413, f"body larger than {self.max_body_bytes} bytes")
        return b"".join(chunks)

    def handle(
        self, body: bytes, *, event: str | None, delivery_id: str | None, signature: str | None
    ) -> Answer:
        """Take one delivery whose body was read (within the size cap).

        Args:
            body: The raw body.
            event: The ``X-GitHub-Event`` header.
            delivery_id: The ``X-GitHub-Delivery`` header.
            signature: The ``X-Hub-Signature-256`` header.

        Returns:
            The answer.
        """
        if not signature_valid(self._secret, body, signature):
            logger.warning(
                "rejected delivery %r (event %r): %s signature",
                delivery_id,
                event,
                "missing" if not signature else "bad",
            )
            return Answer(401, "bad signature")
        if event == "ping":
            logger.info("ping delivery %r", delivery_id)
            return Answer(200, "pong")
        if event != "workflow_job":
            logger.debug("ignored delivery %r: event %r", delivery_id, event)
            return Answer(202, "ignored")
        try:
            action = payload.parse_action(body)
            if action != "queued":
                return Answer(202, "ignored")
            job_event = payload.parse_workflow_job(body)
            message = payload.job_message(job_event.workflow_job, self.api_url)
        except intake_errors.IntakePayloadError as exc:
            logger.warning("refused delivery %r: %s", delivery_id, exc.reason)
            return Answer(400, "invalid workflow_job delivery")
        return self._enqueue(job_event.workflow_job.id, message, delivery_id)

    def _enqueue(self, job_id: int, message: JobDetails, delivery_id: str | None) -> Answer:
        flavor = route(message.labels, self.flavors)
        if flavor is None:
            logger.info(
                "delivery %r: no flavor offers labels %r of job %d",
                delivery_id,
                message.labels,
                job_id,
            )
            return Answer(200, "no flavor")
        try:
            if not self.ledger.claim(job_id, delivery_id):
                logger.info("delivery %r: job %d already enqueued", delivery_id, job_id)
                return Answer(200, "duplicate")
        except intake_errors.IntakeLedgerError as exc:
            logger.error("delivery %r: job ledger failed: %s", delivery_id, exc)
            return Answer(503, "ledger unavailable")
        try:
            self.publisher.publish(flavor.queue_name, message)
        except intake_errors.IntakePublishError as exc:
            logger.error("delivery %r: %s; claim released", delivery_id, exc)
            return self._release(job_id, delivery_id)
        try:
            self.ledger.confirm(job_id)
        except (
            intake_errors.IntakeLedgerError
        ) as exc:  # queued all the same: the claim stays pending
            logger.error("delivery %r: confirming job %d failed: %s", delivery_id, job_id, exc)
        logger.info("delivery %r: job %d queued to %s", delivery_id, job_id, flavor.queue_name)
        return Answer(200, "queued")

    def _release(self, job_id: int, delivery_id: str | None) -> Answer:
        try:
            self.ledger.release(job_id)
        except intake_errors.IntakeLedgerError as exc:
            # The claim stays: the safety net cannot enqueue the job either until it is pruned.
            logger.error("delivery %r: releasing job %d failed: %s", delivery_id, job_id, exc)
        return Answer(503, "broker unavailable")


def build_app(config: IntakeConfig, publisher: JobPublisher | None = None) -> IntakeApp:
    """Build the application from the configuration (reads the secret and broker URI files).

    Args:
        config: The configuration.
        publisher: The publisher (default: kombu with confirms, the URI from ``mq_uri_file``).

    Returns:
        The application.

    Raises:
        IntakeConfigError: A secret file is unreadable or empty.
        IntakeLedgerError: The ledger cannot be opened.
    """
    if publisher is None:
        publisher = BrokerPublisher(config.read_mq_uri(), config.publish_timeout)
    return IntakeApp(
        secret=config.read_secret(),
        flavors=config.routing_flavors(),
        ledger=JobLedger(config.ledger),
        publisher=publisher,
        api_url=config.api_url,
        max_body_bytes=config.max_body_bytes,
    )


def create_server(app: IntakeApp, config: IntakeConfig) -> ClientCappedServer:
    """Build the bounded waitress server the policy service uses (bound and listening).

    Args:
        app: The application.
        config: The configuration (address, port, threads, body cap).

    Returns:
        The server; serve with ``server.run()``.
    """
    limits = ServerLimits(max_request_body=config.max_body_bytes, ident="github-runner-intake")
    return create_bounded_server(app, config.host, config.port, config.threads, limits)
