"""One GitHub request under the seam's time and retry policy (no PyGithub).

Per public call of the client:

* Each HTTP attempt has a timeout of ``timeout`` seconds, a wall-clock deadline the transport
  enforces even against a server that drips bytes; a timed-out attempt is a
  :class:`errors.GithubTimeoutError` (a ``GithubApiError``) once retries run out.
* 5xx answers, timeouts and connection errors are retried with exponential backoff
  (0.5 s, 1 s, 2 s, ... capped at 4 s), at most ``MAX_ATTEMPTS`` attempts per request. An attempt
  other than the very first one of the call only starts if it can finish within ``max_wait``
  seconds of the start of the call, so one call never blocks much longer than
  ``max(timeout, max_wait)``. When the budget or the attempts run out the last failure is raised
  as :class:`errors.GithubApiError`.
* Rate limits are never waited for: :func:`github_api.parse.error_from_reply` maps them to
  :class:`errors.GithubRateLimitError` with the reset time GitHub gave, raised at once (4xx), so
  the caller (a reconcile on a timer) backs off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import errors
from github_api.parse import HttpReply, error_from_reply
from github_api.types import GitHubPath

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 4.0


class TransportError(Exception):
    """No HTTP answer: timeout or connection error (raised by an :class:`HttpTransport`).

    Attributes:
        timed_out: Whether the attempt ran out of time (rather than failing to connect).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        """Build the error.

        Args:
            message: What happened (no secret).
            timed_out: Whether the attempt ran out of time.
        """
        super().__init__(message)
        self.timed_out = timed_out


class HttpTransport(Protocol):
    """Sends one HTTP request to the GitHub API and returns the answer, whatever its status."""

    def send(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> HttpReply:
        """Send one request.

        Args:
            verb: HTTP method.
            url: Path under the API URL, starting with ``/``.
            params: Query parameters.
            body: JSON body.

        Raises:
            TransportError: On a timeout or connection error.
        """
        ...  # pragma: no cover


class Budget:
    """The time budget of one public call.

    Attributes:
        attempts: HTTP attempts made so far in the call.
    """

    def __init__(self, clock: Callable[[], float], max_wait: float) -> None:
        """Start the budget now.

        Args:
            clock: Monotonic clock, in seconds.
            max_wait: The budget, in seconds.
        """
        self._clock = clock
        self._start = clock()
        self._max_wait = max_wait
        self.attempts = 0

    def allows(self, seconds: float) -> bool:
        """Return whether ``seconds`` more fit (the first attempt of a call always does).

        Args:
            seconds: The time the next step needs.
        """
        if self.attempts == 0:
            return True
        return self._clock() - self._start + seconds <= self._max_wait


class Retrier:
    """Sends requests through a transport with bounded retries inside a call's budget.

    Attributes:
        timeout: Timeout of one HTTP attempt, in seconds.
        max_wait: Time budget of one public call, retries included, in seconds.
    """

    def __init__(
        self,
        transport: HttpTransport,
        *,
        timeout: float,
        max_wait: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        """Build the retrier.

        Args:
            transport: Sends one HTTP request.
            timeout: Timeout of one HTTP attempt, in seconds.
            max_wait: Time budget of one public call, in seconds.
            clock: Monotonic clock, in seconds.
            sleep: Sleeps between attempts.
        """
        self.timeout = timeout
        self.max_wait = max_wait
        self._transport = transport
        self._clock = clock
        self._sleep = sleep

    def budget(self) -> Budget:
        """Return the budget of a new public call, starting now."""
        return Budget(self._clock, self.max_wait)

    def request(
        self,
        verb: str,
        url: str,
        path: GitHubPath | None,
        budget: Budget,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request with retries and map the answer.

        Args:
            verb: HTTP method.
            url: Path under the API URL, starting with ``/``.
            path: The repository or organisation concerned, for errors.
            budget: The time budget of the public call.
            params: Query parameters.
            body: JSON body.

        Returns:
            The decoded JSON answer (``None`` for an empty body).

        Raises:
            GithubApiError: If the request cannot be completed in the budget.
        """
        where = path.path() if path is not None else None
        if not budget.allows(self.timeout):
            raise errors.GithubApiError(
                f"GitHub is too slow: {verb} {url} does not fit in {self.max_wait}s", path=where
            )
        while True:
            budget.attempts += 1
            failure: errors.GithubClientError
            try:
                reply = self._transport.send(verb, url, params, body)
            except TransportError as exc:
                kind = errors.GithubTimeoutError if exc.timed_out else errors.GithubApiError
                failure = kind(f"GitHub did not answer {verb} {url}: {exc}", path=where)
            else:
                if 200 <= reply.status < 300:
                    return _decode(reply)
                failure = error_from_reply(reply, verb, url, where)
                if reply.status < 500:
                    raise failure
            pause = min(BACKOFF_FIRST * 2 ** (budget.attempts - 1), BACKOFF_MAX)
            if budget.attempts >= MAX_ATTEMPTS or not budget.allows(pause + self.timeout):
                raise failure
            logger.info("%s %s failed (%s), retrying in %.1fs", verb, url, failure, pause)
            self._sleep(pause)


def _decode(reply: HttpReply) -> Any:
    if not reply.body.strip():
        return None
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise errors.GithubApiError("GitHub answered malformed JSON", status=reply.status) from exc
