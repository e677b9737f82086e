"""workflow_job webhooks: GitHub's payload, headers and HMAC-SHA256 signature."""

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
from dataclasses import dataclass
from typing import Any

from sandbox import render
from sandbox.state import Job

logger = logging.getLogger(__name__)

TIMEOUT = 5.0
MAX_PENDING = 10_000
ACTIONS = ("queued", "in_progress", "completed")


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


def workflow_job_payload(action: str, job: Job, api_url: str, base_url: str) -> dict[str, Any]:
    """A workflow_job event payload.

    Args:
        action: queued, in_progress or completed.
        job: the job.
        api_url: API root URL.
        base_url: web root URL.

    Returns:
        The payload.
    """
    owner = job.repository.split("/", 1)[0]
    return {
        "action": action,
        "workflow_job": render.job_json(job, api_url, base_url),
        "repository": render.repository_json(job.repository, api_url, base_url),
        "organization": {
            "login": owner,
            "id": render.stable_id(owner),
            "url": f"{api_url}/orgs/{owner}",
        },
        "sender": render.user_json(job.actor, api_url, base_url),
    }


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
    """One webhook delivery attempt."""

    id: str
    action: str
    job_id: int
    status: int | None
    error: str | None
    sent_at: float


class WebhookSender:
    """Sends workflow_job webhooks from a background thread, in order."""

    def __init__(self, url: str | None, secret: str | None):
        self.url = url
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[str, bytes, int] | None] = queue.Queue(MAX_PENDING)
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

    def job_event(self, action: str, job: Job) -> None:
        """Queue the webhook of a job transition (called under the state lock).

        Args:
            action: queued, in_progress or completed.
            job: the job.
        """
        if not self.url or action not in ACTIONS:
            return
        payload = workflow_job_payload(action, job, self._api_url, self._base_url)
        try:
            self._queue.put_nowait((action, json.dumps(payload).encode(), job.id))
        except queue.Full:
            logger.warning("sandbox webhooks: queue full, dropping %s of job %s", action, job.id)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            action, body, job_id = item
            self._send(action, body, job_id)

    def _send(self, action: str, body: bytes, job_id: int) -> None:
        if not self.url:
            return
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/sandbox",
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": "1",
        }
        if self.secret:
            headers["X-Hub-Signature-256"] = sign(self.secret, body)
        status: int | None = None
        error: str | None = None
        try:
            status = post(self.url, body, headers)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            error = str(exc) or type(exc).__name__
        with self._lock:
            self.deliveries.append(
                Delivery(delivery_id, action, job_id, status, error, time.time())
            )
