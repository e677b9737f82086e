"""The production seams of a RunnerManager: GitHub (metered), LXD, templates, policy service."""

from __future__ import annotations

from config.settings import RunnerManagerSettings
from lxd import LxdClient
from manager.templates import template_environment
from observability.github_meter import metered_github_client
from repo_policy.client import RepoPolicyComplianceClient
from runner_manager_type import LXDRunnerManagerConfig, RunnerManagerClients


def build_clients(
    config: LXDRunnerManagerConfig, settings: RunnerManagerSettings
) -> RunnerManagerClients:
    """Build the clients of one unit's manager from its configuration.

    Args:
        config: The runner manager configuration (credentials, policy service token).
        settings: The completed manager settings (state directory, policy service URL).

    Returns:
        The clients.
    """
    state = config.charm_state
    return RunnerManagerClients(
        github=metered_github_client(
            state.github_credentials(config.token), state.api_url, settings.state_dir
        ),
        jinja=template_environment(),
        lxd=LxdClient(),
        repo=RepoPolicyComplianceClient(settings.repo_policy_url or "", config.service_token),
    )
