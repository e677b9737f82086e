"""What a consumer process rebuilds this unit's RunnerManager from: the ``runner_manager`` section.

The reconcile writes it into the consumers' config file (``reactive.runner_manager``, mode 0600:
it holds the GitHub token, or the GitHub App's credentials with its private key, from which each
consumer gets its own installation tokens); each consumer reads it back and builds the same manager
(``reactive.factory``). Nothing here imports the RunnerManager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from config.settings import RunnerManagerSettings
from config.state import REVEAL_SECRETS, CharmState
from errors import ReactiveRunnerError
from runner_manager_type import LXDRunnerManagerConfig

_SETTINGS = TypeAdapter(RunnerManagerSettings)


def settings_to_json(settings: RunnerManagerSettings) -> dict[str, Any]:
    """Serialise manager settings to JSON types."""
    data: dict[str, Any] = _SETTINGS.dump_python(settings, mode="json")
    return data


def settings_from_json(data: Mapping[str, Any]) -> RunnerManagerSettings:
    """Rebuild manager settings written by :func:`settings_to_json`."""
    return _SETTINGS.validate_python(dict(data))


@dataclass(frozen=True)
class ManagerSpec:
    """The arguments of a RunnerManager, as a consumer process rebuilds them.

    Attributes:
        app_name: The application name.
        unit: The unit number.
        config: The runner manager configuration (holds the token).
        settings: The manager settings, completed from the configuration.
    """

    app_name: str
    unit: int
    config: LXDRunnerManagerConfig
    settings: RunnerManagerSettings


def manager_section(
    app_name: str, unit: int, config: LXDRunnerManagerConfig, settings: RunnerManagerSettings
) -> dict[str, Any]:
    """Return what a consumer process needs to rebuild the manager (secret: write it 0600).

    Args:
        app_name: The application name.
        unit: The unit number.
        config: The manager's configuration.
        settings: The manager's (completed) settings.

    Returns:
        The section, JSON types only.
    """
    return {
        "app_name": app_name,
        "unit": unit,
        "charm_state": config.charm_state.model_dump(mode="json", context={REVEAL_SECRETS: True}),
        "image": config.image,
        "lxd_storage_path": str(config.lxd_storage_path),
        "service_token": config.service_token,
        "dockerhub_mirror": config.dockerhub_mirror,
        "settings": settings_to_json(settings),
    }


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
