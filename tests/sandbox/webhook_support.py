"""A webhook receiver on 127.0.0.1 and helpers for the webhook fault and payload tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from sandbox.server import SandboxServer
from tests.sandbox.sandbox_openapi import checked
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "sandbox/openapi/workflow-job-webhook.json"
SECRET = "It's a Secret to Everybody"


@dataclass(frozen=True)
class Received:
    """One delivery as the receiver got it."""

    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        """The parsed body."""
        return dict(json.loads(self.body))

    @property
    def delivery_id(self) -> str:
        """The X-GitHub-Delivery header."""
        return self.headers["X-GitHub-Delivery"]


class Receiver(ThreadingHTTPServer):
    """Records every POST (headers with their exact spelling) and answers 204."""

    daemon_threads = True

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        self.received: list[Received] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        """The URL to deliver to."""
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def snapshot(self) -> list[Received]:
        """The deliveries so far."""
        with self.lock:
            return list(self.received)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.received.append(Received(dict(self.headers.items()), body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A running receiver."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def hooked_sandbox(url: str) -> Iterator[SandboxServer]:
    """A sandbox delivering its webhooks to ``url``, signed with :data:`SECRET`."""
    server = SandboxServer(token=ADMIN_TOKEN, port=0, webhook_url=url, webhook_secret=SECRET)
    with checked(server) as sb:
        yield sb


def control(sb: SandboxServer, method: str, path: str, body: Any = None) -> requests.Response:
    """Call a control route (``/_sandbox`` + path)."""
    return requests.request(method, f"{sb.base_url}/_sandbox{path}", json=body, timeout=10)


def deliveries(sb: SandboxServer) -> list[dict[str, Any]]:
    """The sandbox's delivery listing."""
    response = control(sb, "GET", "/webhooks")
    assert response.status_code == 200, response.text
    return list(response.json())


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    """Poll until ``predicate`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_listed(sb: SandboxServer, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` deliveries are listed and return them."""
    wait_until(lambda: len(deliveries(sb)) >= count, what=f"{count} deliveries listed")
    return deliveries(sb)
