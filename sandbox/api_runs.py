"""Sandbox workflow runs, as the policy service reads them, and control routes to shape them.

REST (below /api/v3, shape ``workflow-run`` of ``sandbox/openapi/policy-subset.json``):

* ``GET /repos/{owner}/{repo}/actions/runs`` (``status``, ``per_page``, ``page``,
  ``exclude_pull_requests``): the repository's runs, newest first, ``{total_count,
  workflow_runs}``; ``status`` matches a run's status or conclusion (the reconcile's safety net
  lists ``queued`` and ``in_progress`` runs).

* ``GET /repos/{owner}/{repo}/actions/runs/{run_id}``: GitHub's record of a run, made from its
  jobs: the event, the head branch and commit (a pull request's head, from the event payload the
  job was queued with), the head repository (a fork's), the pull requests GitHub links to the
  run (none for a fork's, as GitHub does), status and conclusion from the jobs. 404 for a run
  with no job in the repository.

Control (below /_sandbox, no auth):

* ``POST /runs`` ``{"repository", "run_id", "event"?, "head_branch"?, "head_sha"?,
  "head_repository"?, "head_owner_type"?, "pull_requests"?: [numbers]}`` -> 200: what GitHub
  records for that run, whatever its jobs tell runners (queue the jobs with that ``run_id``
  afterwards): this is how a test makes a runner's report differ from GitHub's record.
* ``POST /pulls/head`` ``{"repository", "number", "head_sha"}`` -> 200: a push to the pull
  request's head branch (its head commit moves on; runs already made keep theirs).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox import render
from sandbox.api_repos import RepoPolicyModel, repository_json
from sandbox.context import Context
from sandbox.model import Job
from sandbox.state import iso
from sandbox.web import HttpError, Request, Response, Router

RUN_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run"
_RECORD_KEYS = (
    "event",
    "head_branch",
    "head_sha",
    "head_repository",
    "head_owner_type",
    "pull_requests",
)


@dataclass
class RunRecords:
    """What GitHub records for runs, where a test set it. Thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _head(job: Job) -> tuple[str, str, str, str]:
    """(head branch, head sha, head repository, its owner type) of a job's run."""
    repository = job.repository
    pull = job.event_payload.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    if isinstance(head, dict):
        repo = _dict(head.get("repo"))
        owner = _dict(repo.get("owner"))
        full_name = repo.get("full_name")
        head_repository = full_name if isinstance(full_name, str) else repository
        kind = owner.get("type")
        owner_type = kind if kind in ("User", "Organization") else "Organization"
        sha = head.get("sha")
        return (
            job.head_branch or "",
            sha if isinstance(sha, str) and sha else job.head_sha,
            head_repository,
            owner_type,
        )
    return job.head_branch or "", job.head_sha, repository, "Organization"


def _status(jobs: list[Job]) -> tuple[str, str | None]:
    if all(j.status == "completed" for j in jobs):
        ok = all(j.conclusion in ("success", "skipped") for j in jobs)
        return "completed", "success" if ok else "failure"
    if any(j.status == "in_progress" for j in jobs):
        return "in_progress", None
    return "queued", None


def _pull_minimal(ctx: Context, repository: str, number: int, job: Job) -> dict[str, Any]:
    pull = job.event_payload.get("pull_request")
    pull = pull if isinstance(pull, dict) else {}

    def side(key: str, name: str) -> dict[str, Any]:
        found = pull.get(key)
        part: dict[str, Any] = found if isinstance(found, dict) else {}
        ref, sha = part.get("ref"), part.get("sha")
        return {
            "ref": ref if isinstance(ref, str) else name,
            "sha": sha if isinstance(sha, str) else job.head_sha,
            "repo": {
                "id": render.stable_id(repository),
                "url": f"{ctx.api_url}/repos/{repository}",
                "name": repository.split("/", 1)[1],
            },
        }

    return {
        "id": render.stable_id(f"{repository}#{number}"),
        "number": number,
        "url": f"{ctx.api_url}/repos/{repository}/pulls/{number}",
        "head": side("head", job.head_branch or "feature"),
        "base": side("base", "main"),
    }


def run_json(ctx: Context, jobs: list[Job], record: dict[str, Any] | None) -> dict[str, Any]:
    """A ``workflow-run`` object.

    Args:
        ctx: Server context (URLs).
        jobs: The run's jobs (at least one).
        record: What a test set GitHub's record to, overriding what the jobs say.

    Returns:
        The JSON object.
    """
    first, record = jobs[0], record or {}
    repository, run_id = first.repository, first.run_id
    branch, sha, head_repository, owner_type = _head(first)
    event = record.get("event", first.event)
    branch = record.get("head_branch", branch)
    sha = record.get("head_sha", sha)
    head_repository = record.get("head_repository", head_repository)
    owner_type = record.get("head_owner_type", owner_type)
    same_repo = head_repository.lower() == repository.lower()
    pulls = record.get("pull_requests")
    if pulls is None:
        number = first.event_payload.get("number")
        linked = event.startswith("pull_request") and same_repo and isinstance(number, int)
        pulls = [number] if linked else []
    status, conclusion = _status(jobs)
    api, web = f"{ctx.api_url}/repos/{repository}", f"{ctx.base_url}/{repository}"
    url = f"{api}/actions/runs/{run_id}"
    created = iso(min(j.created_at for j in jobs))
    started = [j.started_at for j in jobs if j.started_at is not None]
    workflow_id = render.stable_id(f"{repository}:{first.workflow}")
    suite = render.stable_id(f"{repository}:suite:{run_id}")
    actor = render.user_json(first.actor, ctx.api_url, ctx.base_url)
    person = {"name": first.actor, "email": f"{first.actor}@users.noreply.example"}
    return {
        "id": run_id,
        "name": first.workflow,
        "node_id": render.node_id("WorkflowRun", run_id),
        "check_suite_id": suite,
        "check_suite_node_id": render.node_id("CheckSuite", suite),
        "head_branch": branch or None,
        "head_sha": sha,
        "path": f".github/workflows/{first.workflow}.yml",
        "run_number": run_id,
        "run_attempt": first.run_attempt,
        "referenced_workflows": [],
        "event": event,
        "status": status,
        "conclusion": conclusion,
        "workflow_id": workflow_id,
        "url": url,
        "html_url": f"{web}/actions/runs/{run_id}",
        "pull_requests": [_pull_minimal(ctx, repository, n, first) for n in pulls],
        "created_at": created,
        "updated_at": iso(max([first.created_at, *started])),
        "actor": actor,
        "triggering_actor": actor,
        "run_started_at": iso(min(started)) if started else created,
        "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs",
        "check_suite_url": f"{api}/check-suites/{suite}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api}/actions/workflows/{workflow_id}",
        "head_commit": {
            "id": sha,
            "tree_id": hashlib.sha1(sha.encode(), usedforsecurity=False).hexdigest(),
            "message": first.workflow,
            "timestamp": created,
            "author": person,
            "committer": person,
        },
        "repository": repository_json(ctx, repository, "Organization"),
        "head_repository": repository_json(
            ctx, head_repository, "Organization" if same_repo else owner_type
        ),
        "display_title": first.workflow,
    }


def runs_list_json(ctx: Context, runs: RunRecords, request: Request) -> dict[str, Any]:
    """The ``{total_count, workflow_runs}`` answer of a repository's runs, newest first.

    Args:
        ctx: Server context (URLs, jobs).
        runs: The run records tests set.
        request: The request (``owner``, ``repo``; ``status``, ``per_page``, ``page``,
            ``exclude_pull_requests``).

    Returns:
        The JSON object.
    """
    repository = f"{request.params['owner']}/{request.params['repo']}"
    status = request.arg("status")
    per_page = min(max(_int_arg(request, "per_page", 30), 1), 100)
    page = max(_int_arg(request, "page", 1), 1)
    with runs.lock:
        records = dict(runs.records)
    with ctx.state.lock:
        by_run: dict[int, list[Job]] = {}
        for job in sorted(ctx.state.jobs.values(), key=lambda j: j.id):
            if job.repository.lower() == repository.lower():
                by_run.setdefault(job.run_id, []).append(job)
        matching = [
            jobs
            for _, jobs in sorted(by_run.items(), reverse=True)  # newest first, as GitHub
            if status is None or status in _status(jobs)
        ]
        bodies = [
            run_json(ctx, jobs, records.get((repository.lower(), jobs[0].run_id)))
            for jobs in matching[(page - 1) * per_page : page * per_page]
        ]
    if request.arg("exclude_pull_requests") == "true":
        for body in bodies:
            body["pull_requests"] = []
    return {"total_count": len(matching), "workflow_runs": bodies}


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.arg(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise HttpError(422, f"{name} must be an integer") from exc


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(422, "body must be a JSON object")
    return body


def _repository(body: dict[str, Any]) -> str:
    value = body.get("repository")
    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise HttpError(422, "repository must be 'owner/repo'")
    return value


def _positive(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HttpError(422, f"{key} must be a positive integer")
    return value


def _record(body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key in _RECORD_KEYS:
        if key not in body:
            continue
        value = body[key]
        if key == "pull_requests":
            if not isinstance(value, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value
            ):
                raise HttpError(422, "pull_requests must be a list of pull request numbers")
        elif key == "head_owner_type" and value not in ("User", "Organization"):
            raise HttpError(422, "head_owner_type must be User or Organization")
        elif not isinstance(value, str) or not value:
            raise HttpError(422, f"{key} must be a non-empty string")
        record[key] = value
    return record


def register(api: Router, control: Router, ctx: Context, pulls: RepoPolicyModel) -> RunRecords:
    """Add the routes to the REST and control routers.

    Args:
        api: The /api/v3 router.
        control: The /_sandbox router.
        ctx: Server context (URLs, jobs).
        pulls: The pull requests' model (``sandbox.api_repos``).

    Returns:
        The run records the routes share.
    """
    runs = RunRecords()

    @api.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}")
    def workflow_run(request: Request) -> Response:
        params = request.params
        repository = f"{params['owner']}/{params['repo']}"
        try:
            run_id = int(params["run_id"])
        except ValueError as exc:
            raise HttpError(404, "Not Found", doc=RUN_DOCS) from exc
        jobs = ctx.state.run_jobs(repository, run_id)
        if not jobs:
            raise HttpError(404, "Not Found", doc=RUN_DOCS)
        with runs.lock:
            record = runs.records.get((repository.lower(), run_id))
        with ctx.state.lock:
            body = run_json(ctx, jobs, record)
        return Response.json(200, body)

    @api.route("GET", "/repos/{owner}/{repo}/actions/runs")
    def list_runs(request: Request) -> Response:
        return Response.json(200, runs_list_json(ctx, runs, request))

    @control.route("POST", "/runs")
    def set_run(request: Request) -> Response:
        body = _object(request)
        repository, run_id = _repository(body), _positive(body, "run_id")
        record = _record(body)
        with runs.lock:
            runs.records[(repository.lower(), run_id)] = record
        return Response.json(200, {"repository": repository, "run_id": run_id, **record})

    @control.route("POST", "/pulls/head")
    def move_head(request: Request) -> Response:
        body = _object(request)
        repository, number = _repository(body), _positive(body, "number")
        sha = body.get("head_sha")
        if not isinstance(sha, str) or not sha:
            raise HttpError(422, "head_sha must be a non-empty string")
        with pulls.lock:
            pull = pulls.pulls.get((repository.lower(), number))
            if pull is None:
                raise HttpError(404, "no such pull request")
            pull.head_sha = sha
        return Response.json(200, {"repository": repository, "number": number, "head_sha": sha})

    return runs
