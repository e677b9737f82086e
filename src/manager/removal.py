"""Helpers of runner removal: logs kept before a runner goes, policy checks waited for."""

from __future__ import annotations

import logging
import time

from config.settings import RunnerManagerSettings
from errors import LXDError, RepoPolicyError, RunnerLogsError
from manager.executor import run_parallel
from runner import Runner
from runner_manager_type import RunnerManagerClients

logger = logging.getLogger(__name__)


def keep_logs(runner: Runner) -> None:
    """Pull an unhealthy runner's logs before it goes (a failure to do so is only logged).

    Args:
        runner: The runner about to be removed.
    """
    if runner.instance is None or runner.instance.last_status.value != "Running":
        return
    try:
        runner.pull_logs()
    except (RunnerLogsError, LXDError) as exc:  # e.g. it went away meanwhile
        logger.warning("logs of unhealthy runner %s not kept: %s", runner.config.name, exc)


def force_delete_instances(
    clients: RunnerManagerClients, prefix: str, settings: RunnerManagerSettings
) -> int:
    """Delete every instance of the unit on LXD, GitHub unseen (a force flush without GitHub).

    Args:
        clients: The seams (LXD).
        prefix: The unit's runner name prefix.
        settings: The manager settings (deletion parallelism).

    Returns:
        How many instances were deleted.
    """
    instances = clients.lxd.list(prefix=prefix)
    results = run_parallel(lambda i: i.delete(), instances, settings.delete_parallelism)
    return sum(1 for r in results if not isinstance(r, Exception))


def wait_repo_checks(
    clients: RunnerManagerClients, prefix: str, settings: RunnerManagerSettings
) -> None:
    """Wait (bounded by ``settings.repo_check_wait``) until no runner is in its policy check.

    The policy service says which checks it is answering (by token digest); the manager
    matches them with the digests it recorded for its runners. Nothing a job can write inside
    its runner counts. Without a policy service no check runs; a service that cannot tell is
    not waited for (a flush never hangs on it).

    Args:
        clients: The seams (LXD, the policy service).
        prefix: The unit's runner name prefix.
        settings: The manager settings.
    """
    if not settings.repo_policy_url:
        return
    deadline = time.monotonic() + settings.repo_check_wait
    delay = 0.2
    while True:
        try:
            in_flight = clients.repo.checks_in_flight()
        except RepoPolicyError as exc:
            logger.warning("proceeding with flush; checks in flight unknown: %s", exc)
            return
        in_check = [
            i.name
            for i in (clients.lxd.list(prefix=prefix) if in_flight else [])
            if Runner.in_pre_job_check(i, in_flight)
        ]
        if not in_check:
            return
        if time.monotonic() >= deadline:
            logger.warning("proceeding with flush; policy check still running on %s", in_check)
            return
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 2.0)
