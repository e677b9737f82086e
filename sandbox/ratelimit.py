"""GitHub's primary rate limit: 5000 requests an hour per token, reported in headers."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sandbox.web import HttpError

LIMIT = 5000
WINDOW = 3600.0
RATE_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
)


@dataclass
class Bucket:
    """One token's window."""

    limit: int
    used: int
    reset: float

    @property
    def remaining(self) -> int:
        """Requests left in the window."""
        return max(0, self.limit - self.used)

    def headers(self) -> list[tuple[str, str]]:
        """The x-ratelimit-* headers GitHub sends.

        Returns:
            Header pairs.
        """
        return [
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(math.ceil(self.reset))),
            ("x-ratelimit-used", str(self.used)),
            ("x-ratelimit-resource", "core"),
        ]


class RateLimiter:
    """Per-token buckets, with a control to exhaust or set them."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW):
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._forced: Bucket | None = None
        self.refused = 0  # requests answered 403 "rate limit exceeded" (control API /stats)

    def _bucket(self, token: str, now: float) -> Bucket:
        bucket = self._buckets.get(token)
        if bucket is None or bucket.reset <= now:
            if self._forced is not None and self._forced.reset > now:
                forced = self._forced
                bucket = Bucket(forced.limit, forced.used, forced.reset)
            else:
                bucket = Bucket(self.limit, 0, now + self.window)
            self._buckets[token] = bucket
        return bucket

    def peek(self, token: str) -> Bucket:
        """A copy of a token's bucket without counting a request.

        Args:
            token: the token.

        Returns:
            The bucket.
        """
        with self._lock:
            bucket = self._bucket(token, time.time())
            return Bucket(bucket.limit, bucket.used, bucket.reset)

    def hit(self, token: str, count: bool = True) -> list[tuple[str, str]]:
        """Count a request and return the headers to send.

        Args:
            token: the token.
            count: False for requests that neither count nor get refused (GET /rate_limit).

        Returns:
            The x-ratelimit-* headers.

        Raises:
            HttpError: 403 with remaining 0 when the window is exhausted.
        """
        with self._lock:
            bucket = self._bucket(token, time.time())
            if count and bucket.remaining <= 0:
                self.refused += 1
                raise HttpError(
                    403,
                    "API rate limit exceeded for user. (But here's the good news: "
                    "Authenticated requests get a higher rate limit.)",
                    headers=bucket.headers(),
                    doc=RATE_DOCS,
                )
            if count:
                bucket.used += 1
            return bucket.headers()

    def force(self, remaining: int, reset_in: float) -> None:
        """Set every token (and new ones) to a remaining count until a reset.

        Args:
            remaining: requests left.
            reset_in: seconds until the window resets.
        """
        with self._lock:
            reset = time.time() + reset_in
            used = max(0, self.limit - remaining)
            self._forced = Bucket(self.limit, used, reset)
            for token in list(self._buckets):
                self._buckets[token] = Bucket(self.limit, used, reset)

    def reset(self) -> None:
        """Forget all counts and forced windows (the refusal count stays)."""
        with self._lock:
            self._buckets.clear()
            self._forced = None
