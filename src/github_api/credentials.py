"""Where the GitHub seam gets the token of each request: a credential source (no PyGithub).

The transport asks its :class:`CredentialSource` for the current token before every request and,
when GitHub answers 401, tells the source which token was rejected: a source that can get a
fresh one (GitHub App installation tokens, :mod:`github_api.app_tokens`) does so once and the
request is sent once more; a fixed token (:class:`StaticToken`) cannot, and the 401 stands.

Secrets: no source ever logs a token or puts one in a message or ``repr``.
"""

from __future__ import annotations

from typing import Protocol


class CredentialSource(Protocol):
    """Gives the token the next GitHub request authenticates with."""

    def token(self) -> str:
        """Return the current token, getting a fresh one first when it is about to expire.

        Raises:
            GithubClientError: If no token can be had (e.g. GitHub refused the app's JWT).
        """
        ...  # pragma: no cover

    def renew(self, rejected: str) -> bool:
        """Handle a 401 answered to a request made with ``rejected``.

        Args:
            rejected: The token GitHub refused.

        Returns:
            Whether :meth:`token` now gives another token worth one more attempt.

        Raises:
            GithubClientError: If getting a fresh token failed.
        """
        ...  # pragma: no cover


class StaticToken:
    """A token that never changes (a personal access token): a 401 is final."""

    def __init__(self, token: str) -> None:
        """Keep the token.

        Args:
            token: The token. Secret.

        Raises:
            ValueError: If it is empty.
        """
        if not token or not token.strip():
            raise ValueError("the GitHub token is empty")
        self._token = token.strip()

    def __repr__(self) -> str:
        """Describe the source without its token."""
        return "StaticToken(***)"

    def token(self) -> str:
        """Return the token."""
        return self._token

    def renew(self, rejected: str) -> bool:
        """Return False: there is no other token.

        Args:
            rejected: The token GitHub refused.
        """
        del rejected
        return False


def as_source(credentials: str | CredentialSource) -> CredentialSource:
    """Return ``credentials`` as a source: a string is a :class:`StaticToken`.

    Args:
        credentials: A token or a source.

    Raises:
        ValueError: If the token is empty.
    """
    if isinstance(credentials, str):
        return StaticToken(credentials)
    return credentials
