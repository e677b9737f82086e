"""A full run authenticated as a GitHub App, on real LXD, while installation tokens expire.

The sandbox (in a test host of the closed test network) knows the app by its public key and
gives installation tokens that live a few seconds; the personal access token the environment
started with is revoked, so every GitHub call of the manager, its runners' registration and the
real policy service (its credentials file holds the app, 0600) goes through installation tokens
that are renewed many times during the run: reconcile, a job gated by the policy service,
reconcile again and flush, with no failed operation.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.state import GithubAppCredentials
from github_api.app_tokens import app_document
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.testnet import TestNet
from lxd.client import LxdClient
from repo_policy.service import ServiceFiles, build_app
from runner_manager_type import LXDFlushMode
from tests.unit.app_credentials import private_pem, public_pem

pytestmark = pytest.mark.lxd

REPO = "octo/gha"
CLIENT_ID = "Iv23liIntegration"
INSTALLATION = 9001
TOKEN_LIFETIME = 3.0  # seconds: every step of the run outlives several tokens
SERVICE_TOKEN = "local-service-token"  # what harness.local gives the manager


def _app() -> GithubAppCredentials:
    return GithubAppCredentials(
        client_id=CLIENT_ID, installation_id=INSTALLATION, private_key=SecretStr(private_pem())
    )


def _tokens_issued(env: LocalEnvironment) -> int:
    [app] = env.control("GET", "/apps")
    return int(app["installations"][0]["tokens_issued"])


@pytest.fixture
def env(
    lxd_client: LxdClient, tmp_path: Path, testnet: TestNet
) -> Iterator[tuple[LocalEnvironment, list[tuple[str, int]]]]:
    options = LocalOptions(app_name="gha", repo=REPO, settings={"busy_delete_wait": 2.0})
    with LocalEnvironment(options, testnet=testnet) as local:
        local.control(
            "POST",
            "/apps",
            {"client_id": CLIENT_ID, "public_key": public_pem(),
             "installations": [{"id": INSTALLATION, "account": "octo"}]},
        )  # fmt: skip
        local.control("POST", "/app-token-lifetime", {"seconds": TOKEN_LIFETIME})
        local.control("POST", "/tokens", {"token": local.token, "revoke": True})
        # The policy gate reads branch protection and the run with the app's tokens.
        local.control(
            "POST",
            "/branch-protection",
            {"repository": REPO, "branch": "main", "required_approving_review_count": 1},
        )
        files = tmp_path / "policy"
        files.mkdir()
        (files / "service-token").write_text(SERVICE_TOKEN)
        credentials = files / "github-token"
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(app_document(CLIENT_ID, INSTALLATION, private_pem()))
        (files / "policy.json").write_text(json.dumps({}))
        app = build_app(
            ServiceFiles(
                token_file=files / "service-token",
                github_token_file=credentials,
                github_api_url=local.sandbox.api_url,
                config_file=files / "policy.json",
            )
        )
        answers: list[tuple[str, int]] = []

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            def start(status: str, headers: Any) -> Any:
                answers.append((environ.get("PATH_INFO", ""), int(status.split(maxsplit=1)[0])))
                return start_response(status, headers)

            return app(environ, start)

        server = local.serve(recording)
        local.options.settings.update(repo_policy_url=server.url)
        local.manager = local.build_manager(token=SecretStr(""), github_app=_app())
        yield local, answers
    assert not [i.name for i in lxd_client.list(prefix="gha-")], "an instance leaked"


def test_reconcile_job_and_flush_as_an_app_while_tokens_expire(
    env: tuple[LocalEnvironment, list[tuple[str, int]]],
) -> None:
    local, answers = env
    manager = local.manager
    began = time.monotonic()
    assert manager.reconcile(2, RESOURCES) == 2
    assert manager.last_report.failed == []
    local.wait_online(2, 60)
    job = local.queue_job(["echo app-marker-$((6 * 7))"])
    (done,) = local.wait_jobs([job["id"]], 90)
    assert done["conclusion"] == "success", done.get("log")
    assert "app-marker-42" in done["log"]
    assert ("/check", 200) in answers, answers  # the gate read GitHub as the app
    deadline = time.monotonic() + 60
    while done["runner_name"] in local.instances():  # the ephemeral runner goes away
        assert time.monotonic() < deadline, "the runner that ran the job stayed"
        time.sleep(0.25)
    # Fast runners (the template) can finish a step within one token: let it expire first.
    time.sleep(TOKEN_LIFETIME + 0.5)
    assert manager.reconcile(2, RESOURCES) == 1  # its replacement, registered as the app
    assert manager.last_report.failed == []
    local.wait_online(2, 60)
    time.sleep(TOKEN_LIFETIME + 0.5)
    assert manager.flush(LXDFlushMode.FLUSH_IDLE) == 2
    assert manager.last_report.failed == []
    assert local.registrations() == []
    elapsed = time.monotonic() - began
    issued = _tokens_issued(local)
    print(f"\nrun {elapsed:.1f} s, {issued} installation tokens of {TOKEN_LIFETIME:g} s issued")
    # Tokens expired during the run and were renewed: more than one per process (manager,
    # policy service) was needed.
    assert issued >= 4
    assert elapsed > 2 * TOKEN_LIFETIME
