"""Reactive mode: the consumer processes a reconcile keeps, and the factory they build from.

With a ``mongodb`` relation, runners are created per queued job by consumer processes
(``reactive.runner``); ``virtual-machines`` is the ceiling: consumers = ceiling - runners alive.
The consumers rebuild this unit's RunnerManager from a file the reconcile writes (0600).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from errors import GithubRunnerError, QueueError, RunnerCreateError
from manager.settings import RunnerManagerSettings
from manager.state import REVEAL_SECRETS, CharmState
from reactive import runner_manager as reactive_processes
from reactive.consumer import GithubJobChecker, RunnerSpawner, build_supported_labels, queue_size
from reactive.runner_manager import ReactiveRunnerConfig
from runner_manager import RunnerManager
from runner_manager_type import LXDRunnerManagerConfig
from runner_type import VirtualMachineResources

logger = logging.getLogger(__name__)


_SETTINGS = TypeAdapter(RunnerManagerSettings)


def settings_to_json(settings: RunnerManagerSettings) -> dict[str, Any]:
    """Serialise manager settings to JSON types."""
    data: dict[str, Any] = _SETTINGS.dump_python(settings, mode="json")
    return data


def settings_from_json(data: Mapping[str, Any]) -> RunnerManagerSettings:
    """Rebuild manager settings written by :func:`settings_to_json`."""
    return _SETTINGS.validate_python(dict(data))


def manager_section(manager: RunnerManager) -> dict[str, Any]:
    """What a consumer process needs to rebuild ``manager`` (holds the token: write 0600)."""
    config = manager.config
    return {
        "app_name": manager.app_name,
        "unit": manager.unit,
        "charm_state": config.charm_state.model_dump(mode="json", context={REVEAL_SECRETS: True}),
        "image": config.image,
        "lxd_storage_path": str(config.lxd_storage_path),
        "service_token": config.service_token,
        "dockerhub_mirror": config.dockerhub_mirror,
        "settings": settings_to_json(manager.settings),
    }


@dataclass
class _Spawner:
    """Creates one runner per job through the RunnerManager."""

    manager: RunnerManager
    resources: VirtualMachineResources

    def spawn_one(self) -> str:
        names = self.manager.create_runners(1, self.resources)
        if not names:
            raise RunnerCreateError("the runner for a queued job could not be created")
        return names[0]


def reactive_components(section: Mapping[str, Any]) -> tuple[RunnerSpawner, GithubJobChecker]:
    """Factory the consumer processes call (``reactive.runner.FACTORIES["lxd"]``).

    Args:
        section: What :func:`manager_section` wrote.

    Returns:
        The runner spawner and the GitHub job checker of this unit.
    """
    state = CharmState.model_validate(section["charm_state"])
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image=str(section["image"]),
        lxd_storage_path=Path(section["lxd_storage_path"]),
        path=state.path,
        service_token=str(section["service_token"]),
        token=state.token.get_secret_value(),
        dockerhub_mirror=section.get("dockerhub_mirror"),
        reactive_config=state.reactive_config,
    )
    settings = settings_from_json(section["settings"])
    manager = RunnerManager(
        str(section["app_name"]), int(section["unit"]), config, settings=settings
    )
    return _Spawner(manager, state.vm_resources), manager.github_client


def reactive_config(manager: RunnerManager) -> ReactiveRunnerConfig | None:
    """The consumer processes' configuration, or None when the unit is not in reactive mode."""
    reactive = manager.config.reactive_config
    if reactive is None:
        return None
    state_dir = manager.settings.state_dir
    return ReactiveRunnerConfig(
        reactive.mq_uri.get_secret_value(),
        reactive.queue_name,
        config_path=state_dir / "reactive-runner.json",
        pid_dir=state_dir / "reactive-pids",
        log_dir=manager.settings.runner_log_dir / "reactive",
        user=None,  # consumers create LXD instances and mount metrics stores: root's work
    )


def reconcile_consumers(manager: RunnerManager, ceiling: int, alive: int) -> int:
    """Keep ``ceiling - alive`` consumers; flush stale idle runners when the queue is empty.

    A runner spawned for a job stays idle until it takes the job while its consumer holds the
    message unacked (the queue then looks empty): only runners idle for longer than
    ``reactive_idle_grace`` are flushed.

    Args:
        manager: This unit's manager.
        ceiling: ``virtual-machines``: the most runners this unit may have.
        alive: Healthy runners now (starting, idle or busy).

    Returns:
        The change in the number of consumer processes.
    """
    config = reactive_config(manager)
    if config is None:
        return 0
    state = manager.config.charm_state
    labels = build_supported_labels(
        state.labels, state.app_name, state.base_image.value, state.arch.value
    )
    reactive_processes.write_runner_config(
        config,
        runner_manager=manager_section(manager),
        consumer={"supported_labels": sorted(labels)},
        factory="lxd",
    )
    delta = reactive_processes.reconcile(max(ceiling - alive, 0), config)
    try:
        waiting = queue_size(config.mq_uri, config.queue_name)
    except QueueError as exc:
        logger.warning("queue size unknown, idle runners kept: %s", exc)
        return delta
    if waiting == 0:
        try:
            manager.flush_stale_idle(manager.settings.reactive_idle_grace)
        except GithubRunnerError as exc:
            logger.warning("flushing idle runners failed: %s", exc)
    return delta
