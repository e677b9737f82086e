"""Routes under /_runner that the emulated runner application talks to.

Registration uses ``Authorization: RemoteAuth <registration or remove token>``; everything else
uses ``Authorization: RunnerCredential <credential>``, the runner's own secret from
``.credentials`` or the JIT config. See sandbox/README.md for the message shapes.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from sandbox import jitconfig, render
from sandbox.context import Context
from sandbox.state import Job, Runner, Scope, StateError, Step
from sandbox.web import HttpError, Request, Response, Router

MAX_POLL_WAIT = 60.0
POLL_CHECK = 0.5
CONCLUSIONS = ("success", "failure", "cancelled")
STEP_STATUSES = ("queued", "in_progress", "completed")


def _auth(request: Request, scheme: str) -> str:
    value = request.header("Authorization") or ""
    got, _, token = value.partition(" ")
    if got != scheme or not token.strip():
        raise HttpError(401, f"Requires {scheme} authorization")
    return token.strip()


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body


def _error(exc: StateError) -> HttpError:
    return HttpError(exc.status, exc.message)


def job_message(job: Job, ctx: Context) -> dict[str, Any]:
    """What a runner receives for a job.

    Args:
        job: the job.
        ctx: server context.

    Returns:
        The job message (see README).
    """
    return {
        "id": job.id,
        "run_id": job.run_id,
        "run_number": job.run_id,
        "run_attempt": job.run_attempt,
        "name": job.name,
        "repository": job.repository,
        "labels": list(job.labels),
        "steps": list(job.commands),
        "workflow": job.workflow,
        "event": job.event,
        "event_payload": job.event_payload,
        "ref": job.ref,
        "head_sha": job.head_sha,
        "actor": job.actor,
        "server_url": ctx.base_url,
        "api_url": ctx.api_url,
    }


def build_router(ctx: Context) -> Router:  # noqa: C901, PLR0915 - one closure per route
    """The /_runner routes.

    Args:
        ctx: server context.

    Returns:
        The router (paths below /_runner).
    """
    router = Router("/_runner")
    state = ctx.state

    def runner_of(request: Request) -> Runner:
        try:
            return state.runner_by_credential(_auth(request, "RunnerCredential"))
        except StateError as exc:
            raise _error(exc) from exc

    def job_of(request: Request, runner: Runner) -> Job:
        try:
            return state.runner_job(runner, int(request.params["job_id"]))
        except ValueError as exc:
            raise HttpError(404, "Not Found") from exc
        except StateError as exc:
            raise _error(exc) from exc

    @router.route("POST", "/register")
    def register(request: Request) -> Response:
        try:
            token = state.check_remote_token(_auth(request, "RemoteAuth"), "registration")
        except StateError as exc:
            raise _error(exc) from exc
        body = _body(request)
        try:
            scope = Scope.parse(str(body.get("url_path", "")))
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        if scope != token.scope:
            raise HttpError(403, f"Registration token is for {token.scope.name}, not {scope.name}")
        name, labels = body.get("name"), body.get("labels", [])
        if not isinstance(name, str) or not name:
            raise HttpError(422, "name is required")
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise HttpError(422, "labels must be a list of strings")
        group = body.get("runner_group") or None
        try:
            runner = state.register_runner(
                scope,
                name,
                labels,
                group_name=str(group) if group and scope.kind == "org" else None,
                ephemeral=bool(body.get("ephemeral", False)),
                default_labels=not body.get("no_default_labels", False),
                replace=bool(body.get("replace", False)),
                arch=str(body.get("arch", "x64")),
                work_folder=str(body.get("work_folder", "_work")),
            )
        except StateError as exc:
            raise _error(exc) from exc
        answer = {
            ".runner": jitconfig.runner_settings(runner, ctx.base_url, ctx.runner_settings),
            ".credentials": jitconfig.credentials(runner),
        }
        return Response.json(201, answer)

    @router.route("POST", "/deregister")
    def deregister(request: Request) -> Response:
        try:
            token = state.check_remote_token(_auth(request, "RemoteAuth"), "remove")
        except StateError as exc:
            raise _error(exc) from exc
        runner_id = _body(request).get("runner_id")
        if not isinstance(runner_id, int):
            raise HttpError(422, "runner_id is required")
        try:
            state.delete_runner(token.scope, runner_id)
        except StateError as exc:
            raise _error(exc) from exc
        return Response.empty(204)

    @router.route("POST", "/connect")
    def connect(request: Request) -> Response:
        runner = runner_of(request)
        body = _body(request)
        state.touch(runner, str(body.get("version") or "") or None, body.get("arch") or None)
        return Response.json(200, render.runner_json(runner, state, time.time()))

    @router.route("POST", "/heartbeat")
    def heartbeat(request: Request) -> Response:
        runner = runner_of(request)
        state.touch(runner)
        with state.lock:
            job = state.jobs.get(runner.job_id) if runner.job_id is not None else None
            cancel = bool(job is not None and job.cancel_requested)
        return Response.json(200, {"busy": runner.busy, "job_id": runner.job_id, "cancel": cancel})

    @router.route("POST", "/poll")
    def poll(request: Request) -> Response:
        runner = runner_of(request)
        try:
            wait = min(max(float(request.arg("wait") or 0), 0.0), MAX_POLL_WAIT)
        except ValueError as exc:
            raise HttpError(400, "wait must be a number") from exc
        deadline = time.monotonic() + wait
        with state.changed:
            runner.polling += 1
            gone = False
            try:
                state.touch(runner)
                while True:
                    if runner.id not in state.runners:
                        raise HttpError(401, "Runner was deleted")
                    job = state.try_assign(runner)
                    if job is not None:
                        response = Response.json(200, job_message(job, ctx))
                        response.on_failure = functools.partial(state.unassign, runner, job)
                        return response
                    left = deadline - time.monotonic()
                    if left <= 0 or state.closed:
                        return Response.empty(204)
                    state.changed.wait(timeout=min(left, POLL_CHECK))
                    if not request.client_alive():
                        gone = True  # the runner went away: it is not seen any more
                        return Response.empty(204)
            finally:
                runner.polling -= 1
                if not gone:
                    state.touch(runner)

    @router.route("POST", "/jobs/{job_id}/log")
    def log(request: Request) -> Response:
        runner = runner_of(request)
        job = job_of(request, runner)
        text = _body(request).get("text", "")
        if not isinstance(text, str):
            raise HttpError(422, "text must be a string")
        state.append_log(job, text)
        state.touch(runner)
        return Response.empty(204)

    @router.route("POST", "/jobs/{job_id}/steps")
    def step(request: Request) -> Response:
        runner = runner_of(request)
        job = job_of(request, runner)
        body = _body(request)
        number, name, status = body.get("number"), body.get("name"), body.get("status")
        conclusion = body.get("conclusion")
        if not isinstance(number, int) or not isinstance(name, str):
            raise HttpError(422, "number and name are required")
        if status not in STEP_STATUSES:
            raise HttpError(422, f"status must be one of {STEP_STATUSES}")
        if conclusion is not None and not isinstance(conclusion, str):
            raise HttpError(422, "conclusion must be a string")
        started = body.get("started_at")
        completed = body.get("completed_at")
        state.update_step(
            job,
            Step(
                number,
                name,
                str(status),
                conclusion,
                float(started) if isinstance(started, (int, float)) else None,
                float(completed) if isinstance(completed, (int, float)) else None,
            ),
        )
        state.touch(runner)
        return Response.empty(204)

    @router.route("POST", "/jobs/{job_id}/complete")
    def complete(request: Request) -> Response:
        runner = runner_of(request)
        job = job_of(request, runner)
        conclusion = _body(request).get("conclusion")
        if conclusion not in CONCLUSIONS:
            raise HttpError(422, f"conclusion must be one of {CONCLUSIONS}")
        state.complete_job(runner, job, str(conclusion))
        return Response.json(200, {"deleted": runner.ephemeral})

    return router
