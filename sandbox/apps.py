"""GitHub Apps of the sandbox: registered public keys, installations, JWT checks like GitHub's.

An app is registered through the control API with its client ID and the PEM public key of the
key pair (GitHub keeps the public half; the app signs with the private one). A request that
authenticates as the app carries ``Authorization: Bearer <JWT>``; :meth:`AppRegistry.authenticate`
checks it the way GitHub does and answers GitHub's 401 messages:

* not an RS256 JWT, an unknown issuer, or a signature no registered key verifies (a revoked
  key): "A JSON web token could not be decoded";
* ``exp`` missing or past: "'Expiration time' claim ('exp') must be a numeric value
  representing the future time at which the assertion expires";
* ``exp`` more than 10 minutes ahead: "'Expiration time' claim ('exp') is too far in the
  future";
* ``iat`` missing, not an integer or in the future: "'Issued at' claim ('iat') must be an
  Integer representing the time that the assertion was issued".

Installation tokens (``ghs_...``) last ``token_lifetime`` seconds (an hour, like GitHub's;
the control API shortens it), are admin tokens when the installation may administer runners,
and count in their installation's own rate-limit window; the app's JWT calls count in the app's.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sandbox.auth import ADMIN, AUTH_DOCS, READONLY, TokenStore, bearer
from sandbox.web import HttpError, Request

APP_DOCS = "https://docs.github.com/rest"
TOKEN_LIFETIME = 3600.0
MAX_JWT_AHEAD = 600
CLOCK_LEEWAY = 30  # GitHub tolerates a little drift on iat
UNDECODABLE = "A JSON web token could not be decoded"
EXP_INVALID = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
IAT_INVALID = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion "
    "was issued"
)
# What a self-hosted runner manager's app is granted by default.
DEFAULT_PERMISSIONS = {
    "administration": "write",
    "organization_self_hosted_runners": "write",
    "actions": "read",
    "metadata": "read",
    "pull_requests": "read",
}
ADMIN_PERMISSIONS = ("administration", "organization_self_hosted_runners")


@dataclass
class Installation:
    """One installation of an app on an account."""

    id: int
    account: str
    permissions: dict[str, str]
    tokens_issued: int = 0

    @property
    def rate_key(self) -> str:
        """The installation's rate-limit window."""
        return f"installation:{self.id}"


@dataclass
class App:
    """A registered GitHub App."""

    client_id: str
    app_id: int
    keys: list[RSAPublicKey]
    installations: dict[int, Installation] = field(default_factory=dict)

    @property
    def rate_key(self) -> str:
        """The app's own rate-limit window (its JWT calls)."""
        return f"app:{self.client_id}"


def _public_key(pem: Any) -> RSAPublicKey:
    if not isinstance(pem, str):
        raise HttpError(422, "public_key must be a PEM string")
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise HttpError(422, f"public_key is not a PEM public key: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise HttpError(422, "public_key must be an RSA key")
    return key


class AppRegistry:
    """The apps, their installations and the installation tokens they were given."""

    def __init__(self, tokens: TokenStore) -> None:
        """Build an empty registry.

        Args:
            tokens: where installation tokens are added (the API's token store).
        """
        self._tokens = tokens
        self._lock = threading.Lock()
        self._apps: dict[str, App] = {}
        self._next_app_id = 1000
        self.token_lifetime = TOKEN_LIFETIME

    def register(self, body: Any) -> App:
        """Register (or replace) an app from a control request.

        Args:
            body: ``{"client_id", "public_key", "installations": [{"id", "account"?,
                "permissions"?}]}``.

        Returns:
            The app.

        Raises:
            HttpError: 422 for a malformed body.
        """
        if not isinstance(body, dict) or not isinstance(body.get("client_id"), str):
            raise HttpError(422, "body must have client_id, public_key and installations")
        key = _public_key(body.get("public_key"))
        installations: dict[int, Installation] = {}
        for item in body.get("installations", []):
            if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                raise HttpError(422, "each installation needs an integer id")
            permissions = item.get("permissions", DEFAULT_PERMISSIONS)
            if not isinstance(permissions, dict):
                raise HttpError(422, "permissions must be an object")
            installations[item["id"]] = Installation(
                item["id"], str(item.get("account", "octo")), dict(permissions)
            )
        with self._lock:
            self._next_app_id += 1
            app = App(body["client_id"], self._next_app_id, [key], installations)
            self._apps[app.client_id] = app
            return app

    def revoke_keys(self, client_id: str) -> bool:
        """Delete every key of an app: its JWTs no longer verify (tokens already given live on).

        Args:
            client_id: the app.

        Returns:
            Whether the app exists.
        """
        with self._lock:
            app = self._apps.get(client_id)
            if app is None:
                return False
            app.keys.clear()
            return True

    def authenticate(self, request: Request) -> App:
        """Check the request's JWT like GitHub does.

        Args:
            request: the request.

        Returns:
            The app the JWT is from.

        Raises:
            HttpError: 401 with GitHub's message.
        """
        token = bearer(request)
        if token is None:
            raise HttpError(401, "Requires authentication", doc=AUTH_DOCS)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise HttpError(401, UNDECODABLE, doc=APP_DOCS) from exc
        with self._lock:
            app = self._apps.get(str(claims.get("iss", "")))
            if app is None:
                app = next(
                    (a for a in self._apps.values() if str(a.app_id) == str(claims.get("iss"))),
                    None,
                )
            keys = list(app.keys) if app is not None else []
        signed = header.get("alg") == "RS256" and any(_verifies(token, k) for k in keys)
        if app is None or not signed:
            raise HttpError(401, UNDECODABLE, doc=APP_DOCS)
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp <= now:
            raise HttpError(401, EXP_INVALID, doc=APP_DOCS)
        if exp > now + MAX_JWT_AHEAD:
            raise HttpError(401, EXP_TOO_FAR, doc=APP_DOCS)
        if isinstance(iat, bool) or not isinstance(iat, int) or iat > now + CLOCK_LEEWAY:
            raise HttpError(401, IAT_INVALID, doc=APP_DOCS)
        return app

    def issue_token(self, app: App, installation_id: int) -> tuple[str, float, dict[str, str]]:
        """Give an installation token.

        Args:
            app: the authenticated app.
            installation_id: the installation asked for.

        Returns:
            The token, its expiry epoch and its permissions.

        Raises:
            HttpError: 404 when the installation is not this app's.
        """
        with self._lock:
            installation = app.installations.get(installation_id)
            if installation is None:
                raise HttpError(404, "Not Found", doc="https://docs.github.com/rest/apps/apps")
            installation.tokens_issued += 1
            lifetime = self.token_lifetime
            permissions = dict(installation.permissions)
        alphabet = string.ascii_letters + string.digits
        token = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        expires_at = time.time() + lifetime
        admin = any(permissions.get(p) == "write" for p in ADMIN_PERMISSIONS)
        self._tokens.add(
            token,
            ADMIN if admin else READONLY,
            expires_at=expires_at,
            rate_key=installation.rate_key,
        )
        return token, expires_at, permissions

    def snapshot(self) -> list[dict[str, Any]]:
        """The apps for the control API (no keys).

        Returns:
            client_id, app_id, key count and installations with their issued token counts.
        """
        with self._lock:
            return [
                {
                    "client_id": a.client_id,
                    "app_id": a.app_id,
                    "keys": len(a.keys),
                    "installations": [
                        {"id": i.id, "account": i.account, "tokens_issued": i.tokens_issued}
                        for i in a.installations.values()
                    ],
                }
                for a in self._apps.values()
            ]


def _verifies(token: str, key: RSAPublicKey) -> bool:
    try:
        jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        return False
    return True
