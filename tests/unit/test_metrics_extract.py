"""extract(): the happy path, each kind of corrupt store, orphans and ignored runners."""

from __future__ import annotations

import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from errors import MetricsStorageError
from metrics import runner as metrics_runner
from metrics.runner import (
    FILE_SIZE_BYTES_LIMIT,
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    extract,
)
from metrics.storage import DirectoryStorageManager, MetricsStorage
from metrics.type import PostJobStatus

INSTALLED = 1_763_884_800.0
PRE_JOB = {
    "timestamp": INSTALLED + 30,
    "workflow": "CI",
    "workflow_run_id": 123,
    "repository": "canonical/github-runner",
    "event": "push",
}
POST_JOB = {"timestamp": INSTALLED + 90, "status": "abnormal", "status_info": {"code": 7}}


@pytest.fixture(name="manager")
def manager_fixture(tmp_path: Path) -> DirectoryStorageManager:
    return DirectoryStorageManager(tmp_path / "stores", tmp_path / "quarantine")


def write_store(
    manager: DirectoryStorageManager,
    name: str,
    installed: str | None = f"{INSTALLED}\n",
    pre: object = PRE_JOB,
    post: object = POST_JOB,
) -> MetricsStorage:
    storage = manager.create(name)
    if installed is not None:
        (storage.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text(installed)
    for file_name, content in (
        (PRE_JOB_METRICS_FILE_NAME, pre),
        (POST_JOB_METRICS_FILE_NAME, post),
    ):
        if content is None:
            continue
        text = content if isinstance(content, str) else json.dumps(content)
        (storage.path / file_name).write_text(text)
    return storage


def quarantined(manager: DirectoryStorageManager) -> list[str]:
    if not manager.quarantine_dir.exists():
        return []
    return sorted(p.name for p in manager.quarantine_dir.iterdir())


def test_happy_path_yields_and_deletes(manager: DirectoryStorageManager) -> None:
    write_store(manager, "r-1")
    [metrics] = list(extract(manager, set()))
    assert metrics.runner_name == "r-1"
    assert metrics.installed_timestamp == INSTALLED
    assert metrics.pre_job is not None and metrics.pre_job.workflow_run_id == 123
    assert metrics.post_job is not None
    assert metrics.post_job.status is PostJobStatus.ABNORMAL
    assert metrics.post_job.status_info is not None and metrics.post_job.status_info.code == 7
    assert list(manager.list_all()) == []
    assert quarantined(manager) == []


def test_ignored_runners_are_left_alone(manager: DirectoryStorageManager) -> None:
    write_store(manager, "alive")
    write_store(manager, "dead")
    names = [m.runner_name for m in extract(manager, {"alive"})]
    assert names == ["dead"]
    assert [s.runner_name for s in manager.list_all()] == ["alive"]


def test_no_job_yields_installed_only(manager: DirectoryStorageManager) -> None:
    write_store(manager, "idle", pre=None, post=None)
    [metrics] = list(extract(manager, set()))
    assert metrics.pre_job is None and metrics.post_job is None
    assert list(manager.list_all()) == []


def test_started_not_stopped(manager: DirectoryStorageManager) -> None:
    write_store(manager, "crashed", post=None)
    [metrics] = list(extract(manager, set()))
    assert metrics.pre_job is not None and metrics.post_job is None


def test_post_without_pre_is_kept(manager: DirectoryStorageManager) -> None:
    write_store(manager, "no-job", pre=None, post={"timestamp": INSTALLED + 5, "status": "normal"})
    [metrics] = list(extract(manager, set()))
    assert metrics.pre_job is None and metrics.post_job is not None


def test_orphan_empty_store_is_deleted(manager: DirectoryStorageManager) -> None:
    write_store(manager, "empty", installed=None, pre=None, post=None)
    assert list(extract(manager, set())) == []
    assert list(manager.list_all()) == []
    assert quarantined(manager) == []


def test_job_files_without_installed_timestamp_are_corrupt(
    manager: DirectoryStorageManager,
) -> None:
    write_store(manager, "tampered", installed=None)
    assert list(extract(manager, set())) == []
    assert len(quarantined(manager)) == 1


def test_missing_base_dir(tmp_path: Path) -> None:
    assert list(extract(DirectoryStorageManager(tmp_path / "nope"), set())) == []


CORRUPT_CONTENTS = {
    "invalid json": {"pre": "{not json"},
    "empty pre": {"pre": ""},
    "wrong type": {"pre": {**PRE_JOB, "workflow_run_id": "123"}},
    "float run id": {"pre": {**PRE_JOB, "workflow_run_id": 1.0}},
    "negative run id": {"pre": {**PRE_JOB, "workflow_run_id": -1}},
    "huge run id": {"pre": {**PRE_JOB, "workflow_run_id": 2**70}},
    "negative timestamp": {"pre": {**PRE_JOB, "timestamp": -5}},
    "huge timestamp": {"post": {**POST_JOB, "timestamp": 1e300}},
    "bool timestamp": {"post": {**POST_JOB, "timestamp": True}},
    "nan": {"post": '{"timestamp": NaN, "status": "normal"}'},
    "unknown status": {"post": {**POST_JOB, "status": "great"}},
    "extra key": {"pre": {**PRE_JOB, "token": "x"}},
    "missing key": {"pre": {k: v for k, v in PRE_JOB.items() if k != "workflow"}},
    "bad repository": {"pre": {**PRE_JOB, "repository": "../../etc"}},
    "control chars": {"pre": {**PRE_JOB, "workflow": "a\nb"}},
    "negative code": {"post": {**POST_JOB, "status_info": {"code": -1}}},
    "list": {"pre": [1, 2]},
    "oversize": {"pre": json.dumps({**PRE_JOB, "workflow": "x" * 200}) + " " * 1024},
    "installed text": {"installed": "yesterday"},
    "installed negative": {"installed": "-1"},
    "installed huge": {"installed": "99999999999"},
    "installed too old": {"installed": "12"},
    "installed oversize": {"installed": "1" * 2000},
    "non utf8": {"pre": b"\xff\xfe".decode("latin-1")},
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CONTENTS))
def test_corrupt_content_is_quarantined(manager: DirectoryStorageManager, case: str) -> None:
    write_store(manager, "bad", **CORRUPT_CONTENTS[case])  # type: ignore[arg-type]
    write_store(manager, "good")
    assert [m.runner_name for m in extract(manager, set())] == ["good"]
    assert list(manager.list_all()) == []
    [archive] = quarantined(manager)
    assert archive.startswith("bad-") and archive.endswith(".tar.gz")


def test_exactly_the_limit_is_accepted(manager: DirectoryStorageManager) -> None:
    text = json.dumps(PRE_JOB)
    text += " " * (FILE_SIZE_BYTES_LIMIT - len(text))
    assert len(text) == FILE_SIZE_BYTES_LIMIT
    write_store(manager, "edge", pre=text)
    assert len(list(extract(manager, set()))) == 1


def test_symlink_file_is_quarantined_and_canary_never_read(
    manager: DirectoryStorageManager, tmp_path: Path
) -> None:
    canary = tmp_path / "canary.json"
    canary.write_text(json.dumps({**PRE_JOB, "workflow": "CANARY"}))
    storage = write_store(manager, "evil", pre=None)
    os.symlink(canary, storage.path / PRE_JOB_METRICS_FILE_NAME)
    assert list(extract(manager, set())) == []
    [archive] = quarantined(manager)
    with tarfile.open(manager.quarantine_dir / archive) as tar:
        member = tar.getmember(f"evil/{PRE_JOB_METRICS_FILE_NAME}")
        assert member.issym() and member.linkname == str(canary)
    assert canary.exists()


def test_unexpected_entry_is_quarantined(manager: DirectoryStorageManager) -> None:
    storage = write_store(manager, "extra")
    (storage.path / "notes.txt").write_text("hi")
    assert list(extract(manager, set())) == []
    assert len(quarantined(manager)) == 1


def test_lost_and_found_is_tolerated(manager: DirectoryStorageManager) -> None:
    storage = write_store(manager, "ext4")
    (storage.path / "lost+found").mkdir()
    assert len(list(extract(manager, set()))) == 1


def test_directory_instead_of_file(manager: DirectoryStorageManager) -> None:
    storage = write_store(manager, "dir", pre=None)
    (storage.path / PRE_JOB_METRICS_FILE_NAME).mkdir()
    assert list(extract(manager, set())) == []
    assert len(quarantined(manager)) == 1


def test_fifo_does_not_block(manager: DirectoryStorageManager) -> None:
    storage = write_store(manager, "fifo", post=None)
    os.mkfifo(storage.path / POST_JOB_METRICS_FILE_NAME)
    start = time.monotonic()
    assert list(extract(manager, set())) == []
    assert time.monotonic() - start < 5
    assert len(quarantined(manager)) == 1


def test_store_root_symlink(manager: DirectoryStorageManager, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / RUNNER_INSTALLED_TS_FILE_NAME).write_text(f"{INSTALLED}")
    (outside / PRE_JOB_METRICS_FILE_NAME).write_text(json.dumps(PRE_JOB))
    manager.base_dir.mkdir(parents=True)
    os.symlink(outside, manager.base_dir / "linked")
    assert list(extract(manager, set())) == []
    assert not os.path.lexists(manager.base_dir / "linked")
    assert sorted(p.name for p in outside.iterdir()) == [
        PRE_JOB_METRICS_FILE_NAME,
        RUNNER_INSTALLED_TS_FILE_NAME,
    ]
    assert len(quarantined(manager)) == 1


def test_store_root_regular_file(manager: DirectoryStorageManager) -> None:
    manager.base_dir.mkdir(parents=True)
    (manager.base_dir / "file").write_text("x")
    assert list(extract(manager, set())) == []
    assert list(manager.list_all()) == []


def test_extract_is_lazy(manager: DirectoryStorageManager) -> None:
    for i in range(3):
        write_store(manager, f"r-{i}")
    iterator = extract(manager, set())
    next(iterator)
    assert len(list(manager.list_all())) == 2


class FailingDeleteManager(DirectoryStorageManager):
    def delete(self, runner_name: str) -> None:
        raise MetricsStorageError("no", runner_name)


def test_undeletable_store_is_not_yielded(tmp_path: Path) -> None:
    manager = FailingDeleteManager(tmp_path / "s")
    write_store(manager, "stuck")
    assert list(extract(manager, set())) == []


class FailingListManager(DirectoryStorageManager):
    def list_all(self) -> Iterator[MetricsStorage]:
        raise MetricsStorageError("cannot list")


def test_listing_failure_ends_quietly(tmp_path: Path) -> None:
    assert list(extract(FailingListManager(tmp_path / "s"), set())) == []


def test_unexpected_error_quarantines(
    manager: DirectoryStorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_store(manager, "boom")

    def explode(storage: MetricsStorage) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(metrics_runner, "read_runner_metrics", explode)
    assert list(extract(manager, set())) == []
    assert len(quarantined(manager)) == 1


def test_extract_1000_stores(manager: DirectoryStorageManager) -> None:
    for i in range(1000):
        write_store(manager, f"r-{i}")
    assert sum(1 for _ in extract(manager, set())) == 1000
    assert list(manager.list_all()) == []
