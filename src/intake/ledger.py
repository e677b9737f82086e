"""The job ledger: which jobs (and which webhook deliveries) were already enqueued.

One sqlite file shared by every process that enqueues jobs of a unit (the intake and the
reconcile-time safety net). sqlite does the locking across processes (POSIX ``fcntl`` locks on
the file); a claim is one ``BEGIN IMMEDIATE`` transaction, so two processes claiming the same
job at once get True once. The journal is WAL with ``synchronous=FULL``: a claim that returned
is on disk and survives a SIGKILL of the process (or a power cut) a moment later.

A claim records the job id and, when a webhook brought it, the delivery id. A claim whose
publish failed is released (:meth:`JobLedger.release`), delivery id included, so that GitHub's
redelivery (same delivery id) or the safety net can enqueue it again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import errors

_BUSY_TIMEOUT_MS = 10_000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs ( job_id INTEGER PRIMARY KEY, claimed_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS deliveries ("
    " delivery_id TEXT PRIMARY KEY, job_id INTEGER NOT NULL, seen_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries (job_id)",
)


class JobLedger:
    """The jobs already enqueued, in a sqlite file safe across threads and processes.

    Each call opens its own connection: a ledger object may be shared by threads, and any
    number of processes may open the same file.

    Attributes:
        path: The sqlite file.
    """

    def __init__(self, path: Path) -> None:
        """Open (or create) the ledger.

        Args:
            path: The sqlite file; its folder is created when missing.

        Raises:
            IntakeLedgerError: The file cannot be created or is not a ledger.
        """
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.IntakeLedgerError(str(path), f"cannot create folder: {exc}") from exc
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def __repr__(self) -> str:
        """Return a short description."""
        return f"JobLedger({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside ``BEGIN IMMEDIATE``; commit on success, else roll back.

        Yields:
            The connection.

        Raises:
            IntakeLedgerError: sqlite failed (locked past the busy timeout, disk, corruption).
        """
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise errors.IntakeLedgerError(str(self.path), f"{type(exc).__name__}: {exc}") from exc
        finally:
            if db is not None:
                db.close()

    def claim(self, job_id: int, delivery_id: str | None = None) -> bool:
        """Claim a job for enqueueing, once.

        Args:
            job_id: The GitHub job id.
            delivery_id: The webhook's ``X-GitHub-Delivery``, when a webhook brought the job.

        Returns:
            True the first time this job id (and this delivery id) is seen: the caller enqueues
            the job. False for a duplicate: the job id is claimed already, or the delivery id
            was seen already (then the job is not claimed by this call).

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        now = time.time()
        with self._transaction() as db:
            if delivery_id is not None:
                row = db.execute(
                    "SELECT 1 FROM deliveries WHERE delivery_id = ?", (delivery_id,)
                ).fetchone()
                if row is not None:
                    return False
            inserted = db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, claimed_at) VALUES (?, ?)", (job_id, now)
            ).rowcount
            if delivery_id is not None:
                db.execute(
                    "INSERT INTO deliveries (delivery_id, job_id, seen_at) VALUES (?, ?, ?)",
                    (delivery_id, job_id, now),
                )
            return inserted == 1

    def release(self, job_id: int) -> None:
        """Forget a claim whose publish failed (and the deliveries that carried the job).

        Args:
            job_id: The GitHub job id.

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM deliveries WHERE job_id = ?", (job_id,))

    def seen(self, job_id: int) -> bool:
        """Tell whether a job is claimed.

        Args:
            job_id: The GitHub job id.

        Returns:
            True when the job is claimed (enqueued, or being enqueued).

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        with self._transaction() as db:
            row = db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return row is not None

    def prune(self, older_than: timedelta) -> int:
        """Forget the claims and deliveries older than an age.

        Args:
            older_than: The age past which entries go (GitHub cancels a job queued for 24 h).

        Returns:
            How many job claims were removed.

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        cutoff = time.time() - older_than.total_seconds()
        with self._transaction() as db:
            removed = db.execute("DELETE FROM jobs WHERE claimed_at < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM deliveries WHERE seen_at < ?", (cutoff,))
            return int(removed)
