"""The policy checks the service is answering: what a ``*_WAIT_REPO_CHECK`` flush waits for.

The service keeps, per ``/check`` request being answered, the SHA-256 digest of the one-time
token it presents; the charm's side asks ``GET /checks-in-flight`` (service token) and matches
the digests with those it recorded for its runners (LXD instance config, OpenStack server
metadata, written at creation). A job cannot forge this: a check is in flight only while a
request whose token the service has just accepted (spent) is answered; the token is read and
deleted by the pre-job script before the first step, and a used token is refused before it is
counted (an OpenStack job can read its runner's token back from the metadata service: replaying
it counts for nothing). (A flag file inside the runner, as before, could be created by any job
to hold every flush its full wait.)
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest of a one-time token (what both sides compare).

    Args:
        token: The token.

    Returns:
        64 hex characters.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class ChecksInFlight:
    """A thread-safe multiset of the token digests of checks being answered.

    Bounded by the server's worker threads: one entry per request being handled.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    @contextmanager
    def checking(self, token: str) -> Iterator[None]:
        """Count a check presenting ``token`` as in flight inside the block.

        Args:
            token: The bearer token the request presents.

        Yields:
            Nothing.
        """
        digest = token_digest(token)
        with self._lock:
            self._counts[digest] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[digest] -= 1
                if self._counts[digest] <= 0:
                    del self._counts[digest]

    def digests(self) -> list[str]:
        """Return the digests of the checks in flight, sorted."""
        with self._lock:
            return sorted(self._counts)
