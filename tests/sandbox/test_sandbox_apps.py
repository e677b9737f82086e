"""The sandbox's GitHub Apps: JWT checks, expiring installation tokens, the client renewing them.

The JWT is refused with GitHub's 401 messages; installation tokens count in their own
rate-limit window. Responses are checked against sandbox/openapi/app-subset.json by the
``sandbox`` fixture's checker.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

import errors
from github_api.app_jwt import make_app_jwt
from github_api.app_tokens import InstallationTokens
from github_api.client import GithubClient
from github_api.types import GitHubRepo
from sandbox.apps import EXP_INVALID, EXP_TOO_FAR, IAT_INVALID, UNDECODABLE
from sandbox.control_client import SandboxControl
from sandbox.server import SandboxServer
from tests.sandbox.sandbox_openapi import Checker
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN
from tests.unit.app_credentials import private_key, private_pem, public_pem

CLIENT_ID = "Iv23liSandboxApp"
INSTALLATION = 77
REPO = GitHubRepo("octo", "app-repo")
RUNNERS = "/repos/octo/app-repo/actions/runners"


@pytest.fixture
def app(sandbox: SandboxServer) -> SandboxControl:
    control = SandboxControl(sandbox.base_url)
    control.register_app(CLIENT_ID, public_pem(), [INSTALLATION])
    return control


def _exchange(sandbox: SandboxServer, token: str, installation: int = INSTALLATION) -> Any:
    return requests.post(
        f"{sandbox.api_url}/app/installations/{installation}/access_tokens",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
        timeout=10,
    )


def _claims_jwt(**claims: Any) -> str:
    return jwt.encode(claims, private_key(), algorithm="RS256")


def test_an_installation_token_in_githubs_shape_works_until_it_expires(
    sandbox: SandboxServer, app: SandboxControl, api_checker: Checker
) -> None:
    app.set_app_token_lifetime(1.5)
    reply = _exchange(sandbox, make_app_jwt(CLIENT_ID, private_key(), time.time()))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["token"].startswith("ghs_")
    assert body["permissions"]["administration"] == "write"
    headers = {"Authorization": f"token {body['token']}"}
    listed = requests.get(sandbox.api_url + RUNNERS, headers=headers, timeout=10)
    assert listed.status_code == 200
    time.sleep(1.6)
    expired = requests.get(sandbox.api_url + RUNNERS, headers=headers, timeout=10)
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"
    assert ("POST", "/app/installations/{installation_id}/access_tokens", 201) in (
        api_checker.operations
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda now: _claims_jwt(iat=int(now) - 60, exp=int(now) + 900, iss=CLIENT_ID),
         EXP_TOO_FAR),
        (lambda now: _claims_jwt(iat=int(now) - 700, exp=int(now) - 100, iss=CLIENT_ID),
         EXP_INVALID),
        (lambda now: _claims_jwt(iat=int(now) + 300, exp=int(now) + 500, iss=CLIENT_ID),
         IAT_INVALID),
        (lambda now: _claims_jwt(exp=int(now) + 500, iss=CLIENT_ID), IAT_INVALID),
        (lambda now: _claims_jwt(iat=int(now), exp=int(now) + 500, iss="Iv23liSomeoneElse"),
         UNDECODABLE),
        (lambda now: make_app_jwt(
            CLIENT_ID, rsa.generate_private_key(public_exponent=65537, key_size=2048), now),
         UNDECODABLE),
        (lambda now: "not.a.jwt", UNDECODABLE),
    ],
)  # fmt: skip
def test_bad_jwts_get_githubs_401_messages(
    sandbox: SandboxServer, app: SandboxControl, make: Any, message: str
) -> None:
    reply = _exchange(sandbox, make(time.time()))
    assert reply.status_code == 401
    assert reply.json()["message"] == message


def test_an_installation_of_another_app_is_not_found(
    sandbox: SandboxServer, app: SandboxControl
) -> None:
    reply = _exchange(sandbox, make_app_jwt(CLIENT_ID, private_key(), time.time()), 78)
    assert reply.status_code == 404


def test_installation_tokens_count_in_their_installations_window(
    sandbox: SandboxServer, app: SandboxControl
) -> None:
    now = time.time()
    first = _exchange(sandbox, make_app_jwt(CLIENT_ID, private_key(), now)).json()["token"]
    second = _exchange(sandbox, make_app_jwt(CLIENT_ID, private_key(), now)).json()["token"]

    def used(token: str) -> int:
        reply = requests.get(
            sandbox.api_url + RUNNERS, headers={"Authorization": f"token {token}"}, timeout=10
        )
        return int(reply.headers["x-ratelimit-used"])

    assert used(ADMIN_TOKEN) == 1
    assert used(first) == 1
    assert used(second) == 2  # the same installation: one window
    assert used(ADMIN_TOKEN) == 2  # the personal access token's own window


def test_the_client_renews_expiring_tokens_without_a_failed_call(
    sandbox: SandboxServer, app: SandboxControl
) -> None:
    app.set_app_token_lifetime(1.0)
    tokens = InstallationTokens(CLIENT_ID, INSTALLATION, private_pem(), sandbox.api_url)
    client = GithubClient(tokens, sandbox.api_url)
    deadline = time.monotonic() + 3.5
    calls = 0
    while time.monotonic() < deadline:
        assert client.list_runners(REPO, "x") == []
        calls += 1
        time.sleep(0.05)
    assert tokens.fetches >= 3
    assert calls > tokens.fetches
    [record] = app.apps()
    assert record["installations"][0]["tokens_issued"] == tokens.fetches


def test_a_revoked_token_is_renewed_once_by_the_client(
    sandbox: SandboxServer, app: SandboxControl
) -> None:
    tokens = InstallationTokens(CLIENT_ID, INSTALLATION, private_pem(), sandbox.api_url)
    client = GithubClient(tokens, sandbox.api_url)
    client.list_runners(REPO, "x")
    assert app.revoke_token(tokens.token())
    client.list_runners(REPO, "x")
    assert tokens.fetches == 2


def test_a_revoked_key_and_a_missing_installation_say_which(
    sandbox: SandboxServer, app: SandboxControl
) -> None:
    missing = InstallationTokens(CLIENT_ID, 78, private_pem(), sandbox.api_url)
    with pytest.raises(errors.GithubAppAuthError, match="cannot access installation 78"):
        GithubClient(missing, sandbox.api_url).list_runners(REPO, "x")
    app.revoke_app_keys(CLIENT_ID)
    revoked = InstallationTokens(CLIENT_ID, INSTALLATION, private_pem(), sandbox.api_url)
    with pytest.raises(errors.GithubAppAuthError, match="revoked") as caught:
        GithubClient(revoked, sandbox.api_url).list_runners(REPO, "x")
    assert UNDECODABLE in str(caught.value)
