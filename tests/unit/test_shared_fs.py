"""shared_fs without root: idmap parsing and the commands the manager runs (faked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from errors import MetricsStorageError, MetricsStorageExistsError, MetricsStorageNotFoundError
from metrics import shared_fs
from metrics.shared_fs import SharedFilesystemManager
from metrics.storage import MetricsStorage, StorageManager


class FakeMounts(SharedFilesystemManager):
    """Records commands; 'mounts' by remembering the mount point."""

    def __init__(self, base_dir: Path, fail: str | None = None) -> None:
        super().__init__(base_dir, owner_uid=100000)
        self.commands: list[list[str]] = []
        self.mounted: set[str] = set()
        self.fail = fail

    def _run(self, cmd: list[str], runner_name: str) -> str:
        self.commands.append(cmd)
        if cmd[0] == self.fail:
            raise MetricsStorageError(f"{cmd[0]} failed", runner_name)
        if cmd[0] == "mount":
            self.mounted.add(cmd[-1])
        if cmd[0] == "umount":
            self.mounted.discard(cmd[-1])
        if cmd[0] == "losetup" and "--list" in cmd:
            return "/dev/loop9\n"
        return ""

    def _loop_devices(self, image: Path, runner_name: str) -> list[str]:
        return ["/dev/loop9"]

    def _is_mounted(self, runner_name: str) -> bool:
        return str(self._mount_point(runner_name)) in self.mounted

    def _mounted_points(self) -> set[str]:
        return set(self.mounted)

    def _mount(self, runner_name: str) -> None:
        if not self._is_mounted(runner_name):
            self._mount_point(runner_name).mkdir(parents=True, exist_ok=True)
            self._run(["mount", str(self._mount_point(runner_name))], runner_name)


def test_is_a_storage_manager(tmp_path: Path) -> None:
    assert isinstance(SharedFilesystemManager(tmp_path), StorageManager)


def test_create_runs_mkfs_with_owner(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    storage = manager.create("r-1")
    assert storage.path == tmp_path / "mounts" / "r-1"
    image = tmp_path / "images" / "r-1.img"
    assert image.stat().st_size == 1 << 20
    mkfs = manager.commands[0]
    assert mkfs[0] == "mkfs.ext4" and "root_owner=100000:100000" in mkfs and "0" in mkfs
    assert manager.commands[1] == ["mount", str(storage.path)]
    with pytest.raises(MetricsStorageExistsError):
        manager.create("r-1")


def test_create_with_explicit_owner(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    manager.create("r-1", owner_uid=1000000)
    assert "root_owner=1000000:1000000" in manager.commands[0]


def test_create_failure_leaves_nothing(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path, fail="mkfs.ext4")
    with pytest.raises(MetricsStorageError):
        manager.create("r-1")
    assert list((tmp_path / "images").iterdir()) == []
    assert not (tmp_path / "mounts" / "r-1").exists()


def test_list_get_delete(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    manager.create("a")
    manager.create("b")
    manager.mounted.clear()  # e.g. after a reboot: get() mounts again
    assert [s.runner_name for s in manager.list_all()] == ["a", "b"]
    assert manager._is_mounted("a")
    manager.delete("a")
    assert ["umount", str(tmp_path / "mounts" / "a")] in manager.commands
    assert ["losetup", "-d", "/dev/loop9"] in manager.commands
    assert not (tmp_path / "images" / "a.img").exists()
    assert not (tmp_path / "mounts" / "a").exists()
    manager.delete("a")
    with pytest.raises(MetricsStorageNotFoundError):
        manager.get("a")


def test_list_all_reads_the_mounts_once_and_checks_only_the_unmounted(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    for name in ("a", "b", "c"):
        manager.create(name)
    manager.mounted.discard(str(tmp_path / "mounts" / "b"))
    asked: list[str] = []
    get = manager.get

    def counted_get(runner_name: str) -> MetricsStorage:
        asked.append(runner_name)
        return get(runner_name)

    manager.get = counted_get  # type: ignore[method-assign]
    assert [s.runner_name for s in manager.list_all()] == ["a", "b", "c"]
    assert asked == ["b"], "mounted stores are listed from the one mount table read"
    assert manager._is_mounted("b"), "the unmounted one was mounted again"


def test_mount_table_paths_are_unescaped() -> None:
    assert shared_fs._unescape("/srv/runner\\040fs/m\\134x") == "/srv/runner fs/m\\x"
    assert "/proc" in SharedFilesystemManager._mounted_points()


def test_orphan_mount_point_is_listed(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    (tmp_path / "mounts" / "orphan").mkdir(parents=True)
    [storage] = manager.list_all()
    assert storage.runner_name == "orphan"
    manager.delete("orphan")
    assert not (tmp_path / "mounts" / "orphan").exists()


def test_unmountable_store_is_listed(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    manager.create("a")
    manager.mounted.clear()
    manager.fail = "mount"
    [storage] = manager.list_all()
    assert storage.runner_name == "a"


def test_quarantine(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    storage = manager.create("a")
    (storage.path / "x").write_text("y")
    manager.move_to_quarantine("a")
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    assert not storage.path.exists()
    manager.move_to_quarantine("a")


def test_set_owner_requires_mount(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    with pytest.raises(MetricsStorageError):
        manager.set_owner("a", 1, 1)
    storage = manager.create("a")
    manager.set_owner("a", 4242, 4343)
    assert (storage.path.stat().st_uid, storage.path.stat().st_gid) == (4242, 4343)


def test_run_timeout_and_failure(tmp_path: Path) -> None:
    manager = SharedFilesystemManager(tmp_path, command_timeout=0.2)
    with pytest.raises(MetricsStorageError, match="timed out"):
        manager._run([sys.executable, "-c", "import time; time.sleep(5)"], "r")
    with pytest.raises(MetricsStorageError, match="exited with 3"):
        manager._run([sys.executable, "-c", "import sys; sys.exit(3)"], "r")
    with pytest.raises(MetricsStorageError):
        manager._run(["/nonexistent/binary"], "r")
    assert manager._run([sys.executable, "-c", "print('ok')"], "r") == "ok\n"


def test_mount_point_must_be_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = SharedFilesystemManager(tmp_path)
    (tmp_path / "mounts").mkdir()
    os.symlink("/etc", tmp_path / "mounts" / "r")
    monkeypatch.setattr(subprocess, "run", pytest.fail)
    with pytest.raises(MetricsStorageError, match="not a directory"):
        manager._mount("r")


def test_default_paths() -> None:
    manager = SharedFilesystemManager()
    assert manager.base_dir == shared_fs.DEFAULT_BASE_DIR
    assert manager.quarantine_dir == shared_fs.DEFAULT_BASE_DIR / "quarantine"


def test_loop_devices_from_sysfs(tmp_path: Path) -> None:
    manager = SharedFilesystemManager(tmp_path / "fs")
    manager.sys_block = tmp_path / "sys"
    image = tmp_path / "fs" / "images" / "r.img"
    for device, backing in (
        ("loop3", f"{image}\n"),
        ("loop4", "/other\n"),
        ("loop5", f"{image} (deleted)\n"),
    ):
        (manager.sys_block / device / "loop").mkdir(parents=True)
        (manager.sys_block / device / "loop" / "backing_file").write_text(backing)
    (manager.sys_block / "loop6").mkdir()
    assert sorted(manager._loop_devices(image, "r")) == ["/dev/loop3", "/dev/loop5"]


def test_loop_devices_fallback_to_losetup(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path)
    manager.sys_block = tmp_path / "no-sysfs"
    assert SharedFilesystemManager._loop_devices(manager, tmp_path / "x.img", "r") == [
        "/dev/loop9"
    ]


def test_loop_device_gone_before_detach(tmp_path: Path) -> None:
    class Racing(FakeMounts):
        calls = 0

        def _loop_devices(self, image: Path, runner_name: str) -> list[str]:
            self.calls += 1
            return ["/dev/loop9"] if self.calls == 1 else []

    manager = Racing(tmp_path, fail="losetup")
    manager.create("a")
    manager.delete("a")
    assert not (tmp_path / "images" / "a.img").exists()


def test_loop_device_stuck(tmp_path: Path) -> None:
    manager = FakeMounts(tmp_path, fail="losetup")
    manager.create("a")
    with pytest.raises(MetricsStorageError):
        manager.delete("a")
