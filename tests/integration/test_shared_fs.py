"""The bounded metrics store for real: loop-mounted ext4 on the host, a disk device in LXD.

Needs root (mount, losetup, mkfs.ext4). The container tests also need the LXD daemon and the
test image (``scripts/setup-lxd.sh && scripts/build-lxd-image.sh --test``); they drive LXD with
the ``lxc`` command line and remove their instances in fixtures.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lxd import host_ids
from metrics.runner import (
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    extract,
)
from metrics.shared_fs import SharedFilesystemManager
from metrics.type import PostJobStatus

pytestmark = [
    pytest.mark.lxd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mount, losetup"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4"),
]

MiB = 1 << 20
PRE_JOB = {
    "timestamp": 1_763_884_830.5,
    "workflow": "CI",
    "workflow_run_id": 42,
    "repository": "canonical/github-runner",
    "event": "push",
}


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle if line.split()[4].startswith(str(path))]


def loops_of(image: Path) -> str:
    return subprocess.run(
        ["losetup", "-j", str(image)], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()


@pytest.fixture(name="manager")
def manager_fixture(tmp_path: Path) -> Iterator[SharedFilesystemManager]:
    manager = SharedFilesystemManager(tmp_path / "runner-fs")
    yield manager
    for storage in list(manager.list_all()):
        manager.delete(storage.runner_name)
    assert mounts_under(tmp_path) == []


def test_bound_holds_on_the_host(manager: SharedFilesystemManager) -> None:
    storage = manager.create("bound")
    stats = os.statvfs(storage.path)
    assert stats.f_blocks * stats.f_frsize <= MiB
    with pytest.raises(OSError) as exc_info, open(storage.path / "big", "wb") as handle:
        for _ in range(32):  # 2 MiB
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    assert exc_info.value.errno == errno.ENOSPC
    assert (storage.path / "big").stat().st_size < MiB
    # root owns the image outside; the store's root belongs to the containers' root user.
    assert os.stat(storage.path).st_uid == 100000
    assert os.stat(manager.images_dir / "bound.img").st_mode & 0o777 == 0o600


def test_mount_options(manager: SharedFilesystemManager) -> None:
    storage = manager.create("opts")
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        [options] = [line.split()[3] for line in handle if line.split()[1] == str(storage.path)]
    assert {"nosuid", "nodev", "noexec"} <= set(options.split(","))


def test_create_delete_leaves_nothing(manager: SharedFilesystemManager, tmp_path: Path) -> None:
    names = [f"r-{i}" for i in range(5)]
    for name in names:
        manager.create(name)
    assert len(mounts_under(tmp_path)) == 5
    images = [manager.images_dir / f"{name}.img" for name in names]
    assert all(loops_of(image) for image in images)
    for name in names:
        manager.delete(name)
        manager.delete(name)  # idempotent
    assert mounts_under(tmp_path) == []
    assert list(manager.images_dir.iterdir()) == []
    assert list(manager.mounts_dir.iterdir()) == []
    assert not any(loops_of(image) for image in images)


def test_remount_after_unmount(manager: SharedFilesystemManager) -> None:
    """After a reboot the images are there but not mounted: get() mounts them again."""
    storage = manager.create("reboot")
    (storage.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text("1763884800")
    subprocess.run(["umount", str(storage.path)], check=True, timeout=30)
    assert not os.path.ismount(storage.path)
    assert manager.get("reboot") == storage
    assert (storage.path / RUNNER_INSTALLED_TS_FILE_NAME).read_text() == "1763884800"


def test_extract_reads_and_removes_real_stores(manager: SharedFilesystemManager) -> None:
    good = manager.create("good")
    (good.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text("1763884800\n")
    (good.path / PRE_JOB_METRICS_FILE_NAME).write_text(json.dumps(PRE_JOB))
    post_job = '{"timestamp": 1763884900, "status": "normal"}'
    (good.path / POST_JOB_METRICS_FILE_NAME).write_text(post_job)
    bad = manager.create("bad")
    (bad.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text("1763884800\n")
    os.symlink("/etc/shadow", bad.path / PRE_JOB_METRICS_FILE_NAME)
    os.mkfifo(bad.path / POST_JOB_METRICS_FILE_NAME)
    manager.create("alive")
    [metrics] = list(extract(manager, {"alive"}))
    assert metrics.runner_name == "good"
    assert metrics.post_job is not None and metrics.post_job.status is PostJobStatus.NORMAL
    assert [s.runner_name for s in manager.list_all()] == ["alive"]
    [archive] = list(manager.quarantine_dir.iterdir())
    assert archive.name.startswith("bad-")


def test_store_figures(manager: SharedFilesystemManager) -> None:
    """Print create+mount and unmount+delete times for 50 stores (figures, not asserts)."""
    start = time.perf_counter()
    for i in range(50):
        manager.create(f"f-{i}")
    created = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(50):
        manager.delete(f"f-{i}")
    deleted = time.perf_counter() - start
    print(f"\n50 stores: create+mount {created:.2f} s, unmount+delete {deleted:.2f} s")


# --- inside a real, unprivileged, NIC-less container -------------------------------------------

TEST_IMAGE = os.environ.get("GITHUB_RUNNER_TEST_IMAGE", "github-runner-test")


def lxc(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lxc", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def lxc_exec(name: str, script: str) -> subprocess.CompletedProcess[str]:
    return lxc("exec", name, "--", "sh", "-c", script, check=False, timeout=60)


@pytest.fixture(name="container", scope="module")
def container_fixture() -> Iterator[str]:
    if shutil.which("lxc") is None:
        pytest.skip("no lxc client")
    if lxc("info", check=False, timeout=30).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("LXD is required in CI")
        pytest.skip("LXD is not running; run scripts/setup-lxd.sh")
    if lxc("image", "info", TEST_IMAGE, check=False, timeout=30).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"image {TEST_IMAGE} is required in CI")
        pytest.skip(f"no image {TEST_IMAGE}; run scripts/build-lxd-image.sh --test")
    name = f"itest-sfs-{secrets.token_hex(3)}"
    try:
        lxc("launch", TEST_IMAGE, name, "-p", "default", timeout=180)
        yield name
    finally:
        lxc("delete", "-f", name, check=False, timeout=120)


@pytest.fixture(name="mount_store")
def mount_store_fixture(
    container: str, manager: SharedFilesystemManager
) -> Iterator[Callable[[str], Path]]:
    """Create a store owned by the container's root and mount it at /metrics-exchange."""
    devices: list[str] = []

    def mount(runner_name: str) -> Path:
        idmap = lxc("config", "get", container, "volatile.idmap.current").stdout.strip()
        uid, gid = host_ids(idmap)
        storage = manager.create(runner_name, owner_uid=uid, owner_gid=gid)
        lxc(
            "config", "device", "add", container, "metrics", "disk",
            f"source={storage.path}", "path=/metrics-exchange",
        )  # fmt: skip
        devices.append("metrics")
        return storage.path

    yield mount
    for device in devices:
        lxc("config", "device", "remove", container, device, check=False)


def test_container_root_writes_into_the_store(
    container: str, mount_store: Callable[[str], Path], manager: SharedFilesystemManager
) -> None:
    path = mount_store("inside")
    assert os.stat(path).st_uid != 0
    pre_job = json.dumps(PRE_JOB).replace('"', '\\"')
    result = lxc_exec(
        container,
        f'echo "{pre_job}" > /metrics-exchange/{PRE_JOB_METRICS_FILE_NAME} && id -u',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert json.loads((path / PRE_JOB_METRICS_FILE_NAME).read_text()) == PRE_JOB

    # The bound holds inside the container too: ENOSPC past ~896 KiB.
    result = lxc_exec(container, "dd if=/dev/zero of=/metrics-exchange/big bs=64k count=32")
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    assert (path / "big").stat().st_size < MiB

    # A hostile runner: symlinks to host files and a FIFO. Extraction neither follows nor blocks.
    result = lxc_exec(
        container,
        "cd /metrics-exchange && rm big && "
        f"ln -s /etc/shadow {RUNNER_INSTALLED_TS_FILE_NAME} && "
        f"mkfifo {POST_JOB_METRICS_FILE_NAME} && "
        "truncate -s 10G sparse",
    )
    assert result.returncode == 0, result.stderr
    lxc("config", "device", "remove", container, "metrics")
    assert list(extract(manager, set())) == []
    assert list(manager.list_all()) == []
    assert len(list(manager.quarantine_dir.iterdir())) == 1


def test_delete_while_the_container_still_holds_the_store(
    container: str, mount_store: Callable[[str], Path], manager: SharedFilesystemManager
) -> None:
    path = mount_store("held")
    assert lxc_exec(container, "echo x > /metrics-exchange/f").returncode == 0
    manager.delete("held")  # the instance is not gone yet: must still not fail or leak a mount
    assert not os.path.ismount(path)
    assert not (manager.images_dir / "held.img").exists()
