"""GitHub App installation tokens: a credential source that gets, caches and renews them.

The app authenticates with its JWT (:mod:`github_api.app_jwt`) to
``POST /app/installations/{installation_id}/access_tokens`` and gets an installation token that
lasts an hour (``expires_at``). The token is cached in this process and renewed before it
expires: ``REFRESH_MARGIN`` seconds ahead, or a quarter of the token's lifetime when that is
shorter (tokens that live seconds, as in tests). A 401 answered to a request made with the
cached token (revoked, or expired in flight) drops it; the transport then asks once more with a
fresh one. Threads share one token; one renews while the others wait.

One source per app, installation and API per process (:func:`installation_tokens`): every
client of the process (manager, metrics, consumers) shares its token and its rate-limit window.

Secrets: neither the key, the JWT nor a token is logged or put into a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import errors
from github_api.app_jwt import load_app_key, make_app_jwt
from github_api.credentials import CredentialSource, StaticToken
from github_api.parse import HttpReply, json_str, parse_time
from github_api.retry import HttpTransport, Retrier

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0
REFRESH_FRACTION = 0.25
EXCHANGE_TIMEOUT = 10.0
EXCHANGE_MAX_WAIT = 20.0

KEY_OPTION = "github-app-private-key-secret-id"
CLIENT_ID_OPTION = "github-app-client-id"
INSTALLATION_OPTION = "github-app-installation-id"


class _JwtSource:
    """The credential source of the token exchange itself: a fresh app JWT per request."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def token(self) -> str:
        return self._make()

    def renew(self, rejected: str) -> bool:
        del rejected
        return False  # GitHub refused the app itself: a new JWT from the same key fares no better


class _LastReply:
    """Passes requests through and keeps the last answer (for GitHub's error message)."""

    def __init__(self, inner: HttpTransport) -> None:
        self._inner = inner
        self.last: HttpReply | None = None

    def send(
        self, verb: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> HttpReply:
        reply = self._inner.send(verb, url, params, body)
        self.last = reply
        return reply


def _message(reply: HttpReply | None) -> str:
    """GitHub's ``message`` of an error answer, cut short and printable, or ""."""
    if reply is None:
        return ""
    try:
        text = str(json.loads(reply.body).get("message", ""))
    except (ValueError, AttributeError):
        return ""
    return "".join(c for c in text[:200] if c.isprintable())


class InstallationTokens:
    """A :class:`github_api.credentials.CredentialSource` of one app installation's tokens.

    Attributes:
        client_id: The app's client ID (or app ID).
        installation_id: The installation the tokens are for.
        api_url: The REST API base URL.
        fetches: How many tokens were fetched (for tests and metrics; never the tokens).
    """

    def __init__(
        self,
        client_id: str,
        installation_id: int,
        private_key: str,
        api_url: str,
        *,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = EXCHANGE_TIMEOUT,
    ) -> None:
        """Build the source. No request is made.

        Args:
            client_id: The app's client ID (or app ID).
            installation_id: The installation.
            private_key: The app's PEM private key. Secret.
            api_url: The REST API base URL.
            transport: Sends the exchange request (PyGithub with the app's JWT by default).
            clock: Wall clock, seconds since the epoch (``expires_at`` is wall time).
            sleep: Sleeps between retries of the exchange.
            timeout: Timeout of one exchange attempt, in seconds.

        Raises:
            ValueError: If the key is not an RSA PEM private key (the message says why).
        """
        self.client_id = client_id
        self.installation_id = int(installation_id)
        self.api_url = api_url.strip().rstrip("/")
        self.fetches = 0
        self._key = load_app_key(private_key)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        if transport is None:
            from github_api.transport import PyGithubTransport  # noqa: PLC0415 - avoids a cycle

            transport = PyGithubTransport(_JwtSource(self._jwt), self.api_url, timeout)
        self._exchange = _LastReply(transport)
        self._retrier = Retrier(
            self._exchange,
            timeout=timeout,
            max_wait=max(timeout, EXCHANGE_MAX_WAIT),
            clock=time.monotonic,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        """Describe the source without its secrets."""
        return (
            f"InstallationTokens(client_id={self.client_id!r}, "
            f"installation_id={self.installation_id}, api_url={self.api_url!r})"
        )

    def _jwt(self) -> str:
        return make_app_jwt(self.client_id, self._key, self._clock())

    def token(self) -> str:
        """Return the cached installation token, fetching a new one when it is due.

        Raises:
            GithubAppAuthError: If GitHub refuses the app's JWT (401) or the installation (404).
            GithubClientError: If the exchange fails otherwise.
        """
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            assert self._token is not None  # noqa: S101 - _fetch sets it or raises
            return self._token

    def renew(self, rejected: str) -> bool:
        """Drop ``rejected`` if it is the cached token; a fresh one is fetched at the next use.

        Args:
            rejected: The token GitHub answered 401 to.

        Returns:
            True: :meth:`token` gives a token other than ``rejected``.
        """
        with self._lock:
            if self._token == rejected:
                self._token = None
                logger.info(
                    "GitHub refused the installation token of installation %d: renewing it",
                    self.installation_id,
                )
        return True

    def _fetch(self) -> None:
        url = f"/app/installations/{self.installation_id}/access_tokens"
        asked = self._clock()
        try:
            data = self._retrier.request("POST", url, None, self._retrier.budget())
        except errors.GithubTokenError as exc:
            raise errors.GithubAppAuthError(
                f"GitHub refused the JWT of GitHub App {self.client_id!r} "
                f"({_message(self._exchange.last) or 'Bad credentials'}): the private key of "
                f"{KEY_OPTION} is revoked or not this app's, or {CLIENT_ID_OPTION} is wrong",
                status=401,
                option=KEY_OPTION,
            ) from exc
        except errors.GithubNotFoundError as exc:
            raise errors.GithubAppAuthError(
                f"GitHub App {self.client_id!r} cannot access installation "
                f"{self.installation_id} (404): check {INSTALLATION_OPTION} and that the app is "
                "installed on the repository or organisation",
                status=404,
                option=INSTALLATION_OPTION,
            ) from exc
        try:
            token = json_str(data["token"])
            expires = parse_time(data["expires_at"]).timestamp()
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.GithubApiError(
                "GitHub answered a malformed installation token", status=201
            ) from exc
        lifetime = max(expires - asked, 0.0)
        self._token = token
        self._renew_at = expires - min(REFRESH_MARGIN, lifetime * REFRESH_FRACTION)
        self.fetches += 1
        logger.info(
            "got an installation token of installation %d (valid %.0fs)",
            self.installation_id,
            lifetime,
        )


_SHARED: dict[tuple[str, str, int, str], InstallationTokens] = {}
_SHARED_LOCK = threading.Lock()


def installation_tokens(
    client_id: str, installation_id: int, private_key: str, api_url: str
) -> InstallationTokens:
    """Return this process's source of an installation's tokens (one per app, key and API).

    Args:
        client_id: The app's client ID (or app ID).
        installation_id: The installation.
        private_key: The app's PEM private key. Secret.
        api_url: The REST API base URL.

    Raises:
        ValueError: If the key is not an RSA PEM private key.
    """
    digest = hashlib.sha256(private_key.strip().encode()).hexdigest()
    key = (api_url.strip().rstrip("/"), client_id, int(installation_id), digest)
    with _SHARED_LOCK:
        source = _SHARED.get(key)
        if source is None:
            source = InstallationTokens(client_id, installation_id, private_key, api_url)
            _SHARED[key] = source
        return source


APP_DOCUMENT_KEY = "github_app"


def app_document(client_id: str, installation_id: int, private_key: str) -> str:
    """Return the app's credentials as the JSON text a service reads from its credentials file.

    A file holding a bare token is a personal access token; one holding this document is the
    app (see :func:`source_from_text`). Secret: write it 0600.

    Args:
        client_id: The app's client ID (or app ID).
        installation_id: The installation.
        private_key: The app's PEM private key. Secret.
    """
    body = {
        "client_id": client_id,
        "installation_id": int(installation_id),
        "private_key": private_key,
    }
    return json.dumps({APP_DOCUMENT_KEY: body}, sort_keys=True)


def source_from_text(text: str, api_url: str) -> CredentialSource:
    """Return the credential source a credentials file holds (a token, or :func:`app_document`).

    Args:
        text: The file's content. Secret.
        api_url: The REST API base URL.

    Raises:
        ValueError: If the text is empty, or an app document that is malformed or whose key is
            not an RSA PEM key (the message never quotes the secret).
    """
    text = text.strip()
    if not text.startswith("{"):
        return StaticToken(text)
    try:
        app = json.loads(text)[APP_DOCUMENT_KEY]
        client_id, installation_id = str(app["client_id"]), int(app["installation_id"])
        private_key = str(app["private_key"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed GitHub App credentials ({type(exc).__name__})") from None
    return installation_tokens(client_id, installation_id, private_key, api_url)
