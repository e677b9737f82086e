"""Run work over runners in a bounded thread pool; one failure never aborts the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from errors import GithubRunnerError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def run_parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R | Exception]:
    """Run ``fn`` over ``items`` in a bounded pool; failures are returned, never raised.

    Args:
        fn: The work for one item.
        items: The items.
        workers: The pool size.

    Returns:
        One result or exception per item, in order.
    """
    work = list(items)

    def guarded(item: T) -> R | Exception:
        try:
            return fn(item)
        except GithubRunnerError as exc:
            return exc
        except Exception as exc:
            logger.exception("unexpected failure on one runner")
            return exc

    if workers <= 1 or len(work) <= 1:
        return [guarded(item) for item in work]
    with ThreadPoolExecutor(max_workers=min(workers, len(work))) as pool:
        return list(pool.map(guarded, work))
