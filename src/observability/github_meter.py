"""Count GitHub API requests by route and status, and keep the rate limit GitHub reports.

:class:`MeteredTransport` wraps the GitHub seam's HTTP transport: every attempt (retries
included) is recorded in the metrics state with its route template, so the label set stays
bounded whatever the owners, repositories, runner ids or branches are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from github_api.client import GithubClient
from github_api.credentials import CredentialSource
from github_api.parse import HttpReply
from github_api.retry import HttpTransport, TransportError
from github_api.transport import PyGithubTransport
from observability.feed import api_request
from observability.state import STATE_FILE_NAME, StateFile

# (pattern of a path segment sequence, its template); the first match wins.
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"^/repos/[^/]+/[^/]+(?=/|$)", "/repos/{owner}/{repo}"),
        (r"^/orgs/[^/]+(?=/|$)", "/orgs/{org}"),
    )
)
_TAIL: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"/actions/runners/\d+(?=/|$)", "/actions/runners/{runner_id}"),
        (r"/actions/runs/\d+(?=/|$)", "/actions/runs/{run_id}"),
        (r"/actions/jobs/\d+(?=/|$)", "/actions/jobs/{job_id}"),
        (r"/collaborators/[^/]+(?=/|$)", "/collaborators/{user}"),
        (r"/branches/.+/protection$", "/branches/{branch}/protection"),
        (r"/pulls/\d+(?=/|$)", "/pulls/{number}"),
    )
)
_KNOWN_TAIL = re.compile(r"^(/[a-z][a-z0-9_-]*|/\{[a-z_]+\})*$")


def route_of(url: str) -> str:
    """Return the route template of a request path (``/repos/{owner}/{repo}/actions/runners``).

    Args:
        url: The request path under the API URL (a query string is dropped).

    Returns:
        The template; ``other`` for a path whose shape is not known (never the raw path).
    """
    path = url.split("?", 1)[0]
    for pattern, template in _ROUTES:
        match = pattern.match(path)
        if match:
            head, tail = template, path[match.end() :]
            break
    else:
        head, tail = "", path
    for pattern, template in _TAIL:
        tail = pattern.sub(template, tail)
    if not _KNOWN_TAIL.fullmatch(tail) or not (head or tail):
        return "other"
    return head + tail


class MeteredTransport:
    """An ``HttpTransport`` that records each request in the metrics state, then answers."""

    def __init__(self, inner: HttpTransport, state: StateFile) -> None:
        """Wrap a transport.

        Args:
            inner: The transport that sends the requests.
            state: Where the requests are counted.
        """
        self._inner = inner
        self._state = state

    def send(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> HttpReply:
        """Send one request through the wrapped transport and record it.

        Args:
            verb: HTTP method.
            url: Path under the API URL.
            params: Query parameters.
            body: JSON body.

        Returns:
            The answer.

        Raises:
            TransportError: As the wrapped transport (recorded with status 0).
        """
        try:
            reply = self._inner.send(verb, url, params, body)
        except TransportError:
            api_request(self._state, verb, route_of(url), 0, {})
            raise
        api_request(self._state, verb, route_of(url), reply.status, reply.headers)
        return reply


def metered_github_client(
    token: str | CredentialSource, api_url: str, state_dir: Path, *, timeout: float = 15
) -> GithubClient:
    """Build the GitHub client whose requests are counted in the unit's metrics state.

    Args:
        token: The personal access token (secret), or the source of each request's token.
        api_url: The REST API base URL.
        state_dir: The manager's state directory (holds the metrics state file).
        timeout: Timeout of one HTTP attempt, in seconds.

    Returns:
        The client.
    """
    transport = PyGithubTransport(token, api_url.strip().rstrip("/"), timeout)
    metered = MeteredTransport(transport, StateFile(state_dir / STATE_FILE_NAME))
    return GithubClient(token, api_url, timeout=timeout, transport=metered)
