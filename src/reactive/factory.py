"""The consumer process's factory: this unit's manager, rebuilt from the config file.

A consumer (``reactive.runner``) turns the ``runner_manager`` section its config file holds into
the runner spawner (the unit's manager, one runner per job) and the GitHub job checker (the
manager's GitHub client). The section says the backend: LXD's RunnerManager or the
OpenstackRunnerManager (imported only for an OpenStack section: it pulls in openstacksdk). This
module imports the managers; they never import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from errors import ReactiveRunnerError, RunnerCreateError
from github_api.seam import GithubPlatform
from github_api.types import GitHubPath, GitHubRunnerStatus, SelfHostedRunner
from reactive.manager_section import ManagerSpec, parse_manager_section
from reactive.types import (
    GithubJobChecker,
    RunnerActivity,
    RunnerSpawner,
    RunnerView,
    RunnerWatcher,
)
from runner_manager import RunnerManager
from runner_manager_type import OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources


class SpawningManager(Protocol):
    """What a consumer uses of a unit's manager (``RunnerManager``, ``OpenstackRunnerManager``)."""

    @property
    def prefix(self) -> str:
        """The unit's runner name prefix."""
        ...  # pragma: no cover

    @property
    def github_client(self) -> GithubPlatform:
        """The manager's GitHub client."""
        ...  # pragma: no cover

    def create_runners(self, count: int, resources: VirtualMachineResources) -> list[str]:
        """Create ``count`` runners now; return the names of those created."""
        ...  # pragma: no cover


def view_of(runners: Iterable[SelfHostedRunner], name: str | None) -> RunnerView:
    """Sum up the unit's runners as GitHub lists them, from the side of runner ``name``.

    Args:
        runners: The unit's runners (listed by its name prefix).
        name: The runner spawned for a delivery, or None.

    Returns:
        What that runner does, and how many others are idle online or still booting.
    """
    own, idle, starting = RunnerActivity.GONE, 0, 0
    for runner in runners:
        if runner.name == name:
            own = RunnerActivity.BUSY if runner.busy else RunnerActivity.WAITING
        elif not runner.busy:
            if runner.status == GitHubRunnerStatus.ONLINE:
                idle += 1
            else:
                starting += 1
    return RunnerView(own, others_idle=idle, others_starting=starting)


@dataclass
class ManagerSpawner:
    """Creates one runner per job through the unit's manager, and watches the unit's runners.

    Attributes:
        manager: This unit's manager.
        resources: Resources of each runner instance (unused by OpenStack: the flavor decides).
        path: The GitHub organisation or repository the runners register with.
    """

    manager: SpawningManager
    resources: VirtualMachineResources
    path: GitHubPath

    def spawn_one(self) -> str:
        """Create one runner now.

        Returns:
            Its name.

        Raises:
            RunnerCreateError: The runner could not be created.
        """
        names = self.manager.create_runners(1, self.resources)
        if not names:
            raise RunnerCreateError("the runner for a queued job could not be created")
        return names[0]

    def watch(self, name: str | None) -> RunnerView:
        """Look at the unit's runners on GitHub (one listing, by the unit's name prefix).

        Args:
            name: The runner spawned for a delivery, or None.

        Returns:
            The view.
        """
        manager = self.manager
        return view_of(manager.github_client.list_runners(self.path, manager.prefix), name)


def reactive_components(section: Mapping[str, Any]) -> tuple[RunnerSpawner, GithubJobChecker]:
    """Build the spawner and the checker of this unit from its ``runner_manager`` section.

    Args:
        section: What ``reactive.manager_section.manager_section`` wrote.

    Returns:
        The runner spawner and the GitHub job checker.

    Raises:
        ReactiveRunnerError: The section is incomplete or invalid.
    """
    spec = parse_manager_section(section)
    manager = _manager(spec)
    spawner = ManagerSpawner(manager, spec.config.charm_state.vm_resources, spec.config.path)
    return spawner, manager.github_client


def _manager(spec: ManagerSpec) -> SpawningManager:
    if not isinstance(spec.config, OpenstackRunnerManagerConfig):
        return RunnerManager(spec.app_name, spec.unit, spec.config, settings=spec.settings)
    if spec.cloud is None:  # parse_manager_section always names it for OpenStack
        raise ReactiveRunnerError("an OpenStack section without its clouds.yaml")
    from openstack_backend.manager import OpenstackRunnerManager  # noqa: PLC0415 - openstacksdk

    return OpenstackRunnerManager(
        spec.app_name,
        spec.unit,
        spec.config,
        settings=spec.settings,
        clouds_yaml=spec.cloud.clouds_yaml,
        cloud_name=spec.cloud.cloud,
    )


_WATCHER: type[RunnerWatcher] = ManagerSpawner  # mypy: the spawner is also the watcher
