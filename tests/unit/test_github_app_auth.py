"""GitHub App authentication: JWT claims, token renewal, a 401 renewing once, clear errors.

Installation tokens are renewed before they expire; a revoked key or an installation the app
cannot see give errors that say which.

The exchange is tested over a fake HTTP transport (the seam's ``HttpTransport``) with an
injected clock; the transport's renew-once rule against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import errors
from github_api.app_jwt import CLOCK_SKEW, app_jwt_claims, load_app_key, make_app_jwt
from github_api.app_tokens import InstallationTokens, app_document, source_from_text
from github_api.credentials import StaticToken
from github_api.parse import HttpReply
from github_api.transport import PyGithubTransport

CLIENT_ID = "Iv23liAppClient"
NOW = 1_800_000_000.0


def _pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return _pem(rsa_key)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class FakeExchange:
    """Answers POST /app/installations/{id}/access_tokens like GitHub, with scripted statuses."""

    def __init__(self, clock: Clock, lifetime: float = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.statuses: list[int] = []
        self.calls: list[str] = []

    def send(
        self, verb: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> HttpReply:
        self.calls.append(f"{verb} {url}")
        status = self.statuses.pop(0) if self.statuses else 201
        if status != 201:
            message = {401: "A JSON web token could not be decoded", 404: "Not Found"}[status]
            return HttpReply(status, {}, json.dumps({"message": message}))
        expires = datetime.fromtimestamp(self.clock() + self.lifetime, tz=timezone.utc)
        answer = {
            "token": f"ghs_token{len(self.calls)}",
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"administration": "write"},
        }
        return HttpReply(201, {}, json.dumps(answer))


def _tokens(pem: str, exchange: FakeExchange, clock: Clock) -> InstallationTokens:
    return InstallationTokens(
        CLIENT_ID, 42, pem, "http://127.0.0.1:1/api/v3", transport=exchange, clock=clock
    )


# --- the JWT ------------------------------------------------------------------------------------


def test_jwt_is_rs256_backdated_for_skew_and_lasts_under_ten_minutes(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    token = make_app_jwt(CLIENT_ID, rsa_key, NOW)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(
        token,
        rsa_key.public_key(),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == app_jwt_claims(CLIENT_ID, NOW)
    assert claims["iss"] == CLIENT_ID
    assert claims["iat"] == int(NOW) - CLOCK_SKEW == int(NOW) - 60
    assert int(NOW) < claims["exp"] <= int(NOW) + 600
    assert claims["exp"] - claims["iat"] <= 600


def test_jwt_signed_with_another_key_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = make_app_jwt(CLIENT_ID, other, NOW)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token, rsa_key.public_key(), algorithms=["RS256"], options={"verify_exp": False}
        )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: "not a key", "not a PEM private key"),
        (lambda: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "cannot be read"),
        (lambda: _pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key"),
        (
            lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
            "at least 2048",
        ),
    ],
)
def test_keys_that_are_not_rsa_pem_private_keys_are_refused(make: Any, reason: str) -> None:
    text = make()
    with pytest.raises(ValueError, match=reason) as caught:
        load_app_key(text)
    assert "AAAA" not in str(caught.value)


def test_an_encrypted_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    ).decode()
    with pytest.raises(ValueError, match="encrypted"):
        load_app_key(encrypted)


# --- installation tokens -------------------------------------------------------------------------


def test_the_token_is_cached_then_renewed_before_it_expires(pem: str) -> None:
    clock = Clock()
    exchange = FakeExchange(clock, lifetime=3600)
    tokens = _tokens(pem, exchange, clock)
    first = tokens.token()
    clock.now += 3000  # 10 minutes left: more than the 5-minute margin
    assert tokens.token() == first
    assert tokens.fetches == 1
    clock.now += 301  # within 5 minutes of expiry: renewed although still valid
    second = tokens.token()
    assert second != first
    assert tokens.fetches == 2
    assert exchange.calls == ["POST /app/installations/42/access_tokens"] * 2


def test_short_lived_tokens_are_renewed_a_quarter_of_their_life_early(pem: str) -> None:
    clock = Clock()
    tokens = _tokens(pem, FakeExchange(clock, lifetime=8), clock)
    first = tokens.token()
    clock.now += 5.9
    assert tokens.token() == first
    clock.now += 0.2  # 6.1 s of 8: past the 2 s margin
    assert tokens.token() != first


def test_a_401_drops_the_token_once_and_the_next_use_fetches_a_new_one(pem: str) -> None:
    clock = Clock()
    tokens = _tokens(pem, FakeExchange(clock), clock)
    first = tokens.token()
    assert tokens.renew(first) is True
    second = tokens.token()
    assert second != first
    assert tokens.renew(first) is True  # another thread's stale token: the cache stays
    assert tokens.token() == second
    assert tokens.fetches == 2


def test_a_revoked_key_says_so(pem: str) -> None:
    clock = Clock()
    exchange = FakeExchange(clock)
    exchange.statuses = [401]
    with pytest.raises(errors.GithubAppAuthError) as caught:
        _tokens(pem, exchange, clock).token()
    message = str(caught.value)
    assert caught.value.status == 401
    assert "A JSON web token could not be decoded" in message
    assert "revoked" in message and "github-app-private-key-secret-id" in message
    assert isinstance(caught.value, errors.GithubTokenError)  # the charm shows it as Blocked


def test_an_installation_the_app_cannot_access_says_so(pem: str) -> None:
    clock = Clock()
    exchange = FakeExchange(clock)
    exchange.statuses = [404]
    with pytest.raises(errors.GithubAppAuthError) as caught:
        _tokens(pem, exchange, clock).token()
    assert caught.value.status == 404
    assert caught.value.option == "github-app-installation-id"
    assert "cannot access installation 42" in str(caught.value)


def test_the_exchange_retries_a_5xx(pem: str) -> None:
    clock = Clock()
    flaky = _Flaky(FakeExchange(clock))
    tokens = InstallationTokens(
        CLIENT_ID,
        42,
        pem,
        "http://127.0.0.1:1/api/v3",
        transport=flaky,
        clock=clock,
        sleep=lambda _: None,
    )
    assert tokens.token().startswith("ghs_")
    assert flaky.failed


class _Flaky:
    def __init__(self, inner: FakeExchange) -> None:
        self.inner = inner
        self.failed = False

    def send(
        self, verb: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> HttpReply:
        if not self.failed:
            self.failed = True
            return HttpReply(502, {}, "{}")
        return self.inner.send(verb, url, params, body)


def test_no_secret_in_reprs_or_documents_read_back(pem: str) -> None:
    clock = Clock()
    tokens = _tokens(pem, FakeExchange(clock), clock)
    token = tokens.token()
    assert token not in repr(tokens) and "PRIVATE" not in repr(tokens)
    assert "secret" not in repr(StaticToken("secret"))
    document = app_document(CLIENT_ID, 42, pem)
    source = source_from_text(document, "http://127.0.0.1:1/api/v3")
    assert isinstance(source, InstallationTokens)
    assert (source.client_id, source.installation_id) == (CLIENT_ID, 42)
    assert isinstance(source_from_text("ghp_plain\n", "http://x"), StaticToken)
    with pytest.raises(ValueError, match="malformed") as caught:
        source_from_text('{"github_app": {"client_id": "x"}}', "http://x")
    assert "client_id" not in str(caught.value)


# --- the transport's renew-once rule, over real HTTP --------------------------------------------


class _Server(ThreadingHTTPServer):
    good: set[str]
    seen: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        ok = auth.removeprefix("Bearer ") in self.server.good
        body = b'{"ok": true}' if ok else b'{"message": "Bad credentials"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.good, httpd.seen = set(), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


class Rotating:
    """A source whose every renewal gives the next token of a list."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.renewals = 0

    def token(self) -> str:
        return self.tokens[min(self.renewals, len(self.tokens) - 1)]

    def renew(self, rejected: str) -> bool:
        del rejected
        self.renewals += 1
        return True


def _url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/api/v3"


def test_a_401_renews_once_and_the_request_succeeds(server: _Server) -> None:
    server.good = {"fresh"}
    source = Rotating(["expired", "fresh"])
    reply = PyGithubTransport(source, _url(server), 5).send("GET", "/x", None, None)
    assert reply.status == 200
    assert source.renewals == 1
    assert server.seen == ["Bearer expired", "Bearer fresh"]


def test_a_second_401_fails_clearly_without_a_third_try(server: _Server) -> None:
    source = Rotating(["expired", "also-refused", "never"])
    with pytest.raises(errors.GithubTokenError, match="401 twice"):
        PyGithubTransport(source, _url(server), 5).send("GET", "/x", None, None)
    assert source.renewals == 1
    assert len(server.seen) == 2


def test_a_static_token_401_is_final(server: _Server) -> None:
    reply = PyGithubTransport("ghp_refused", _url(server), 5).send("GET", "/x", None, None)
    assert reply.status == 401
    assert server.seen == ["Bearer ghp_refused"]
