"""The ``workflow_job`` webhook body and headers, shaped like GitHub's.

The shapes follow GitHub's webhook schema (``sandbox/openapi/workflow-job-webhook.json`` holds
the subset the tests check deliveries against): a full ``repository`` (the webhook repository
object, with every URL template and counter GitHub marks required), ``organization`` only when
the repository's owner is an organization, ``sender``, ``installation`` when the hook stands for
a GitHub App's, and the ``workflow_job`` object of the REST ``job`` schema.

Which hook a delivery comes from is a :class:`HookConfig`: every owner is an organization
unless listed in ``user_accounts``; a user's repositories can only have repository hooks, an
organization's deliveries come from its organization hook unless ``hook_target`` is
"repository".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sandbox import render
from sandbox.state import Job

EVENT = "workflow_job"
HOOKSHOT_VERSION = hashlib.sha256(b"sandbox-hookshot").hexdigest()[:7]
USER_AGENT = f"GitHub-Hookshot/{HOOKSHOT_VERSION}"
HOOK_TARGETS = ("organization", "repository")
# A fixed time for the repository's created/updated/pushed fields (GitHub sends real ones).
REPO_CREATED = "2024-01-01T00:00:00Z"

_REPO_URL_TEMPLATES = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


@dataclass
class HookConfig:
    """Which hook the deliveries come from, and what kind of account owns a repository."""

    hook_target: str | None = None  # None: the organization's hook when there is one
    user_accounts: set[str] = field(default_factory=set)
    installation_id: int | None = None

    def owner_kind(self, owner: str) -> str:
        """GitHub's account type of a repository owner.

        Args:
            owner: the login.

        Returns:
            "User" for a listed user account, else "Organization".
        """
        return "User" if owner.lower() in self.user_accounts else "Organization"

    def target(self, full_name: str) -> tuple[str, int]:
        """The hook's installation target of a repository's deliveries.

        Args:
            full_name: "owner/repo".

        Returns:
            ("organization", org id) or ("repository", repository id).
        """
        owner = full_name.split("/", 1)[0]
        if self.owner_kind(owner) == "Organization" and self.hook_target != "repository":
            return "organization", render.stable_id(owner)
        return "repository", render.stable_id(full_name)

    def as_dict(self) -> dict[str, Any]:
        """The configuration for the control API.

        Returns:
            hook_target, user_accounts and installation_id.
        """
        return {
            "hook_target": self.hook_target,
            "user_accounts": sorted(self.user_accounts),
            "installation_id": self.installation_id,
        }


HOOK_FIELDS = ("hook_target", "user_accounts", "installation_id")


def parse_hook_config(body: Any) -> HookConfig:
    """Read a hook configuration from a control request.

    Args:
        body: ``{"hook_target"?: "organization" | "repository" | null, "user_accounts"?:
            [login, ...], "installation_id"?: int | null}``.

    Returns:
        The configuration (omitted fields take their defaults).

    Raises:
        ValueError: for an unknown field or a mistyped value.
    """
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(body) - set(HOOK_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: {list(HOOK_FIELDS)}")
    target = body.get("hook_target")
    if target is not None and target not in HOOK_TARGETS:
        raise ValueError(f"hook_target must be one of {list(HOOK_TARGETS)} or null")
    users = body.get("user_accounts", [])
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
        raise ValueError("user_accounts must be a list of logins")
    installation = body.get("installation_id")
    if installation is not None and (
        isinstance(installation, bool) or not isinstance(installation, int) or installation < 1
    ):
        raise ValueError("installation_id must be a positive integer or null")
    return HookConfig(target, {u.lower() for u in users}, installation)


def hook_id(target_type: str, target_id: int) -> int:
    """A stable id of the hook of a target.

    Args:
        target_type: "organization" or "repository".
        target_id: the organization's or repository's id.

    Returns:
        A positive integer.
    """
    return render.stable_id(f"hook:{target_type}:{target_id}")


def organization_json(login: str, api_url: str, base_url: str) -> dict[str, Any]:
    """The ``organization`` of a webhook (GitHub's organization-simple).

    Args:
        login: organization login.
        api_url: API root URL.
        base_url: web root URL.

    Returns:
        The JSON object.
    """
    oid = render.stable_id(login)
    url = f"{api_url}/orgs/{login}"
    return {
        "login": login,
        "id": oid,
        "node_id": render.node_id("Organization", oid),
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": f"{base_url}/avatars/{login}",
        "description": None,
    }


def repository_json(
    full_name: str, api_url: str, base_url: str, owner_kind: str = "Organization"
) -> dict[str, Any]:
    """The webhook ``repository`` object, with every field GitHub's schema requires.

    Args:
        full_name: "owner/repo".
        api_url: API root URL.
        base_url: web root URL.
        owner_kind: "Organization" or "User".

    Returns:
        The JSON object (render.repository_json's fields plus the rest).
    """
    repo = render.repository_json(full_name, api_url, base_url)
    owner = full_name.split("/", 1)[0]
    repo["owner"] = render.user_json(owner, api_url, base_url, owner_kind)
    url = repo["url"]
    host = base_url.split("://", 1)[-1]
    repo.update({key: url + suffix for key, suffix in _REPO_URL_TEMPLATES.items()})
    repo.update(
        description=None,
        homepage=None,
        language=None,
        mirror_url=None,
        license=None,
        git_url=f"git://{host}/{full_name}.git",
        ssh_url=f"git@{host.split(':', 1)[0]}:{full_name}.git",
        clone_url=f"{base_url}/{full_name}.git",
        svn_url=f"{base_url}/{full_name}",
        created_at=REPO_CREATED,
        updated_at=REPO_CREATED,
        pushed_at=REPO_CREATED,
        size=0,
        stargazers_count=0,
        watchers_count=0,
        watchers=0,
        forks_count=0,
        forks=0,
        open_issues_count=0,
        open_issues=0,
        has_issues=True,
        has_projects=True,
        has_downloads=True,
        has_wiki=True,
        has_pages=False,
        has_discussions=False,
        disabled=False,
        is_template=False,
        allow_forking=True,
        web_commit_signoff_required=False,
        topics=[],
    )
    return repo


def workflow_job_payload(
    action: str, job: Job, api_url: str, base_url: str, config: HookConfig | None = None
) -> dict[str, Any]:
    """A workflow_job event payload.

    Args:
        action: queued, in_progress or completed.
        job: the job (read under the state lock).
        api_url: API root URL.
        base_url: web root URL.
        config: the hook configuration (default: every owner an organization).

    Returns:
        The payload.
    """
    config = config or HookConfig()
    owner = job.repository.split("/", 1)[0]
    kind = config.owner_kind(owner)
    payload: dict[str, Any] = {
        "action": action,
        "workflow_job": render.job_json(job, api_url, base_url),
        "repository": repository_json(job.repository, api_url, base_url, kind),
    }
    if kind == "Organization":
        payload["organization"] = organization_json(owner, api_url, base_url)
    payload["sender"] = render.user_json(job.actor, api_url, base_url)
    if config.installation_id is not None:
        payload["installation"] = {
            "id": config.installation_id,
            "node_id": render.node_id("Installation", config.installation_id),
        }
    return payload


def delivery_headers(delivery_id: str, target: tuple[str, int]) -> dict[str, str]:
    """The headers of a delivery, spelled as GitHub sends them (signature added by the sender).

    Args:
        delivery_id: the X-GitHub-Delivery GUID.
        target: the hook's installation target (type, id).

    Returns:
        The headers.
    """
    target_type, target_id = target
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Event": EVENT,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": str(hook_id(target_type, target_id)),
        "X-GitHub-Hook-Installation-Target-ID": str(target_id),
        "X-GitHub-Hook-Installation-Target-Type": target_type,
    }
