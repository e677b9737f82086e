"""Fault injection for the REST API: error statuses, latency, drips, secondary rate limits.

A drip (``drip_ms``) sends the answer's body one byte every ``drip_ms`` milliseconds: each byte
comes well within a client's per-read timeout, so only an overall deadline ends the request.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.web import HttpError, Response

SECONDARY_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
MAX_LATENCY_MS = 60_000
MAX_DRIP_MS = 10_000
MESSAGES = {
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    422: "Validation Failed",
    429: (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    ),
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that.",
}


@dataclass
class Fault:
    """One rule: matching requests may be delayed and may get an error status."""

    id: int
    status: int | None
    probability: float
    path_regex: re.Pattern[str] | None
    method: str | None
    latency_ms: int
    count: int | None
    retry_after: int | None
    drip_ms: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to a request.

        Args:
            method: HTTP method.
            path: path below /api/v3.

        Returns:
            True when it matches and has hits left.
        """
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path_regex is None or self.path_regex.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the control API.

        Returns:
            The rule as a dict.
        """
        return {
            "id": self.id,
            "status": self.status,
            "probability": self.probability,
            "path_regex": self.path_regex.pattern if self.path_regex else None,
            "method": self.method,
            "latency_ms": self.latency_ms,
            "count": self.count,
            "retry_after": self.retry_after,
            "drip_ms": self.drip_ms,
            "hits": self.hits,
        }


def _number(spec: dict[str, Any], key: str, default: float | None) -> float | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number")
    return float(value)


class FaultInjector:
    """The active fault rules."""

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self._random = random.Random(seed)  # noqa: S311 - not for security

    def add(self, spec: dict[str, Any]) -> Fault:
        """Add a rule from its control API form.

        Args:
            spec: {"status", "probability", "path_regex", "latency_ms", "method", "count",
                "retry_after"}.

        Returns:
            The rule.

        Raises:
            ValueError: on a malformed rule.
        """
        status = _number(spec, "status", None)
        if status is not None and not 400 <= status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        probability = _number(spec, "probability", 1.0)
        if probability is None or not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        latency = _number(spec, "latency_ms", 0) or 0.0
        if not 0 <= latency <= MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be between 0 and {MAX_LATENCY_MS}")
        drip = _number(spec, "drip_ms", 0) or 0.0
        if not 0 <= drip <= MAX_DRIP_MS:
            raise ValueError(f"drip_ms must be between 0 and {MAX_DRIP_MS}")
        count = _number(spec, "count", None)
        retry_after = _number(spec, "retry_after", None)
        if status is None and latency == 0 and drip == 0:
            raise ValueError("a fault needs a status, a latency_ms or a drip_ms")
        path_regex = spec.get("path_regex")
        method = spec.get("method")
        if path_regex is not None and not isinstance(path_regex, str):
            raise ValueError("path_regex must be a string")
        if method is not None and not isinstance(method, str):
            raise ValueError("method must be a string")
        try:
            pattern = re.compile(path_regex) if path_regex else None
        except re.error as exc:
            raise ValueError(f"bad path_regex: {exc}") from exc
        with self._lock:
            fault = Fault(
                id=self._next_id,
                status=int(status) if status is not None else None,
                probability=probability,
                path_regex=pattern,
                method=method.upper() if method else None,
                latency_ms=int(latency),
                count=int(count) if count is not None else None,
                retry_after=int(retry_after) if retry_after is not None else None,
                drip_ms=int(drip),
            )
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        """The rules in JSON form.

        Returns:
            A list of dicts.
        """
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def apply(self, method: str, path: str) -> tuple[Response | None, float]:
        """Delay a request, pick an error for it and how slowly to send it, per the rules.

        Args:
            method: HTTP method.
            path: path below /api/v3.

        Returns:
            An error response (None lets the request through) and the drip interval of the
            answer's body in seconds (0: sent at once).
        """
        delay = 0.0
        drip = 0.0
        error: Response | None = None
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.status is not None and error is not None:
                    continue
                if self._random.random() >= fault.probability:
                    continue
                fault.hits += 1
                delay += fault.latency_ms / 1000.0
                drip = max(drip, fault.drip_ms / 1000.0)
                if fault.status is not None:
                    error = self._error(fault)
        if delay > 0:
            time.sleep(delay)
        return error, drip

    @staticmethod
    def _error(fault: Fault) -> Response:
        status = fault.status or 500
        headers: list[tuple[str, str]] = []
        doc = "https://docs.github.com/rest"
        if fault.retry_after is not None:
            headers.append(("retry-after", str(fault.retry_after)))
            doc = SECONDARY_DOCS
        message = MESSAGES.get(status, "Injected fault")
        if status == 403 and fault.retry_after is not None:
            message = MESSAGES[429]
        return HttpError(status, message, headers=headers, doc=doc).response()
