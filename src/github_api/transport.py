"""The HTTP transport of the GitHub seam: the only module that imports PyGithub.

PyGithub provides authentication, the base URL and the connection pool; each request goes
through its ``Requester`` (what ``Github.requester`` returns, built directly because ``Github()``
only takes whole-second timeouts) so that every call, page and retry is visible to the seam.
PyGithub's own retry (``GithubRetry``, which may sleep until a rate limit resets) and its request
throttling are switched off: :mod:`github_api.retry` holds the policy.

Secrets: the token is only handed to PyGithub's ``Auth.Token``; it never appears in messages or
logs. PyGithub's DEBUG logging of each request prints response bodies (which hold registration
tokens and JIT configurations), so DEBUG records of the ``github.Requester`` logger are dropped.

Thread safety: PyGithub's connection object is not safe to share between threads, so each thread
gets its own ``Requester``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

from github import Auth
from github.Requester import Requester

import errors
from github_api.pagination import PER_PAGE
from github_api.parse import HttpReply
from github_api.retry import TransportError

USER_AGENT = "github-runner-charm"


def _drop_debug(record: logging.LogRecord) -> bool:
    """Keep records above DEBUG: PyGithub's DEBUG lines print response bodies holding secrets."""
    return record.levelno > logging.DEBUG


logging.getLogger("github.Requester").addFilter(_drop_debug)


class PyGithubTransport:
    """Sends requests to the GitHub REST API through PyGithub (an ``HttpTransport``)."""

    def __init__(self, token: str, api_url: str, timeout: float) -> None:
        """Build the transport. No request is made.

        Args:
            token: The personal access token. Secret.
            api_url: The REST API base URL, already validated.
            timeout: Timeout of one HTTP attempt (connect and read), in seconds.
        """
        self._token = token
        self._api_url = api_url
        self._timeout = timeout
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
            TransportError: On a timeout or connection error.
            GithubApiError: If PyGithub refuses the exchange (e.g. a redirect off the host).
        """
        requester = self._requester()
        try:
            status, headers, text = requester.requestJson(
                verb, url, parameters=params, headers=None, input=body
            )
        except OSError as exc:  # requests' exceptions derive from OSError
            raise TransportError(type(exc).__name__) from exc
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise errors.GithubApiError(f"{verb} {url} failed: {type(exc).__name__}") from exc
        return HttpReply(
            status=int(status),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            body=text,
        )

    def _requester(self) -> Requester:
        # PyGithub's Github() insists on an int timeout; its Requester (what Github.requester
        # returns) takes the float that requests accepts, so it is built directly.
        requester = getattr(self._local, "requester", None)
        if requester is None:
            requester = Requester(
                auth=Auth.Token(self._token),
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
            self._local.requester = requester
        return requester
