"""Command line of the sandbox.

``python -m sandbox serve --port PORT --token TOKEN`` serves on 127.0.0.1 (prints the base URL);
``python -m sandbox queue-job --url URL --repository o/r --labels a,b --step "echo hi" [--wait S]``
queues a job (and waits for it); ``python -m sandbox show-job --url URL ID`` and
``python -m sandbox stats --url URL`` print JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from sandbox import DEFAULT_RUNNER_VERSION
from sandbox.control_client import ControlError, SandboxControl
from sandbox.server import SandboxServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

    queue = sub.add_parser("queue-job", help="queue a job; print it as JSON")
    queue.add_argument("--url", required=True, help="sandbox base URL")
    queue.add_argument("--repository", required=True, help="owner/repo")
    queue.add_argument("--labels", default="self-hosted", help="comma-separated runs-on labels")
    queue.add_argument("--step", action="append", default=[], help="a shell step (repeatable)")
    queue.add_argument("--event", default="push")
    queue.add_argument("--workflow", default="ci")
    queue.add_argument("--wait", type=float, default=0.0, help="seconds to wait for completion")

    show = sub.add_parser("show-job", help="print a job (with its log) as JSON")
    show.add_argument("--url", required=True, help="sandbox base URL")
    show.add_argument("job_id", type=int)

    stats = sub.add_parser("stats", help="print request counts, runners and jobs as JSON")
    stats.add_argument("--url", required=True, help="sandbox base URL")
    return parser


def _serve(args: argparse.Namespace) -> int:
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


def _control(args: argparse.Namespace) -> int:
    control = SandboxControl(args.url)
    try:
        if args.command == "queue-job":
            labels = [x.strip() for x in args.labels.split(",") if x.strip()]
            result = control.queue_job(
                args.repository, labels, args.step, event=args.event, workflow=args.workflow
            )
            if args.wait > 0:
                result = control.wait_job(result["id"], timeout=args.wait)
        elif args.command == "show-job":
            result = control.job(args.job_id)
        else:
            result = control.stats()
    except (ControlError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _control(args)


if __name__ == "__main__":
    sys.exit(main())
