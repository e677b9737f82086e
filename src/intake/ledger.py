"""The job ledger: which jobs (and which webhook deliveries) were already enqueued.

One sqlite file shared by every process that enqueues jobs of a unit (the intake and the
reconcile-time safety net). sqlite does the locking across processes (POSIX ``fcntl`` locks on
the file); a claim is one ``BEGIN IMMEDIATE`` transaction, so two processes claiming the same
job at once get True once. The journal is WAL with ``synchronous=FULL``: a claim that returned
is on disk and survives a SIGKILL of the process (or a power cut) a moment later.

A claim records the job id and, when a webhook brought it, the delivery id. It is pending until
the broker confirmed the publish (:meth:`JobLedger.confirm`). A claim whose publish failed is
released (:meth:`JobLedger.release`), delivery id included, so that GitHub's redelivery (same
delivery id) or the safety net can enqueue it again. A process killed between its claim and its
confirm leaves a pending claim: once older than ``stale_after`` it can be claimed again (by the
redelivery or the next sweep), so a SIGKILL never loses a job, at the price of one possible
duplicate message (the consumers ack a job already taken without a runner).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from intake import errors as intake_errors

_BUSY_TIMEOUT_MS = 10_000
DEFAULT_STALE_AFTER = timedelta(seconds=60)  # a publish confirms in seconds or times out
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs ("
    " job_id INTEGER PRIMARY KEY, claimed_at REAL NOT NULL,"
    " confirmed INTEGER NOT NULL DEFAULT 0)",
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

    def __init__(self, path: Path, stale_after: timedelta = DEFAULT_STALE_AFTER) -> None:
        """Open (or create) the ledger.

        Args:
            path: The sqlite file; its folder is created when missing.
            stale_after: Age past which a claim never confirmed may be claimed again.

        Raises:
            IntakeLedgerError: The file cannot be created or is not a ledger.
        """
        self.path = path
        self.stale_after = stale_after
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise intake_errors.IntakeLedgerError(
                str(path), f"cannot create folder: {exc}"
            ) from exc
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "confirmed" not in columns:  # a ledger from before two-phase claims
                db.execute("ALTER TABLE jobs ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1")

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
            raise intake_errors.IntakeLedgerError(
                str(self.path), f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if db is not None:
                db.close()

    def claim(self, job_id: int, delivery_id: str | None = None) -> bool:
        """Claim a job for enqueueing, once; confirm it after the publish, or release it.

        Args:
            job_id: The GitHub job id.
            delivery_id: The webhook's ``X-GitHub-Delivery``, when a webhook brought the job.

        Returns:
            True when the caller should enqueue the job: the first time this job id is seen,
            or when its claim is pending past ``stale_after`` (its claimer died). False for a
            duplicate: the job is claimed already (confirmed, or pending and fresh), or this
            delivery id was seen already for such a job.

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        now = time.time()
        stale_before = now - self.stale_after.total_seconds()
        with self._transaction() as db:
            row = db.execute(
                "SELECT claimed_at, confirmed FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is not None and (row[1] or row[0] >= stale_before):
                if delivery_id is not None:
                    db.execute(
                        "INSERT OR IGNORE INTO deliveries (delivery_id, job_id, seen_at)"
                        " VALUES (?, ?, ?)",
                        (delivery_id, job_id, now),
                    )
                return False
            if delivery_id is not None and row is None:
                seen = db.execute(
                    "SELECT 1 FROM deliveries WHERE delivery_id = ?", (delivery_id,)
                ).fetchone()
                if seen is not None:
                    return False  # this delivery carried another job id: not a job of ours
            db.execute(
                "INSERT OR REPLACE INTO jobs (job_id, claimed_at, confirmed) VALUES (?, ?, 0)",
                (job_id, now),
            )
            if delivery_id is not None:
                db.execute(
                    "INSERT OR REPLACE INTO deliveries (delivery_id, job_id, seen_at)"
                    " VALUES (?, ?, ?)",
                    (delivery_id, job_id, now),
                )
            return True

    def confirm(self, job_id: int) -> None:
        """Mark a claim's job as enqueued (the broker confirmed the publish).

        Args:
            job_id: The GitHub job id.

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        with self._transaction() as db:
            db.execute("UPDATE jobs SET confirmed = 1 WHERE job_id = ?", (job_id,))

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
            True when the job is claimed (enqueued, or being enqueued and not stale).

        Raises:
            IntakeLedgerError: sqlite failed.
        """
        stale_before = time.time() - self.stale_after.total_seconds()
        with self._transaction() as db:
            row = db.execute(
                "SELECT 1 FROM jobs WHERE job_id = ? AND (confirmed OR claimed_at >= ?)",
                (job_id, stale_before),
            ).fetchone()
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
