"""Webhook deliveries in GitHub's full shape for the intake's tests (example data of our own).

The shape follows GitHub's published ``workflow_job`` webhook (octokit/webhooks
``payload-schemas/api.github.com/workflow_job/queued.schema.json``, GitHub's REST description
``webhook-workflow-job-queued``): ``action``, ``workflow_job`` with every field GitHub sends
(``runner_*`` null while queued), ``repository``, ``organization``, ``sender`` and
``installation``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from intake.signature import sign

API = "https://api.github.com"
SECRET = b"intake-test-secret"
OWNER, REPO = "octo-org", "hello-runners"


def _user(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    base = f"{API}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def repository(api: str = API) -> dict[str, Any]:
    base = f"{api}/repos/{OWNER}/{REPO}"
    return {
        "id": 812_345_678,
        "node_id": "R_kgDOMGx3Tg",
        "name": REPO,
        "full_name": f"{OWNER}/{REPO}",
        "private": True,
        "owner": _user(OWNER, 9_100_200, "Organization"),
        "html_url": f"https://github.com/{OWNER}/{REPO}",
        "description": "Runners for the intake's tests",
        "fork": False,
        "url": base,
        "archive_url": f"{base}/{{archive_format}}{{/ref}}",
        "branches_url": f"{base}/branches{{/branch}}",
        "commits_url": f"{base}/commits{{/sha}}",
        "contents_url": f"{base}/contents/{{+path}}",
        "hooks_url": f"{base}/hooks",
        "issues_url": f"{base}/issues{{/number}}",
        "pulls_url": f"{base}/pulls{{/number}}",
        "assignees_url": f"{base}/assignees{{/user}}",
        "blobs_url": f"{base}/git/blobs{{/sha}}",
        "collaborators_url": f"{base}/collaborators{{/collaborator}}",
        "comments_url": f"{base}/comments{{/number}}",
        "compare_url": f"{base}/compare/{{base}}...{{head}}",
        "contributors_url": f"{base}/contributors",
        "deployments_url": f"{base}/deployments",
        "downloads_url": f"{base}/downloads",
        "events_url": f"{base}/events",
        "forks_url": f"{base}/forks",
        "git_commits_url": f"{base}/git/commits{{/sha}}",
        "git_refs_url": f"{base}/git/refs{{/sha}}",
        "git_tags_url": f"{base}/git/tags{{/sha}}",
        "issue_comment_url": f"{base}/issues/comments{{/number}}",
        "issue_events_url": f"{base}/issues/events{{/number}}",
        "keys_url": f"{base}/keys{{/key_id}}",
        "labels_url": f"{base}/labels{{/name}}",
        "languages_url": f"{base}/languages",
        "merges_url": f"{base}/merges",
        "milestones_url": f"{base}/milestones{{/number}}",
        "notifications_url": f"{base}/notifications{{?since,all,participating}}",
        "releases_url": f"{base}/releases{{/id}}",
        "stargazers_url": f"{base}/stargazers",
        "statuses_url": f"{base}/statuses/{{sha}}",
        "subscribers_url": f"{base}/subscribers",
        "subscription_url": f"{base}/subscription",
        "tags_url": f"{base}/tags",
        "teams_url": f"{base}/teams",
        "trees_url": f"{base}/git/trees{{/sha}}",
        "mirror_url": None,
        "svn_url": f"https://github.com/{OWNER}/{REPO}",
        "created_at": "2025-06-02T08:11:42Z",
        "updated_at": "2026-01-10T17:03:05Z",
        "pushed_at": "2026-01-12T09:30:00Z",
        "git_url": f"git://github.com/{OWNER}/{REPO}.git",
        "ssh_url": f"git@github.com:{OWNER}/{REPO}.git",
        "clone_url": f"https://github.com/{OWNER}/{REPO}.git",
        "homepage": None,
        "size": 412,
        "stargazers_count": 3,
        "watchers_count": 3,
        "language": "Python",
        "has_issues": True,
        "has_projects": False,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "archived": False,
        "disabled": False,
        "open_issues_count": 2,
        "license": None,
        "allow_forking": False,
        "is_template": False,
        "topics": [],
        "visibility": "private",
        "forks": 0,
        "open_issues": 2,
        "watchers": 3,
        "default_branch": "main",
        "custom_properties": {},
    }


def organization(api: str = API) -> dict[str, Any]:
    base = f"{api}/orgs/{OWNER}"
    return {
        "login": OWNER,
        "id": 9_100_200,
        "node_id": "O_kgDOCK6nKA",
        "url": base,
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events",
        "hooks_url": f"{base}/hooks",
        "issues_url": f"{base}/issues",
        "members_url": f"{base}/members{{/member}}",
        "public_members_url": f"{base}/public_members{{/member}}",
        "avatar_url": "https://avatars.githubusercontent.com/u/9100200?v=4",
        "description": "An organisation of our own",
    }


def workflow_job(
    job_id: int, labels: list[str], status: str = "queued", api: str = API
) -> dict[str, Any]:
    repo = f"{api}/repos/{OWNER}/{REPO}"
    run_id = 15_000_000_000 + job_id // 10
    return {
        "id": job_id,
        "run_id": run_id,
        "workflow_name": "ci",
        "head_branch": "main",
        "run_url": f"{repo}/actions/runs/{run_id}",
        "run_attempt": 1,
        "node_id": f"CR_kwDOMGx3Ts8AAAAD{job_id}",
        "head_sha": "4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
        "url": f"{repo}/actions/jobs/{job_id}",
        "html_url": f"https://github.com/{OWNER}/{REPO}/actions/runs/{run_id}/job/{job_id}",
        "status": status,
        "conclusion": None,
        "created_at": "2026-01-12T09:31:04Z",
        "started_at": "2026-01-12T09:31:04Z",
        "completed_at": None,
        "name": "unit tests",
        "steps": [],
        "check_run_url": f"{repo}/check-runs/{job_id}",
        "labels": labels,
        "runner_id": None,
        "runner_name": None,
        "runner_group_id": None,
        "runner_group_name": None,
    }


def queued_event(
    job_id: int, labels: list[str] | None = None, action: str = "queued", api: str = API
) -> dict[str, Any]:
    """A ``workflow_job`` delivery body, as GitHub sends it to an organisation webhook."""
    return {
        "action": action,
        "workflow_job": workflow_job(
            job_id, ["self-hosted", "linux", "x64"] if labels is None else labels, action, api
        ),
        "repository": repository(api),
        "organization": organization(api),
        "sender": _user("mona-dev", 5_550_001),
        "installation": {"id": 61_234_567, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNjEy"},
    }


def ping_event() -> dict[str, Any]:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 520_000_001,
        "hook": {
            "type": "Organization",
            "id": 520_000_001,
            "name": "web",
            "active": True,
            "events": ["workflow_job"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://intake/"},
        },
        "organization": organization(),
        "sender": _user("mona-dev", 5_550_001),
    }


def headers(
    body: bytes, event: str = "workflow_job", delivery: str | None = None, secret: bytes = SECRET
) -> dict[str, str]:
    """The headers GitHub sends with a delivery."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/7a2b1c3",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "520000001",
        "X-GitHub-Hook-Installation-Target-Type": "organization",
        "X-GitHub-Hook-Installation-Target-ID": "9100200",
        "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": sign(secret, body),
    }


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
