"""One-time tokens: random, single use, expiring, in a bounded keyed store (sqlite3, WAL).

Only SHA-256 digests of tokens are kept, one row each, in an SQLite database (the standard
library's ``sqlite3``): in memory, or in a file so that a restart of the service does not
invalidate the tokens idle runners hold. Each call is one or two small keyed statements, never
a rewrite of the whole store (the JSON file this replaces was rewritten on every call: 10,000
tokens took 75 s). A token is used up by one conditional ``UPDATE``: of two consumers of one
token, in threads or in processes sharing the file, exactly one sees its row change. A consumed
token is remembered until it would have expired, so that a second use is refused with a clear
reason rather than as "unknown".

A state file named ``*.json`` (the format before this store) is read once, its digests are
moved into ``<name>.sqlite3`` beside it, and it is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path

from errors import RepoPolicyTokenError

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 10_000
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256
BUSY_TIMEOUT = 5.0  # seconds a statement waits for another writer of the same file
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tokens ("
    " digest TEXT PRIMARY KEY, expiry REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS tokens_by_state ON tokens (used, expiry)",
    "CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens (expiry)",
)


class TokenRefusal(str, Enum):
    """Why a one-time token was refused."""

    UNKNOWN = "unknown or expired one-time token"
    USED = "one-time token already used: each runner checks one job only"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def database_path(state_file: Path) -> Path:
    """Where the store of a ``--state-file`` lives.

    Args:
        state_file: The path given to the service.

    Returns:
        ``state_file`` itself when it ends in ``.sqlite3`` or ``.db``, else the same name with
        the ``.sqlite3`` suffix (a legacy ``*.json`` state file is migrated from there).
    """
    if state_file.suffix in (".sqlite3", ".db"):
        return state_file
    return state_file.with_suffix(".sqlite3")


class OneTimeTokenStore:
    """Issues tokens and consumes each one once. Thread-safe, and process-safe on one file.

    Bounded: at most ``max_tokens`` unused and as many used tokens are remembered; beyond that
    the oldest are forgotten (an evicted unused token is refused as unknown, which is safe).
    Counting is paid every ``max_tokens // 100`` writes, so the store may exceed its bound by
    1 % between two counts.
    """

    def __init__(
        self,
        ttl: float = 24 * 3600.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the store.

        Args:
            ttl: Seconds a token stays valid after it is issued.
            max_tokens: How many unused (and how many used) tokens are remembered.
            state_file: Where to keep the digests across restarts (see :func:`database_path`),
                if anywhere; the database and its WAL files are created mode 0600.
            clock: Wall-clock seconds (a state file outlives the process).

        Raises:
            ValueError: If ``ttl`` or ``max_tokens`` is not positive.
        """
        if ttl <= 0 or max_tokens <= 0:
            raise ValueError("ttl and max_tokens must be positive")
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._clock = clock
        self._lock = threading.Lock()  # one connection, one statement sequence at a time
        self._writes = [0, 0]  # unused / used rows written since they were last counted
        self.path: Path | None = None
        if state_file is None:
            self._connection = self._open(":memory:")
        else:
            self.path = database_path(state_file)
            self._connection = self._open_file(self.path)
            if state_file != self.path:
                self._migrate_json(state_file)

    def __len__(self) -> int:
        """Return how many unused, unexpired tokens are held."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM tokens WHERE used = 0 AND expiry > ?", (self._clock(),)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the store's connection (the file, if any, stays)."""
        with self._lock:
            self._connection.close()

    def issue(self) -> str:
        """Create a token.

        Returns:
            The token (URL-safe text). It is not kept, only its digest.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM tokens WHERE expiry <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO tokens (digest, expiry, used) VALUES (?, ?, 0)",
                (_digest(token), now + self.ttl),
            )
            self._bound(db, used=0, now=False)
        return token

    def consume(self, token: str) -> None:
        """Use a token up.

        Args:
            token: The token a runner presented.

        Raises:
            RepoPolicyTokenError: If it is unknown, expired or already used.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise RepoPolicyTokenError(TokenRefusal.UNKNOWN.value)
        digest = _digest(token)
        now = self._clock()
        with self._transaction() as db:
            won = db.execute(
                "UPDATE tokens SET used = 1 WHERE digest = ? AND used = 0 AND expiry > ?",
                (digest, now),
            ).rowcount
            if won == 1:
                self._bound(db, used=1, now=False)
                return
            row = db.execute(
                "SELECT used FROM tokens WHERE digest = ? AND expiry > ?", (digest, now)
            ).fetchone()
        if row is not None and row[0] == 1:
            raise RepoPolicyTokenError(TokenRefusal.USED.value)
        raise RepoPolicyTokenError(TokenRefusal.UNKNOWN.value)

    # --- database -----------------------------------------------------------------------------

    def _bound(self, db: sqlite3.Connection, used: int, now: bool = True) -> None:
        if not now:
            self._writes[used] += 1
            if self._writes[used] < max(1, self.max_tokens // 100):
                return
        self._writes[used] = 0
        (count,) = db.execute("SELECT COUNT(*) FROM tokens WHERE used = ?", (used,)).fetchone()
        if count > self.max_tokens:
            db.execute(
                "DELETE FROM tokens WHERE digest IN (SELECT digest FROM tokens WHERE used = ?"
                " ORDER BY expiry LIMIT ?)",
                (used, count - self.max_tokens),
            )

    @staticmethod
    def _open(target: str) -> sqlite3.Connection:
        connection = sqlite3.connect(
            target,
            timeout=BUSY_TIMEOUT,  # waits for another process writing the same file
            isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,  # shared by the service's threads, under self._lock
        )
        if target != ":memory:":
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            connection.execute(statement)
        return connection

    def _open_file(self, path: Path) -> sqlite3.Connection:
        """Open the database file, created 0600 (SQLite gives its WAL files the same mode)."""
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            return self._open(str(path))
        except sqlite3.DatabaseError as exc:
            # Losing the tokens only makes the runners holding them fail their check: safe.
            logger.warning("replacing unreadable token store %s (%s)", path, type(exc).__name__)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return self._open(str(path))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connection
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate_json(self, legacy: Path) -> None:
        """Move the digests of a JSON state file (the former format) into the database."""
        try:
            data = json.loads(legacy.read_text(encoding="utf-8"))
            rows = [
                (digest, float(expiry), used)
                for used, key in ((0, "unused"), (1, "used"))
                for digest, expiry in data[key].items()
                if isinstance(digest, str) and len(digest) == 64
            ]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring unreadable token state %s (%s)", legacy, type(exc).__name__)
            rows = []
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO tokens (digest, expiry, used) VALUES (?, ?, ?)", rows
            )
            db.execute("DELETE FROM tokens WHERE expiry <= ?", (self._clock(),))
            self._bound(db, used=0)
            self._bound(db, used=1)
        legacy.unlink(missing_ok=True)
