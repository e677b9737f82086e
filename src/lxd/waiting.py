"""Polling with a small backoff until a condition holds or a deadline passes (no fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable

import errors


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    instance: str,
    *,
    initial_delay: float = 0.05,
    max_delay: float = 1.0,
    fatal: tuple[type[errors.LXDError], ...] = (errors.LXDUnavailableError,),
) -> None:
    """Poll a predicate with a small backoff until it holds or the deadline passes.

    Args:
        predicate: Checked first at once, then after growing delays. LXD errors raised by it
            count as "not yet".
        timeout: Seconds to wait at most.
        what: What is awaited, for the error.
        instance: The instance concerned, for the error.
        initial_delay: First delay between checks.
        max_delay: Longest delay between checks.
        fatal: LXD errors that end the wait at once (re-raised) instead of "not yet".

    Raises:
        LXDTimeoutError: It did not hold in time.
    """
    deadline = time.monotonic() + timeout
    delay = initial_delay
    last_error = ""
    while True:
        try:
            if predicate():
                return
        except fatal:
            raise
        except errors.LXDError as exc:
            last_error = f" (last error: {exc})"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.LXDTimeoutError(
                f"{instance}: {what} not reached within {timeout:g} s{last_error}",
                "wait",
                instance,
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)
