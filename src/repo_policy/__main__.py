"""Command line of the policy service: ``python -m repo_policy serve ...`` (waitress)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from errors import RepoPolicyConfigError
from repo_policy.config import load_config
from repo_policy.server_limits import ServerLimits
from repo_policy.service import ServiceFiles, build_app

logger = logging.getLogger("repo_policy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repo_policy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the policy service with waitress")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    serve.add_argument(
        "--token-file", type=Path, required=True, help="file holding the charm's service token"
    )
    serve.add_argument(
        "--github-token-file",
        type=Path,
        required=True,
        help="file (0600) holding the GitHub token or a GitHub App's credentials",
    )
    serve.add_argument("--github-api-url", required=True, help="GitHub REST API base URL")
    serve.add_argument("--config-file", type=Path, help="JSON policy configuration")
    serve.add_argument("--state-file", type=Path, help="where one-time tokens survive restarts")
    serve.add_argument(
        "--metrics-stores", type=Path, help="metrics stores of cloud runners (with the key)"
    )
    serve.add_argument(
        "--metrics-push-key", type=Path, help="the unit's metrics push key (0600, made if absent)"
    )
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    defaults = ServerLimits()
    serve.add_argument(
        "--connections-per-client",
        type=int,
        default=defaults.connections_per_client,
        help="connections one peer address may hold at once (beyond: closed on accept)",
    )
    serve.add_argument(
        "--connection-limit",
        type=int,
        default=defaults.connection_limit,
        help="connections in all",
    )
    serve.add_argument(
        "--channel-timeout",
        type=int,
        default=defaults.channel_timeout,
        help="seconds a connection may stay idle or half-sent",
    )
    serve.add_argument("--log-level", default="INFO", help="logging level")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``). Secrets are never arguments: only paths.

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.config_file is not None:
        try:
            load_config(args.config_file)
        except RepoPolicyConfigError as exc:
            logger.error("invalid configuration: %s", exc.message)
            return 2
    files = ServiceFiles(
        token_file=args.token_file,
        github_token_file=args.github_token_file,
        github_api_url=args.github_api_url,
        config_file=args.config_file,
        state_file=args.state_file,
        metrics_stores=args.metrics_stores,
        metrics_push_key=args.metrics_push_key,
    )
    try:
        limits = ServerLimits(
            connections_per_client=args.connections_per_client,
            connection_limit=args.connection_limit,
            channel_timeout=args.channel_timeout,
        )
    except ValueError as exc:
        logger.error("invalid server limits: %s", exc)
        return 2
    app = build_app(files)
    from repo_policy.server import create_server  # noqa: PLC0415 - imports waitress

    server = create_server(app, args.host, args.port, args.threads, limits)
    logger.info(
        "policy service listening on %s:%d (%d connections per client, %d in all)",
        args.host,
        int(server.effective_port),
        limits.connections_per_client,
        limits.connection_limit,
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
