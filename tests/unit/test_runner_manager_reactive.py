"""Reactive wiring: what the consumer processes rebuild the RunnerManager from."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from manager.settings import RunnerManagerSettings
from manager.state import ReactiveConfig
from reactive.wiring import (
    manager_section,
    reactive_components,
    reactive_config,
    settings_from_json,
    settings_to_json,
)
from runner_manager import RunnerManager
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_core import make_state


def manager(tmp_path: Path, reactive: bool = True) -> RunnerManager:
    state = make_state(
        reactive_config=ReactiveConfig(
            mq_uri=SecretStr("amqp://u:pw@127.0.0.1//"), queue_name="gh"
        )
        if reactive
        else None
    )
    settings = RunnerManagerSettings(
        state_dir=tmp_path / "state",
        loopback_ports=(8080, 9090),
        bootstrap_timeout=timedelta(seconds=90),
    )
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
        reactive_config=state.reactive_config,
    )
    return RunnerManager("gh", 3, config, settings=settings)


def test_settings_round_trip(tmp_path: Path) -> None:
    settings = RunnerManagerSettings(
        state_dir=tmp_path, loopback_ports=(1, 2), reactive_idle_grace=timedelta(seconds=42)
    )
    data = settings_to_json(settings)
    json.dumps(data)  # plain JSON types
    assert settings_from_json(data) == settings


def test_consumers_rebuild_the_same_manager(tmp_path: Path) -> None:
    original = manager(tmp_path)
    section = json.loads(json.dumps(manager_section(original)))
    assert section["charm_state"]["token"] == "ghp_test_token", "the consumer needs the token"
    spawner, checker = reactive_components(section)
    rebuilt = spawner.manager  # type: ignore[attr-defined]
    assert (rebuilt.app_name, rebuilt.unit, rebuilt.prefix) == ("gh", 3, "gh-3-")
    assert rebuilt.settings == original.settings
    assert rebuilt.config.charm_state == original.config.charm_state
    assert rebuilt.config.reactive_config == original.config.reactive_config
    assert checker is rebuilt.github_client
    assert "pw" not in repr(rebuilt.config)


def test_reactive_config_only_in_reactive_mode(tmp_path: Path) -> None:
    assert reactive_config(manager(tmp_path, reactive=False)) is None
    config = reactive_config(manager(tmp_path))
    assert config is not None
    assert (config.queue_name, config.user) == ("gh", None)
    assert config.config_path == tmp_path / "state" / "reactive-runner.json"
    assert "pw" not in repr(config)
