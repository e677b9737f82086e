"""Command line of the policy service: ``python -m repo_policy serve ...`` (waitress)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from errors import RepoPolicyConfigError
from repo_policy.config import load_config
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
        "--github-token-file", type=Path, required=True, help="file holding the GitHub token"
    )
    serve.add_argument("--github-api-url", required=True, help="GitHub REST API base URL")
    serve.add_argument("--config-file", type=Path, help="JSON policy configuration")
    serve.add_argument("--state-file", type=Path, help="where one-time tokens survive restarts")
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads")
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
    )
    app = build_app(files)
    from waitress import serve  # noqa: PLC0415 - the service's only use of waitress

    logger.info("policy service listening on %s:%d", args.host, args.port)
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="repo-policy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
