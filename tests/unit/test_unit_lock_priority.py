"""The unit lock gives a waiting exclusive holder priority over new sharers (real flocks).

``flock`` alone has no writer preference: while sharers overlap, an exclusive request never
finds the lock free. Reactive creations hold it shared, one after another; a reconcile must
still get it within its timeout.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from errors import ReconcileError
from manager.unit_lock import UnitLock

SRC = str(Path(__file__).resolve().parents[2] / "src")


class SteadySharers:
    """Threads that hold the lock shared in turn, staggered so that they always overlap."""

    def __init__(self, path: Path, count: int = 3, hold: float = 0.3) -> None:
        self.path = path
        self.hold = hold
        self.stop = threading.Event()
        self.inside = 0
        self.max_inside_with_writer = 0
        self.writer_inside = False
        self.failures: list[Exception] = []
        self._count_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i * hold / count,), daemon=True)
            for i in range(count)
        ]

    def _run(self, offset: float) -> None:
        lock = UnitLock(self.path)
        time.sleep(offset)
        while not self.stop.is_set():
            try:
                with lock.shared(30, "create"):
                    with self._count_lock:
                        self.inside += 1
                        if self.writer_inside:
                            self.max_inside_with_writer += 1
                    time.sleep(self.hold)
                    with self._count_lock:
                        self.inside -= 1
            except ReconcileError as exc:
                self.failures.append(exc)

    def __enter__(self) -> SteadySharers:
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 5
        while self.inside < 2 and time.monotonic() < deadline:  # overlapping by now
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def wait_intent_held(intent: Path, seconds: float = 5.0) -> bool:
    """Wait until someone holds the intent file exclusively (a shared probe is refused)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if intent.exists():
            fd = os.open(intent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)
        time.sleep(0.01)
    return False


def test_exclusive_gets_the_lock_under_steady_overlapping_sharers(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with SteadySharers(path) as sharers:
        assert sharers.inside >= 2, "the sharers overlap"
        with UnitLock(path).exclusive(3, "reconcile"):
            with sharers._count_lock:
                sharers.writer_inside = True
                inside = sharers.inside
            time.sleep(0.2)
            with sharers._count_lock:
                sharers.writer_inside = False
        assert inside == 0, "no sharer holds the lock with the exclusive holder"
        assert sharers.max_inside_with_writer == 0
        # Sharers go on once the exclusive holder is done.
        deadline = time.monotonic() + 5
        while sharers.inside == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sharers.inside >= 1
    assert sharers.failures == []


def test_a_waiting_writer_holds_new_sharers_back(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    first = UnitLock(path)
    release_first = threading.Event()
    entered = threading.Event()

    def hold_shared() -> None:
        with first.shared(5, "create"):
            entered.set()
            release_first.wait(10)

    holder = threading.Thread(target=hold_shared, daemon=True)
    holder.start()
    assert entered.wait(5)
    got_writer = threading.Event()

    def writer() -> None:
        with UnitLock(path).exclusive(10, "reconcile"):
            got_writer.set()
            time.sleep(0.2)

    writing = threading.Thread(target=writer, daemon=True)
    writing.start()
    # While the writer waits for the existing sharer, a new sharer is refused within its bound.
    assert wait_intent_held(path.with_name(path.name + ".intent"))
    with pytest.raises(ReconcileError, match="create"), UnitLock(path).shared(0.3, "create"):
        pass
    assert not got_writer.is_set(), "the existing sharer still holds the lock"
    release_first.set()  # the existing sharer finishes: the writer goes first
    assert got_writer.wait(5)
    writing.join(5)
    with UnitLock(path).shared(2, "create"):
        pass


def test_a_killed_writer_leaves_no_intent_behind(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    intent = path.with_name(path.name + ".intent")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, time\n"
            f"fd = os.open({str(intent)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    lock = UnitLock(path)
    with pytest.raises(ReconcileError), lock.shared(0.2, "create"):
        pass  # a live writer's intent holds sharers back
    child.kill()
    child.wait()
    assert intent.exists(), "the file stays; only its flock counted"
    with lock.shared(2, "create"), UnitLock(path).shared(2, "create"):
        pass


def test_sharers_in_other_processes_yield_to_a_writer(tmp_path: Path) -> None:
    """Creations in consumer processes (each its own open file) against a reconcile."""
    path = tmp_path / "lock"
    script = (
        f"import sys, time\nsys.path.insert(0, {SRC!r})\n"
        "from manager.unit_lock import UnitLock\n"
        f"lock = UnitLock(__import__('pathlib').Path({str(path)!r}))\n"
        "offset = float(sys.argv[1])\ntime.sleep(offset)\n"
        "print('started', flush=True)\n"
        "end = time.monotonic() + 20\n"
        "while time.monotonic() < end:\n"
        "    with lock.shared(30, 'create'):\n"
        "        time.sleep(0.3)\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(i * 0.1)], stdout=subprocess.PIPE)
        for i in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == b"started"
        time.sleep(0.5)  # they overlap by now
        with UnitLock(path).exclusive(5, "reconcile"):
            pass
    finally:
        for child in children:
            child.kill()
            child.wait()
