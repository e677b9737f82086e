"""The HTTP transport of the GitHub seam: the only module that imports PyGithub.

PyGithub provides authentication, the base URL and the connection pool; each request goes
through its ``Requester`` (what ``Github.requester`` returns, built directly because ``Github()``
only takes whole-second timeouts) so that every call, page and retry is visible to the seam.
PyGithub's own retry (``GithubRetry``, which may sleep until a rate limit resets) and its request
throttling are switched off: :mod:`github_api.retry` holds the policy.

Credentials: each request asks the transport's credential source
(:mod:`github_api.credentials`) for the current token and sends it as ``Authorization: Bearer``
(GitHub takes it for personal access, installation and JWT tokens alike). A 401 is shown to the
source once: one that can renew (GitHub App installation tokens) gets a fresh token and the
request is sent once more; a second 401 is a :class:`errors.GithubTokenError` that says so.

Secrets: the token is only put in the request's header; it never appears in messages or
logs. PyGithub's DEBUG logging of each request prints response bodies (which hold registration
tokens and JIT configurations), so DEBUG records of the ``github.Requester`` logger are dropped.

Deadline: besides the per-read socket timeout, each request has an overall wall-clock deadline
(:class:`github_api.deadline.Deadline`, ``timeout`` seconds by default): PyGithub's connection
mounts a :class:`github_api.deadline.DeadlineAdapter`, whose sockets are shut down when the
deadline passes, so a server dripping bytes cannot hold a call; the attempt then fails as a
timeout and its connection is dropped.

Thread safety: PyGithub's connection object is not safe to share between threads, so each thread
gets its own ``Requester``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import requests
from github.Requester import (
    HTTPRequestsConnectionClass,
    HTTPSRequestsConnectionClass,
    Requester,
)

import errors
from github_api.credentials import CredentialSource, as_source
from github_api.deadline import Deadline, DeadlineAdapter
from github_api.pagination import PER_PAGE
from github_api.parse import HttpReply
from github_api.retry import TransportError

USER_AGENT = "github-runner-charm"

logger = logging.getLogger(__name__)


def _drop_debug(record: logging.LogRecord) -> bool:
    """Keep records above DEBUG: PyGithub's DEBUG lines print response bodies holding secrets."""
    return record.levelno > logging.DEBUG


logging.getLogger("github.Requester").addFilter(_drop_debug)

# The Requester attribute holding the connection class it builds connections with (PyGithub
# 2.x). Checked when a Requester is built: a PyGithub without it fails loudly, not silently.
_CONNECTION_CLASS_ATTRIBUTE = "_Requester__connectionClass"


def _mount_deadline_adapter(connection: Any) -> None:
    adapter = DeadlineAdapter(
        max_retries=connection.retry,
        pool_connections=connection.pool_size,
        pool_maxsize=connection.pool_size,
    )
    connection.adapter = adapter
    connection.session.mount("http://", adapter)
    connection.session.mount("https://", adapter)


class _DeadlineHTTPConnection(HTTPRequestsConnectionClass):
    """PyGithub's plain HTTP connection, over a :class:`DeadlineAdapter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _mount_deadline_adapter(self)


class _DeadlineHTTPSConnection(HTTPSRequestsConnectionClass):
    """PyGithub's HTTPS connection, over a :class:`DeadlineAdapter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _mount_deadline_adapter(self)


class PyGithubTransport:
    """Sends requests to the GitHub REST API through PyGithub (an ``HttpTransport``)."""

    def __init__(
        self,
        token: str | CredentialSource,
        api_url: str,
        timeout: float,
        deadline: float | None = None,
    ) -> None:
        """Build the transport. No request is made.

        Args:
            token: The personal access token (secret), or the source of each request's token.
            api_url: The REST API base URL, already validated.
            timeout: Timeout of one socket operation (connect, each read), in seconds.
            deadline: Wall-clock deadline of one HTTP attempt, whatever the server does, in
                seconds; ``timeout`` by default.
        """
        self._credentials = as_source(token)
        self._api_url = api_url
        self._timeout = timeout
        self._deadline = timeout if deadline is None else deadline
        self._local = threading.local()

    def __repr__(self) -> str:
        """Describe the transport without its token."""
        return f"PyGithubTransport(api_url={self._api_url!r})"

    def send(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> HttpReply:
        """Send one HTTP request through PyGithub.

        Args:
            verb: HTTP method.
            url: Path under the API URL.
            params: Query parameters.
            body: JSON body.

        Returns:
            The answer, whatever its status.

        Raises:
            TransportError: On a timeout (``timed_out``: the deadline or a socket timeout) or a
                connection error.
            GithubApiError: If PyGithub refuses the exchange (e.g. a redirect off the host).
            GithubTokenError: If GitHub refuses a renewed token too (401 twice).
        """
        token = self._credentials.token()
        reply = self._send(verb, url, params, body, token)
        if reply.status != 401 or not self._credentials.renew(token):
            return reply
        reply = self._send(verb, url, params, body, self._credentials.token())
        if reply.status == 401:
            raise errors.GithubTokenError(
                message="GitHub refused the renewed token too (401 twice in a row): check that "
                "the GitHub App is still installed and its installation not suspended"
            )
        return reply

    def _send(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        token: str,
    ) -> HttpReply:
        requester = self._requester()
        headers = {"Authorization": f"Bearer {token}"}
        late = TransportError(f"no complete answer within {self._deadline:g}s", timed_out=True)
        with Deadline(self._deadline) as deadline:
            try:
                status, answer, text = requester.requestJson(
                    verb, url, parameters=params, headers=headers, input=body
                )
            except Exception as exc:
                if deadline.expired:
                    self._drop(requester)
                    raise late from exc
                if isinstance(exc, requests.Timeout):
                    raise TransportError(type(exc).__name__, timed_out=True) from exc
                if isinstance(exc, OSError):  # requests' exceptions derive from OSError
                    raise TransportError(type(exc).__name__) from exc
                if isinstance(exc, (RuntimeError, ValueError, AssertionError)):
                    raise errors.GithubApiError(
                        f"{verb} {url} failed: {type(exc).__name__}"
                    ) from exc
                raise
        if deadline.expired:  # an answer cut short by the watchdog may look complete
            self._drop(requester)
            raise late
        return HttpReply(
            status=int(status),
            headers={str(k).lower(): str(v) for k, v in answer.items()},
            body=text,
        )

    def _drop(self, requester: Requester) -> None:
        """Close this thread's connection (its socket was shut down) and build a new one next."""
        self._local.requester = None
        try:
            requester.close()
        except Exception:  # closing a broken connection must not mask the timeout
            logger.debug("closing the GitHub connection after a deadline failed", exc_info=True)

    def _requester(self) -> Requester:
        # PyGithub's Github() insists on an int timeout; its Requester (what Github.requester
        # returns) takes the float that requests accepts, so it is built directly.
        requester = getattr(self._local, "requester", None)
        if requester is None:
            requester = Requester(
                auth=None,  # each request carries its own header (see send)
                base_url=self._api_url,
                timeout=cast("int", self._timeout),
                user_agent=USER_AGENT,
                per_page=PER_PAGE,
                verify=True,
                retry=None,
                pool_size=None,
                seconds_between_requests=None,
                seconds_between_writes=None,
                lazy=True,
            )
            if not hasattr(requester, _CONNECTION_CLASS_ATTRIBUTE):
                raise errors.GithubApiError("this PyGithub cannot take the deadline connection")
            deadline_class = (
                _DeadlineHTTPSConnection
                if self._api_url.lower().startswith("https:")
                else _DeadlineHTTPConnection
            )
            setattr(requester, _CONNECTION_CLASS_ATTRIBUTE, deadline_class)
            self._local.requester = requester
        return requester
