"""One-time tokens: random, single use, expiring, in a bounded store.

Only SHA-256 digests of tokens are kept (in memory and, optionally, in a state file so that a
restart of the service does not invalidate the tokens idle runners hold). A consumed token is
remembered until it would have expired, so that a second use is refused with a clear reason
rather than as "unknown".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from errors import RepoPolicyTokenError

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 10_000
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256


class TokenRefusal(str, Enum):
    """Why a one-time token was refused."""

    UNKNOWN = "unknown or expired one-time token"
    USED = "one-time token already used: each runner checks one job only"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class OneTimeTokenStore:
    """Issues tokens and consumes each one once. Thread-safe.

    Bounded: at most ``max_tokens`` unused tokens and as many used ones are remembered; beyond
    that the oldest are forgotten (an evicted unused token is refused as unknown, which is safe).
    """

    def __init__(
        self,
        ttl: float = 24 * 3600.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build an empty store, or load the one saved in ``state_file``.

        Args:
            ttl: Seconds a token stays valid after it is issued.
            max_tokens: How many unused (and how many used) tokens are remembered.
            state_file: Where to keep the digests across restarts, if anywhere.
            clock: Wall-clock seconds (a state file outlives the process).

        Raises:
            ValueError: If ``ttl`` or ``max_tokens`` is not positive.
        """
        if ttl <= 0 or max_tokens <= 0:
            raise ValueError("ttl and max_tokens must be positive")
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._clock = clock
        self._state_file = state_file
        self._lock = threading.Lock()
        self._unused: OrderedDict[str, float] = OrderedDict()  # digest -> expiry
        self._used: OrderedDict[str, float] = OrderedDict()  # digest -> expiry
        if state_file is not None:
            self._load(state_file)

    def __len__(self) -> int:
        """Return how many unused, unexpired tokens are held."""
        with self._lock:
            self._purge(self._clock())
            return len(self._unused)

    def issue(self) -> str:
        """Create a token.

        Returns:
            The token (URL-safe text). It is not kept, only its digest.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            now = self._clock()
            self._purge(now)
            self._unused[_digest(token)] = now + self.ttl
            while len(self._unused) > self.max_tokens:
                self._unused.popitem(last=False)
            self._save()
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
        with self._lock:
            now = self._clock()
            self._purge(now)
            expiry = self._unused.pop(digest, None)
            if expiry is None:
                if digest in self._used:
                    raise RepoPolicyTokenError(TokenRefusal.USED.value)
                raise RepoPolicyTokenError(TokenRefusal.UNKNOWN.value)
            self._used[digest] = expiry
            while len(self._used) > self.max_tokens:
                self._used.popitem(last=False)
            self._save()

    def _purge(self, now: float) -> None:
        for table in (self._unused, self._used):
            # Expiries grow with insertion order (one ttl, a clock that rarely steps back),
            # so expired entries sit at the front; stop at the first live one.
            while table:
                digest, expiry = next(iter(table.items()))
                if expiry > now:
                    break
                del table[digest]

    # --- persistence ------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            unused, used = data["unused"], data["used"]
            now = self._clock()
            for target, items in ((self._unused, unused), (self._used, used)):
                for digest, expiry in sorted(items.items(), key=lambda kv: float(kv[1])):
                    if isinstance(digest, str) and len(digest) == 64 and float(expiry) > now:
                        target[digest] = float(expiry)
                while len(target) > self.max_tokens:
                    target.popitem(last=False)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Losing the tokens only makes the runners holding them fail their check: safe.
            logger.warning("ignoring unreadable token state %s (%s)", path, type(exc).__name__)
            self._unused.clear()
            self._used.clear()

    def _save(self) -> None:
        path = self._state_file
        if path is None:
            return
        data = {"unused": dict(self._unused), "used": dict(self._used)}
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            logger.warning("cannot save token state to %s: %s", path, exc.strerror)
