"""What the route modules share: the model and the server's services."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandbox.auth import TokenStore
from sandbox.downloads import Downloads
from sandbox.faults import FaultInjector
from sandbox.ratelimit import RateLimiter
from sandbox.state import SandboxState


@dataclass
class Stats:
    """Request counts per "METHOD /route/template"."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)

    def count(self, key: str) -> None:
        """Count one request.

        Args:
            key: "METHOD template".
        """
        with self.lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts.

        Returns:
            key -> count.
        """
        with self.lock:
            return dict(self.counts)

    def reset(self) -> None:
        """Zero the counts."""
        with self.lock:
            self.counts.clear()


@dataclass
class Context:
    """Everything a handler may need."""

    state: SandboxState
    tokens: TokenStore
    ratelimit: RateLimiter
    faults: FaultInjector
    downloads: Downloads
    stats: Stats
    base_url: str = ""
    runner_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The REST API root URL."""
        return f"{self.base_url}/api/v3"
