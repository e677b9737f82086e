"""The unit's reader/writer lock across processes: creations share it, judges hold it alone.

A reconcile or flush judges runners: it must never see a creation half done, so it holds the
lock exclusively. Creations (reactive consumers, one per queued job) only add runners: they hold
it shared, so they run in parallel with each other but never during a judgement. ``flock`` locks
die with their process, so a killed holder never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import threading
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _acquire(fd, mode, timeout, what)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _acquire(fd: int, mode: int, timeout: float, what: str) -> None:
    try:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(BlockingIOError),
            wait=tenacity.wait_exponential(multiplier=0.01, max=0.25),
            stop=tenacity.stop_before_delay(timeout),
            reraise=True,
        ):
            with attempt:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ReconcileError(
            f"{what}: another reconcile, flush or update held the lock for {timeout:.0f} s"
        ) from None
