"""The backend choice and the OpenStack options: every bad value names its option."""

from __future__ import annotations

from typing import Any

import pytest

from errors import ConfigError
from juju.openstack_options import (
    Backend,
    OpenstackOptions,
    parse_backend,
    parse_clouds_yaml,
    parse_openstack_options,
)

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
        ("openstack-image", "caf\u00e9"),
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
