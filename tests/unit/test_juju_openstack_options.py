"""The backend choice and the OpenStack options: every bad value names its option."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ops import testing

from charm import GithubRunnerCharm
from charm_state import watches_secret
from config.state import REVEAL_SECRETS, CharmState
from errors import ConfigError
from juju.manager_port import manager_config
from juju.openstack_options import (
    Backend,
    OpenstackOptions,
    parse_backend,
    parse_clouds_yaml,
    parse_openstack_options,
    read_openstack,
)
from juju.runner_managers import write_clouds_yaml
from runner_manager_type import LXDRunnerManagerConfig, OpenstackRunnerManagerConfig
from tests.unit.fakes_charm import FakeRunnerManager, FakeSystem, base_state, reconcile_event
from tests.unit.test_charm_state import build

SECRET = "secret:d0erdgfmp25c762i8np0"
CLOUDS = """\
clouds:
  testcloud:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: runner
      password: s3cr3t-pa55
      project_name: runners
    region_name: RegionOne
"""


def _openstack(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "backend": "openstack",
        "openstack-clouds-yaml-secret-id": SECRET,
        "openstack-flavor": "runner-small",
        "openstack-image": "github-runner-noble",
        "openstack-network": "runners",
    }
    config.update(overrides)
    return config


def test_backend_defaults_to_lxd() -> None:
    assert parse_backend({}) is Backend.LXD
    assert parse_backend({"backend": ""}) is Backend.LXD
    assert parse_backend({"backend": " OpenStack "}) is Backend.OPENSTACK


def test_unknown_backend_names_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_backend({"backend": "kubernetes"})
    assert caught.value.option == "backend"
    assert "lxd, openstack" in caught.value.reason


def test_lxd_backend_has_no_openstack_options() -> None:
    assert parse_openstack_options({"backend": "lxd"}) is None


def test_openstack_options_with_lxd_backend_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_openstack_options({"openstack-flavor": "m1.small", "openstack-network": "n"})
    assert caught.value.option == "openstack-flavor"
    assert "openstack-network" in caught.value.reason
    assert "backend=openstack" in caught.value.reason


@pytest.mark.parametrize(
    "missing",
    [
        "openstack-clouds-yaml-secret-id",
        "openstack-flavor",
        "openstack-image",
        "openstack-network",
    ],
)
def test_openstack_backend_names_a_missing_option(missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_openstack_options(_openstack(**{missing: ""}))
    assert caught.value.option == missing


def test_openstack_options_are_read() -> None:
    assert parse_openstack_options(_openstack(**{"openstack-cloud": "testcloud"})) == (
        OpenstackOptions(
            clouds_yaml_secret_id=SECRET,
            cloud="testcloud",
            flavor="runner-small",
            image="github-runner-noble",
            network="runners",
        )
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("openstack-clouds-yaml-secret-id", "clouds.yaml"),
        ("openstack-flavor", "x" * 256),
        ("openstack-image", "x\u00e9y"),
        ("openstack-cloud", "two\u00a0words"),
    ],
)
def test_bad_values_name_their_option(option: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_openstack_options(_openstack(**{option: value}))
    assert caught.value.option == option


def test_clouds_yaml_only_cloud_is_chosen_and_never_shown() -> None:
    cloud = parse_clouds_yaml(CLOUDS, "", SECRET)
    assert (cloud.name, cloud.auth_url) == ("testcloud", "http://127.0.0.1:5000/v3")
    assert cloud.clouds_yaml == CLOUDS
    assert "s3cr3t" not in repr(cloud)


@pytest.mark.parametrize(
    ("text", "cloud", "option"),
    [
        ("", "", "openstack-clouds-yaml-secret-id"),
        ("clouds: [unclosed", "", "openstack-clouds-yaml-secret-id"),
        ("- a list", "", "openstack-clouds-yaml-secret-id"),
        ("clouds: {}", "", "openstack-clouds-yaml-secret-id"),
        (CLOUDS, "othercloud", "openstack-cloud"),
        (CLOUDS + "  second:\n    auth: {auth_url: 'http://h/v3'}\n", "", "openstack-cloud"),
        (CLOUDS.replace("http://", "ftp://"), "", "openstack-clouds-yaml-secret-id"),
        ("clouds:\n  c: {region_name: r}\n", "", "openstack-clouds-yaml-secret-id"),
        (
            "clouds:\n  c: {auth: {auth_url: 'http:///v3'}}\n",
            "c",
            "openstack-clouds-yaml-secret-id",
        ),
    ],
)
def test_bad_clouds_yaml_names_the_option_and_hides_the_file(
    text: str, cloud: str, option: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_clouds_yaml(text, cloud, SECRET)
    assert caught.value.option == option
    assert "s3cr3t" not in str(caught.value)


def test_oversized_clouds_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match="64 KiB"):
        parse_clouds_yaml(CLOUDS + "#" * 70_000, "", SECRET)


def test_read_openstack_reads_the_secret_the_option_names() -> None:
    asked: list[tuple[str, str]] = []

    def read(option: str, secret_id: str) -> dict[str, str]:
        asked.append((option, secret_id))
        return {"clouds-yaml": CLOUDS}

    settings = read_openstack(_openstack(), read)
    assert asked == [("openstack-clouds-yaml-secret-id", SECRET)]
    assert settings is not None
    assert (settings.cloud, settings.flavor, settings.image, settings.network) == (
        "testcloud",
        "runner-small",
        "github-runner-noble",
        "runners",
    )
    assert settings.clouds_yaml.get_secret_value() == CLOUDS
    assert read_openstack({}, read) is None
    assert len(asked) == 1  # the LXD backend reads no secret


def test_a_secret_without_clouds_yaml_names_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        read_openstack(_openstack(), lambda option, secret_id: {"yaml": CLOUDS})
    assert caught.value.option == "openstack-clouds-yaml-secret-id"
    assert "'clouds-yaml'" in caught.value.reason


def test_the_charm_state_holds_the_cloud_and_never_shows_the_file() -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    state = build(_openstack(**{"openstack-clouds-yaml-secret-id": secret.id}), secrets=[secret])
    assert state.openstack is not None
    assert state.openstack.auth_url == "http://127.0.0.1:5000/v3"
    assert "s3cr3t" not in repr(state)
    assert "s3cr3t" not in state.model_dump_json()
    revealed = state.model_dump_json(context={REVEAL_SECRETS: True})
    assert CharmState.model_validate_json(revealed) == state
    assert build().openstack is None


def test_the_charm_state_says_how_to_grant_the_secret() -> None:
    uri = "secret:cs0h8b1vrs1c73ebsmf0"
    with pytest.raises(ConfigError) as caught:
        build(_openstack(**{"openstack-clouds-yaml-secret-id": uri}))
    assert caught.value.option == "openstack-clouds-yaml-secret-id"
    assert f"juju grant-secret {uri}" in caught.value.reason


def test_the_clouds_yaml_secret_is_watched() -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    config = _openstack(**{"openstack-clouds-yaml-secret-id": secret.id})

    class _Seen:
        id = secret.id
        unique_identifier = secret.id.rsplit(":", 1)[-1]

    assert watches_secret(config, _Seen())  # type: ignore[arg-type]
    assert not watches_secret({}, _Seen())  # type: ignore[arg-type]


def test_an_openstack_state_builds_the_openstack_manager_config() -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    state = build(_openstack(**{"openstack-clouds-yaml-secret-id": secret.id}), secrets=[secret])
    config = manager_config(state, Path("/var/lib/runners"), None)
    assert isinstance(config, OpenstackRunnerManagerConfig)
    assert (config.flavor, config.image, config.network) == (
        "runner-small",
        "github-runner-noble",
        "runners",
    )
    assert config.token not in repr(config)
    assert isinstance(manager_config(build(), Path("/r"), None), LXDRunnerManagerConfig)


@pytest.mark.parametrize(
    ("option", "value"),
    [("network", "lxdbr0"), ("denylist", "10.0.0.0/8"), ("test-mode", "insecure")],
)
def test_lxd_only_options_are_refused_with_openstack(option: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_openstack_options(_openstack(**{option: value}))
    assert caught.value.option == option
    assert "backend=openstack" in caught.value.reason


def test_a_unit_on_openstack_sets_up_no_lxd_and_reconciles_on_the_cloud(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    config = _openstack(**{"openstack-clouds-yaml-secret-id": secret.id})
    out = ctx.run(ctx.on.install(), replace(base_state(config=config), secrets={secret}))
    assert "setup_lxd" not in system.names()
    assert "ensure_runner_network" not in system.names()
    assert "apply_network_policy" not in system.names()
    policy = next(call for call in system.calls if call[0] == "ensure_repo_policy")
    assert policy[-1] == "192.0.2.0"  # the unit's own address: servers reach it there
    assert isinstance(manager.configs[-1][2], OpenstackRunnerManagerConfig)
    out = ctx.run(reconcile_event(), out)
    assert "reconcile" in manager.names()
    assert isinstance(manager.configs[-1][2], OpenstackRunnerManagerConfig)
    assert out.unit_status.name == "active"


def test_the_clouds_yaml_is_written_private_and_only_when_it_changed(tmp_path: Path) -> None:
    path = write_clouds_yaml(tmp_path / "state", CLOUDS)
    assert path.read_text() == CLOUDS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat().st_mtime_ns
    assert write_clouds_yaml(tmp_path / "state", CLOUDS) == path
    assert path.stat().st_mtime_ns == before
    write_clouds_yaml(tmp_path / "state", CLOUDS + "\n")
    assert path.read_text() == CLOUDS + "\n"


def test_reactive_mode_on_openstack_gives_the_openstack_manager_the_queue() -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    config = _openstack(**{"openstack-clouds-yaml-secret-id": secret.id})
    uri = "mongodb://u:p@198.18.1.1:27017/x"
    state = build(config, secrets=[secret], database_uri=uri)
    assert state.openstack is not None
    assert state.reactive_config is not None
    manager = manager_config(state, Path("/var/lib/runners"), None)
    assert isinstance(manager, OpenstackRunnerManagerConfig)
    assert manager.reactive_config == state.reactive_config
    assert manager.reactive_config.mq_uri.get_secret_value() == uri


def test_a_reactive_unit_on_openstack_is_active_and_reconciles_on_the_cloud(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    user = testing.Secret({"uris": "mongodb://user:pass@198.18.1.1:27017/github-runner"})
    answer = {"resource": "github-runner", "request-id": "r1", "salt": "s"}
    mongodb = testing.Relation(
        "mongodb",
        remote_app_data={
            "version": "v1",
            "requests": json.dumps([{**answer, "secret-user": user.id}]),
            "data": json.dumps({"r1": answer}),
        },
    )
    config = _openstack(**{"openstack-clouds-yaml-secret-id": secret.id})
    state = replace(base_state(config=config), secrets={secret, user}, relations=[mongodb])
    out = ctx.run(ctx.on.install(), state)
    out = ctx.run(reconcile_event(), out)
    built = manager.configs[-1][2]
    assert isinstance(built, OpenstackRunnerManagerConfig)
    assert built.reactive_config is not None
    assert built.reactive_config.queue_name == "github-runner"
    assert "reconcile" in manager.names()
    assert out.unit_status.name == "active", out.unit_status


def test_the_cloud_quota_blocks_the_unit_until_a_reconcile_fits(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    config = _openstack(**{"openstack-clouds-yaml-secret-id": secret.id})
    out = ctx.run(ctx.on.install(), replace(base_state(config=config), secrets={secret}))
    manager.quota = "OpenStack quota exceeded: 3 runners not created (Quota exceeded)"
    out = ctx.run(reconcile_event(), out)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(manager.quota)
    assert "lower virtual-machines" in out.unit_status.message
    manager.quota = None
    out = ctx.run(reconcile_event(), out)
    assert isinstance(out.unit_status, testing.ActiveStatus)
