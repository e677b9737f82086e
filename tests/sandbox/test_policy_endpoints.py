"""The sandbox's repository policy endpoints, validated against sandbox/openapi/policy-subset.json.

Every /api/v3 response on a path of the policy subset is validated against it (openapi-core);
the other paths go to the runners-subset checker of ``sandbox_openapi``. The policy service's
GitHub client (``GithubClient`` through PyGithub) is exercised against the same endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

import errors
from github_api.client import GithubClient
from github_api.types import BranchProtection, GitHubRepo
from sandbox.server import SandboxServer
from sandbox.web import Request, Response
from tests.sandbox.sandbox_openapi import (
    SPEC_HOST,
    Checker,
    _allow_null_in_nullable_enums,
    _OARequest,
    _OAResponse,
    _short,
)
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN, RO_TOKEN

POLICY_SPEC = Path(__file__).resolve().parents[2] / "sandbox" / "openapi" / "policy-subset.json"
API_PREFIX = "/api/v3"
REPO = "octo/app"


@lru_cache(maxsize=1)
def policy_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(POLICY_SPEC.read_text())
    _allow_null_in_nullable_enums(spec)
    return spec


@lru_cache(maxsize=1)
def policy_openapi() -> OpenAPI:
    return OpenAPI.from_dict(policy_spec())


@dataclass
class PolicyChecker(Checker):
    """Validates policy-subset paths against policy-subset.json, the rest as ``Checker`` does."""

    policy_validated: int = 0

    def check(self, request: Request, response: Response) -> str | None:
        path = request.path[len(API_PREFIX) :] or "/"
        oa_request = _OARequest(
            host_url=SPEC_HOST,
            path=path,
            method=request.method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict([(k, v) for k, vs in request.query.items() for v in vs]),
                header=Headers(list(request.headers.items())),
            ),
            content_type=request.header("Content-Type") or "application/json",
            body=request.body or None,
        )
        oa_response = _OAResponse(
            data=response.body,
            status_code=response.status,
            content_type=(response.content_type or "").split(";")[0],
            headers=Headers(response.headers),
        )
        try:
            policy_openapi().validate_response(oa_request, oa_response)
        except Exception as exc:
            cause = exc if isinstance(exc, (PathError, ResponseNotFound)) else exc.__cause__
            if isinstance(cause, PathError):
                return super().check(request, response)  # not a policy path
            if isinstance(cause, ResponseNotFound):
                # An undocumented status (401, 403, 5xx...): GitHub's basic-error body.
                from openapi_schema_validator import OAS30Validator

                schema = policy_spec()["components"]["schemas"]["basic-error"]
                OAS30Validator(schema).validate(json.loads(response.body))
                self.policy_validated += 1
                return None
            found = getattr(exc, "schema_errors", None) or getattr(cause, "schema_errors", [])
            detail = "; ".join(_short(e) for e in found) or str(exc)
            return f"{request.method} {path} -> {response.status}: {type(exc).__name__}: {detail}"
        self.policy_validated += 1
        return None


@pytest.fixture
def checker() -> PolicyChecker:
    return PolicyChecker()


@pytest.fixture
def sandbox(checker: PolicyChecker) -> Iterator[SandboxServer]:
    server = SandboxServer(token=ADMIN_TOKEN, readonly_token=RO_TOKEN, port=0)
    server.observers.append(checker.observe)
    with server:
        yield server
    assert not checker.errors, "responses not matching policy-subset.json:\n" + "\n".join(
        checker.errors
    )


def control(sandbox: SandboxServer, path: str, body: Any) -> requests.Response:
    return requests.post(f"{sandbox.base_url}/_sandbox{path}", json=body, timeout=10)


def api(sandbox: SandboxServer, path: str, token: str = ADMIN_TOKEN) -> requests.Response:
    headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
    return requests.get(f"{sandbox.api_url}{path}", headers=headers, timeout=10)


def test_collaborator_permission_levels(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    for user, level in [("m", "maintain"), ("t", "triage"), ("w", "write"), ("n", "none")]:
        assert (
            control(
                sandbox,
                "/collaborators",
                {"repository": REPO, "username": user, "permission": level},
            ).status_code
            == 200
        )
    expected = {
        "m": ("write", "maintain"),
        "t": ("read", "triage"),
        "w": ("write", "write"),
        "n": ("none", "none"),
        "octo": ("admin", "admin"),
        "stranger": ("read", "read"),
    }
    for user, (permission, role) in expected.items():
        reply = api(sandbox, f"/repos/{REPO}/collaborators/{user}/permission")
        assert reply.status_code == 200
        data = reply.json()
        assert (data["permission"], data["role_name"]) == (permission, role)
        assert data["user"]["login"] == user
    assert checker.policy_validated == len(expected)


def test_branch_protection(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    reply = api(sandbox, f"/repos/{REPO}/branches/main/protection")
    assert reply.status_code == 404 and reply.json()["message"] == "Branch not protected"
    body = {"repository": REPO, "branch": "release/1.0", "required_approving_review_count": 2}
    assert control(sandbox, "/branch-protection", body).status_code == 200
    reply = api(sandbox, f"/repos/{REPO}/branches/release%2F1.0/protection")
    assert reply.status_code == 200
    assert reply.json()["required_pull_request_reviews"]["required_approving_review_count"] == 2
    body = {"repository": REPO, "branch": "main", "required_approving_review_count": None}
    control(sandbox, "/branch-protection", body)
    assert (
        "required_pull_request_reviews"
        not in api(sandbox, f"/repos/{REPO}/branches/main/protection").json()
    )
    # Reading protection needs admin rights (the read-only token gets 403).
    assert api(sandbox, f"/repos/{REPO}/branches/main/protection", RO_TOKEN).status_code == 403
    control(
        sandbox, "/branch-protection", {"repository": REPO, "branch": "main", "protected": False}
    )
    assert api(sandbox, f"/repos/{REPO}/branches/main/protection").status_code == 404
    assert checker.policy_validated == 5


def test_pull_requests(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    made = control(
        sandbox, "/pulls", {"repository": REPO, "author": "eve", "head_repository": "eve/app"}
    )
    assert made.status_code == 201
    created = made.json()
    number = created["pull_request"]["number"]
    assert created["event_payload"]["pull_request"]["number"] == number == 1
    reply = api(sandbox, f"/repos/{REPO}/pulls/{number}")
    assert reply.status_code == 200
    data = reply.json()
    assert data["head"]["repo"]["full_name"] == "eve/app"
    assert data["head"]["repo"]["owner"]["type"] == "User"
    assert data["base"]["repo"]["full_name"] == REPO and data["user"]["login"] == "eve"
    second = control(sandbox, "/pulls", {"repository": REPO, "author": "dev"}).json()
    assert second["pull_request"]["number"] == 2
    assert second["pull_request"]["head"]["repo"]["full_name"] == REPO
    assert api(sandbox, f"/repos/{REPO}/pulls/99").status_code == 404
    assert api(sandbox, f"/repos/{REPO}/pulls/abc").status_code == 404
    assert checker.policy_validated + checker.validated >= 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/collaborators", {"repository": REPO, "username": "x", "permission": "owner"}),
        ("/collaborators", {"repository": "bad", "username": "x", "permission": "read"}),
        (
            "/branch-protection",
            {"repository": REPO, "branch": "", "required_approving_review_count": 1},
        ),
        (
            "/branch-protection",
            {"repository": REPO, "branch": "m", "required_approving_review_count": 9},
        ),
        ("/pulls", {"repository": REPO}),
        ("/pulls", {"repository": REPO, "author": "a", "number": 0}),
        ("/pulls", [1]),
    ],
)
def test_control_validation(sandbox: SandboxServer, path: str, body: Any) -> None:
    assert control(sandbox, path, body).status_code == 422


def test_github_client_against_the_sandbox(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    github = GithubClient(ADMIN_TOKEN, sandbox.api_url, timeout=5, max_wait=10)
    repo = GitHubRepo("octo", "app")
    control(
        sandbox, "/collaborators", {"repository": REPO, "username": "m", "permission": "maintain"}
    )
    assert github.get_collaborator_permission(repo, "m") == "maintain"
    assert github.get_collaborator_permission(repo, "someone") == "read"
    assert github.get_branch_protection(repo, "feature/x") is None
    control(sandbox, "/branch-protection", {"repository": REPO, "branch": "feature/x"})
    assert github.get_branch_protection(repo, "feature/x") == BranchProtection(1)
    control(sandbox, "/pulls", {"repository": REPO, "author": "eve", "head_repository": "eve/app"})
    pull = github.get_pull_request(repo, 1)
    assert (pull.author, pull.head_repo, pull.head_owner, pull.head_owner_type) == (
        "eve",
        "eve/app",
        "eve",
        "User",
    )
    assert pull.is_fork
    with pytest.raises(errors.GithubNotFoundError):
        github.get_pull_request(repo, 5)
    readonly = GithubClient(RO_TOKEN, sandbox.api_url, timeout=5, max_wait=10)
    with pytest.raises(errors.GithubPermissionError):
        readonly.get_branch_protection(repo, "main")
    assert checker.policy_validated == 7


def queue(sandbox: SandboxServer, **body: Any) -> dict[str, Any]:
    reply = control(sandbox, "/jobs", {"repository": REPO, "labels": ["self-hosted"], **body})
    assert reply.status_code == 201, reply.text
    job: dict[str, Any] = reply.json()
    return job


def test_workflow_runs(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    push = queue(sandbox, event="push", ref="refs/heads/main")
    reply = api(sandbox, f"/repos/{REPO}/actions/runs/{push['run_id']}")
    assert reply.status_code == 200
    run = reply.json()
    assert (run["id"], run["event"], run["head_branch"], run["status"]) == (
        push["run_id"],
        "push",
        "main",
        "queued",
    )
    assert run["pull_requests"] == [] and run["head_repository"]["full_name"] == REPO
    # A pull request from a branch of the repository: GitHub links it to the run.
    own = control(sandbox, "/pulls", {"repository": REPO, "author": "dev"}).json()
    job = queue(
        sandbox,
        event="pull_request",
        ref="refs/pull/1/merge",
        event_payload=own["event_payload"],
    )
    run = api(sandbox, f"/repos/{REPO}/actions/runs/{job['run_id']}").json()
    assert [p["number"] for p in run["pull_requests"]] == [own["pull_request"]["number"]]
    assert run["head_sha"] == own["pull_request"]["head"]["sha"] != job["head_sha"]
    # From an organisation's fork: no pull request linked (as GitHub does), the fork as head.
    body = {
        "repository": REPO,
        "author": "eve",
        "head_repository": "partner/app",
        "head_owner_type": "Organization",
    }
    fork = control(sandbox, "/pulls", body).json()
    job = queue(sandbox, event="pull_request", event_payload=fork["event_payload"])
    run = api(sandbox, f"/repos/{REPO}/actions/runs/{job['run_id']}").json()
    assert run["pull_requests"] == []
    assert run["head_repository"]["full_name"] == "partner/app"
    assert run["head_repository"]["owner"]["type"] == "Organization"
    assert api(sandbox, f"/repos/{REPO}/actions/runs/999999").status_code == 404
    assert api(sandbox, f"/repos/octo/other/actions/runs/{push['run_id']}").status_code == 404
    assert checker.policy_validated >= 5


def test_run_records_and_head_moves(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    record = {"repository": REPO, "run_id": 9001, "event": "pull_request", "head_sha": "f" * 40}
    assert control(sandbox, "/runs", record).status_code == 200
    queue(sandbox, event="push", ref="refs/heads/main", run_id=9001)
    run = api(sandbox, f"/repos/{REPO}/actions/runs/9001").json()
    assert (run["event"], run["head_sha"], run["head_branch"]) == (
        "pull_request",
        "f" * 40,
        "main",
    )
    made = control(sandbox, "/pulls", {"repository": REPO, "author": "eve"}).json()
    number = made["pull_request"]["number"]
    moved = {"repository": REPO, "number": number, "head_sha": "e" * 40}
    assert control(sandbox, "/pulls/head", moved).status_code == 200
    assert api(sandbox, f"/repos/{REPO}/pulls/{number}").json()["head"]["sha"] == "e" * 40
    assert control(sandbox, "/pulls/head", {**moved, "number": 99}).status_code == 404
    for bad in (
        {"repository": REPO, "run_id": 0},
        {"repository": REPO, "run_id": 1, "pull_requests": [True]},
        {"repository": REPO, "run_id": 1, "head_owner_type": "Bot"},
    ):
        assert control(sandbox, "/runs", bad).status_code == 422
    assert checker.policy_validated >= 2


def test_github_client_reads_workflow_runs(sandbox: SandboxServer, checker: PolicyChecker) -> None:
    github = GithubClient(ADMIN_TOKEN, sandbox.api_url, timeout=5, max_wait=10)
    repo = GitHubRepo("octo", "app")
    job = queue(sandbox, event="workflow_dispatch", ref="refs/heads/release/1.0")
    run = github.get_workflow_run(repo, job["run_id"])
    assert (run.event, run.head_branch, run.head_sha, run.status) == (
        "workflow_dispatch",
        "release/1.0",
        job["head_sha"],
        "queued",
    )
    assert (run.repository, run.head_repository, run.pull_requests) == (REPO, REPO, ())
    with pytest.raises(errors.GithubNotFoundError):
        github.get_workflow_run(repo, 123456)
    assert checker.policy_validated == 2
