"""A model of a runner's metrics store, its oracle, and the harness that checks extract().

Shared by the hostile-store tests: :class:`Store` describes what a runner leaves behind,
:func:`build` writes it to disk, :func:`oracle` says what ``extract()`` must do with it, and
:func:`check` runs ``extract()`` on a set of stores and asserts the outcome (no canary read, no
leftovers, values as written).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from metrics.runner import (
    FILE_SIZE_BYTES_LIMIT,
    MAX_STORE_ENTRIES,
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    extract,
)
from metrics.storage import DirectoryStorageManager
from metrics.type import RunnerMetrics

METRIC_NAMES = (
    RUNNER_INSTALLED_TS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    POST_JOB_METRICS_FILE_NAME,
)
CANARY = "CANARY-7f3a91"
# Entries extract() tolerates and never opens (the rule is restated here, not imported).
TOLERATED = {"lost+found", ".pre-job-metrics.json.tmp", ".post-job-metrics.json.tmp"}
CANARY_PRE = {
    "timestamp": 1_763_884_830,
    "workflow": CANARY,
    "workflow_run_id": 1,
    "repository": "canary/canary",
    "event": "push",
}
CANARY_FILES = {
    RUNNER_INSTALLED_TS_FILE_NAME: b"1763884800",
    PRE_JOB_METRICS_FILE_NAME: json.dumps(CANARY_PRE).encode(),
    POST_JOB_METRICS_FILE_NAME: json.dumps(
        {"timestamp": 1_763_884_900, "status": "normal", "status_info": {"code": 4242}}
    ).encode(),
}

# --- the model of a store ------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    content: bytes
    valid: bool  # whether the content is valid for the metric file it is written as


@dataclass(frozen=True)
class Sparse:
    size: int


@dataclass(frozen=True)
class Link:
    target: str  # a key of link_targets() or a literal relative target


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass(frozen=True)
class Dir:
    children: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Store:
    root: str  # "dir", "link-canary", "link-dangling", "file", "fifo"
    entries: tuple[tuple[str, object], ...] = ()


def link_targets(canary_dir: Path) -> dict[str, str]:
    return {
        "canary-dir": str(canary_dir),
        "canary-pre": str(canary_dir / PRE_JOB_METRICS_FILE_NAME),
        "canary-installed": str(canary_dir / RUNNER_INSTALLED_TS_FILE_NAME),
        "canary-post": str(canary_dir / POST_JOB_METRICS_FILE_NAME),
        "up-canary": f"../../canary/{PRE_JOB_METRICS_FILE_NAME}",
        "up-up": "../../../../../../../../etc/passwd",
        "etc-passwd": "/etc/passwd",
        "self": ".",
        "dangling": "/nonexistent/nothing",
        "proc": "/proc/self/environ",
    }


def build(store: Store, path: Path, canary_dir: Path) -> None:
    targets = link_targets(canary_dir)
    if store.root == "link-canary":
        os.symlink(canary_dir, path)
        return
    if store.root == "link-dangling":
        os.symlink("/nonexistent/store", path)
        return
    if store.root == "file":
        path.write_bytes(CANARY_FILES[PRE_JOB_METRICS_FILE_NAME])
        return
    if store.root == "fifo":
        os.mkfifo(path)
        return
    path.mkdir()
    build_entries(store.entries, path, targets)


def build_entries(
    entries: tuple[tuple[str, object], ...], path: Path, targets: dict[str, str]
) -> None:
    for name, entry in entries:
        target = path / name
        if isinstance(entry, File):
            target.write_bytes(entry.content)
        elif isinstance(entry, Sparse):
            with open(target, "wb") as handle:
                handle.truncate(entry.size)
        elif isinstance(entry, Link):
            os.symlink(targets.get(entry.target, entry.target), target)
        elif isinstance(entry, Fifo):
            os.mkfifo(target)
        elif isinstance(entry, Dir):
            target.mkdir()
            build_entries(entry.children, target, targets)


def oracle(store: Store) -> str:
    """Return "yield", "delete" or "quarantine" following the documented rules."""
    if store.root != "dir":
        return "quarantine"
    names = [name for name, _ in store.entries]
    if len(names) > MAX_STORE_ENTRIES:
        return "quarantine"
    if any(name not in METRIC_NAMES and name not in TOLERATED for name in names):
        return "quarantine"
    present = {}
    for name, entry in store.entries:
        if name in TOLERATED:
            continue
        if not isinstance(entry, File) or len(entry.content) > FILE_SIZE_BYTES_LIMIT:
            return "quarantine"
        if not entry.valid:
            return "quarantine"
        present[name] = entry
    if RUNNER_INSTALLED_TS_FILE_NAME not in present:
        return "quarantine" if present else "delete"
    return "yield"


# --- the harness -----------------------------------------------------------------------------


@dataclass
class Sandbox:
    base: Path
    canary_dir: Path
    manager: DirectoryStorageManager
    canary_snapshot: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture(name="sandbox", scope="module")
def sandbox_fixture() -> Iterator[Sandbox]:
    """One canary and one base directory for all examples (emptied after each example)."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    base = Path(tempfile.mkdtemp(prefix="hostile-", dir=parent))
    canary_dir = base / "canary"
    canary_dir.mkdir()
    for name, content in CANARY_FILES.items():
        (canary_dir / name).write_bytes(content)
    manager = DirectoryStorageManager(base / "stores" / "x", base / "quarantine")
    manager.base_dir.mkdir(parents=True)
    metrics_logger = logging.getLogger("metrics")
    level = metrics_logger.level
    metrics_logger.setLevel(logging.ERROR)  # thousands of "quarantined" warnings cost time
    yield Sandbox(
        base=base, canary_dir=canary_dir, manager=manager, canary_snapshot=dict(CANARY_FILES)
    )
    metrics_logger.setLevel(level)
    shutil.rmtree(base, ignore_errors=True)


def reset(sandbox: Sandbox) -> None:
    for directory in (sandbox.manager.base_dir, sandbox.manager.quarantine_dir):
        if directory.exists():
            for entry in os.scandir(directory):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)


class BlockedError(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise BlockedError


def run_extract(manager: DirectoryStorageManager, ignore: set[str]) -> list[RunnerMetrics]:
    """Run extract() under an alarm so that a blocking open fails the test instead of hanging."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        return list(extract(manager, ignore))
    except BlockedError:
        pytest.fail("extract() blocked")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def archives(sandbox: Sandbox, runner: str) -> list[str]:
    if not sandbox.manager.quarantine_dir.exists():
        return []
    return [
        p.name for p in sandbox.manager.quarantine_dir.iterdir() if p.name.startswith(f"{runner}-")
    ]


def check(sandbox: Sandbox, specs: list[Store], ignored: int | None) -> None:
    names = [f"r-{i}" for i in range(len(specs))]
    for name, spec in zip(names, specs, strict=True):
        build(spec, sandbox.manager.base_dir / name, sandbox.canary_dir)
    ignore = {names[ignored]} if ignored is not None else set()
    yielded = {m.runner_name: m for m in run_extract(sandbox.manager, ignore)}
    assert CANARY not in repr(list(yielded.values()))
    for name, spec in zip(names, specs, strict=True):
        path = sandbox.manager.base_dir / name
        if name in ignore:
            assert os.path.lexists(path)
            assert name not in yielded and not archives(sandbox, name)
            continue
        expected = oracle(spec)
        assert not os.path.lexists(path), (name, expected)
        assert (name in yielded) == (expected == "yield"), (spec, expected)
        assert len(archives(sandbox, name)) == (1 if expected == "quarantine" else 0), (
            spec,
            expected,
        )
        if expected == "yield":
            assert_matches(yielded[name], spec)
    leftover = {p.name for p in sandbox.manager.base_dir.iterdir()}
    assert leftover == ignore
    for file_name, content in sandbox.canary_snapshot.items():
        assert (sandbox.canary_dir / file_name).read_bytes() == content


def assert_matches(metrics: RunnerMetrics, spec: Store) -> None:
    files = {name: entry for name, entry in spec.entries if isinstance(entry, File)}
    assert metrics.installed_timestamp == float(files[RUNNER_INSTALLED_TS_FILE_NAME].content)
    for name, model in (
        (PRE_JOB_METRICS_FILE_NAME, metrics.pre_job),
        (POST_JOB_METRICS_FILE_NAME, metrics.post_job),
    ):
        if name not in files:
            assert model is None
            continue
        assert model is not None
        written = json.loads(files[name].content)
        dumped = model.model_dump(mode="json", exclude_none=False)
        for key, value in written.items():
            assert dumped[key] == value or float(dumped[key]) == float(value), (key, value)
