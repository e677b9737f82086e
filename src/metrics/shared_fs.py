"""Bounded per-runner metrics stores: one loop-mounted 1 MiB ext4 image per runner.

Layout under ``base_dir`` (default ``/home/ubuntu/runner-fs``)::

    images/<runner>.img   the ext4 image (1 MiB, ``mkfs.ext4 -m 0``: ~896 KiB usable)
    mounts/<runner>/      where the image is mounted (nosuid,nodev,noexec) on the host;
                          add it to the instance as a disk device at /metrics-exchange
    quarantine/           tar.gz archives of corrupt stores

The runner cannot grow its store past the image: a write beyond it fails with ENOSPC inside the
instance. The root of the file system is owned by the instance's root user as mapped on the host
(``lxd.host_ids`` reads it from ``volatile.idmap.current``), so an unprivileged container
can write into it. Every command runs with a timeout.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from errors import MetricsStorageError, MetricsStorageExistsError, MetricsStorageNotFoundError
from metrics.storage import (
    MetricsStorage,
    archive_store,
    is_runner_name,
    remove_tree,
    validate_runner_name,
)

logger = logging.getLogger(__name__)

_MOUNTINFO_ESCAPES = {"\\040": " ", "\\011": "\t", "\\012": "\n", "\\134": "\\"}


def _unescape(field: str) -> str:
    """A mount point as ``/proc/self/mountinfo`` writes it (octal escapes), as a path."""
    for escaped, char in _MOUNTINFO_ESCAPES.items():
        field = field.replace(escaped, char)
    return field


DEFAULT_BASE_DIR = Path("/home/ubuntu/runner-fs")
STORE_SIZE_BYTES = 1 << 20
DEFAULT_OWNER_ID = 100000
COMMAND_TIMEOUT_SECONDS = 30.0
MOUNT_OPTIONS = "loop,nosuid,nodev,noexec"
_IMAGE_SUFFIX = ".img"


class SharedFilesystemManager:
    """Creates, lists, quarantines and deletes loop-mounted, size-bounded metrics stores.

    Implements :class:`metrics.storage.StorageManager`. Needs root (mount, losetup).
    """

    sys_block = Path("/sys/block")

    def __init__(
        self,
        base_dir: Path = DEFAULT_BASE_DIR,
        quarantine_dir: Path | None = None,
        *,
        owner_uid: int = DEFAULT_OWNER_ID,
        owner_gid: int | None = None,
        size_bytes: int = STORE_SIZE_BYTES,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        """Build the manager.

        Args:
            base_dir: Holds ``images/``, ``mounts/`` and (by default) ``quarantine/``.
            quarantine_dir: Where corrupt stores are archived.
            owner_uid: Default host uid owning a new store's root (the containers' root).
            owner_gid: Default host gid owning it (default: ``owner_uid``).
            size_bytes: Size of each image.
            command_timeout: Seconds each command (mkfs, mount, umount, losetup) may take.
        """
        self.base_dir = base_dir
        self.images_dir = base_dir / "images"
        self.mounts_dir = base_dir / "mounts"
        self.quarantine_dir = quarantine_dir or base_dir / "quarantine"
        self.owner_uid = owner_uid
        self.owner_gid = owner_uid if owner_gid is None else owner_gid
        self.size_bytes = size_bytes
        self.command_timeout = command_timeout

    # --- paths and commands -------------------------------------------------------------------

    def _image(self, runner_name: str) -> Path:
        return self.images_dir / f"{validate_runner_name(runner_name)}{_IMAGE_SUFFIX}"

    def _mount_point(self, runner_name: str) -> Path:
        return self.mounts_dir / validate_runner_name(runner_name)

    def _run(self, cmd: list[str], runner_name: str) -> str:
        """Run a command with a timeout.

        Returns:
            Its standard output.

        Raises:
            MetricsStorageError: If it fails or times out.
        """
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.command_timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MetricsStorageError(f"{cmd[0]} failed: {exc}", runner_name) from exc
        if result.returncode != 0:
            raise MetricsStorageError(
                f"{cmd[0]} exited with {result.returncode}: {result.stderr.strip()[:300]}",
                runner_name,
            )
        return result.stdout

    @staticmethod
    def _mounted_points() -> set[str]:
        """Every mount point of this mount namespace (``/proc/self/mountinfo``, unescaped)."""
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
                fields = [line.split(" ", 5) for line in info]
        except OSError:
            return set()  # then every store is checked on its own
        return {_unescape(f[4]) for f in fields if len(f) > 4}

    def _is_mounted(self, runner_name: str) -> bool:
        return os.path.ismount(self._mount_point(runner_name))

    def _mount(self, runner_name: str) -> None:
        """Mount the image of a runner at its mount point unless already mounted."""
        mount_point = self._mount_point(runner_name)
        if os.path.ismount(mount_point):
            return
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        try:
            mount_point.mkdir(mode=0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(mount_point).st_mode):
                raise MetricsStorageError("mount point is not a directory", runner_name) from None
        self._run(
            [
                "mount",
                "-t",
                "ext4",
                "-o",
                MOUNT_OPTIONS,
                str(self._image(runner_name)),
                str(mount_point),
            ],
            runner_name,
        )

    def _loop_devices(self, image: Path, runner_name: str) -> list[str]:
        """Return the loop devices still attached to an image (sysfs; losetup as a fallback)."""
        sys_block = self.sys_block
        if not sys_block.is_dir():
            out = self._run(
                ["losetup", "--list", "-n", "-O", "NAME", "-j", str(image)], runner_name
            )
            return out.split()
        target = str(image.resolve())
        devices = []
        for backing in sys_block.glob("loop*/loop/backing_file"):
            try:
                name = backing.read_text(encoding="utf-8").strip().removesuffix(" (deleted)")
            except OSError:
                continue
            if name == target:
                devices.append(f"/dev/{backing.parent.parent.name}")
        return devices

    def _names(self) -> set[str]:
        names: set[str] = set()
        for directory, suffix in ((self.mounts_dir, ""), (self.images_dir, _IMAGE_SUFFIX)):
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if not entry.name.endswith(suffix):
                            continue
                        name = (
                            entry.name[: len(entry.name) - len(suffix)] if suffix else entry.name
                        )
                        if is_runner_name(name):
                            names.add(name)
            except FileNotFoundError:
                continue
        return names

    # --- StorageManager -----------------------------------------------------------------------

    def create(
        self, runner_name: str, owner_uid: int | None = None, owner_gid: int | None = None
    ) -> MetricsStorage:
        """Create, format and mount the store of a runner.

        Args:
            runner_name: The runner.
            owner_uid: Host uid to own the store's root (default: the manager's ``owner_uid``).
            owner_gid: Host gid to own it (default: ``owner_uid`` if given, else the manager's).

        Returns:
            The store; ``path`` is the host path to mount at ``/metrics-exchange``.

        Raises:
            MetricsStorageExistsError: If the runner already has a store.
            MetricsStorageError: If it cannot be created (nothing is left behind).
        """
        image = self._image(runner_name)
        if os.path.lexists(image) or os.path.lexists(self._mount_point(runner_name)):
            raise MetricsStorageExistsError("store exists", runner_name)
        uid = self.owner_uid if owner_uid is None else owner_uid
        gid = (
            (uid if owner_uid is not None else self.owner_gid) if owner_gid is None else owner_gid
        )
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, self.size_bytes)
            finally:
                os.close(fd)
        except FileExistsError as exc:
            raise MetricsStorageExistsError("store exists", runner_name) from exc
        except OSError as exc:
            raise MetricsStorageError(f"cannot create image: {exc}", runner_name) from exc
        try:
            self._run(
                ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{gid}", str(image)],
                runner_name,
            )
            self._mount(runner_name)
        except (MetricsStorageError, OSError) as exc:
            try:
                self.delete(runner_name)
            except MetricsStorageError:
                logger.exception("Cannot clean up the failed store of %s", runner_name)
            if isinstance(exc, MetricsStorageError):
                raise
            raise MetricsStorageError(f"cannot create store: {exc}", runner_name) from exc
        return MetricsStorage(path=self._mount_point(runner_name), runner_name=runner_name)

    def set_owner(self, runner_name: str, uid: int, gid: int) -> None:
        """Give the root of a mounted store to another host uid/gid.

        Args:
            runner_name: The runner.
            uid: Host uid (the instance's mapped root, see ``lxd.host_ids``).
            gid: Host gid.

        Raises:
            MetricsStorageError: If the store is not mounted or cannot be changed.
        """
        if not self._is_mounted(runner_name):
            raise MetricsStorageError("store is not mounted", runner_name)
        try:
            os.chown(self._mount_point(runner_name), uid, gid, follow_symlinks=False)
        except OSError as exc:
            raise MetricsStorageError(f"cannot chown store: {exc}", runner_name) from exc

    def list_all(self) -> Iterator[MetricsStorage]:
        """Iterate over all stores, mounting those whose image is not mounted.

        A store whose image cannot be mounted is listed anyway (its empty mount point reads as
        "nothing to report", so extraction deletes it).

        Yields:
            The stores.
        """
        mounted = self._mounted_points()  # one read, not a mount check per store
        for name in sorted(self._names()):
            mount_point = self._mount_point(name)
            if str(mount_point) in mounted and os.path.lexists(self._image(name)):
                yield MetricsStorage(path=mount_point, runner_name=name)
                continue
            try:
                yield self.get(name)
            except MetricsStorageNotFoundError:
                continue
            except MetricsStorageError:
                logger.exception("Cannot mount the metrics store of %s", name)
                yield MetricsStorage(path=self._mount_point(name), runner_name=name)

    def get(self, runner_name: str) -> MetricsStorage:
        """Return the store of a runner, mounting its image if needed.

        Args:
            runner_name: The runner.

        Returns:
            The store.

        Raises:
            MetricsStorageNotFoundError: If the runner has no store.
            MetricsStorageError: If its image cannot be mounted.
        """
        image, mount_point = self._image(runner_name), self._mount_point(runner_name)
        has_image = os.path.lexists(image)
        if not has_image and not os.path.lexists(mount_point):
            raise MetricsStorageNotFoundError("no store", runner_name)
        if has_image:
            self._mount(runner_name)
        return MetricsStorage(path=mount_point, runner_name=runner_name)

    def delete(self, runner_name: str) -> None:
        """Unmount the store, detach its loop device and remove its files; idempotent.

        Args:
            runner_name: The runner.

        Raises:
            MetricsStorageError: If it cannot be unmounted or removed.
        """
        image, mount_point = self._image(runner_name), self._mount_point(runner_name)
        if self._is_mounted(runner_name):
            try:
                self._run(["umount", str(mount_point)], runner_name)
            except MetricsStorageError:
                logger.warning("Lazy unmount of the busy store of %s", runner_name)
                self._run(["umount", "--lazy", str(mount_point)], runner_name)
        if os.path.lexists(image):
            for device in self._loop_devices(image, runner_name):
                try:
                    self._run(["losetup", "-d", device], runner_name)
                except MetricsStorageError:
                    # The kernel detaches an autoclear device asynchronously after the unmount:
                    # the device may have gone between the listing and losetup.
                    if device in self._loop_devices(image, runner_name):
                        raise
        try:
            if not self._is_mounted(runner_name):
                remove_tree(mount_point)
            image.unlink(missing_ok=True)
        except OSError as exc:
            raise MetricsStorageError(f"cannot remove store: {exc}", runner_name) from exc

    def move_to_quarantine(self, runner_name: str) -> None:
        """Archive the store into the quarantine directory (no symlink followed), then delete it.

        Args:
            runner_name: The runner.

        Raises:
            MetricsStorageError: If it cannot be archived or deleted.
        """
        try:
            storage = self.get(runner_name)
        except MetricsStorageNotFoundError:
            return
        archive_store(storage.path, runner_name, self.quarantine_dir)
        self.delete(runner_name)
