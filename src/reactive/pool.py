"""The consumer pool: the reactive side of a reconcile, as a seam of the RunnerManager.

With a ``mongodb`` relation, runners are created per queued job by consumer processes
(``reactive.runner``); ``virtual-machines`` is the ceiling: the reconcile keeps
``ceiling - runners alive`` consumers (the surplus is drained: one waiting for the runner it
made sees its job through; ``reactive.runner_manager``). The consumers rebuild this unit's
manager (LXD's RunnerManager or the OpenstackRunnerManager: the same pool serves both) from a
config file the pool writes (0600, ``reactive.manager_section``).

While a consumer waits for the runner it made to take its job, it holds the message unacked:
the queue then looks empty. So "the queue is empty" only lets the reconcile delete runners idle
for longer than ``RunnerManagerSettings.reactive_idle_grace`` (a plan input, see
``reconcile_plan.plan_reconcile``).

Nothing here imports a manager: the managers import this module, never the reverse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from config.settings import RunnerManagerSettings
from errors import QueueError, ReactiveRunnerError
from reactive import runner_manager as reactive_processes
from reactive.consumer import queue_size
from reactive.manager_section import CloudFile, ManagerConfig, manager_section
from reactive.message import unit_supported_labels
from reactive.runner_manager import ReactiveRunnerConfig
from runner_manager_type import OpenstackRunnerManagerConfig

logger = logging.getLogger(__name__)


class ConsumerPool(Protocol):
    """The reactive consumers of one unit, as the RunnerManager's reconcile uses them."""

    def queue_empty(self) -> bool:
        """Return whether no job waits in the queue (False when that cannot be told)."""
        ...  # pragma: no cover

    def reconcile(self, quantity: int) -> int:
        """Keep ``quantity`` consumers running, with an up-to-date config.

        Args:
            quantity: How many consumers.

        Returns:
            The change in the number of consumers.
        """
        ...  # pragma: no cover


def reactive_runner_config(
    config: ManagerConfig, settings: RunnerManagerSettings
) -> ReactiveRunnerConfig | None:
    """Return how the consumer processes run, or None when the unit is not in reactive mode.

    Args:
        config: The runner manager configuration.
        settings: The manager settings (its state and log directories).

    Returns:
        The consumer processes' configuration.
    """
    reactive = config.reactive_config
    if reactive is None:
        return None
    return ReactiveRunnerConfig(
        reactive.mq_uri.get_secret_value(),
        reactive.queue_name,
        config_path=settings.state_dir / "reactive-runner.json",
        pid_dir=settings.state_dir / "reactive-pids",
        log_dir=settings.runner_log_dir / "reactive",
        user=None,  # consumers create LXD instances or read the 0600 clouds.yaml: root's work
    )


@dataclass
class ProcessConsumerPool:
    """Consumer processes tracked by pid files (``reactive.runner_manager``).

    Attributes:
        processes: How the consumer processes run.
        app_name: The application name.
        unit: The unit number.
        config: The runner manager configuration the consumers rebuild (holds the token).
        settings: The manager settings the consumers rebuild.
        cloud: The clouds.yaml of an OpenStack manager (None for LXD).
        queue_depth: Jobs waiting in the queue when :meth:`queue_empty` last asked (None: never
            told).
    """

    processes: ReactiveRunnerConfig
    app_name: str
    unit: int
    config: ManagerConfig = field(repr=False)
    settings: RunnerManagerSettings = field(repr=False)
    cloud: CloudFile | None = None
    queue_depth: int | None = field(default=None, init=False)  # as the last queue_empty saw it

    def queue_empty(self) -> bool:
        """Return whether no job waits in the queue (False when the broker cannot tell)."""
        try:
            waiting = queue_size(self.processes.mq_uri, self.processes.queue_name)
        except QueueError as exc:
            logger.warning("queue size unknown, idle runners kept: %s", exc)
            return False
        self.queue_depth = waiting
        return waiting == 0

    def reconcile(self, quantity: int) -> int:
        """Write the consumers' config file, then keep ``quantity`` consumer processes.

        Args:
            quantity: How many consumers.

        Returns:
            The change in the number of consumer processes.

        Raises:
            ReactiveRunnerError: The config cannot be written or a consumer cannot start.
        """
        state = self.config.charm_state
        labels = unit_supported_labels(state)
        reactive_processes.write_runner_config(
            self.processes,
            runner_manager=manager_section(
                self.app_name, self.unit, self.config, self.settings, self.cloud
            ),
            consumer={"supported_labels": sorted(labels), "served": state.path.path()},
        )
        return reactive_processes.reconcile(quantity, self.processes)


def consumer_pool_for(
    app_name: str,
    unit: int,
    config: ManagerConfig,
    settings: RunnerManagerSettings,
    cloud: CloudFile | None = None,
) -> ProcessConsumerPool | None:
    """Return the unit's consumer pool, or None when it is not in reactive mode.

    Args:
        app_name: The application name.
        unit: The unit number.
        config: The runner manager configuration.
        settings: The manager settings, completed from the configuration.
        cloud: The clouds.yaml of an OpenStack manager (its consumers read it).

    Returns:
        The pool of consumer processes.

    Raises:
        ReactiveRunnerError: An OpenStack configuration in reactive mode without its clouds.yaml
            file (the consumers could not reach the cloud).
    """
    processes = reactive_runner_config(config, settings)
    if processes is None:
        return None
    if isinstance(config, OpenstackRunnerManagerConfig) and cloud is None:
        raise ReactiveRunnerError("reactive mode on OpenStack needs the unit's clouds.yaml file")
    return ProcessConsumerPool(processes, app_name, unit, config, settings, cloud)
