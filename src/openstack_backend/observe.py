"""Observe one unit's OpenStack runners: its servers and GitHub records as the plan's views.

A server is the unit's when its name has the unit's prefix *and* its metadata names the
application and the unit: a server with the prefix but other metadata (made by hand, or by
another deployment sharing the project) is never judged, so never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from github_api.seam import GithubPlatform
from github_api.types import GitHubPath
from openstack_backend.seam import ACTIVE, ERROR, SHUTOFF, OpenstackCloud, ServerView
from reconcile_plan import GithubView, InstanceState, InstanceView

logger = logging.getLogger(__name__)

APP_KEY = "github-runner-app"
UNIT_KEY = "github-runner-unit"
TAG = "github-runner"

_STATES = {
    ACTIVE: InstanceState.RUNNING,
    SHUTOFF: InstanceState.STOPPED,  # the runner powers off after its job
    ERROR: InstanceState.ERROR,
}


@dataclass(frozen=True)
class Ownership:
    """Whose servers these are.

    Attributes:
        app_name: The application name.
        unit: The unit number.
    """

    app_name: str
    unit: int

    @property
    def prefix(self) -> str:
        """The unit's runner name prefix (``<app>-<unit>-``)."""
        return f"{self.app_name}-{self.unit}-"

    def metadata(self) -> dict[str, str]:
        """The metadata written on each server of the unit."""
        return {APP_KEY: self.app_name, UNIT_KEY: str(self.unit)}

    def tags(self) -> tuple[str, ...]:
        """The tags written on each server of the unit."""
        return (TAG, f"{TAG}-{self.app_name}-{self.unit}")

    def owns(self, server: ServerView) -> bool:
        """Whether a listed server is the unit's (prefix and metadata both)."""
        return server.name.startswith(self.prefix) and _has(server.metadata, self.metadata())


def _has(metadata: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(metadata.get(key) == value for key, value in wanted.items())


def instance_state(status: str) -> InstanceState:
    """Reduce Nova's status of a server to what the plan judges by.

    Args:
        status: Nova's status, e.g. ``ACTIVE``.

    Returns:
        The plan's state; OTHER for transient ones (BUILD, REBOOT...).
    """
    return _STATES.get(status.upper(), InstanceState.OTHER)


def owned_servers(cloud: OpenstackCloud, owner: Ownership) -> list[ServerView]:
    """List the unit's servers (one listing call).

    Args:
        cloud: The cloud.
        owner: Whose servers.

    Returns:
        The servers the unit owns.
    """
    servers = cloud.list_servers(owner.prefix)
    foreign = [s.name for s in servers if not owner.owns(s)]
    if foreign:
        logger.warning("servers with our prefix but not our metadata, left alone: %s", foreign)
    return [s for s in servers if owner.owns(s)]


def observe(
    cloud: OpenstackCloud, github: GithubPlatform, path: GitHubPath, owner: Ownership
) -> tuple[list[ServerView], list[InstanceView], list[GithubView]]:
    """List the unit's servers and GitHub records: one call each.

    Args:
        cloud: The cloud.
        github: GitHub.
        path: The GitHub organisation or repository of the runners.
        owner: Whose runners.

    Returns:
        The servers, their instance views and the record views.
    """
    listed = cloud.list_servers(owner.prefix)
    servers = [s for s in listed if owner.owns(s)]
    foreign = {s.name for s in listed} - {s.name for s in servers}
    if foreign:  # neither the server nor its GitHub record is ours to judge
        logger.warning("servers with our prefix but not our metadata, left alone: %s", foreign)
    now = datetime.now(timezone.utc)  # a server Nova gives no age is judged young
    instances = [
        InstanceView(
            name=s.name,
            state=instance_state(s.status),
            created_at=s.created_at or now,
            registered_first=True,  # runners.create_runner: the JIT config, then the server
        )
        for s in servers
    ]
    for server in servers:
        if server.status.upper() == ERROR:
            logger.error("server %s is in ERROR: %s", server.name, server.fault or "no fault")
    records = [
        GithubView(id=r.id, name=r.name, online=r.status.value == "online", busy=r.busy)
        for r in github.list_runners(path, owner.prefix)
        if r.name not in foreign
    ]
    return servers, instances, records
