"""Servers run inside a test host's namespace (started by :mod:`harness.testnet`).

``python -m harness.testnet_serve sandbox --public-host ADDR --port P --token T [...]``
    The sandbox GitHub listening on every address of the namespace (its bridge address, its
    manager link and its loopback; nothing outside the namespace), advertising
    ``http://ADDR:P`` as its base URL (in runner download URLs, JIT configs and links), so that
    runners and the manager use the same URL.
``python -m harness.testnet_serve http --port P [--body TEXT]``
    A tiny web server answering every GET with ``TEXT`` and logging ``<client> <method> <path>``
    on stdout, one line a request.

Both print one line once they listen and serve until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from sandbox import DEFAULT_RUNNER_VERSION
from sandbox.server import SandboxServer

ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 - inside a test host's own namespace only


class PublicSandbox(SandboxServer):
    """The sandbox, listening on one address and advertising another as its base URL."""

    def __init__(self, public_host: str, **kwargs: Any) -> None:
        """Create it.

        Args:
            public_host: the address (or name) in the base URL.
            kwargs: :class:`sandbox.server.SandboxServer` arguments.
        """
        self.public_host = public_host
        super().__init__(**kwargs)

    @property
    def base_url(self) -> str:
        """The "github-url" runners and the manager use."""
        return f"http://{self.public_host}:{self.port}"


class _Answer(BaseHTTPRequestHandler):
    body = b"ok\n"

    def do_GET(self) -> None:
        print(f"{self.client_address[0]} GET {self.path}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.testnet_serve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sandbox = sub.add_parser("sandbox", help="the sandbox GitHub")
    sandbox.add_argument("--public-host", required=True)
    sandbox.add_argument("--port", type=int, required=True)
    sandbox.add_argument("--token", required=True)
    sandbox.add_argument("--readonly-token", default=None)
    sandbox.add_argument("--runner-version", default=DEFAULT_RUNNER_VERSION)
    sandbox.add_argument("--webhook-url", default=None)
    sandbox.add_argument("--webhook-secret", default=None)
    sandbox.add_argument("--online-window", type=float, default=10.0)
    sandbox.add_argument("--lost-timeout", type=float, default=30.0)
    sandbox.add_argument("--runner-poll-wait", type=float, default=20.0)
    sandbox.add_argument("--runner-heartbeat", type=float, default=5.0)
    http = sub.add_parser("http", help="a tiny web server")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--body", default="ok")
    return parser


def _wait_for_signal() -> None:
    stop = threading.Event()

    def _signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM."""
    args = _parser().parse_args(argv)
    if args.command == "sandbox":
        server = PublicSandbox(
            args.public_host,
            host=ALL_ADDRESSES,
            port=args.port,
            token=args.token,
            readonly_token=args.readonly_token,
            runner_version=args.runner_version,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            online_window=args.online_window,
            lost_timeout=args.lost_timeout,
            runner_poll_wait=args.runner_poll_wait,
            runner_heartbeat=args.runner_heartbeat,
        )
        server.start()
        print(server.base_url, flush=True)
        try:
            _wait_for_signal()
        finally:
            server.stop()
        return 0
    _Answer.body = f"{args.body}\n".encode()
    httpd = ThreadingHTTPServer((ALL_ADDRESSES, args.port), _Answer)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    print(f"serving on port {args.port}", flush=True)
    try:
        _wait_for_signal()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
