"""Manager settings completed from the runner manager configuration."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from config.settings import RunnerManagerSettings
from runner_manager_type import LXDRunnerManagerConfig


def complete_settings(
    settings: RunnerManagerSettings, config: LXDRunnerManagerConfig
) -> RunnerManagerSettings:
    """Complete the settings from the configuration.

    The policy service URL comes from the charm unless the settings name one. In test mode,
    runners are NIC-less containers: every loopback service they use (GitHub, the policy
    service) is brought in by a proxy device on the same port.

    Args:
        settings: The settings given to the manager.
        config: The manager's configuration.

    Returns:
        The completed settings.
    """
    policy_url = settings.repo_policy_url or config.repo_policy_url
    ports = list(settings.loopback_ports)
    if config.charm_state.test_mode:
        for url in (config.charm_state.github_url, policy_url):
            parsed = urlsplit(url or "")
            if parsed.hostname in ("127.0.0.1", "localhost") and parsed.port:
                ports.append(parsed.port)
    return replace(
        settings, repo_policy_url=policy_url, loopback_ports=tuple(dict.fromkeys(ports))
    )
