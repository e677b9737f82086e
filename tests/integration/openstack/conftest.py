"""Fixtures of the tests against the real test OpenStack of ``scripts/setup-openstack.sh``.

That script (``make setup-openstack``) brings up keystone, glance, placement, neutron and nova
(the test compute driver: nova's fake one, or LXD containers for the servers of an image tagged
``github_runner_lxd``, see ``harness/openstack_lxd.py``) from Debian's packages on 127.0.0.1
and writes, under
``$GITHUB_RUNNER_OPENSTACK_STATE`` (default /var/lib/github-runner-openstack):
``clouds.yaml`` (cloud ``testcloud``, the charm's non-admin user), ``admin-clouds.yaml``
(cloud ``testcloud-admin``) and ``resources.json`` (flavor, image, network names).

Outside CI the tests skip with the reason when the control plane is not up; in CI (``CI`` set)
they fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STATE = Path(os.environ.get("GITHUB_RUNNER_OPENSTACK_STATE", "/var/lib/github-runner-openstack"))
PREPARE = "sudo scripts/setup-openstack.sh (or make setup-openstack)"
ENDPOINTS = {"keystone": 5000, "nova": 8774, "neutron": 9696, "glance": 9292, "placement": 8778}
API_TIMEOUT = 60


def _unavailable(reason: str) -> None:
    """Skip outside CI; fail loudly in CI."""
    if os.environ.get("CI"):
        pytest.fail(
            f"the test OpenStack is required in CI: {reason} (run {PREPARE})", pytrace=False
        )
    pytest.skip(f"{reason}; run {PREPARE} to enable")


@dataclass(frozen=True)
class OpenStackNames:
    """Where the test OpenStack's clouds files are and the names of what it provides."""

    clouds_yaml: Path
    admin_clouds_yaml: Path
    cloud: str
    admin_cloud: str
    project: str
    project_id: str
    flavor: str
    image: str
    network: str


@pytest.fixture(scope="session")
def test_cloud() -> OpenStackNames:
    """The test OpenStack's description; skips (fails in CI) when it is not up."""
    try:
        import openstack  # noqa: F401
    except ImportError:
        _unavailable("openstacksdk is not installed in this environment")
    try:
        names = json.loads((STATE / "resources.json").read_text())
    except OSError as exc:
        _unavailable(f"no test OpenStack description at {STATE}/resources.json ({exc})")
    for service, port in ENDPOINTS.items():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            _unavailable(f"{service} does not answer on 127.0.0.1:{port} ({exc})")
    return OpenStackNames(
        clouds_yaml=Path(names["clouds_yaml"]),
        admin_clouds_yaml=Path(names["admin_clouds_yaml"]),
        cloud=names["cloud"],
        admin_cloud=names["admin_cloud"],
        project=names["project"],
        project_id=names["project_id"],
        flavor=names["flavor"],
        image=names["image"],
        network=names["network"],
    )


def _connect(clouds_yaml: Path, cloud: str) -> Any:
    import openstack
    import openstack.config

    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)])
    region = config.get_one(cloud=cloud, api_timeout=API_TIMEOUT)
    return openstack.connection.Connection(config=region)


@pytest.fixture(scope="session")
def os_conn(test_cloud: OpenStackNames) -> Iterator[Any]:
    """An openstacksdk connection as the charm's (non-admin) user."""
    conn = _connect(test_cloud.clouds_yaml, test_cloud.cloud)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def os_admin(test_cloud: OpenStackNames) -> Iterator[Any]:
    """An openstacksdk connection as the cloud's admin (quotas, cleanup)."""
    conn = _connect(test_cloud.admin_clouds_yaml, test_cloud.admin_cloud)
    yield conn
    conn.close()


@pytest.fixture
def server_prefix() -> str:
    """A unique server-name prefix for one test (``ostest-<hex>-``)."""
    return f"ostest-{secrets.token_hex(3)}-"


@pytest.fixture
def make_server(
    os_conn: Any, test_cloud: OpenStackNames, server_prefix: str
) -> Iterator[Callable[..., Any]]:
    """Create servers (default flavor, image, network); delete those with the prefix at teardown.

    ``make(suffix, **kwargs)`` returns the server as created (not waited for); kwargs go to
    ``compute.create_server`` and override the defaults. Teardown lists by prefix, so it also
    removes servers whose create answered an error late.
    """
    flavor = os_conn.compute.find_flavor(test_cloud.flavor, ignore_missing=False)
    image = os_conn.image.find_image(test_cloud.image, ignore_missing=False)
    network = os_conn.network.find_network(test_cloud.network, ignore_missing=False)

    def make(suffix: str = "s", **kwargs: Any) -> Any:
        args: dict[str, Any] = {
            "name": f"{server_prefix}{suffix}",
            "flavor_id": flavor.id,
            "image_id": image.id,
            "networks": [{"uuid": network.id}],
        }
        args.update(kwargs)
        return os_conn.compute.create_server(**args)

    yield make
    mine = [s for s in os_conn.compute.servers() if s.name.startswith(server_prefix)]
    for server in mine:
        os_conn.compute.delete_server(server, ignore_missing=True)
    for server in mine:
        os_conn.compute.wait_for_delete(server, interval=0.3, wait=API_TIMEOUT)
