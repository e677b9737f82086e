"""Manager settings completed from the runner manager configuration."""

from __future__ import annotations

from dataclasses import replace

from config.settings import RunnerManagerSettings
from lxd.network import unit_resource_name
from runner_manager_type import LXDRunnerManagerConfig


def complete_settings(
    settings: RunnerManagerSettings, config: LXDRunnerManagerConfig
) -> RunnerManagerSettings:
    """Complete the settings from the configuration.

    The policy service URL comes from the charm unless the settings name one. Runners get a NIC
    on the settings' network, else the charm's ``network`` option, else the unit's own bridge;
    their root disks go to the settings' pool, else the unit's own (both made by the charm at
    install: ``juju.runner_network``, ``juju.host.HostSystem.setup_lxd``).

    Args:
        settings: The settings given to the manager.
        config: The manager's configuration.

    Returns:
        The completed settings.
    """
    state = config.charm_state
    own = unit_resource_name(state.app_name, state.unit_number)
    return replace(
        settings,
        repo_policy_url=settings.repo_policy_url or config.repo_policy_url,
        runner_network=settings.runner_network or state.runner_network or own,
        storage_pool=settings.storage_pool or own,
    )
