"""The unit's reader/writer lock across processes: creations share it, judges hold it alone.

A reconcile or flush judges runners: it must never see a creation half done, so it holds the
lock exclusively. Creations (reactive consumers, one per queued job) only add runners: they hold
it shared, so they run in parallel with each other but never during a judgement. ``flock`` locks
die with their process, so a killed holder never blocks the next one.

``flock`` has no writer preference: under overlapping sharers (steady reactive creations) an
exclusive request never finds the lock free. So an exclusive request first takes an *intent*
lock (``<lock>.intent``, exclusive) and holds it until it lets the lock go; a sharer enters
only while no intent is held (it tests the intent with a shared flock and drops it at once).
New sharers thus queue behind a waiting writer while the sharers already in finish; writers
queue among themselves on the intent. The intent is a flock too, never the file's existence:
a writer that dies releases it with its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tenacity

from errors import ReconcileError


class UnitLock:
    """A file lock with shared and exclusive modes; re-entrant within a thread."""

    def __init__(self, path: Path) -> None:
        """Build the lock (the file is created on first use).

        Args:
            path: The lock file.
        """
        self.path = path
        self._held = threading.local()

    def _depth(self) -> int:
        return int(getattr(self._held, "depth", 0))

    @contextmanager
    def exclusive(self, timeout: float, what: str) -> Iterator[None]:
        """Hold the lock alone.

        Args:
            timeout: Seconds to wait for it.
            what: The operation, for the error message.

        Yields:
            Nothing; the lock is held inside the block.
        """
        with self._hold(fcntl.LOCK_EX, timeout, what):
            yield

    @contextmanager
    def shared(self, timeout: float, what: str) -> Iterator[None]:
        """Hold the lock together with other sharers, never with an exclusive holder.

        Args:
            timeout: Seconds to wait for it.
            what: The operation, for the error message.

        Yields:
            Nothing; the lock is held inside the block.
        """
        with self._hold(fcntl.LOCK_SH, timeout, what):
            yield

    @contextmanager
    def _hold(self, mode: int, timeout: float, what: str) -> Iterator[None]:
        if self._depth():  # this thread holds it already (e.g. a flush inside a reconcile)
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            intent = stack.enter_context(_opened(self.intent_path))
            fd = stack.enter_context(_opened(self.path))
            if mode == fcntl.LOCK_EX:  # announce the writer: new sharers wait from now on
                _acquire(intent, fcntl.LOCK_EX, deadline, timeout, what)
                _acquire(fd, fcntl.LOCK_EX, deadline, timeout, what)
            else:
                _acquire_shared(intent, fd, deadline, timeout, what)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
                if mode == fcntl.LOCK_EX:
                    fcntl.flock(intent, fcntl.LOCK_UN)

    @property
    def intent_path(self) -> Path:
        """The file a waiting exclusive holder flocks to hold new sharers back."""
        return self.path.with_name(self.path.name + ".intent")


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)  # also drops any flock still held through it


def _retrying(deadline: float) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(BlockingIOError),
        wait=tenacity.wait_exponential(multiplier=0.01, max=0.25),
        stop=tenacity.stop_before_delay(max(deadline - time.monotonic(), 0)),
        reraise=True,
    )


def _refused(what: str, timeout: float) -> ReconcileError:
    return ReconcileError(
        f"{what}: another reconcile, flush or update held the lock for {timeout:.0f} s"
    )


def _acquire(fd: int, mode: int, deadline: float, timeout: float, what: str) -> None:
    try:
        for attempt in _retrying(deadline):
            with attempt:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refused(what, timeout) from None


def _acquire_shared(intent: int, fd: int, deadline: float, timeout: float, what: str) -> None:
    """Take the lock shared once no writer holds an intent (tested each try, not kept)."""

    def enter() -> None:
        fcntl.flock(intent, fcntl.LOCK_SH | fcntl.LOCK_NB)  # BlockingIOError: a writer waits
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            fcntl.flock(intent, fcntl.LOCK_UN)

    try:
        for attempt in _retrying(deadline):
            with attempt:
                enter()
    except BlockingIOError:
        raise _refused(what, timeout) from None
