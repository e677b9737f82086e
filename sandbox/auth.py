"""Personal access tokens of the sandbox: admin and read-only, revocable at run time."""

from __future__ import annotations

import secrets
import threading

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


class TokenStore:
    """Tokens and their access level."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}

    def add(self, token: str, access: str = ADMIN) -> None:
        """Add (or change) a token.

        Args:
            token: the token.
            access: "admin" or "readonly".

        Raises:
            ValueError: for an unknown access level or an empty token.
        """
        if access not in (ADMIN, READONLY) or not token:
            raise ValueError(f"bad token or access level {access!r}")
        with self._lock:
            self._tokens[token] = access

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
        with self._lock:
            for known, access in self._tokens.items():
                if secrets.compare_digest(known.encode(), token.encode()):
                    return access
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
