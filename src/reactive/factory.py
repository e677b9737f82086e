"""The consumer process's factory: this unit's RunnerManager, rebuilt from the config file.

A consumer (``reactive.runner``) turns the ``runner_manager`` section its config file holds into
the runner spawner (the RunnerManager, one runner per job) and the GitHub job checker (the
manager's GitHub client). This module imports the RunnerManager; the manager never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from errors import RunnerCreateError
from github_api.types import GitHubRunnerStatus, SelfHostedRunner
from reactive.manager_section import parse_manager_section
from reactive.types import (
    GithubJobChecker,
    RunnerActivity,
    RunnerSpawner,
    RunnerView,
    RunnerWatcher,
)
from runner_manager import RunnerManager
from runner_type import VirtualMachineResources


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
    """Creates one runner per job through the RunnerManager, and watches the unit's runners.

    Attributes:
        manager: This unit's manager.
        resources: Resources of each runner instance.
    """

    manager: RunnerManager
    resources: VirtualMachineResources

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
        return view_of(
            manager.github_client.list_runners(manager.config.path, manager.prefix), name
        )


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
    manager = RunnerManager(spec.app_name, spec.unit, spec.config, settings=spec.settings)
    return ManagerSpawner(manager, spec.config.charm_state.vm_resources), manager.github_client


_WATCHER: type[RunnerWatcher] = ManagerSpawner  # mypy: the spawner is also the watcher
