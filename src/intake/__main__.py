"""Command line of the webhook intake: ``python -m intake --config <path.json>`` (waitress)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta
from pathlib import Path

from intake import errors as intake_errors
from intake.config import IntakeConfig
from intake.server import build_app, create_server

logger = logging.getLogger("intake")

# GitHub cancels a job left queued for 24 hours: older claims are of no use.
LEDGER_RETENTION = timedelta(days=2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m intake", description=__doc__)
    parser.add_argument(
        "--config", type=Path, required=True, help="the intake's JSON configuration (0600)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the intake until it is stopped.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``). Secrets are never arguments: only paths.

    Returns:
        The exit code (2: invalid configuration).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = IntakeConfig.load(args.config)
        app = build_app(config)
        pruned = app.ledger.prune(LEDGER_RETENTION)
    except intake_errors.IntakeError as exc:
        logger.error("cannot start: %s", exc.message)
        return 2
    server = create_server(app, config)
    logger.info(
        "webhook intake listening on %s:%d (%d flavor(s), %d old ledger entries pruned)",
        config.host,
        int(server.effective_port),
        len(app.flavors),
        pruned,
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
