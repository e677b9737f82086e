"""Entry point of a reactive consumer process: ``python3 -m reactive.runner [...] <queue_name>``.

The process reads the broker URI from the environment variable ``MQ_URI_ENV`` (and removes it
from its environment at once, so nothing it starts inherits it), reads the JSON config file the
charm writes, builds the runner spawner and the GitHub job checker from it (by default
``reactive.factory.reactive_components``: this unit's RunnerManager), then consumes job messages
one at a time until SIGTERM/SIGINT/SIGHUP (or until ``timeout`` ends it): the message it holds
is then requeued at once. SIGUSR1 asks it to drain instead: it sees the message it holds through
(when a runner was spawned for it), then exits without taking another (``reactive.settling``).
It logs to ``<log_dir>/<pid>.log``.

Config file (written by the charm, readable by the consumers' user, holds the GitHub token in
``runner_manager`` so mode 0600/0640)::

    {
      "consumer": {                     # optional: ConsumerSettings fields but queue_name
        "supported_labels": ["self-hosted", "linux", "x64", "jammy", "<app>", "<labels>..."],
        "pickup_timeout": 300, "pickup_poll_initial": 2, "pickup_poll_max": 30,
        "error_delay_initial": 5, "error_delay_max": 120
      },
      "runner_manager": { ... }         # opaque: handed as is to the factory
    }

A factory is ``Callable[[Mapping[str, Any]], tuple[RunnerSpawner, GithubJobChecker]]``: it
receives the ``runner_manager`` object and returns the spawner and the checker. Another entry
module may run :func:`main` with another factory (the broker tests' fakes do).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import errors
from reactive.consumer import JobConsumer
from reactive.factory import reactive_components
from reactive.runner_manager import (
    DEFAULT_CONFIG_PATH,
    MQ_URI_ENV,
    REACTIVE_RUNNER_LOG_PATH,
    RUNNER_INSTALLED_TS_FILE_NAME,
)
from reactive.types import ConsumerSettings, GithubJobChecker, RunnerSpawner

logger = logging.getLogger(__name__)

__all__ = [
    "RUNNER_INSTALLED_TS_FILE_NAME",
    "Factory",
    "load_consumer_settings",
    "load_runner_manager",
    "main",
    "reactive_runner",
]

Factory = Callable[[Mapping[str, Any]], tuple[RunnerSpawner, GithubJobChecker]]

_MAX_CONFIG_BYTES = 1024 * 1024


def _read_config(config_path: Path) -> dict[str, Any]:
    """Read the consumers' config file.

    Args:
        config_path: The file.

    Returns:
        Its JSON object.

    Raises:
        ReactiveRunnerError: It is missing, too large or not a JSON object.
    """
    try:
        raw = config_path.read_bytes()
    except OSError as exc:
        raise errors.ReactiveRunnerError(f"cannot read {config_path}: {exc.strerror}") from exc
    if len(raw) > _MAX_CONFIG_BYTES:
        raise errors.ReactiveRunnerError(f"{config_path} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise errors.ReactiveRunnerError(f"{config_path} is not JSON") from exc
    if not isinstance(data, dict):
        raise errors.ReactiveRunnerError(f"{config_path} is not a JSON object")
    return data


def load_runner_manager(
    config_path: Path, factory: Factory = reactive_components
) -> tuple[RunnerSpawner, GithubJobChecker]:
    """Build the runner spawner and the GitHub job checker from the config file.

    The factory turns the file's ``runner_manager`` object into the real spawner (the
    RunnerManager) and checker (its GitHub client).

    Args:
        config_path: The config file the charm writes.
        factory: What builds them; this unit's RunnerManager by default.

    Returns:
        The spawner and the checker.

    Raises:
        ReactiveRunnerError: The file is unusable, or the factory failed or returned the wrong
            objects.
    """
    section = _read_config(config_path).get("runner_manager", {})
    if not isinstance(section, dict):
        raise errors.ReactiveRunnerError("runner_manager must be an object")
    try:
        built = factory(section)
    except errors.GithubRunnerError as exc:
        raise errors.ReactiveRunnerError(f"the runner factory failed: {exc}") from exc
    if not (isinstance(built, tuple) and len(built) == 2):
        raise errors.ReactiveRunnerError("the runner factory did not return (spawner, checker)")
    spawner, checker = built
    if not callable(getattr(spawner, "spawn_one", None)) or not callable(
        getattr(checker, "get_job_by_url", None)
    ):
        raise errors.ReactiveRunnerError("the runner factory returned the wrong objects")
    return spawner, checker


def load_consumer_settings(config_path: Path, queue_name: str) -> ConsumerSettings:
    """Read the consumer settings from the config file.

    Args:
        config_path: The config file.
        queue_name: The queue name.

    Returns:
        The settings (defaults for what the file leaves out).

    Raises:
        ReactiveRunnerError: The ``consumer`` section is not an object.
        ReactiveError: A setting is invalid.
    """
    section = _read_config(config_path).get("consumer", {})
    if not isinstance(section, dict):
        raise errors.ReactiveRunnerError("consumer must be an object")
    return ConsumerSettings.from_mapping(queue_name, section)


def reactive_runner(
    mq_uri: str,
    queue_name: str,
    *,
    config_path: Path = DEFAULT_CONFIG_PATH,
    stop: threading.Event | None = None,
    factory: Factory = reactive_components,
    drain: threading.Event | None = None,
) -> None:
    """Spawn runners reactively: consume job messages until stopped or drained.

    Args:
        mq_uri: The URI of the message queue.
        queue_name: The name of the queue.
        config_path: The config file the charm writes.
        stop: Set it to stop (the signal handlers do); a new event by default.
        factory: What builds the spawner and the checker; this unit's RunnerManager by default.
        drain: Set it to finish the message held, then stop (the SIGUSR1 handler does).
    """
    settings = load_consumer_settings(config_path, queue_name)
    spawner, checker = load_runner_manager(config_path, factory)
    consumer = JobConsumer(mq_uri, settings, checker, spawner, stop=stop, drain=drain)
    logger.info("Consuming queue %s (pid %d)", queue_name, os.getpid())
    consumer.run()
    logger.info("Consumer outcomes: %s", {o.value: n for o, n in consumer.counts.items()})


def _setup_logging(log_dir: Path) -> None:
    """Log to ``<log_dir>/<pid>.log``.

    Args:
        log_dir: The log directory.
    """
    handler = logging.FileHandler(log_dir / f"{os.getpid()}.log", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None, factory: Factory = reactive_components) -> int:
    """Run one consumer process.

    Args:
        argv: The arguments (without the program name); sys.argv by default.
        factory: What builds the spawner and the checker; this unit's RunnerManager by default.

    Returns:
        The exit code: 0 when stopped, 1 on an error, 2 on a usage error.
    """
    parser = argparse.ArgumentParser(prog="python3 -m reactive.runner")
    parser.add_argument("queue_name")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    parser.add_argument("--log-dir", type=Path, default=REACTIVE_RUNNER_LOG_PATH)
    args = parser.parse_args(argv)
    mq_uri = os.environ.pop(MQ_URI_ENV, "")
    _setup_logging(args.log_dir)
    if not mq_uri:
        logger.error("%s is not set; nothing to consume", MQ_URI_ENV)
        return 2
    stop, drain = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("Received signal %d; finishing", signum)
        stop.set()

    def on_drain(signum: int, _frame: FrameType | None) -> None:
        logger.info("Received signal %d; draining", signum)
        drain.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGUSR1, on_drain)
    try:
        reactive_runner(
            mq_uri,
            args.queue_name,
            config_path=args.config,
            stop=stop,
            factory=factory,
            drain=drain,
        )
    except errors.GithubRunnerError as exc:
        logger.error("Reactive runner failed: %s", exc)  # the message only: no traceback
        return 1
    except Exception:
        logger.exception("Reactive runner crashed")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
