"""Observe this unit's runners once: the LXD instances and the GitHub records, as plan views."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from github_api.types import GitHubOrg, GitHubRepo
from reconcile_plan import GithubView, InstanceState, InstanceView
from runner import CREATED_KEY
from runner_manager_type import RunnerManagerClients

logger = logging.getLogger(__name__)

_INSTANCE_STATES = {
    "Running": InstanceState.RUNNING,
    "Stopped": InstanceState.STOPPED,
    "Error": InstanceState.ERROR,
}


def instance_state(status: str) -> InstanceState:
    """Reduce LXD's status string of an instance to what the plan judges by.

    Args:
        status: LXD's status, e.g. "Running", "Error".

    Returns:
        The plan's instance state; OTHER for transient ones (starting, frozen...).
    """
    return _INSTANCE_STATES.get(status, InstanceState.OTHER)


def observe(
    clients: RunnerManagerClients,
    path: GitHubOrg | GitHubRepo,
    prefix: str,
    settle_timeout: float,
) -> tuple[list[InstanceView], list[GithubView]]:
    """List the unit's instances on LXD and its runner records on GitHub.

    Args:
        clients: The seams to LXD and GitHub.
        path: The GitHub organisation or repository of the runners.
        prefix: The unit's runner name prefix.
        settle_timeout: How long to wait for LXD operations still changing our instances.

    Returns:
        The instance views and the record views.
    """
    # Under the lock no creation of ours runs; operations still changing our instances
    # were left by a process that died (LXD completes them): let them finish first.
    busy = clients.lxd.wait_instances_settled(prefix, settle_timeout)
    if busy:
        logger.warning("LXD operations still running on %s; judging them anyway", busy)
    now = datetime.now(timezone.utc)  # an instance LXD gives no age is judged young
    instances = [
        InstanceView(
            name=i.name,
            state=instance_state(i.last_status.value),  # as listed: no call per instance
            created_at=i.created_at or now,
            complete=i.config.get(CREATED_KEY) == "true",
        )
        for i in clients.lxd.list(prefix=prefix)
    ]
    records = [
        GithubView(id=r.id, name=r.name, online=r.status.value == "online", busy=r.busy)
        for r in clients.github.list_runners(path, prefix)
    ]
    return instances, records
