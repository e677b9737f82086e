"""GithubClient's repository-policy methods over a scripted transport seam."""

from __future__ import annotations

import json
from typing import Any

import pytest

import errors
from github_api.client import GithubClient
from github_api.parse import HttpReply
from github_api.types import BranchProtection, GitHubRepo

REPO = GitHubRepo("octo", "app")


class Transport:
    def __init__(self, *replies: HttpReply) -> None:
        self.replies = list(replies)
        self.urls: list[str] = []

    def send(self, verb: str, url: str, params: Any, body: Any) -> HttpReply:
        self.urls.append(f"{verb} {url}")
        return self.replies.pop(0)


def client(*replies: HttpReply) -> tuple[GithubClient, Transport]:
    transport = Transport(*replies)
    github = GithubClient(
        "ghp_test-token",
        "https://ghes.example/api/v3",
        max_wait=5,
        transport=transport,
        sleep=lambda _: None,
    )
    return github, transport


def ok(body: Any) -> HttpReply:
    return HttpReply(200, {}, json.dumps(body))


def error(status: int, message: str = "Not Found") -> HttpReply:
    return HttpReply(status, {}, json.dumps({"message": message}))


@pytest.mark.parametrize(
    ("permission", "role", "expected"),
    [
        ("admin", "admin", "admin"),
        ("write", "maintain", "maintain"),
        ("write", "write", "write"),
        ("read", "triage", "triage"),
        ("read", "read", "read"),
        ("none", "none", "none"),
        ("write", "custom-role", "write"),
    ],
)
def test_collaborator_permission(permission: str, role: str, expected: str) -> None:
    github, transport = client(ok({"permission": permission, "role_name": role, "user": None}))
    assert github.get_collaborator_permission(REPO, "some user") == expected
    assert transport.urls == ["GET /repos/octo/app/collaborators/some%20user/permission"]


def test_collaborator_permission_errors() -> None:
    github, _ = client(error(404))
    with pytest.raises(errors.GithubNotFoundError):
        github.get_collaborator_permission(REPO, "ghost")
    github, _ = client(ok({"permission": "owner?", "role_name": "x", "user": None}))
    with pytest.raises(errors.GithubApiError, match="malformed collaborator permission"):
        github.get_collaborator_permission(REPO, "eve")
    with pytest.raises(ValueError):
        github.get_collaborator_permission(REPO, "")


def test_branch_protection() -> None:
    body = {
        "url": "x",
        "required_pull_request_reviews": {
            "url": "x",
            "required_approving_review_count": 2,
            "require_code_owner_reviews": True,
            "dismiss_stale_reviews": False,
        },
        "enforce_admins": {"url": "x", "enabled": True},
        "allow_force_pushes": {"enabled": False},
    }
    github, transport = client(
        ok(body), ok({"url": "x"}), ok({"required_pull_request_reviews": {}})
    )
    protection = github.get_branch_protection(REPO, "release/1.0")
    assert protection == BranchProtection(2, True, False, True, False)
    assert protection.requires_reviews
    assert transport.urls == ["GET /repos/octo/app/branches/release%2F1.0/protection"]
    assert github.get_branch_protection(REPO, "main") == BranchProtection(None)
    # GitHub leaves the count out when it is the default, 1.
    assert github.get_branch_protection(REPO, "main") == BranchProtection(1)


def test_unprotected_branch_is_none_and_errors_raise() -> None:
    github, _ = client(error(404, "Branch not protected"))
    assert github.get_branch_protection(REPO, "dev") is None
    github, _ = client(error(403, "Resource not accessible by personal access token"))
    with pytest.raises(errors.GithubPermissionError):
        github.get_branch_protection(REPO, "dev")
    github, _ = client(error(500), error(502), error(503), error(500))
    with pytest.raises(errors.GithubApiError):
        github.get_branch_protection(REPO, "dev")


def pull_json(head_repo: Any) -> dict[str, Any]:
    return {
        "number": 7,
        "state": "open",
        "user": {"login": "eve", "type": "User"},
        "head": {"ref": "feature", "sha": "a" * 40, "repo": head_repo},
        "base": {"ref": "main", "sha": "b" * 40, "repo": {"full_name": "octo/app"}},
    }


def test_pull_request() -> None:
    fork = {"full_name": "eve/app", "owner": {"login": "eve", "type": "User"}}
    github, transport = client(ok(pull_json(fork)), ok(pull_json(None)))
    pull = github.get_pull_request(REPO, 7)
    assert (pull.author, pull.head_repo, pull.head_owner, pull.head_owner_type) == (
        "eve",
        "eve/app",
        "eve",
        "User",
    )
    assert pull.is_fork and pull.base_repo == "octo/app" and pull.head_sha == "a" * 40
    assert transport.urls == ["GET /repos/octo/app/pulls/7"]
    deleted = github.get_pull_request(REPO, 7)
    assert deleted.head_repo is None and deleted.head_owner is None and deleted.is_fork


def test_pull_request_errors() -> None:
    github, _ = client(error(404))
    with pytest.raises(errors.GithubNotFoundError):
        github.get_pull_request(REPO, 99)
    github, _ = client(ok({"number": 7}))
    with pytest.raises(errors.GithubApiError, match="malformed pull request"):
        github.get_pull_request(REPO, 7)


def run_json(head: dict[str, Any] | None, pulls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": 42,
        "event": "pull_request",
        "status": "in_progress",
        "head_branch": "feature",
        "head_sha": "a" * 40,
        "head_repository": head,
        "repository": {"full_name": "octo/app"},
        "pull_requests": pulls,
    }


def test_workflow_run() -> None:
    fork = {"full_name": "partner/app", "owner": {"login": "partner", "type": "Organization"}}
    own = {"number": 7, "head": {"ref": "feature"}, "base": {"ref": "main"}}
    github, transport = client(ok(run_json(fork, [])), ok(run_json(None, [own])))
    run = github.get_workflow_run(REPO, 42)
    assert (run.id, run.event, run.status, run.head_branch, run.head_sha) == (
        42,
        "pull_request",
        "in_progress",
        "feature",
        "a" * 40,
    )
    assert (run.repository, run.head_repository, run.head_owner_type) == (
        "octo/app",
        "partner/app",
        "Organization",
    )
    assert run.pull_requests == ()
    assert transport.urls == ["GET /repos/octo/app/actions/runs/42"]
    linked = github.get_workflow_run(REPO, 42)
    assert linked.pull_requests == (7,) and linked.head_repository is None


def test_workflow_run_errors() -> None:
    github, _ = client(error(404))
    with pytest.raises(errors.GithubNotFoundError):
        github.get_workflow_run(REPO, 42)
    for broken in ({"id": 42}, {**run_json(None, []), "pull_requests": {"number": 1}}):
        github, _ = client(ok(broken))
        with pytest.raises(errors.GithubApiError, match="malformed workflow run"):
            github.get_workflow_run(REPO, 42)
