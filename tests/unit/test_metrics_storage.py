"""DirectoryStorageManager and the bounded, no-follow quarantine archive."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from errors import MetricsStorageError, MetricsStorageExistsError, MetricsStorageNotFoundError
from metrics import storage as storage_module
from metrics.storage import (
    DirectoryStorageManager,
    StorageManager,
    archive_store,
    remove_tree,
    validate_runner_name,
)


@pytest.fixture(name="manager")
def manager_fixture(tmp_path: Path) -> DirectoryStorageManager:
    return DirectoryStorageManager(tmp_path / "stores", tmp_path / "q")


def test_is_a_storage_manager(manager: DirectoryStorageManager) -> None:
    assert isinstance(manager, StorageManager)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "-x", "a" * 101, "a b", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(MetricsStorageError):
        validate_runner_name(name)


def test_create_get_list_delete(manager: DirectoryStorageManager) -> None:
    storage = manager.create("r-1")
    assert storage.path == manager.base_dir / "r-1" and storage.path.is_dir()
    assert manager.get("r-1") == storage
    assert list(manager.list_all()) == [storage]
    with pytest.raises(MetricsStorageExistsError):
        manager.create("r-1")
    manager.delete("r-1")
    manager.delete("r-1")
    with pytest.raises(MetricsStorageNotFoundError):
        manager.get("r-1")


def test_create_with_owner(manager: DirectoryStorageManager) -> None:
    storage = manager.create("r-1", owner_uid=12345, owner_gid=23456)
    st = os.stat(storage.path)
    assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_create_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(MetricsStorageError):
        DirectoryStorageManager(tmp_path / "file" / "sub").create("r")


def test_list_skips_invalid_names(manager: DirectoryStorageManager) -> None:
    manager.base_dir.mkdir(parents=True)
    (manager.base_dir / ".hidden").mkdir()
    assert list(manager.list_all()) == []


def test_delete_symlinked_store_keeps_target(
    manager: DirectoryStorageManager, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    manager.base_dir.mkdir(parents=True)
    os.symlink(target, manager.base_dir / "r")
    manager.delete("r")
    assert (target / "keep").exists()
    assert not os.path.lexists(manager.base_dir / "r")


def test_delete_does_not_follow_inner_symlinks(
    manager: DirectoryStorageManager, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    storage = manager.create("r")
    os.symlink(target, storage.path / "link")
    manager.delete("r")
    assert (target / "keep").exists()


def test_delete_failure(manager: DirectoryStorageManager, monkeypatch: pytest.MonkeyPatch) -> None:
    manager.create("r")

    def fail(path: Path) -> None:
        raise OSError("busy")

    monkeypatch.setattr(storage_module, "remove_tree", fail)
    with pytest.raises(MetricsStorageError):
        manager.delete("r")


def test_quarantine_missing_store_is_noop(manager: DirectoryStorageManager) -> None:
    manager.move_to_quarantine("nothing")
    assert not manager.quarantine_dir.exists()


def test_archive_contents(manager: DirectoryStorageManager, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("SECRET-CANARY")
    storage = manager.create("r")
    (storage.path / "a.json").write_text("{}")
    (storage.path / "sub").mkdir()
    (storage.path / "sub" / "b").write_text("bee")
    os.symlink(canary, storage.path / "link")
    os.symlink(tmp_path, storage.path / "dirlink")
    os.mkfifo(storage.path / "fifo")
    with open(storage.path / "sparse", "wb") as sparse:
        sparse.truncate(10 << 30)
    manager.move_to_quarantine("r")
    assert not storage.path.exists()
    [archive] = list(manager.quarantine_dir.iterdir())
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["r"].isdir()
        assert members["r/sub/b"].isfile()
        assert members["r/link"].issym() and members["r/link"].linkname == str(canary)
        assert members["r/dirlink"].issym()
        assert members["r/fifo"].isfifo()
        sparse_member = members["r/sparse"]
        assert sparse_member.size == storage_module.QUARANTINE_MAX_FILE_BYTES
        manifest_file = tar.extractfile("r.quarantine-manifest.json")
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
        assert manifest["truncated_from_bytes"] == {"r/sparse": 10 << 30}
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                assert b"SECRET-CANARY" not in extracted.read()
    assert archive.stat().st_size < 64 * 1024


def test_archive_of_a_symlinked_root(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("outside")
    os.symlink(target, tmp_path / "r")
    dest = archive_store(tmp_path / "r", "r", tmp_path / "q")
    with tarfile.open(dest) as tar:
        [member] = tar.getmembers()
        assert member.issym()


def test_archive_of_a_missing_store(tmp_path: Path) -> None:
    dest = archive_store(tmp_path / "gone", "gone", tmp_path / "q")
    with tarfile.open(dest) as tar:
        assert tar.getmembers() == []


def test_archive_names_do_not_collide(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    first = archive_store(tmp_path / "r", "r", tmp_path / "q")
    second = archive_store(tmp_path / "r", "r", tmp_path / "q")
    assert first != second


def test_archive_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_module, "QUARANTINE_MAX_ENTRIES", 5)
    monkeypatch.setattr(storage_module, "QUARANTINE_MAX_DEPTH", 2)
    root = tmp_path / "r"
    deep = root / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    for i in range(10):
        (root / f"f{i}").write_text("x")
    dest = archive_store(root, "r", tmp_path / "q")
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        assert "r.quarantine-manifest.json" in names
        assert len(names) <= 6
        manifest_file = tar.extractfile("r.quarantine-manifest.json")
        assert manifest_file is not None
        assert json.loads(manifest_file.read())["skipped"]


def test_archive_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(MetricsStorageError):
        archive_store(tmp_path, "r", tmp_path / "file" / "q")


def test_remove_tree_variants(tmp_path: Path) -> None:
    remove_tree(tmp_path / "missing")
    (tmp_path / "f").write_text("")
    remove_tree(tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_quarantine_keeps_the_newest_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "QUARANTINE_MAX_ARCHIVES", 3)
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    for i in range(4):
        old = quarantine / f"old-{i}.tar.gz"
        old.write_bytes(b"")
        os.utime(old, (1000 + i, 1000 + i))
    (quarantine / "notes.txt").write_text("kept: not an archive")
    (tmp_path / "r").mkdir()
    dest = archive_store(tmp_path / "r", "r", quarantine)
    assert sorted(p.name for p in quarantine.iterdir()) == sorted(
        ["old-2.tar.gz", "old-3.tar.gz", dest.name, "notes.txt"]
    )


def test_prune_of_a_missing_directory(tmp_path: Path) -> None:
    storage_module.prune_quarantine(tmp_path / "missing", 1)
