"""Client of the pre-job repository policy service the charm runs on each unit."""

from __future__ import annotations

import logging
import re
from typing import Any

import requests

from errors import RepoPolicyError

logger = logging.getLogger(__name__)

TIMEOUT = (5, 15)  # connect, read (seconds)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")  # what repo_policy.tokens issues (URL-safe)
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_IN_FLIGHT = 10_000  # far above the service's worker threads


class RepoPolicyComplianceClient:
    """Asks the policy service for one-time tokens that runners present in their pre-job check."""

    def __init__(
        self, url: str, charm_token: str, session: requests.Session | None = None
    ) -> None:
        """Build the client.

        Args:
            url: Base URL of the service as the charm reaches it.
            charm_token: The charm's own token for the service (the service token). Secret.
            session: HTTP session to use.
        """
        self.base_url = url.rstrip("/")
        self._token = charm_token
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        """Hide the token."""
        return f"RepoPolicyComplianceClient(url={self.base_url!r})"

    def get_one_time_token(self) -> str:
        """Get a token a runner can use once to ask for a policy check.

        Returns:
            The one-time token.

        Raises:
            RepoPolicyError: If the service is not configured, unreachable or refuses.
        """
        response = self._get("one-time-token", "a one-time token")
        token = response.text.strip()
        if not _TOKEN.fullmatch(token):
            raise RepoPolicyError("policy service answered a malformed one-time token")
        return token

    def checks_in_flight(self) -> frozenset[str]:
        """Ask which policy checks the service is answering now.

        Returns:
            The SHA-256 digests of the one-time tokens those checks present
            (:func:`repo_policy.in_flight.token_digest`).

        Raises:
            RepoPolicyError: If the service is not configured, unreachable, refuses or answers
                something else than a list of digests.
        """
        response = self._get("checks-in-flight", "the checks in flight")
        try:
            digests: Any = response.json()["in_flight"]
        except (ValueError, KeyError, TypeError):
            digests = None
        if (
            not isinstance(digests, list)
            or len(digests) > MAX_IN_FLIGHT
            or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in digests)
        ):
            raise RepoPolicyError("policy service answered malformed checks in flight")
        return frozenset(digests)

    def _get(self, path: str, what: str) -> requests.Response:
        """GET ``path`` with the service token; any answer but 200 is a RepoPolicyError.

        Args:
            path: The route under the service's URL.
            what: What is asked for, for the error message.

        Returns:
            The 200 answer.

        Raises:
            RepoPolicyError: If the service is not configured, unreachable or refuses.
        """
        if not self.base_url:
            raise RepoPolicyError("the repository policy service is not configured")
        try:
            response = self._session.get(
                f"{self.base_url}/{path}",
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise RepoPolicyError(f"policy service unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise RepoPolicyError(
                f"policy service refused {what} (HTTP {response.status_code})",
                status=response.status_code,
            )
        return response
