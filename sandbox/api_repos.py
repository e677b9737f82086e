"""Sandbox repository endpoints for the pre-job policy service, and control routes to set them.

The policy service asks for collaborator permissions, branch protection and pull requests.

REST (below /api/v3, shapes of ``sandbox/openapi/policy-subset.json``):

* ``GET /repos/{owner}/{repo}/collaborators/{username}/permission``: the level set through the
  control API; the repository's owner is ``admin``; anyone else ``read`` (a public repository).
* ``GET /repos/{owner}/{repo}/branches/{branch}/protection`` (admin token): the protection set
  through the control API; 404 "Branch not protected" otherwise.
* ``GET /repos/{owner}/{repo}/pulls/{pull_number}``: a pull request made through the control
  API; 404 otherwise.

Control (below /_sandbox, no auth):

* ``POST /collaborators`` ``{"repository": "o/r", "username": "u", "permission": "write"}``
  (admin, maintain, write, triage, read or none) -> 200.
* ``POST /branch-protection`` ``{"repository", "branch", "required_approving_review_count"?:
  1 or null, "enforce_admins"?: bool, "protected"?: false}`` -> 200 (``protected: false``
  removes the protection).
* ``POST /pulls`` ``{"repository", "author", "head_repository"?: "fork/r", "head_ref"?,
  "head_sha"?, "base_ref"?, "number"?, "title"?, "state"?, "head_owner_type"?: "User" or
  "Organization" (a fork's owner)}`` -> 201 ``{"pull_request": <REST
  shape>, "event_payload": <a pull_request event payload to queue a job with>}``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox import render
from sandbox.context import Context
from sandbox.state import iso
from sandbox.web import HttpError, Request, Response, Router

LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
_LEGACY = {"maintain": "write", "triage": "read"}
PROTECTION_DOCS = "https://docs.github.com/rest/branches/branch-protection#get-branch-protection"
PULLS_DOCS = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"


@dataclass
class PullRequest:
    """A pull request of the sandbox."""

    number: int
    repository: str
    author: str
    head_repository: str
    head_ref: str
    head_sha: str
    base_ref: str
    title: str
    state: str
    created_at: float
    head_owner_type: str = "User"


@dataclass
class RepoPolicyModel:
    """Collaborators, protections and pull requests, keyed case-insensitively. Thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)
    protections: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], PullRequest] = field(default_factory=dict)

    def permission(self, repository: str, username: str) -> str:
        """The level of a user on a repository.

        Args:
            repository: "owner/repo".
            username: the login.

        Returns:
            The level set, ``admin`` for the owner, else ``read``.
        """
        with self.lock:
            level = self.permissions.get((repository.lower(), username.lower()))
        if level is not None:
            return level
        return (
            "admin" if repository.split("/", maxsplit=1)[0].lower() == username.lower() else "read"
        )


def _repo(body: dict[str, Any], key: str = "repository") -> str:
    value = body.get(key)
    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise HttpError(422, f"{key} must be 'owner/repo'")
    return value


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise HttpError(422, f"{key} must be a non-empty string")
    return value


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(422, "body must be a JSON object")
    return body


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def register(api: Router, control: Router, ctx: Context) -> RepoPolicyModel:  # noqa: C901, PLR0915
    """Add the routes to the REST and control routers.

    Args:
        api: The /api/v3 router.
        control: The /_sandbox router.
        ctx: Server context (URLs).

    Returns:
        The model the routes share.
    """
    model = RepoPolicyModel()

    @api.route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
    def collaborator_permission(request: Request) -> Response:
        params = request.params
        repository = f"{params['owner']}/{params['repo']}"
        username = unquote(params["username"])
        level = model.permission(repository, username)
        user = render.user_json(username, ctx.api_url, ctx.base_url)
        user.update(role_name=level, permissions=_permissions(level))
        body = {"permission": _LEGACY.get(level, level), "role_name": level, "user": user}
        return Response.json(200, body)

    @api.route("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", admin=True)
    def branch_protection(request: Request) -> Response:
        params = request.params
        repository = f"{params['owner']}/{params['repo']}"
        branch = unquote(params["branch"])
        with model.lock:
            rules = model.protections.get((repository.lower(), branch))
        if rules is None:
            raise HttpError(404, "Branch not protected", doc=PROTECTION_DOCS)
        return Response.json(200, _protection_json(ctx, repository, branch, rules))

    @api.route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    def pull_request(request: Request) -> Response:
        params = request.params
        repository = f"{params['owner']}/{params['repo']}"
        try:
            number = int(params["pull_number"])
        except ValueError as exc:
            raise HttpError(404, "Not Found", doc=PULLS_DOCS) from exc
        with model.lock:
            pull = model.pulls.get((repository.lower(), number))
        if pull is None:
            raise HttpError(404, "Not Found", doc=PULLS_DOCS)
        return Response.json(200, pull_json(ctx, pull))

    @control.route("POST", "/collaborators")
    def set_collaborator(request: Request) -> Response:
        body = _object(request)
        repository, username = _repo(body), _text(body, "username")
        level = _text(body, "permission")
        if level not in LEVELS:
            raise HttpError(422, f"permission must be one of {', '.join(LEVELS)}")
        with model.lock:
            model.permissions[(repository.lower(), username.lower())] = level
        return Response.json(
            200, {"repository": repository, "username": username, "permission": level}
        )

    @control.route("POST", "/branch-protection")
    def set_protection(request: Request) -> Response:
        body = _object(request)
        repository, branch = _repo(body), _text(body, "branch")
        key = (repository.lower(), branch)
        if body.get("protected", True) is False:
            with model.lock:
                model.protections.pop(key, None)
            return Response.json(
                200, {"repository": repository, "branch": branch, "protected": False}
            )
        count = body.get("required_approving_review_count", 1)
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 6
        ):
            raise HttpError(422, "required_approving_review_count must be 0-6 or null")
        admins = body.get("enforce_admins", False)
        if not isinstance(admins, bool):
            raise HttpError(422, "enforce_admins must be a boolean")
        rules = {"required_approving_review_count": count, "enforce_admins": admins}
        with model.lock:
            model.protections[key] = rules
        return Response.json(200, _protection_json(ctx, repository, branch, rules))

    @control.route("POST", "/pulls")
    def add_pull(request: Request) -> Response:
        body = _object(request)
        repository, author = _repo(body), _text(body, "author")
        head_repository = (
            _repo(body, "head_repository") if "head_repository" in body else repository
        )
        number = body.get("number")
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int) or number < 1
        ):
            raise HttpError(422, "number must be a positive integer")
        state = _text(body, "state", "open")
        if state not in ("open", "closed"):
            raise HttpError(422, "state must be open or closed")
        owner_type = _text(body, "head_owner_type", "User")
        if owner_type not in ("User", "Organization"):
            raise HttpError(422, "head_owner_type must be User or Organization")
        with model.lock:
            taken = [n for (repo, n) in model.pulls if repo == repository.lower()]
            number = number or max(taken, default=0) + 1
            head_ref = _text(body, "head_ref", "feature")
            pull = PullRequest(
                number=number,
                repository=repository,
                author=author,
                head_repository=head_repository,
                head_ref=head_ref,
                head_sha=_text(body, "head_sha", _sha(f"{head_repository}:{head_ref}:{number}")),
                base_ref=_text(body, "base_ref", "main"),
                title=_text(body, "title", f"Change {number}"),
                state=state,
                created_at=time.time(),
                head_owner_type=owner_type,
            )
            model.pulls[(repository.lower(), number)] = pull
        rest = pull_json(ctx, pull)
        payload = {
            "action": "opened",
            "number": number,
            "pull_request": rest,
            "repository": rest["base"]["repo"],
            "sender": rest["user"],
        }
        return Response.json(201, {"pull_request": rest, "event_payload": payload})

    return model


def _permissions(level: str) -> dict[str, bool]:
    rank = LEVELS[::-1].index(level) if level in LEVELS else 0  # none=0 ... admin=5
    return {
        "pull": rank >= 1,
        "triage": rank >= 2,
        "push": rank >= 3,
        "maintain": rank >= 4,
        "admin": rank >= 5,
    }


def _protection_json(
    ctx: Context, repository: str, branch: str, rules: dict[str, Any]
) -> dict[str, Any]:
    url = f"{ctx.api_url}/repos/{repository}/branches/{branch}/protection"
    body: dict[str, Any] = {
        "url": url,
        "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": rules["enforce_admins"]},
        "required_signatures": {"url": f"{url}/required_signatures", "enabled": False},
        "required_linear_history": {"enabled": False},
        "allow_force_pushes": {"enabled": False},
        "allow_deletions": {"enabled": False},
        "block_creations": {"enabled": False},
        "required_conversation_resolution": {"enabled": False},
        "lock_branch": {"enabled": False},
        "allow_fork_syncing": {"enabled": False},
    }
    count = rules["required_approving_review_count"]
    if count is not None:
        body["required_pull_request_reviews"] = {
            "url": f"{url}/required_pull_request_reviews",
            "dismiss_stale_reviews": False,
            "require_code_owner_reviews": False,
            "required_approving_review_count": count,
            "require_last_push_approval": False,
        }
    return body


def repository_json(ctx: Context, full_name: str, owner_type: str) -> dict[str, Any]:
    """A full ``repository`` object (as in a pull request's head and base).

    Args:
        ctx: Server context (URLs).
        full_name: "owner/repo".
        owner_type: "User" or "Organization".

    Returns:
        The JSON object.
    """
    owner, name = full_name.split("/", 1)
    api, web = f"{ctx.api_url}/repos/{full_name}", f"{ctx.base_url}/{full_name}"
    created = iso(1_700_000_000.0)
    templated = {
        "archive_url": "{archive_format}{/ref}",
        "assignees_url": "assignees{/user}",
        "blobs_url": "git/blobs{/sha}",
        "branches_url": "branches{/branch}",
        "collaborators_url": "collaborators{/collaborator}",
        "comments_url": "comments{/number}",
        "commits_url": "commits{/sha}",
        "compare_url": "compare/{base}...{head}",
        "contents_url": "contents/{+path}",
        "contributors_url": "contributors",
        "deployments_url": "deployments",
        "downloads_url": "downloads",
        "events_url": "events",
        "forks_url": "forks",
        "git_commits_url": "git/commits{/sha}",
        "git_refs_url": "git/refs{/sha}",
        "git_tags_url": "git/tags{/sha}",
        "hooks_url": "hooks",
        "issue_comment_url": "issues/comments{/number}",
        "issue_events_url": "issues/events{/number}",
        "issues_url": "issues{/number}",
        "keys_url": "keys{/key_id}",
        "labels_url": "labels{/name}",
        "languages_url": "languages",
        "merges_url": "merges",
        "milestones_url": "milestones{/number}",
        "notifications_url": "notifications{?since,all,participating}",
        "pulls_url": "pulls{/number}",
        "releases_url": "releases{/id}",
        "stargazers_url": "stargazers",
        "statuses_url": "statuses/{sha}",
        "subscribers_url": "subscribers",
        "subscription_url": "subscription",
        "tags_url": "tags",
        "teams_url": "teams",
        "trees_url": "git/trees{/sha}",
    }
    rid = render.stable_id(full_name)
    body: dict[str, Any] = {key: f"{api}/{suffix}" for key, suffix in templated.items()}
    body.update(
        id=rid,
        node_id=render.node_id("Repository", rid),
        name=name,
        full_name=full_name,
        owner=render.user_json(owner, ctx.api_url, ctx.base_url, owner_type),
        private=False,
        html_url=web,
        description=None,
        fork=owner_type == "User",
        url=api,
        clone_url=f"{web}.git",
        git_url=f"{web}.git".replace("http", "git", 1),
        ssh_url=f"git@{ctx.base_url.split('://', 1)[-1]}:{full_name}.git",
        svn_url=web,
        mirror_url=None,
        homepage=None,
        language=None,
        forks=0,
        forks_count=0,
        stargazers_count=0,
        watchers_count=0,
        watchers=0,
        size=0,
        default_branch="main",
        open_issues=0,
        open_issues_count=0,
        has_issues=True,
        has_projects=False,
        has_wiki=False,
        has_pages=False,
        has_downloads=False,
        archived=False,
        disabled=False,
        license=None,
        pushed_at=created,
        created_at=created,
        updated_at=created,
        visibility="public",
    )
    return body


def pull_json(ctx: Context, pull: PullRequest) -> dict[str, Any]:
    """A ``pull-request`` object.

    Args:
        ctx: Server context (URLs).
        pull: The pull request.

    Returns:
        The JSON object.
    """
    api = f"{ctx.api_url}/repos/{pull.repository}"
    web = f"{ctx.base_url}/{pull.repository}/pull/{pull.number}"
    pid = render.stable_id(f"{pull.repository}#{pull.number}")
    base_owner_type = "Organization"
    fork = pull.head_repository.lower() != pull.repository.lower()
    head_owner = pull.head_repository.split("/", 1)[0]
    self_url = f"{api}/pulls/{pull.number}"
    issue_url = f"{api}/issues/{pull.number}"
    created = iso(pull.created_at)
    links = {
        "self": self_url,
        "html": web,
        "issue": issue_url,
        "comments": f"{issue_url}/comments",
        "review_comments": f"{self_url}/comments",
        "review_comment": f"{api}/pulls/comments{{/number}}",
        "commits": f"{self_url}/commits",
        "statuses": f"{api}/statuses/{pull.head_sha}",
    }
    return {
        "url": self_url,
        "id": pid,
        "node_id": render.node_id("PullRequest", pid),
        "html_url": web,
        "diff_url": f"{web}.diff",
        "patch_url": f"{web}.patch",
        "issue_url": issue_url,
        "commits_url": links["commits"],
        "review_comments_url": links["review_comments"],
        "review_comment_url": links["review_comment"],
        "comments_url": links["comments"],
        "statuses_url": links["statuses"],
        "number": pull.number,
        "state": pull.state,
        "locked": False,
        "title": pull.title,
        "user": render.user_json(pull.author, ctx.api_url, ctx.base_url),
        "body": None,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": created,
        "updated_at": created,
        "closed_at": None,
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": {
            "label": f"{head_owner}:{pull.head_ref}",
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "repo": repository_json(
                ctx, pull.head_repository, pull.head_owner_type if fork else base_owner_type
            ),
            "user": render.user_json(head_owner, ctx.api_url, ctx.base_url),
        },
        "base": {
            "label": f"{pull.repository.split('/', 1)[0]}:{pull.base_ref}",
            "ref": pull.base_ref,
            "sha": _sha(f"{pull.repository}:{pull.base_ref}"),
            "repo": repository_json(ctx, pull.repository, base_owner_type),
            "user": render.user_json(pull.repository.split("/", 1)[0], ctx.api_url, ctx.base_url),
        },
        "_links": {key: {"href": href} for key, href in links.items()},
        "author_association": "CONTRIBUTOR" if fork else "MEMBER",
        "auto_merge": None,
        "draft": False,
        "merged": False,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    }
