"""The unit lock: sharers together, an exclusive holder alone, re-entrant, bounded waits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from errors import ReconcileError
from manager.unit_lock import UnitLock


def hold_in_thread(lock: UnitLock, mode: str, seconds: float) -> threading.Event:
    held = threading.Event()

    def run() -> None:
        with getattr(lock, mode)(5, "test"):
            held.set()
            time.sleep(seconds)

    threading.Thread(target=run, daemon=True).start()
    assert held.wait(5)
    return held


def test_sharers_hold_together(tmp_path: Path) -> None:
    lock = UnitLock(tmp_path / "lock")
    hold_in_thread(lock, "shared", 3.0)
    began = time.monotonic()
    with lock.shared(5, "second sharer"):
        assert time.monotonic() - began < 2.0  # did not wait for the first sharer


def test_exclusive_waits_for_sharers_and_is_bounded(tmp_path: Path) -> None:
    lock = UnitLock(tmp_path / "lock")
    hold_in_thread(lock, "shared", 1.0)
    with (
        pytest.raises(ReconcileError, match="reconcile: another reconcile"),
        lock.exclusive(0.2, "reconcile"),
    ):
        pass
    began = time.monotonic()
    with lock.exclusive(5, "reconcile"):
        assert time.monotonic() - began > 0.3


def test_sharer_waits_for_an_exclusive_holder(tmp_path: Path) -> None:
    lock = UnitLock(tmp_path / "lock")
    hold_in_thread(lock, "exclusive", 0.6)
    began = time.monotonic()
    with lock.shared(5, "create"):
        assert time.monotonic() - began > 0.3


def test_reentrant_within_a_thread(tmp_path: Path) -> None:
    lock = UnitLock(tmp_path / "lock")
    with lock.exclusive(1, "outer"), lock.exclusive(0.1, "inner"), lock.shared(0.1, "inner"):
        pass
    with lock.exclusive(0.1, "again"):
        pass


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    lock = UnitLock(path)
    with pytest.raises(ReconcileError), lock.exclusive(0.2, "reconcile"):
        pass
    child.kill()
    child.wait()
    with lock.exclusive(2, "reconcile"):
        pass
