"""Command line: ``python -m sandbox serve --port PORT --token TOKEN``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from sandbox import DEFAULT_RUNNER_VERSION
from sandbox.server import SandboxServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the GitHub stand-in on 127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    serve.add_argument("--token", required=True, help="admin token")
    serve.add_argument("--readonly-token", default=None, help="read-only token")
    serve.add_argument("--runner-version", default=DEFAULT_RUNNER_VERSION)
    serve.add_argument("--webhook-url", default=None)
    serve.add_argument("--webhook-secret", default=None)
    serve.add_argument("--online-window", type=float, default=10.0)
    serve.add_argument("--lost-timeout", type=float, default=30.0)
    serve.add_argument("--runner-poll-wait", type=float, default=20.0)
    serve.add_argument("--runner-heartbeat", type=float, default=5.0)
    serve.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    server = SandboxServer(
        token=args.token,
        readonly_token=args.readonly_token,
        port=args.port,
        runner_version=args.runner_version,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        online_window=args.online_window,
        lost_timeout=args.lost_timeout,
        runner_poll_wait=args.runner_poll_wait,
        runner_heartbeat=args.runner_heartbeat,
    )
    stop = threading.Event()

    def _signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    server.start()
    print(server.base_url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
