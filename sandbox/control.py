"""Control routes under /_sandbox: queue jobs, inject faults, manage tokens, read counters."""

from __future__ import annotations

import queue
import re
import time
from typing import Any

from sandbox import render
from sandbox.auth import ADMIN
from sandbox.context import Context
from sandbox.state import Job, SandboxState, StateError, iso
from sandbox.web import HttpError, Request, Response, Router
from sandbox.webhook_faults import parse_rule
from sandbox.webhook_payload import parse_hook_config
from sandbox.webhooks import WebhookSender

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def set_runner_version(ctx: Context, version: str) -> None:
    """Change the runner version offered for download.

    Args:
        ctx: server context.
        version: "X.Y.Z".

    Raises:
        HttpError: 422 for a malformed version.
    """
    if not VERSION_RE.match(version):
        raise HttpError(422, f"version must look like 2.330.0, got {version!r}")
    with ctx.state.lock:
        ctx.state.runner_version = version


def default_event_payload(
    event: str, repository: dict[str, Any], sender: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    """A minimal payload of the triggering event, when the caller gives none.

    Args:
        event: event name (push, pull_request, ...).
        repository: repository object.
        sender: user object.
        body: the job request (ref, head_sha, head_ref, base_ref).

    Returns:
        The payload.
    """
    payload: dict[str, Any] = {"repository": repository, "sender": sender}
    if event == "push":
        payload.update(ref=body["ref"], after=body["head_sha"], before="0" * 40)
    elif event in ("pull_request", "pull_request_target"):
        payload.update(
            action="opened",
            number=1,
            pull_request={
                "number": 1,
                "head": {"ref": body["head_ref"], "sha": body["head_sha"], "repo": repository},
                "base": {"ref": body["base_ref"], "repo": repository},
            },
        )
    return payload


def _str(body: dict[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise HttpError(422, f"{key} must be a string")
    return value


def _str_list(body: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = body.get(key, default)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise HttpError(422, f"{key} must be a list of strings")
    return list(value)


def job_detail(job: Job, ctx: Context) -> dict[str, Any]:
    """A job for the control API: the REST shape plus the sandbox's own fields.

    Args:
        job: the job.
        ctx: server context.

    Returns:
        The job object with repository, commands, event, ref, actor, log and events.
    """
    with ctx.state.lock:
        detail = render.job_json(job, ctx.api_url, ctx.base_url)
        detail.update(
            repository=job.repository,
            commands=list(job.commands),
            event=job.event,
            ref=job.ref,
            actor=job.actor,
            event_payload=job.event_payload,
            log="".join(job.log),
            events={k: iso(v) for k, v in job.events.items()},
            event_times=dict(job.events),
        )
        return detail


def runner_detail(runner: Any, state: SandboxState, now: float) -> dict[str, Any]:
    """A runner for the control API.

    Args:
        runner: the runner.
        state: the model.
        now: current epoch.

    Returns:
        The REST shape plus scope, last_seen, jit, arch and job_id.
    """
    detail = render.runner_json(runner, state, now)
    detail.update(
        scope={"kind": runner.scope.kind, "name": runner.scope.name},
        last_seen=iso(runner.last_seen),
        jit=runner.jit,
        arch=runner.arch,
        job_id=runner.job_id,
        runner_group_name=runner.group_name,
    )
    return detail


def _queue_job(ctx: Context, body: Any) -> Job:
    if not isinstance(body, dict):
        raise HttpError(422, "body must be a JSON object")
    repository = body.get("repository")
    if not isinstance(repository, str) or not REPO_RE.match(repository):
        raise HttpError(422, "repository must be 'owner/repo'")
    event = _str(body, "event", "push")
    fields = {
        "ref": _str(body, "ref", "refs/heads/main"),
        "head_sha": _str(body, "head_sha", "") or None,
        "head_ref": _str(body, "head_ref", "feature"),
        "base_ref": _str(body, "base_ref", "main"),
    }
    actor = _str(body, "actor", "octocat")
    payload = body.get("event_payload")
    if payload is not None and not isinstance(payload, dict):
        raise HttpError(422, "event_payload must be an object")
    run_id = body.get("run_id")
    if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
        raise HttpError(422, "run_id must be an integer")
    job = ctx.state.queue_job(
        repository,
        _str_list(body, "labels", ["self-hosted"]),
        _str_list(body, "steps", []),
        name=_str(body, "name", "build"),
        workflow=_str(body, "workflow", "ci"),
        event=event,
        ref=fields["ref"] or "refs/heads/main",
        head_sha=fields["head_sha"],
        actor=actor,
        event_payload=payload,
        run_id=run_id,
    )
    if payload is None:
        repo = render.repository_json(repository, ctx.api_url, ctx.base_url)
        sender = render.user_json(actor, ctx.api_url, ctx.base_url)
        fields["head_sha"] = job.head_sha
        with ctx.state.lock:
            job.event_payload = default_event_payload(event, repo, sender, fields)
    return job


def build_router(ctx: Context, webhooks: WebhookSender) -> Router:  # noqa: C901, PLR0915
    """The /_sandbox routes.

    Args:
        ctx: server context.
        webhooks: the webhook sender (deliveries are listed).

    Returns:
        The router (paths below /_sandbox).
    """
    router = Router("/_sandbox")
    state = ctx.state

    @router.route("GET", "/health")
    def health(request: Request) -> Response:
        del request
        return Response.json(200, {"ok": True, "runner_version": state.runner_version})

    @router.route("POST", "/jobs")
    def queue_job(request: Request) -> Response:
        job = _queue_job(ctx, request.json())
        return Response.json(201, job_detail(job, ctx))

    @router.route("GET", "/jobs")
    def list_jobs(request: Request) -> Response:
        status = request.arg("status")
        with state.lock:
            jobs = sorted(state.jobs.values(), key=lambda j: j.id)
            body = [job_detail(j, ctx) for j in jobs if status is None or j.status == status]
        return Response.json(200, body)

    @router.route("GET", "/jobs/{job_id}")
    def get_job(request: Request) -> Response:
        try:
            job = state.get_job(int(request.params["job_id"]))
        except (ValueError, StateError) as exc:
            raise HttpError(404, "Not Found") from exc
        return Response.json(200, job_detail(job, ctx))

    @router.route("POST", "/jobs/{job_id}/cancel")
    def cancel_job(request: Request) -> Response:
        try:
            job = state.cancel_job(int(request.params["job_id"]))
        except ValueError as exc:
            raise HttpError(404, "Not Found") from exc
        except StateError as exc:
            raise HttpError(exc.status, exc.message) from exc
        return Response.json(200, job_detail(job, ctx))

    @router.route("POST", "/reset")
    def reset(request: Request) -> Response:
        del request
        state.reset()
        ctx.faults.clear()
        webhooks.reset()
        ctx.ratelimit.reset()
        ctx.stats.reset()
        return Response.empty(204)

    @router.route("GET", "/runners")
    def list_runners(request: Request) -> Response:
        del request
        now = time.time()
        with state.lock:
            runners = sorted(state.runners.values(), key=lambda r: r.id)
            body = [runner_detail(r, state, now) for r in runners]
        return Response.json(200, body)

    @router.route("POST", "/runner-groups")
    def add_group(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "body must be a JSON object")
        org, name = _str(body, "org", ""), _str(body, "name", "")
        if not org or not name:
            raise HttpError(422, "org and name are required")
        group = state.add_group(org, name, _str(body, "visibility", "all"))
        return Response.json(201, render.group_json(group, org, ctx.api_url))

    @router.route("POST", "/scopes")
    def scopes(request: Request) -> Response:
        body = request.json()
        allow = body.get("allow") if isinstance(body, dict) else "bad"
        if allow is not None and (
            not isinstance(allow, list) or not all(isinstance(x, str) and x for x in allow)
        ):
            raise HttpError(422, "body must be {'allow': ['owner/repo' or 'org', ...] or null}")
        with state.lock:
            state.allowed_scopes = {x.lower() for x in allow} if allow is not None else None
        return Response.json(200, {"allow": sorted(state.allowed_scopes or []) or allow})

    @router.route("POST", "/faults")
    def add_fault(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "body must be a JSON object")
        limit = body.get("rate_limit")
        if limit is not None:
            if not isinstance(limit, dict):
                raise HttpError(422, "rate_limit must be an object")
            remaining, reset_in = limit.get("remaining", 0), limit.get("reset_in", 60)
            if not isinstance(remaining, int) or not isinstance(reset_in, (int, float)):
                raise HttpError(422, "rate_limit needs integer remaining and numeric reset_in")
            ctx.ratelimit.force(remaining, float(reset_in))
            return Response.json(
                201, {"rate_limit": {"remaining": remaining, "reset_in": reset_in}}
            )
        try:
            fault = ctx.faults.add(body)
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        return Response.json(201, fault.as_dict())

    @router.route("GET", "/faults")
    def list_faults(request: Request) -> Response:
        del request
        return Response.json(200, ctx.faults.list())

    @router.route("DELETE", "/faults")
    def clear_faults(request: Request) -> Response:
        del request
        ctx.faults.clear()
        ctx.ratelimit.reset()
        return Response.empty(204)

    @router.route("POST", "/tokens")
    def tokens(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise HttpError(422, "body must be {'token': str, 'access'?: str, 'revoke'?: bool}")
        token = body["token"]
        if body.get("revoke"):
            return Response.json(200, {"token": token, "revoked": ctx.tokens.revoke(token)})
        try:
            ctx.tokens.add(token, _str(body, "access", ADMIN))
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        return Response.json(201, {"token": token, "access": body.get("access", ADMIN)})

    @router.route("GET", "/stats")
    def stats(request: Request) -> Response:
        del request
        now = time.time()
        with state.lock:
            jobs: dict[str, int] = {}
            for job in state.jobs.values():
                jobs[job.status] = jobs.get(job.status, 0) + 1
            runners = list(state.runners.values())
            body = {
                "requests": ctx.stats.snapshot(),
                "runners": {
                    "registered": len(runners),
                    "online": sum(r.status(now, state.online_window) == "online" for r in runners),
                    "busy": sum(r.busy for r in runners),
                },
                "jobs": jobs,
                "rate_limited": ctx.ratelimit.refused,
            }
        return Response.json(200, body)

    @router.route("POST", "/stats/reset")
    def stats_reset(request: Request) -> Response:
        del request
        ctx.stats.reset()
        return Response.empty(204)

    @router.route("GET", "/runner-version")
    def get_version(request: Request) -> Response:
        del request
        return Response.json(200, {"version": state.runner_version})

    @router.route("POST", "/runner-version")
    def post_version(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("version"), str):
            raise HttpError(422, "body must be {'version': 'X.Y.Z'}")
        set_runner_version(ctx, body["version"])
        return Response.json(200, {"version": state.runner_version})

    @router.route("GET", "/downloads/{filename}")
    def download(request: Request) -> Response:
        artifact = ctx.downloads.get(request.params["filename"])
        if artifact is None:
            raise HttpError(404, "Not Found")
        headers = [("Content-Disposition", f"attachment; filename={artifact.filename}")]
        return Response(200, artifact.data, headers, "application/gzip")

    @router.route("GET", "/webhooks")
    def deliveries(request: Request) -> Response:
        del request
        return Response.json(200, [d.as_dict() for d in list(webhooks.deliveries)])

    @router.route("POST", "/webhooks/faults")
    def add_webhook_faults(request: Request) -> Response:
        try:
            rule = parse_rule(request.json())
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        webhooks.faults.set(rule)
        return Response.json(201, rule.as_dict())

    @router.route("GET", "/webhooks/faults")
    def get_webhook_faults(request: Request) -> Response:
        del request
        return Response.json(200, webhooks.faults.snapshot())

    @router.route("DELETE", "/webhooks/faults")
    def clear_webhook_faults(request: Request) -> Response:
        del request
        webhooks.faults.clear()
        return Response.empty(204)

    @router.route("GET", "/webhooks/hook")
    def get_hook(request: Request) -> Response:
        del request
        return Response.json(200, webhooks.hook.as_dict())

    @router.route("POST", "/webhooks/hook")
    def set_hook(request: Request) -> Response:
        try:
            webhooks.hook = parse_hook_config(request.json())
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        return Response.json(200, webhooks.hook.as_dict())

    @router.route("POST", "/webhooks/{delivery_id}/redeliver")
    def redeliver(request: Request) -> Response:
        try:
            queued = webhooks.redeliver(request.params["delivery_id"])
        except queue.Full as exc:
            raise HttpError(503, "too many deliveries pending") from exc
        if queued is None:
            raise HttpError(404, "no such delivery (or older than the last 1000)")
        return Response.json(202, queued.as_dict())

    return router
