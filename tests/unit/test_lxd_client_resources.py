"""LxdClient over the in-memory LXD stand-in: files, profiles, pools, images, server, errors.

See tests/unit/lxd_rest_standin.py for the stand-in; instances, devices and exec are tested in
test_lxd_client.py.
"""

from __future__ import annotations

import pytest
import requests

import errors
import lxd
from tests.unit.lxd_rest_standin import (  # noqa: F401
    IDMAP,
    FakeLxd,
    FakeNode,
    FakeResponse,
    client_fixture,
    fail,
    server_fixture,
    sync,
)

# --- files ----------------------------------------------------------------------------------


def test_files(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.files.push("/tmp/a", b"hello", mode=0o600, uid=1000, gid=1000)
    _, kind, headers = server.files[("c1", "/tmp/a")]
    assert (kind, headers["X-LXD-mode"], headers["X-LXD-uid"]) == ("file", "0600", "1000")
    assert inst.files.pull("/tmp/a") == b"hello"
    assert inst.files.pull("/tmp/a", max_bytes=5) == b"hello"
    with pytest.raises(errors.LXDError, match="larger than 4"):
        inst.files.pull("/tmp/a", max_bytes=4)
    inst.files.mkdir("/tmp/d")
    inst.files.mkdir("/tmp/d")  # exists: kept
    with pytest.raises(errors.LXDError, match="directory"):
        inst.files.pull("/tmp/d")
    server.files[("c1", "/tmp/l")] = (b"/etc/shadow", "symlink", {})
    with pytest.raises(errors.LXDError, match="symlink"):
        inst.files.pull("/tmp/l")
    with pytest.raises(errors.LXDNotFoundError):
        inst.files.pull("/tmp/missing")
    with pytest.raises(errors.LXDNotFoundError):
        client.get("c1").delete() or inst.files.mkdir("/x")


# --- profiles, pools, images, server --------------------------------------------------------


def test_profiles(client: lxd.LxdClient, server: FakeLxd):
    name = client.resource_profile(cpu=2, memory=7, disk=10)
    assert name == "cpu-2-mem-7GiB-disk-10GiB"
    assert server.profiles[name]["config"] == {"limits.cpu": "2", "limits.memory": "7GiB"}
    assert server.profiles[name]["devices"]["root"]["size"] == "10GiB"
    assert client.resource_profile(cpu=2, memory="7GiB", disk="10GiB") == name
    assert not client.create_or_update_profile(
        name, server.profiles[name]["config"], server.profiles[name]["devices"]
    )
    assert client.create_or_update_profile(name, {"limits.cpu": "1"})
    assert server.profiles[name] == {"config": {"limits.cpu": "1"}, "devices": {}}
    assert client.profile_exists(name)
    client.delete_profile(name)
    client.delete_profile(name)
    assert not client.profile_exists(name)


def test_storage_pools(client: lxd.LxdClient, server: FakeLxd):
    assert client.storage_pool_exists("default")
    assert not client.create_storage_pool("default", "btrfs")
    with pytest.raises(errors.LXDError, match="driver btrfs"):
        client.create_storage_pool("default", "dir")
    assert client.create_storage_pool("fast", "btrfs", {"size": "10GiB"})
    assert server.pools["fast"]["config"] == {"size": "10GiB"}
    assert not client.storage_pool_exists("nope")


def test_images(client: lxd.LxdClient, server: FakeLxd):
    info = client.image_info("github-runner-test")
    assert info.fingerprint == "f" * 64
    assert info.properties == {"github-runner.kind": "test"}
    assert info.created_at is not None
    assert info.size == 123
    assert client.image_exists("github-runner-test")
    client.delete_image("github-runner-test")
    assert not client.image_exists("github-runner-test")
    client.delete_image("github-runner-test")  # missing: no-op
    with pytest.raises(errors.LXDImageNotFoundError):
        client.image_info("github-runner-test")


def test_server_info(client: lxd.LxdClient):
    assert client.is_available()
    assert client.server_info()["api_version"] == "1.0"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ReadTimeout("slow"), errors.LXDTimeoutError),
        (requests.exceptions.ConnectionError("refused"), errors.LXDUnavailableError),
        (requests.exceptions.InvalidURL("bad"), errors.LXDError),
    ],
)
def test_transport_errors_are_mapped(
    client: lxd.LxdClient, server: FakeLxd, exc: Exception, expected: type[errors.LXDError]
):
    server.raise_on["instances"] = exc
    with pytest.raises(expected) as info:
        client.list()
    assert info.value.operation == "list"
    assert not isinstance(info.value, errors.LXDTimeoutError) or expected is errors.LXDTimeoutError
