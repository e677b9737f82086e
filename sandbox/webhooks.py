"""workflow_job webhooks: delivery, HMAC-SHA256 signature, drop faults and redelivery.

The payload and headers are built in ``sandbox.webhook_payload``, the seeded drop rule lives in
``sandbox.webhook_faults``. Deliveries go in order from one background thread (5 s timeout, no
retries). Each is recorded in :attr:`WebhookSender.deliveries`; the bodies of the last
:data:`MAX_STORED` are kept so that :meth:`WebhookSender.redeliver` can send one again with the
same ``X-GitHub-Delivery`` id, as GitHub's "Redeliver" does.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import queue
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sandbox.state import Job
from sandbox.webhook_faults import ACTIONS, DeliveryFaults
from sandbox.webhook_payload import HookConfig, delivery_headers, workflow_job_payload

__all__ = ["ACTIONS", "Delivery", "WebhookSender", "sign", "verify", "workflow_job_payload"]

logger = logging.getLogger(__name__)

TIMEOUT = 5.0
MAX_PENDING = 10_000
MAX_STORED = 1000
DROPPED = "dropped"


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of a body.

    Args:
        secret: the webhook secret.
        body: the raw request body.

    Returns:
        "sha256=" followed by the hex HMAC-SHA256 digest.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str) -> bool:
    """Check a signature in constant time.

    Args:
        secret: the webhook secret.
        body: the raw body.
        signature: the received ``X-Hub-Signature-256`` header.

    Returns:
        Whether it matches.
    """
    return hmac.compare_digest(sign(secret, body), signature)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT) -> int:
    """POST a body with headers spelled exactly as given (GitHub's ``X-GitHub-Event`` case).

    Args:
        url: http(s) URL.
        body: the body.
        headers: the headers.
        timeout: seconds for connecting and for each read.

    Returns:
        The response status.

    Raises:
        ValueError: for a URL that is not http(s).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return int(response.status)
    finally:
        conn.close()


@dataclass
class Delivery:
    """One webhook delivery attempt (or a dropped one)."""

    id: str
    action: str
    job_id: int
    status: int | None
    error: str | None
    sent_at: float
    dropped: bool = False
    redelivery: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The delivery for the control API.

        Returns:
            id, action, job_id, status, error, dropped, redelivery and sent_at.
        """
        return {
            "id": self.id,
            "action": self.action,
            "job_id": self.job_id,
            "status": self.status,
            "error": self.error,
            "dropped": self.dropped,
            "redelivery": self.redelivery,
            "sent_at": self.sent_at,
        }


@dataclass(frozen=True)
class Outgoing:
    """A delivery waiting for the sender thread."""

    id: str
    action: str
    job_id: int
    body: bytes
    target: tuple[str, int]
    redelivery: bool = False


class WebhookSender:
    """Sends workflow_job webhooks from a background thread, in order."""

    def __init__(self, url: str | None, secret: str | None):
        """Create the sender (nothing is sent before :meth:`start`).

        Args:
            url: where to POST the deliveries (None: nowhere, nothing is recorded).
            secret: the HMAC secret (None: unsigned).
        """
        self.url = url
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.faults = DeliveryFaults()
        self.hook = HookConfig()
        self._stored: OrderedDict[str, Outgoing] = OrderedDict()
        self._queue: queue.Queue[Outgoing | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._api_url = ""
        self._base_url = ""
        self._lock = threading.Lock()

    def start(self, api_url: str, base_url: str) -> None:
        """Start the sender thread (if a URL is set).

        Args:
            api_url: API root URL for payload links.
            base_url: web root URL for payload links.
        """
        self._api_url, self._base_url = api_url, base_url
        if self.url and self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="sandbox-webhooks")
            self._thread.start()

    def stop(self) -> None:
        """Send what is pending (bounded) and stop."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1)
            self._thread.join(timeout=TIMEOUT * 2)
            self._thread = None

    def reset(self) -> None:
        """Forget the drop rule and the hook configuration (the deliveries stay listed)."""
        self.faults.clear()
        self.hook = HookConfig()

    def job_event(self, action: str, job: Job) -> None:
        """Queue the webhook of a job transition (called under the state lock).

        Args:
            action: queued, in_progress or completed.
            job: the job.
        """
        if not self.url or action not in ACTIONS:
            return
        hook = self.hook
        payload = workflow_job_payload(action, job, self._api_url, self._base_url, hook)
        item = Outgoing(
            str(uuid.uuid4()),
            action,
            job.id,
            json.dumps(payload).encode(),
            hook.target(job.repository),
        )
        with self._lock:
            self._stored[item.id] = item
            while len(self._stored) > MAX_STORED:
                self._stored.popitem(last=False)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            logger.warning("sandbox webhooks: queue full, dropping %s of job %s", action, job.id)

    def redeliver(self, delivery_id: str) -> Delivery | None:
        """Queue a delivery again: the same body and delivery id, never dropped by the faults.

        Args:
            delivery_id: the X-GitHub-Delivery id of one of the last MAX_STORED deliveries.

        Returns:
            A summary of the queued redelivery (status None until sent), or None when the id is
            unknown (or too old).

        Raises:
            queue.Full: too many deliveries are pending.
        """
        with self._lock:
            stored = self._stored.get(delivery_id)
        if stored is None:
            return None
        item = Outgoing(
            stored.id, stored.action, stored.job_id, stored.body, stored.target, redelivery=True
        )
        self._queue.put_nowait(item)
        return Delivery(item.id, item.action, item.job_id, None, None, time.time(), False, True)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._send(item)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def _send(self, item: Outgoing) -> None:
        if not self.url:
            return
        if not item.redelivery and self.faults.decide(item.action):
            self._record(
                Delivery(item.id, item.action, item.job_id, None, DROPPED, time.time(), True)
            )
            return
        headers = delivery_headers(item.id, item.target)
        if self.secret:
            headers["X-Hub-Signature-256"] = sign(self.secret, item.body)
        status: int | None = None
        error: str | None = None
        try:
            status = post(self.url, item.body, headers)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            error = str(exc) or type(exc).__name__
        self._record(
            Delivery(
                item.id,
                item.action,
                item.job_id,
                status,
                error,
                time.time(),
                False,
                item.redelivery,
            )
        )
