"""Build a unit's runner manager for its backend: LXD on the machine, or an OpenStack cloud.

The OpenStack manager reads the cloud from a clouds.yaml file: the charm writes the one its
secret holds into the unit's state directory (0600, replaced atomically, only when it changed),
so openstacksdk never sees credentials on a command line or in the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.settings import RunnerManagerSettings
from juju.manager_port import ManagerConfig, RunnerManagerPort
from runner_manager_type import OpenstackRunnerManagerConfig

CLOUDS_YAML_NAME = "clouds.yaml"


def write_clouds_yaml(state_dir: Path, text: str) -> Path:
    """Write the unit's clouds.yaml (0600) unless it already holds ``text``.

    Args:
        state_dir: The unit's state directory.
        text: The clouds.yaml.

    Returns:
        The file.
    """
    path = state_dir / CLOUDS_YAML_NAME
    try:
        if path.read_text() == text:
            return path
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{CLOUDS_YAML_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)
    return path


def create_runner_manager(app_name: str, unit: int, config: ManagerConfig) -> RunnerManagerPort:
    """Build the real runner manager of a configuration.

    The managers are imported here, lazily: they pull in pylxd or openstacksdk.

    Args:
        app_name: The application.
        unit: The unit number.
        config: The manager's configuration; its type says the backend.

    Returns:
        The manager.
    """
    if isinstance(config, OpenstackRunnerManagerConfig):
        from openstack_backend.manager import OpenstackRunnerManager  # noqa: PLC0415

        cloud = config.charm_state.openstack
        if cloud is None:  # manager_config only builds this type from a state with a cloud
            raise ValueError("an OpenStack configuration from a state without a cloud")
        settings = RunnerManagerSettings.for_unit(app_name, unit)
        clouds_yaml = write_clouds_yaml(settings.state_dir, cloud.clouds_yaml.get_secret_value())
        return OpenstackRunnerManager(
            app_name,
            unit,
            config,
            settings=settings,
            clouds_yaml=clouds_yaml,
            cloud_name=cloud.cloud,
        )
    from runner_manager import RunnerManager  # noqa: PLC0415

    return RunnerManager(app_name, unit, config)
