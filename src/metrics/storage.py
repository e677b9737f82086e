"""Per-runner metrics stores: the protocol, an unbounded directory backend, safe archiving.

A store is a directory on the host that is mounted into one runner's instance at
``/metrics-exchange``. Everything in it is written by an untrusted runner, so the host never
follows a symlink in it, never opens anything but a regular file, and never reads more than a
bounded number of bytes from it. The bounded backend (a loop-mounted 1 MiB ext4 image) lives in
:mod:`shared_fs`; :class:`DirectoryStorageManager` here is a plain directory per runner, without
a size bound, for unit tests and benchmarks.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from errors import MetricsStorageError, MetricsStorageExistsError, MetricsStorageNotFoundError

logger = logging.getLogger(__name__)

_RUNNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")

# Flags for opening anything inside a store: never follow a symlink, never block on a FIFO.
OPEN_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# Bounds of a quarantine archive (a store is 1 MiB; a sparse file may claim gigabytes).
QUARANTINE_MAX_FILE_BYTES = 64 << 10
QUARANTINE_MAX_TOTAL_BYTES = 1 << 20
QUARANTINE_MAX_ENTRIES = 1024
QUARANTINE_MAX_DEPTH = 8
# Archives kept in the quarantine directory; the oldest go first.
QUARANTINE_MAX_ARCHIVES = 500


def validate_runner_name(runner_name: str) -> str:
    """Check that a runner name is safe to use as a single path component.

    Args:
        runner_name: The runner name.

    Returns:
        The name, unchanged.

    Raises:
        MetricsStorageError: If the name could escape the base directory or is not a runner name.
    """
    if not _RUNNER_NAME.match(runner_name):
        raise MetricsStorageError(f"invalid runner name {runner_name!r}", runner_name)
    return runner_name


def is_runner_name(name: str) -> bool:
    """Tell whether a directory entry name is a valid runner name.

    Args:
        name: The name.

    Returns:
        True if the name matches the runner name pattern.
    """
    return bool(_RUNNER_NAME.match(name))


@dataclass(frozen=True)
class MetricsStorage:
    """The metrics store of one runner.

    Attributes:
        path: Host path of the store's root: mount this at ``/metrics-exchange`` in the instance.
        runner_name: The runner the store belongs to.
    """

    path: Path
    runner_name: str


@runtime_checkable
class StorageManager(Protocol):
    """Creates, lists, deletes and quarantines the metrics stores of runners."""

    def create(self, runner_name: str) -> MetricsStorage:
        """Create the store of a runner.

        Args:
            runner_name: The runner.
        """
        ...  # pragma: no cover

    def list_all(self) -> Iterator[MetricsStorage]:
        """Iterate over all stores, including orphans and broken ones."""
        ...  # pragma: no cover

    def get(self, runner_name: str) -> MetricsStorage:
        """Return the store of a runner.

        Args:
            runner_name: The runner.
        """
        ...  # pragma: no cover

    def delete(self, runner_name: str) -> None:
        """Delete the store of a runner; nothing happens if it does not exist.

        Args:
            runner_name: The runner.
        """
        ...  # pragma: no cover

    def move_to_quarantine(self, runner_name: str) -> None:
        """Archive the store of a runner into the quarantine directory, then delete it.

        Args:
            runner_name: The runner.
        """
        ...  # pragma: no cover


@dataclass
class _Budget:
    """Remaining allowance while archiving one store."""

    entries: int
    total_bytes: int
    skipped: list[str] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(max(0, min(st.st_mtime, 2**33 - 1)))
    info.uid, info.gid = st.st_uid, st.st_gid
    return info


def _read_capped(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _add_entry(
    tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, *, depth: int, budget: _Budget
) -> None:
    """Add one directory entry to the archive without following symlinks."""
    if budget.entries <= 0:
        budget.skipped.append(arcname)
        return
    budget.entries -= 1
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = _tarinfo(arcname, st)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dir_fd)[:1000]
        tar.addfile(info)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        if depth >= QUARANTINE_MAX_DEPTH:
            budget.skipped.append(arcname + "/*")
            return
        sub_fd = os.open(name, OPEN_DIR_FLAGS, dir_fd=dir_fd)
        try:
            _add_dir(tar, sub_fd, arcname, depth=depth + 1, budget=budget)
        finally:
            os.close(sub_fd)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=dir_fd)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                budget.skipped.append(arcname)
                return
            limit = max(0, min(fst.st_size, QUARANTINE_MAX_FILE_BYTES, budget.total_bytes))
            data = _read_capped(fd, limit)
        finally:
            os.close(fd)
        budget.total_bytes -= len(data)
        info.size = len(data)
        if len(data) < fst.st_size:
            budget.truncated[arcname] = fst.st_size
        tar.addfile(info, io.BytesIO(data))
    else:
        # Devices and sockets: recorded by name only, never opened.
        budget.skipped.append(arcname)


def _add_dir(
    tar: tarfile.TarFile, dir_fd: int, arcname: str, *, depth: int, budget: _Budget
) -> None:
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            _add_entry(
                tar, dir_fd, entry.name, f"{arcname}/{entry.name}", depth=depth, budget=budget
            )


def _add_manifest(tar: tarfile.TarFile, runner_name: str, budget: _Budget) -> None:
    """Record what the archive left out or cut, as a JSON member next to the store."""
    manifest = json.dumps(
        {"skipped": budget.skipped[:100], "truncated_from_bytes": budget.truncated}
    ).encode()
    info = tarfile.TarInfo(f"{runner_name}.quarantine-manifest.json")
    info.size = len(manifest)
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(manifest))


def archive_store(path: Path, runner_name: str, quarantine_dir: Path) -> Path:
    """Write a bounded tar.gz of a store into the quarantine directory, never following symlinks.

    Symlinks are archived as symlinks, FIFOs as FIFOs (never opened), regular files are read
    through ``O_NOFOLLOW | O_NONBLOCK`` descriptors and truncated to bounded sizes (a sparse file
    claiming gigabytes is cut). What was cut or left out is listed in a
    ``<runner>.quarantine-manifest.json`` member. Devices and sockets are left out. Only the
    newest ``QUARANTINE_MAX_ARCHIVES`` archives are kept.

    Args:
        path: Host path of the store's root (may itself be a symlink: archived as one).
        runner_name: The runner, used for the archive's name and top directory.
        quarantine_dir: Where to put the archive (created if missing, mode 0700).

    Returns:
        The path of the archive.

    Raises:
        MetricsStorageError: If the archive cannot be written.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for attempt in range(100):
            suffix = f"-{attempt}" if attempt else ""
            dest = quarantine_dir / f"{runner_name}-{stamp}{suffix}.tar.gz"
            try:
                out_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:
                continue
        else:
            raise MetricsStorageError("no free quarantine archive name", runner_name)
        budget = _Budget(entries=QUARANTINE_MAX_ENTRIES, total_bytes=QUARANTINE_MAX_TOTAL_BYTES)
        with (
            os.fdopen(out_fd, "wb") as raw,
            tarfile.open(
                fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=1
            ) as tar,
        ):
            try:
                os.lstat(path)
            except FileNotFoundError:
                return dest
            parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _add_entry(tar, parent_fd, path.name, runner_name, depth=0, budget=budget)
            finally:
                os.close(parent_fd)
            if budget.skipped or budget.truncated:
                _add_manifest(tar, runner_name, budget)
        if budget.skipped:
            logger.warning(
                "Quarantine of %s left out %d entries", runner_name, len(budget.skipped)
            )
    except OSError as exc:
        raise MetricsStorageError(f"cannot archive store: {exc}", runner_name) from exc
    prune_quarantine(quarantine_dir, QUARANTINE_MAX_ARCHIVES)
    return dest


def prune_quarantine(quarantine_dir: Path, keep: int) -> None:
    """Delete the oldest archives beyond ``keep`` so that quarantine cannot fill the disk.

    Args:
        quarantine_dir: The quarantine directory.
        keep: How many archives to keep.
    """
    try:
        with os.scandir(quarantine_dir) as entries:
            archives = [
                (entry.stat(follow_symlinks=False).st_mtime, entry.name, entry.path)
                for entry in entries
                if entry.name.endswith(".tar.gz") and entry.is_file(follow_symlinks=False)
            ]
    except OSError:
        logger.exception("Cannot list the quarantine directory")
        return
    if len(archives) <= keep:
        return
    archives.sort()
    for _, _, archive in archives[: len(archives) - keep]:
        try:
            os.unlink(archive)
        except OSError:
            logger.exception("Cannot delete the old quarantine archive %s", archive)


def remove_tree(path: Path) -> None:
    """Remove a store directory (or whatever replaced it) without following symlinks.

    Args:
        path: The store's root. A symlink is unlinked, never followed.

    Raises:
        OSError: If removal fails.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        # On Linux rmtree works on file descriptors and never follows symlinks inside the tree.
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class DirectoryStorageManager:
    """One plain directory per runner under ``base_dir``: no size bound. For tests/benchmarks."""

    def __init__(self, base_dir: Path, quarantine_dir: Path | None = None) -> None:
        """Build the manager.

        Args:
            base_dir: Directory holding one sub-directory per runner.
            quarantine_dir: Where corrupt stores are archived (default ``base_dir/../quarantine``).
        """
        self.base_dir = base_dir
        self.quarantine_dir = quarantine_dir or base_dir.parent / f"{base_dir.name}-quarantine"

    def _path(self, runner_name: str) -> Path:
        return self.base_dir / validate_runner_name(runner_name)

    def create(
        self, runner_name: str, owner_uid: int | None = None, owner_gid: int | None = None
    ) -> MetricsStorage:
        """Create the store of a runner.

        Args:
            runner_name: The runner.
            owner_uid: Host uid to own the store's root (the instance's mapped root), if any.
            owner_gid: Host gid to own the store's root (default: ``owner_uid``).

        Returns:
            The new store.

        Raises:
            MetricsStorageExistsError: If the runner already has a store.
            MetricsStorageError: If the directory cannot be created.
        """
        path = self._path(runner_name)
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=0o755)
            if owner_uid is not None:
                os.chown(path, owner_uid, owner_gid if owner_gid is not None else owner_uid)
        except FileExistsError as exc:
            raise MetricsStorageExistsError("store exists", runner_name) from exc
        except OSError as exc:
            raise MetricsStorageError(f"cannot create store: {exc}", runner_name) from exc
        return MetricsStorage(path=path, runner_name=runner_name)

    def list_all(self) -> Iterator[MetricsStorage]:
        """Iterate over all stores (whatever their type: a symlink is listed, and found corrupt).

        Yields:
            The stores.
        """
        try:
            entries = os.scandir(self.base_dir)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                if is_runner_name(entry.name):
                    yield MetricsStorage(path=Path(entry.path), runner_name=entry.name)

    def get(self, runner_name: str) -> MetricsStorage:
        """Return the store of a runner.

        Args:
            runner_name: The runner.

        Returns:
            The store.

        Raises:
            MetricsStorageNotFoundError: If the runner has no store.
        """
        path = self._path(runner_name)
        if not os.path.lexists(path):
            raise MetricsStorageNotFoundError("no store", runner_name)
        return MetricsStorage(path=path, runner_name=runner_name)

    def delete(self, runner_name: str) -> None:
        """Delete the store of a runner; idempotent.

        Args:
            runner_name: The runner.

        Raises:
            MetricsStorageError: If the store cannot be removed.
        """
        try:
            remove_tree(self._path(runner_name))
        except OSError as exc:
            raise MetricsStorageError(f"cannot delete store: {exc}", runner_name) from exc

    def move_to_quarantine(self, runner_name: str) -> None:
        """Archive the store into the quarantine directory, then delete it.

        Args:
            runner_name: The runner.
        """
        path = self._path(runner_name)
        if not os.path.lexists(path):
            return
        archive_store(path, runner_name, self.quarantine_dir)
        self.delete(runner_name)
