"""The runner manager as the charm sees it: the port the charm calls and the config it builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from config.state import CharmState
from github_api.types import RunnerApplication
from juju.policy_host import RepoPolicyEndpoint
from runner_manager_type import (
    LXDFlushMode,
    LXDRunnerManagerConfig,
    OpenstackRunnerManagerConfig,
    RunnerInfo,
)
from runner_type import VirtualMachineResources


class RunnerManagerPort(Protocol):
    """What the charm needs of the runner manager (the seed API of ``RunnerManager``)."""

    runner_bin_path: Path
    cron_path: Path

    def reconcile(self, quantity: int, resources: VirtualMachineResources) -> int: ...  # noqa: D102
    def flush(self, mode: LXDFlushMode = LXDFlushMode.FLUSH_IDLE) -> int: ...  # noqa: D102
    def get_github_info(self) -> Iterator[RunnerInfo]: ...  # noqa: D102
    def get_latest_runner_bin_url(self, os_name: str = "linux") -> RunnerApplication: ...  # noqa: D102
    def update_runner_bin(self, binary: RunnerApplication) -> None: ...  # noqa: D102
    def check_runner_bin(self) -> bool: ...  # noqa: D102
    def runner_bin_version(self) -> str | None: ...  # noqa: D102
    def has_runner_image(self) -> bool: ...  # noqa: D102
    def build_runner_image(self) -> None: ...  # noqa: D102
    def schedule_build_runner_image(self) -> None: ...  # noqa: D102


@runtime_checkable
class CloudRefusals(Protocol):
    """A manager whose cloud can refuse creations (OpenStack's quota): the charm shows it."""

    def quota_refusal(self) -> str | None:
        """The cloud's refusal in the last reconcile (what and how many), None if none."""
        ...  # pragma: no cover


def runner_image(state: CharmState) -> str:
    """Return the alias of the runner image (the ones scripts/build-lxd-image.sh uses).

    Args:
        state: The charm state.

    Returns:
        ``github-runner-test`` (containers) in test mode, else ``github-runner-<base>``.
    """
    return "github-runner-test" if state.test_mode else f"github-runner-{state.base_image.value}"


ManagerConfig = LXDRunnerManagerConfig | OpenstackRunnerManagerConfig
"""What a unit's manager is built from: LXD runners on the machine, or servers on a cloud."""


def manager_config(
    state: CharmState, storage: Path, policy: RepoPolicyEndpoint | None
) -> ManagerConfig:
    """Build the runner manager's configuration for a state.

    Args:
        state: The charm state (its GitHub credentials are the manager's).
        storage: The directory holding runner disks (LXD).
        policy: Where runners reach the policy service; None for a manager that creates no
            runner (it only lists or removes them).

    Returns:
        The configuration: OpenStack's when the state has a cloud, else LXD's.
    """
    if state.openstack is not None:
        return OpenstackRunnerManagerConfig(
            charm_state=state,
            path=state.path,
            labels=(),
            token=state.token.get_secret_value(),
            flavor=state.openstack.flavor,
            image=state.openstack.image,
            network=state.openstack.network,
            dockerhub_mirror=state.dockerhub_mirror,
            reactive_config=state.reactive_config,
            repo_policy_url=policy.url if policy else None,
            service_token=policy.service_token if policy else "",
        )
    return LXDRunnerManagerConfig(
        charm_state=state,
        image=runner_image(state),
        lxd_storage_path=storage,
        path=state.path,
        service_token=policy.service_token if policy else "",
        token=state.token.get_secret_value(),
        dockerhub_mirror=state.dockerhub_mirror,
        reactive_config=state.reactive_config,
        repo_policy_url=policy.url if policy else None,
    )
