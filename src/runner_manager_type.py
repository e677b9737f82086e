"""Types used by the RunnerManager (seed API: names and arguments are fixed)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from pathlib import Path
from typing import TYPE_CHECKING

from github_api.types import GitHubOrg, GitHubRepo, GitHubRunnerStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jinja2 import Environment

    from config.state import CharmState, ReactiveConfig
    from github_api.seam import GithubPlatform
    from lxd import LxdCloud
    from repo_policy.client import RepoPolicyComplianceClient


class LXDFlushMode(Enum):
    """Strategy for flushing runners.

    During the pre-job repository policy check a runner is still idle; when the check fails the
    runner would take no job, hence the ``*_WAIT_REPO_CHECK`` modes wait for checks in flight.

    Attributes:
        FLUSH_IDLE: Flush only idle runners.
        FLUSH_IDLE_WAIT_REPO_CHECK: Flush only idle runners, then wait until the policy check is
            completed for the busy runners.
        FLUSH_BUSY: Flush busy runners too.
        FLUSH_BUSY_WAIT_REPO_CHECK: Wait until the policy checks in flight complete, then flush
            busy runners too.
        FORCE_FLUSH_WAIT_REPO_CHECK: Like FLUSH_BUSY_WAIT_REPO_CHECK, but remove the LXD instances
            even when GitHub cannot be used (invalid or revoked token).
    """

    FLUSH_IDLE = auto()
    FLUSH_IDLE_WAIT_REPO_CHECK = auto()
    FLUSH_BUSY = auto()
    FLUSH_BUSY_WAIT_REPO_CHECK = auto()
    FORCE_FLUSH_WAIT_REPO_CHECK = auto()


FlushMode = LXDFlushMode

FLUSH_MODE_BY_ACTION_PARAM: dict[str, LXDFlushMode] = {
    "idle": LXDFlushMode.FLUSH_IDLE,
    "idle-wait-repo-check": LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK,
    "busy": LXDFlushMode.FLUSH_BUSY,
    "busy-wait-repo-check": LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
    "force-busy-wait-repo-check": LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
}


@dataclass
class RunnerManagerClients:
    """Clients for accessing various services.

    Attributes:
        github: Used to query the GitHub API.
        jinja: Used for templating.
        lxd: Used to interact with the LXD API.
        repo: Used to interact with the repo-policy-compliance API.
    """

    github: GithubPlatform
    jinja: Environment
    lxd: LxdCloud
    repo: RepoPolicyComplianceClient


@dataclass
class LXDRunnerManagerConfig:
    """Configuration of the runner manager.

    Attributes:
        charm_state: The state of the charm.
        image: Name (alias) of the image for creating LXD instances.
        lxd_storage_path: Path used as LXD storage.
        path: GitHub repository path ``<owner>/<repo>`` or the GitHub organisation.
        service_token: Token for accessing the local repo-policy service.
        token: GitHub personal access token to register runners.
        dockerhub_mirror: URL of a Docker Hub mirror to use.
        reactive_config: The configuration to spawn runners reactively.
        repo_policy_url: URL of the pre-job policy service as runners reach it, if any.
    """

    charm_state: CharmState
    image: str
    lxd_storage_path: Path
    path: GitHubOrg | GitHubRepo
    service_token: str
    token: str
    dockerhub_mirror: str | None = None
    reactive_config: ReactiveConfig | None = None
    repo_policy_url: str | None = None

    @property
    def are_metrics_enabled(self) -> bool:
        """Whether metrics for the runners should be collected."""
        return self.charm_state.is_metrics_enabled

    def __repr__(self) -> str:
        """Hide the tokens."""
        return (
            f"LXDRunnerManagerConfig(image={self.image!r}, path={self.path!r}, "
            f"lxd_storage_path={str(self.lxd_storage_path)!r}, token=***, service_token=***)"
        )


RunnerManagerConfig = LXDRunnerManagerConfig


@dataclass
class OpenstackRunnerManagerConfig:
    """Configuration of an OpenStack runner manager.

    What ``openstack_backend.manager.OpenstackRunnerManager`` runs Nova servers with (the
    cloud itself, a ``clouds.yaml`` and cloud name, is given to the manager beside it).

    Attributes:
        charm_state: The state of the charm.
        path: GitHub repository path ``<owner>/<repo>`` or the GitHub organisation.
        labels: Additional labels for the runners (beside the charm's ``labels`` option).
        token: GitHub personal access token to register runners.
        flavor: OpenStack flavor defining the runner resources.
        image: OpenStack (Glance) image name or id to boot the runner with.
        network: OpenStack network name or id for runner network access.
        dockerhub_mirror: URL of a Docker Hub mirror to use.
        reactive_config: The configuration to spawn runners reactively.
        repo_policy_url: The pre-job policy service as runners reach it (metrics are pushed
            under ``<url>/metrics/``); None: no check, no metrics push.
        service_token: The charm's token for the policy service. Secret.
    """

    charm_state: CharmState
    path: GitHubOrg | GitHubRepo
    labels: Iterable[str]
    token: str
    flavor: str
    image: str
    network: str
    dockerhub_mirror: str | None
    reactive_config: ReactiveConfig | None = None
    repo_policy_url: str | None = None
    service_token: str = ""

    def __repr__(self) -> str:
        """Show the configuration without the tokens."""
        return (
            f"OpenstackRunnerManagerConfig(path={self.path!r}, flavor={self.flavor!r}, "
            f"image={self.image!r}, network={self.network!r}, "
            f"repo_policy_url={self.repo_policy_url!r}, token=***, service_token=***)"
        )


@dataclass(frozen=True)
class RunnerInfo:
    """Information from GitHub about one runner.

    Attributes:
        name: Name of the runner.
        status: Status of the runner.
        busy: Whether the runner has taken a job.
    """

    name: str
    status: GitHubRunnerStatus
    busy: bool
