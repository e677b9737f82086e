"""JSON shapes of the model objects, as GitHub's REST API and webhooks send them."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sandbox.state import Job, Runner, RunnerGroup, SandboxState, iso


def node_id(kind: str, number: int) -> str:
    """A GraphQL-style node id for an object.

    Args:
        kind: object type, e.g. "CheckRun".
        number: its database id.

    Returns:
        An opaque, stable string.
    """
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


def stable_id(text: str) -> int:
    """A stable positive integer id for a name (repositories, users).

    Args:
        text: the name.

    Returns:
        An id below 2**31.
    """
    return int.from_bytes(hashlib.sha256(text.lower().encode()).digest()[:4], "big") >> 1


def runner_json(runner: Runner, state: SandboxState, now: float) -> dict[str, Any]:
    """The ``runner`` schema.

    Args:
        runner: the runner.
        state: the model (for the online window).
        now: current epoch.

    Returns:
        The JSON object.
    """
    return {
        "id": runner.id,
        "name": runner.name,
        "os": runner.os,
        "status": runner.status(now, state.online_window),
        "busy": runner.busy,
        "ephemeral": runner.ephemeral,
        "runner_group_id": runner.group_id,
        "version": runner.version,
        "labels": [{"id": lb.id, "name": lb.name, "type": lb.type} for lb in runner.labels],
    }


def job_json(job: Job, api_url: str, base_url: str) -> dict[str, Any]:
    """The ``job`` schema.

    Args:
        job: the job.
        api_url: "http://host:port/api/v3".
        base_url: "http://host:port".

    Returns:
        The JSON object.
    """
    repo_api = f"{api_url}/repos/{job.repository}"
    return {
        "id": job.id,
        "run_id": job.run_id,
        "workflow_name": job.workflow,
        "head_branch": job.head_branch,
        "run_url": f"{repo_api}/actions/runs/{job.run_id}",
        "run_attempt": job.run_attempt,
        "node_id": node_id("CheckRun", job.id),
        "head_sha": job.head_sha,
        "url": f"{repo_api}/actions/jobs/{job.id}",
        "html_url": f"{base_url}/{job.repository}/actions/runs/{job.run_id}/job/{job.id}",
        "status": job.status,
        "conclusion": job.conclusion,
        "created_at": iso(job.created_at),
        # GitHub reports a queued job's started_at as its creation time (the field is required).
        "started_at": iso(job.started_at if job.started_at is not None else job.created_at),
        "completed_at": iso(job.completed_at),
        "name": job.name,
        "steps": [
            {
                "name": step.name,
                "status": step.status,
                "conclusion": step.conclusion,
                "number": step.number,
                "started_at": iso(step.started_at),
                "completed_at": iso(step.completed_at),
            }
            for step in job.steps
        ],
        "check_run_url": f"{repo_api}/check-runs/{job.id}",
        "labels": list(job.labels),
        "runner_id": job.runner_id,
        "runner_name": job.runner_name,
        "runner_group_id": job.runner_group_id,
        "runner_group_name": job.runner_group_name,
    }


def group_json(group: RunnerGroup, org: str, api_url: str) -> dict[str, Any]:
    """The ``runner-groups-org`` schema.

    Args:
        group: the group.
        org: organization login.
        api_url: API root URL.

    Returns:
        The JSON object.
    """
    url = f"{api_url}/orgs/{org}/actions/runner-groups/{group.id}"
    return {
        "id": group.id,
        "name": group.name,
        "visibility": group.visibility,
        "default": group.default,
        "runners_url": f"{url}/runners",
        "hosted_runners_url": f"{url}/hosted-runners",
        "inherited": False,
        "allows_public_repositories": False,
        "restricted_to_workflows": False,
        "selected_workflows": [],
        "workflow_restrictions_read_only": False,
    }


def user_json(login: str, api_url: str, base_url: str, kind: str = "User") -> dict[str, Any]:
    """A ``simple-user`` object.

    Args:
        login: user or organization login.
        api_url: API root URL.
        base_url: web root URL.
        kind: "User" or "Organization".

    Returns:
        The JSON object.
    """
    uid = stable_id(login)
    url = f"{api_url}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": node_id(kind, uid),
        "avatar_url": f"{base_url}/avatars/{login}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{base_url}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "site_admin": False,
    }


def org_json(login: str, api_url: str, base_url: str) -> dict[str, Any]:
    """An organization object, as GET /orgs/{org} answers.

    Args:
        login: organization login.
        api_url: API root URL.
        base_url: web root URL.

    Returns:
        The JSON object.
    """
    oid = stable_id(login)
    url = f"{api_url}/orgs/{login}"
    return {
        "login": login,
        "id": oid,
        "node_id": node_id("Organization", oid),
        "url": url,
        "repos_url": f"{url}/repos",
        "hooks_url": f"{url}/hooks",
        "members_url": f"{url}/members{{/member}}",
        "avatar_url": f"{base_url}/avatars/{login}",
        "html_url": f"{base_url}/{login}",
        "description": None,
        "type": "Organization",
    }


def repository_json(full_name: str, api_url: str, base_url: str) -> dict[str, Any]:
    """A short repository object, as in webhook payloads and GET /repos/{owner}/{repo}.

    Args:
        full_name: "owner/repo".
        api_url: API root URL.
        base_url: web root URL.

    Returns:
        The JSON object.
    """
    owner, name = full_name.split("/", 1)
    rid = stable_id(full_name)
    return {
        "id": rid,
        "node_id": node_id("Repository", rid),
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user_json(owner, api_url, base_url, "Organization"),
        "html_url": f"{base_url}/{full_name}",
        "url": f"{api_url}/repos/{full_name}",
        "default_branch": "main",
        "fork": False,
        "archived": False,
        "visibility": "public",
    }
