"""What a consumer process rebuilds this unit's manager from: the ``runner_manager`` section.

The reconcile writes it into the consumers' config file (``reactive.runner_manager``, mode 0600:
it holds the GitHub token, or the GitHub App's credentials with its private key, from which each
consumer gets its own installation tokens); each consumer reads it back and builds the same manager
(``reactive.factory``). Nothing here imports a manager.

``backend`` says which: ``lxd`` (also a section without it) or ``openstack``. An OpenStack section
names the unit's clouds.yaml (its path, the cloud, the file's SHA-256) and never holds the file:
the charm state is written without it and the consumer reads it back from that path (the unit's
state directory, 0600). The digest changes the config file whenever the clouds.yaml changes, so
the consumers are restarted with the new credentials (``reactive.runner_manager.reconcile``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from config.settings import RunnerManagerSettings
from config.state import REVEAL_SECRETS, CharmState
from errors import ReactiveRunnerError
from runner_manager_type import LXDRunnerManagerConfig, OpenstackRunnerManagerConfig

LXD = "lxd"
OPENSTACK = "openstack"
ManagerConfig = LXDRunnerManagerConfig | OpenstackRunnerManagerConfig

_SETTINGS = TypeAdapter(RunnerManagerSettings)


def settings_to_json(settings: RunnerManagerSettings) -> dict[str, Any]:
    """Serialise manager settings to JSON types."""
    data: dict[str, Any] = _SETTINGS.dump_python(settings, mode="json")
    return data


def settings_from_json(data: Mapping[str, Any]) -> RunnerManagerSettings:
    """Rebuild manager settings written by :func:`settings_to_json`."""
    return _SETTINGS.validate_python(dict(data))


@dataclass(frozen=True)
class CloudFile:
    """The clouds.yaml an OpenStack manager reads its cloud from.

    Attributes:
        clouds_yaml: The file (the unit's state directory, 0600).
        cloud: The cloud's name in it.
    """

    clouds_yaml: Path
    cloud: str


@dataclass(frozen=True)
class ManagerSpec:
    """The arguments of a unit's manager, as a consumer process rebuilds them.

    Attributes:
        app_name: The application name.
        unit: The unit number.
        config: The manager configuration (holds the token); its type says the backend.
        settings: The manager settings, completed from the configuration.
        cloud: The clouds.yaml of an OpenStack manager (None for LXD).
    """

    app_name: str
    unit: int
    config: ManagerConfig
    settings: RunnerManagerSettings
    cloud: CloudFile | None = None


def manager_section(
    app_name: str,
    unit: int,
    config: ManagerConfig,
    settings: RunnerManagerSettings,
    cloud: CloudFile | None = None,
) -> dict[str, Any]:
    """Return what a consumer process needs to rebuild the manager (secret: write it 0600).

    Args:
        app_name: The application name.
        unit: The unit number.
        config: The manager's configuration.
        settings: The manager's (completed) settings.
        cloud: The clouds.yaml of an OpenStack manager.

    Returns:
        The section, JSON types only.

    Raises:
        ReactiveRunnerError: An OpenStack configuration without its clouds.yaml, or the file
            cannot be read.
    """
    state = config.charm_state.model_dump(mode="json", context={REVEAL_SECRETS: True})
    common = {
        "app_name": app_name,
        "unit": unit,
        "service_token": config.service_token,
        "dockerhub_mirror": config.dockerhub_mirror,
        "settings": settings_to_json(settings),
    }
    if isinstance(config, LXDRunnerManagerConfig):
        return {
            **common,
            "backend": LXD,
            "charm_state": state,
            "image": config.image,
            "lxd_storage_path": str(config.lxd_storage_path),
        }
    if cloud is None:
        raise ReactiveRunnerError("an OpenStack manager section needs its clouds.yaml file")
    if isinstance(state.get("openstack"), dict):
        state["openstack"] = {**state["openstack"], "clouds_yaml": ""}  # named below, not held
    return {
        **common,
        "backend": OPENSTACK,
        "charm_state": state,
        "openstack": {
            "clouds_yaml": str(cloud.clouds_yaml),
            "clouds_yaml_sha256": _file_digest(cloud.clouds_yaml),
            "cloud": cloud.cloud,
            "flavor": config.flavor,
            "image": config.image,
            "network": config.network,
            "labels": list(config.labels),
            "repo_policy_url": config.repo_policy_url,
        },
    }


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ReactiveRunnerError(f"cannot read the clouds.yaml {path}: {exc.strerror}") from None


def parse_manager_section(section: Mapping[str, Any]) -> ManagerSpec:
    """Rebuild the manager's arguments from what :func:`manager_section` wrote.

    Args:
        section: The ``runner_manager`` section of the consumers' config file.

    Returns:
        The arguments.

    Raises:
        ReactiveRunnerError: The section is incomplete or invalid.
    """
    try:
        backend = section.get("backend", LXD)
        if backend == OPENSTACK:
            return _openstack_spec(section)
        if backend != LXD:
            raise ReactiveRunnerError(f"runner_manager section has unknown backend {backend!r}")
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
        return ManagerSpec(
            app_name=str(section["app_name"]),
            unit=int(section["unit"]),
            config=config,
            settings=settings_from_json(section["settings"]),
        )
    except KeyError as exc:
        raise ReactiveRunnerError(f"runner_manager section lacks {exc}") from None
    except ValidationError as exc:  # its text may quote the token: name the fields only
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ReactiveRunnerError(f"invalid runner_manager section: {fields}") from None
    except (TypeError, ValueError) as exc:
        raise ReactiveRunnerError(
            f"invalid runner_manager section ({type(exc).__name__})"
        ) from None


def _openstack_spec(section: Mapping[str, Any]) -> ManagerSpec:
    """Rebuild an OpenStack manager's arguments; the clouds.yaml is read back from its path."""
    cloud_section = section["openstack"]
    cloud = CloudFile(Path(cloud_section["clouds_yaml"]), str(cloud_section["cloud"]))
    try:
        clouds_yaml = cloud.clouds_yaml.read_text()
    except OSError as exc:
        raise ReactiveRunnerError(
            f"cannot read the clouds.yaml {cloud.clouds_yaml}: {exc.strerror}"
        ) from None
    data = dict(section["charm_state"])
    if isinstance(data.get("openstack"), dict):
        data["openstack"] = {**data["openstack"], "clouds_yaml": clouds_yaml}
    state = CharmState.model_validate(data)
    policy_url = cloud_section.get("repo_policy_url")
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=tuple(str(label) for label in cloud_section["labels"]),
        token=state.token.get_secret_value(),
        flavor=str(cloud_section["flavor"]),
        image=str(cloud_section["image"]),
        network=str(cloud_section["network"]),
        dockerhub_mirror=section.get("dockerhub_mirror"),
        reactive_config=state.reactive_config,
        repo_policy_url=str(policy_url) if policy_url else None,
        service_token=str(section["service_token"]),
    )
    return ManagerSpec(
        app_name=str(section["app_name"]),
        unit=int(section["unit"]),
        config=config,
        settings=settings_from_json(section["settings"]),
        cloud=cloud,
    )
