"""The LXD seam against the real daemon and the test image (containers on the test network).

Containers get the runner NIC (``LxdClient.runner_profile``) on the closed test network; the only
hosts they talk to are its test hosts. The managed-bridge test makes a bridge in 198.19.128.0/17
(outside every test network session's ranges) with NAT off and sends nothing through it.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import pytest

import errors
from harness.netns import ip_json
from harness.testnet import TestHost, TestNet
from juju.runner_network import ensure_runner_network
from lxd import (
    RUNNER_NIC,
    InstanceStatus,
    LxdClient,
    LxdInstance,
    RunnerProfile,
    bridge_config,
    disk_device,
)

pytestmark = pytest.mark.lxd

MakeInstance = Callable[..., LxdInstance]


WEB_BODY = "hello from a test host"


@pytest.fixture(scope="module")
def web_host(testnet: TestNet) -> TestHost:
    """A test host answering every GET with WEB_BODY on port 80."""
    host = testnet.add_host(f"web-{secrets.token_hex(2)}")
    testnet.start_http(host, port=80, body=WEB_BODY)
    return host


@pytest.fixture(scope="module")
def shared(lxd_client: LxdClient, test_image: str, testnet: TestNet) -> Iterator[LxdInstance]:
    """One booted container with the runner NIC, for tests that run commands and move files."""
    name = f"itest-{secrets.token_hex(3)}-shared"
    profile = lxd_client.runner_profile(testnet.bridge)
    inst = lxd_client.create(name, test_image, profiles=["default", profile], timeout=120)
    try:
        inst.wait_ready(timeout=60)
        inst.wait_address(RUNNER_NIC, timeout=30)
        yield inst
    finally:
        inst.delete(timeout=120)


def test_container_with_the_runner_nic_reaches_a_test_host(
    shared: LxdInstance, web_host: TestHost, testnet: TestNet
):
    inst = shared
    assert inst.status == InstanceStatus.RUNNING
    links = inst.execute(["ip", "-o", "link", "show"], check=True).stdout
    assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] == [
        "lo",
        "eth0",
    ]
    (address,) = inst.addresses(RUNNER_NIC)
    assert ip_address(address) in testnet.subnet
    assert inst.devices == {}, "the NIC comes from the runner profile, no device of its own"

    url = f"http://{web_host.fqdn}/runner"
    curl = inst.execute(["curl", "-fsS", "--max-time", "10", url], user=1000, timeout=30)
    assert curl.exit_code == 0, curl.stderr
    assert curl.stdout.strip() == WEB_BODY
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read())"
    py = inst.execute(["python3", "-c", script], timeout=30, check=True)
    assert WEB_BODY in py.stdout


def test_runner_profile_holds_the_nic_with_its_security(lxd_client: LxdClient, testnet: TestNet):
    name = lxd_client.runner_profile(testnet.bridge, "default")
    assert lxd_client.runner_profile(testnet.bridge, "default") == name  # idempotent
    devices = lxd_client.resources._transport.sync(
        "get", f"profiles/{name}", operation="get-profile"
    )["devices"]
    assert devices["eth0"] == {
        "type": "nic",
        "network": testnet.bridge,
        "name": "eth0",
        "security.port_isolation": "true",
        "security.mac_filtering": "true",
    }, "no LXD DHCP on the test bridge: no IPv4 filtering (it would drop all IPv4)"
    assert devices["root"] == {"type": "disk", "path": "/", "pool": "default"}


def _free_test_subnet() -> str:
    """A /24 in 198.19.128.0/17 no route uses (test sessions use 198.18/16 and 198.19.0/18)."""
    routed = [r.get("dst", "") for r in ip_json(["-4", "route", "show", "table", "all"])]
    used = {IPv4Network(d) for d in routed if d and d != "default"}
    for third in random.sample(range(128, 256), 128):
        net = IPv4Network(f"198.19.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            return f"198.19.{third}.1/24"
    pytest.fail("no free /24 in 198.19.128.0/17")


def test_managed_bridge_create_describe_delete(lxd_client: LxdClient):
    resources = lxd_client.resources
    name = f"itb{secrets.token_hex(3)}"
    address = _free_test_subnet()
    try:
        assert resources.create_bridge(name, bridge_config(address, nat=False), "itest")
        assert not resources.create_bridge(name, bridge_config("auto"))  # exists: left alone
        info = resources.network_info(name)
        assert (info.managed, info.network_type, info.config["ipv4.nat"]) == (
            True,
            "bridge",
            "false",
        )
        assert info.lxd_dhcp and info.host_address == address.split("/")[0]
        # The charm's side, with the network option naming it: the policy service's address.
        found = ensure_runner_network(resources, name, "itest", 0)
        assert (found.name, found.host_address, found.own) == (name, info.host_address, False)
        profile = lxd_client.runner_profile(name, "default")
        got = resources._transport.sync("get", f"profiles/{profile}", operation="get-profile")
        assert got["devices"]["eth0"]["security.ipv4_filtering"] == "true"  # LXD's DHCP
    finally:
        lxd_client.delete_profile(RunnerProfile(name, "default", ipv4_filtering=True).name)
        resources.delete_network(name)
    assert not resources.network_exists(name)
    resources.delete_network(name)  # missing: no-op
    with pytest.raises(errors.LXDNotFoundError):
        resources.network_info(name)


def test_execute_user_cwd_env_and_exit_codes(shared: LxdInstance):
    inst = shared
    result = inst.execute(
        ["sh", "-c", 'id -u; pwd; echo "$GREETING"; echo oops >&2; exit 7'],
        user=1000,
        cwd="/home/ubuntu",
        env={"GREETING": "hi", "HOME": "/home/ubuntu"},
    )
    assert result.exit_code == 7
    assert result.stdout.split() == ["1000", "/home/ubuntu", "hi"]
    assert result.stderr == "oops\n"
    assert inst.execute(["no-such-command"]).exit_code == 127

    with pytest.raises(errors.LXDExecError) as info:
        inst.execute(["sh", "-c", "exit 3", "TOPSECRET"], secret_args=["TOPSECRET"], check=True)
    assert info.value.exit_code == 3
    assert "TOPSECRET" not in str(info.value)

    started = time.monotonic()
    with pytest.raises(errors.LXDTimeoutError) as timeout_info:
        inst.execute(["sh", "-c", "sleep 30", "SECRET2"], timeout=1, secret_args=["SECRET2"])
    assert time.monotonic() - started < 10
    assert "SECRET2" not in str(timeout_info.value)


def test_files_push_pull(shared: LxdInstance):
    inst = shared
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    inst.files.mkdir("/home/ubuntu/work", uid=1000, gid=1000)
    inst.files.mkdir("/home/ubuntu/work", uid=1000, gid=1000)  # existing: kept
    inst.files.push("/home/ubuntu/work/blob", payload, mode=0o600, uid=1000, gid=1000)
    assert inst.files.pull("/home/ubuntu/work/blob") == payload
    stat = inst.execute(["stat", "-c", "%a %u %g", "/home/ubuntu/work/blob"], check=True)
    assert stat.stdout.split() == ["600", "1000", "1000"]

    inst.files.push("/home/ubuntu/work/blob", b"short")  # overwrite
    assert inst.files.pull("/home/ubuntu/work/blob") == b"short"
    with pytest.raises(errors.LXDError, match="larger than"):
        inst.files.pull("/etc/ssl/certs/ca-certificates.crt", max_bytes=100)

    inst.execute(["ln", "-s", "/etc/shadow", "/tmp/link"], check=True)
    with pytest.raises(errors.LXDError, match="symlink"):
        inst.files.pull("/tmp/link")
    with pytest.raises(errors.LXDError, match="directory"):
        inst.files.pull("/tmp")
    with pytest.raises(errors.LXDNotFoundError):
        inst.files.pull("/nonexistent")


def test_list_by_prefix_and_user_config(
    lxd_client: LxdClient, make_instance: MakeInstance, test_prefix: str
):
    make_instance("a", start=False, config={"user.app": "gh", "user.unit": "0"})
    make_instance("b", start=False, config={"user.app": "gh", "user.unit": "1"})
    make_instance("c", start=False, config={"user.app": "other"})

    names = [i.name for i in lxd_client.list(prefix=test_prefix)]
    assert names == [f"{test_prefix}a", f"{test_prefix}b", f"{test_prefix}c"]
    by_app = lxd_client.list(prefix=test_prefix, user_config={"user.app": "gh"})
    assert [i.name for i in by_app] == [f"{test_prefix}a", f"{test_prefix}b"]
    by_unit = lxd_client.list(user_config={"app": "gh", "unit": "1"})
    assert [i.name for i in by_unit] == [f"{test_prefix}b"]
    assert by_unit[0].config["user.unit"] == "1"
    assert by_unit[0].created_at is not None
    assert lxd_client.list(prefix=f"{test_prefix}zzz") == []
    assert by_unit[0].status == InstanceStatus.STOPPED


def test_delete_twice_and_ephemeral_stop(lxd_client: LxdClient, make_instance: MakeInstance):
    inst = make_instance("del")
    assert lxd_client.exists(inst.name)
    inst.delete()
    assert not lxd_client.exists(inst.name)
    inst.delete()  # no-op
    with pytest.raises(errors.LXDNotFoundError):
        lxd_client.get(inst.name)

    eph = make_instance("eph", ephemeral=True)
    eph.stop(timeout=30, force=True)
    assert not lxd_client.exists(eph.name)  # ephemeral: LXD deleted it on stop
    eph.stop()  # no-op
    eph.delete()  # no-op


def test_create_rejects_duplicates_without_touching_the_original(
    lxd_client: LxdClient, make_instance: MakeInstance
):
    inst = make_instance("dup", start=False)
    with pytest.raises(errors.LXDAlreadyExistsError):
        make_instance("dup", start=False)
    assert lxd_client.exists(inst.name)


def test_copy_of_a_template(lxd_client: LxdClient, make_instance: MakeInstance, test_prefix: str):
    template = make_instance("tmpl", ephemeral=False, config={"user.template": "yes"})
    template.wait_ready(timeout=60, booted=False)
    template.stop(timeout=60, force=True)
    copied = lxd_client.copy(template.name, f"{test_prefix}copy", config={"user.app": "gh"})
    copied.wait_ready(timeout=60, booted=False)
    assert copied.execute(["hostname"], check=True).stdout.strip() == copied.name
    assert copied.config["user.app"] == "gh"
    assert copied.config["user.template"] == "yes"
    with pytest.raises(errors.LXDNotFoundError):
        lxd_client.copy(f"{test_prefix}missing", f"{test_prefix}copy2")
    assert not lxd_client.exists(f"{test_prefix}copy2")


def test_missing_image_leaves_nothing(lxd_client: LxdClient, test_prefix: str):
    name = f"{test_prefix}noimg"
    with pytest.raises(errors.LXDImageNotFoundError):
        lxd_client.create(name, "no-such-image-alias", timeout=60)
    assert not lxd_client.exists(name)
    assert lxd_client.list(prefix=test_prefix) == []
    assert not lxd_client.image_exists("no-such-image-alias")
    with pytest.raises(errors.LXDImageNotFoundError):
        lxd_client.image_info("no-such-image-alias")


def test_daemon_down_is_unavailable(tmp_path: Path):
    client = LxdClient(endpoint=str(tmp_path / "no-lxd.socket"), timeout=5)
    assert not client.is_available()
    with pytest.raises(errors.LXDUnavailableError, match="LXD daemon is not running"):
        client.list()
    with pytest.raises(errors.LXDUnavailableError):
        client.create("itest-down", "github-runner-test")


def test_devices_add_remove_and_bad_device(make_instance: MakeInstance, testnet: TestNet):
    inst = make_instance()
    inst.wait_ready(timeout=60)
    inst.add_device("eth1", {"type": "nic", "network": testnet.bridge, "name": "eth1"})
    assert "eth1" in inst.devices
    assert inst.execute(["ip", "link", "show", "eth1"]).exit_code == 0
    inst.remove_device("eth1")
    inst.remove_device("eth1")  # no-op
    assert "eth1" not in inst.refresh().devices
    assert inst.execute(["ip", "link", "show", "eth1"]).exit_code != 0

    with pytest.raises(errors.LXDError):
        inst.add_device("bad", {"type": "nic", "network": "no-such-net0"})
    assert "bad" not in inst.refresh().devices


def test_resource_profile_applies_limits(lxd_client: LxdClient, make_instance: MakeInstance):
    name = lxd_client.resource_profile(cpu=1, memory="256MiB")
    assert name == "cpu-1-mem-256MiB"
    assert lxd_client.profile_exists(name)
    unchanged = {"limits.cpu": "1", "limits.memory": "256MiB"}
    assert not lxd_client.create_or_update_profile(name, unchanged)
    assert lxd_client.resource_profile(cpu=1, memory="256MiB") == name  # idempotent
    inst = make_instance(profiles=["default", name])
    inst.wait_ready(timeout=60)
    assert inst.execute(["nproc"], check=True).stdout.strip() == "1"
    inst.delete()
    lxd_client.delete_profile(name)
    assert not lxd_client.profile_exists(name)


def test_image_info_of_test_image(lxd_client: LxdClient):
    info = lxd_client.image_info("github-runner-test")
    assert len(info.fingerprint) == 64
    assert info.image_type == "container"
    assert info.properties.get("github-runner.kind") == "test"
    assert info.uploaded_at is not None
    assert lxd_client.storage_pool_exists("default")
    assert not lxd_client.storage_pool_exists("no-such-pool")


def test_wait_ready_on_a_deleted_instance_fails_fast(
    lxd_client: LxdClient, make_instance: MakeInstance
):
    inst = make_instance("gone")
    inst.wait_ready(timeout=60, booted=False)
    assert inst.execute(["true"]).ok
    lxd_client.get(inst.name).delete()
    started = time.monotonic()
    with pytest.raises(errors.LXDNotFoundError):
        inst.wait_ready(timeout=60)
    assert time.monotonic() - started < 10


def test_hostname_and_runner_user(shared: LxdInstance):
    inst = shared
    assert inst.execute(["systemctl", "is-system-running"]).stdout.strip() in (
        "running",
        "degraded",
    )
    assert inst.execute(["hostname"], check=True).stdout.strip() == inst.name
    assert inst.execute(["id", "-un", "1000"], check=True).stdout.strip() == "ubuntu"
    sudo = inst.execute(["sudo", "-n", "true"], user=1000, env={"HOME": "/home/ubuntu"})
    assert sudo.exit_code == 0, sudo.stderr


# --- metrics-store style mounts -------------------------------------------------------------


def test_host_dir_owned_by_mapped_root_is_writable_inside(
    make_instance: MakeInstance, tmp_path: Path
):
    inst = make_instance("store")
    inst.wait_ready(timeout=60)
    uid, gid = inst.host_ids_of_root()
    assert uid != 0  # unprivileged container
    store = tmp_path / "store"
    store.mkdir()
    os.chown(store, uid + 1000, gid + 1000)  # the runner user (uid 1000 inside)
    inst.add_device("metrics", disk_device(str(store), "/metrics-exchange"))
    write = inst.execute(
        ["sh", "-c", "echo '{}' > /metrics-exchange/pre-job-metrics.json"], user=1000
    )
    assert write.exit_code == 0, write.stderr
    assert (store / "pre-job-metrics.json").read_text() == "{}\n"
    assert (store / "pre-job-metrics.json").stat().st_uid == uid + 1000


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mkfs.ext4"), reason="needs root")
def test_bounded_loop_store_is_writable_and_bounded(make_instance: MakeInstance, tmp_path: Path):
    inst = make_instance("loop")
    inst.wait_ready(timeout=60)
    uid, gid = inst.host_ids_of_root()
    image = tmp_path / "store.img"
    mount = tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as handle:
        handle.truncate(1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True, timeout=30)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, timeout=30)
    try:
        os.chown(mount, uid, gid)
        inst.add_device("metrics", disk_device(str(mount), "/metrics-exchange"))
        inst.execute(["sh", "-c", "echo ok > /metrics-exchange/f"], check=True)
        assert (mount / "f").read_text() == "ok\n"
        fill = inst.execute(
            ["dd", "if=/dev/zero", "of=/metrics-exchange/big", "bs=64k", "count=64"], timeout=30
        )
        assert fill.exit_code != 0
        assert "No space left" in fill.stderr
        inst.remove_device("metrics")
    finally:
        inst.delete(timeout=120)
        subprocess.run(["umount", "-d", str(mount)], check=True, timeout=30)
