"""API tokens of the sandbox: personal access tokens and GitHub App installation tokens.

Personal access tokens are admin or read-only and revocable at run time; installation tokens
expire and count in their installation's rate-limit window.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from sandbox.web import HttpError, Request

AUTH_DOCS = "https://docs.github.com/rest"
ADMIN = "admin"
READONLY = "readonly"


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: token X`` or ``Bearer X`` header.

    Args:
        request: the request.

    Returns:
        The token, or None when there is no usable header.
    """
    value = request.header("Authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True)
class _Grant:
    access: str
    expires_at: float | None
    rate_key: str


class TokenStore:
    """Tokens and their access level."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Grant] = {}

    def add(
        self,
        token: str,
        access: str = ADMIN,
        *,
        expires_at: float | None = None,
        rate_key: str | None = None,
    ) -> None:
        """Add (or change) a token.

        Args:
            token: the token.
            access: "admin" or "readonly".
            expires_at: epoch after which the token is refused ("Bad credentials"); None: never.
            rate_key: the rate-limit window the token counts in (the token's own by default).

        Raises:
            ValueError: for an unknown access level or an empty token.
        """
        if access not in (ADMIN, READONLY) or not token:
            raise ValueError(f"bad token or access level {access!r}")
        with self._lock:
            now = time.time()
            expired = [k for k, g in self._tokens.items() if g.expires_at and g.expires_at < now]
            for known in expired:  # installation tokens pile up otherwise
                del self._tokens[known]
            self._tokens[token] = _Grant(access, expires_at, rate_key or token)

    def rate_key(self, token: str) -> str:
        """The rate-limit window a token counts in.

        Args:
            token: the token.

        Returns:
            Its installation's window for an installation token, else the token itself.
        """
        with self._lock:
            grant = self._tokens.get(token)
            return grant.rate_key if grant is not None else token

    def revoke(self, token: str) -> bool:
        """Revoke a token.

        Args:
            token: the token.

        Returns:
            Whether it existed.
        """
        with self._lock:
            return self._tokens.pop(token, None) is not None

    def access(self, token: str) -> str | None:
        """The access level of a token.

        Args:
            token: the token.

        Returns:
            "admin", "readonly" or None when unknown.
        """
        now = time.time()
        with self._lock:
            for known, grant in self._tokens.items():
                if secrets.compare_digest(known.encode(), token.encode()):
                    if grant.expires_at is not None and grant.expires_at <= now:
                        return None  # GitHub answers an expired token with "Bad credentials"
                    return grant.access
            return None

    def authenticate(self, request: Request, admin: bool) -> str:
        """Check a request's token like GitHub does.

        Args:
            request: the request.
            admin: whether the operation needs admin access.

        Returns:
            The token.

        Raises:
            HttpError: 401 without a known token, 403 for a read-only token on admin calls.
        """
        token = bearer(request)
        if token is None:
            raise HttpError(401, "Requires authentication", doc=AUTH_DOCS)
        access = self.access(token)
        if access is None:
            raise HttpError(401, "Bad credentials", doc=AUTH_DOCS)
        if admin and access != ADMIN:
            raise HttpError(403, "Resource not accessible by personal access token", doc=AUTH_DOCS)
        return token
