"""The test OpenStack behaves like a real one for what the charm does (openstacksdk directly).

Needs ``scripts/setup-openstack.sh``; see conftest.py. Servers run on nova's fake driver: they go
ACTIVE in about a second and run nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from openstack import exceptions

from tests.integration.openstack.conftest import OpenStackNames

WAIT = 60


def _active(conn: Any, server: Any) -> Any:
    """Wait for ACTIVE; a server in ERROR fails the test with nova's fault message."""
    try:
        return conn.compute.wait_for_server(
            server, status="ACTIVE", failures=["ERROR"], interval=0.3, wait=WAIT
        )
    except exceptions.ResourceFailure:
        fault = conn.compute.get_server(server.id).fault
        pytest.fail(f"server {server.name} went to ERROR: {fault}")


def test_server_lifecycle_with_tags_and_metadata(
    os_conn: Any, make_server: Callable[..., Any], server_prefix: str
) -> None:
    """A server with tags and metadata reaches ACTIVE, is listed by tag, then is deleted."""
    tag = server_prefix.rstrip("-")
    server = make_server("life", tags=[tag, "github-runner"], metadata={"runner-role": "test"})

    server = _active(os_conn, server)

    assert server.status == "ACTIVE"
    assert server.metadata == {"runner-role": "test"}
    assert sorted(server.tags) == sorted([tag, "github-runner"])
    listed = [s.id for s in os_conn.compute.servers(tags=tag)]
    assert listed == [server.id]
    ports = list(os_conn.network.ports(device_id=server.id))
    assert len(ports) == 1 and ports[0].fixed_ips[0]["ip_address"].startswith("198.18.100.")
    os_conn.compute.delete_server(server)
    os_conn.compute.wait_for_delete(server, interval=0.3, wait=WAIT)
    assert [s.id for s in os_conn.compute.servers(tags=tag)] == []


def test_create_past_instances_quota_is_refused(
    os_conn: Any, os_admin: Any, test_cloud: OpenStackNames, make_server: Callable[..., Any]
) -> None:
    """With room for one more server, the second sequential create answers 403 Quota exceeded."""
    project = test_cloud.project_id
    before = os_admin.get_compute_quotas(project).instances
    existing = len(list(os_conn.compute.servers()))
    os_admin.set_compute_quotas(project, instances=existing + 1)
    try:
        _active(os_conn, make_server("q1"))
        with pytest.raises(exceptions.HttpException) as caught:
            make_server("q2")
    finally:
        os_admin.set_compute_quotas(project, instances=before)

    assert caught.value.status_code == 403
    assert "Quota exceeded for instances" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "status", "message"),
    [
        ("image_id", 400, "Can not find requested image"),
        ("flavor_id", 400, "Flavor {id} could not be found"),
        ("networks", 400, "Network {id} could not be found"),
    ],
)
def test_create_with_unknown_reference_is_refused(
    make_server: Callable[..., Any], field: str, status: int, message: str
) -> None:
    """An unknown image, flavor or network is refused at create time with nova's message."""
    missing = str(uuid.uuid4())
    value: Any = [{"uuid": missing}] if field == "networks" else missing

    with pytest.raises(exceptions.HttpException) as caught:
        make_server("bad", **{field: value})

    assert caught.value.status_code == status
    assert message.format(id=missing) in str(caught.value)


def test_unknown_flavor_and_image_lookups(os_conn: Any) -> None:
    """Direct GETs of unknown ids answer 404; find by name answers None."""
    with pytest.raises(exceptions.NotFoundException):
        os_conn.compute.get_flavor(str(uuid.uuid4()))
    with pytest.raises(exceptions.NotFoundException):
        os_conn.image.get_image(str(uuid.uuid4()))
    assert os_conn.compute.find_flavor("no-such-flavor") is None
    assert os_conn.network.find_network("no-such-network") is None
