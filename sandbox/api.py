"""The REST routes under /api/v3: self-hosted runners, tokens, JIT config, jobs, rate limit."""

from __future__ import annotations

import math
import time
from typing import Any, cast
from urllib.parse import urlencode

from sandbox import jitconfig, render
from sandbox.context import Context
from sandbox.state import Scope, StateError, iso
from sandbox.web import HttpError, Request, Response, Router

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RUNNERS_DOCS = "https://docs.github.com/rest/actions/self-hosted-runners"


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.arg(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def paginate(
    ctx: Context, request: Request, items: list[Any]
) -> tuple[list[Any], list[tuple[str, str]]]:
    """Cut a page out of a list, with GitHub's Link header.

    Args:
        ctx: server context (for absolute URLs).
        request: the request (per_page, page and other query arguments).
        items: the whole list.

    Returns:
        The page and the headers to add.
    """
    per_page = min(max(_int_arg(request, "per_page", DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
    page = max(_int_arg(request, "page", 1), 1)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    if last == 1:
        return chunk, []
    others = [
        (k, v) for k, vs in request.query.items() if k not in ("page", "per_page") for v in vs
    ]

    def link(number: int, rel: str) -> str:
        query = urlencode([*others, ("per_page", str(per_page)), ("page", str(number))])
        return f'<{ctx.base_url}{request.path}?{query}>; rel="{rel}"'

    links = []
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, [("Link", ", ".join(links))]


def _scope(request: Request) -> Scope:
    params = request.params
    if "org" in params:
        return Scope("org", params["org"])
    return Scope("repo", f"{params['owner']}/{params['repo']}")


def _runner_id(request: Request) -> int:
    try:
        return int(request.params["runner_id"])
    except ValueError as exc:
        raise HttpError(404, "Not Found") from exc


def _state_error(exc: StateError) -> HttpError:
    return HttpError(exc.status, exc.message, doc=RUNNERS_DOCS)


def _validate_jit(body: Any) -> tuple[str, int, list[str], str]:
    errors: list[str] = []
    if not isinstance(body, dict):
        raise HttpError(422, "Invalid request.\n\nThe request body must be a JSON object.")
    name = body.get("name")
    group_id = body.get("runner_group_id")
    labels = body.get("labels")
    work_folder = body.get("work_folder", "_work")
    if not isinstance(name, str) or not name.strip():
        errors.append('"name" is required and must be a non-empty string.')
    if isinstance(group_id, bool) or not isinstance(group_id, int):
        errors.append('"runner_group_id" must be an integer.')
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        errors.append('"labels" must be an array of strings.')
    elif not 1 <= len(labels) <= 100:
        errors.append('"labels" must have between 1 and 100 items.')
    if not isinstance(work_folder, str) or not work_folder:
        errors.append('"work_folder" must be a string.')
    if errors:
        message = "Invalid request.\n\n" + "\n".join(errors)
        raise HttpError(422, message, doc=RUNNERS_DOCS)
    return (
        cast("str", name),
        cast("int", group_id),
        cast("list[str]", labels),
        cast("str", work_folder),
    )


def build_router(ctx: Context) -> Router:  # noqa: C901, PLR0915 - one closure per route
    """The /api/v3 routes.

    Args:
        ctx: server context.

    Returns:
        The router (paths below /api/v3).
    """
    router = Router("/api/v3")
    state = ctx.state

    for prefix in ("/repos/{owner}/{repo}", "/orgs/{org}"):
        base = f"{prefix}/actions/runners"

        @router.route("GET", f"{base}/downloads")
        def downloads(request: Request) -> Response:
            del request
            apps = ctx.downloads.applications(state.runner_version, ctx.base_url)
            return Response.json(200, apps)

        @router.route("POST", f"{base}/registration-token", admin=True)
        def registration_token(request: Request) -> Response:
            token = state.create_remote_token("registration", _scope(request))
            return Response.json(201, {"token": token.token, "expires_at": _iso(token.expires_at)})

        @router.route("POST", f"{base}/remove-token", admin=True)
        def remove_token(request: Request) -> Response:
            token = state.create_remote_token("remove", _scope(request))
            return Response.json(201, {"token": token.token, "expires_at": _iso(token.expires_at)})

        @router.route("POST", f"{base}/generate-jitconfig", admin=True)
        def generate_jitconfig(request: Request) -> Response:
            name, group_id, labels, work_folder = _validate_jit(request.json())
            try:
                runner = state.register_runner(
                    _scope(request),
                    name,
                    labels,
                    group_id=group_id,
                    ephemeral=True,
                    jit=True,
                    work_folder=work_folder,
                )
            except StateError as exc:
                raise _state_error(exc) from exc
            encoded = jitconfig.encode(runner, ctx.base_url, ctx.runner_settings)
            body = {
                "runner": render.runner_json(runner, state, time.time()),
                "encoded_jit_config": encoded,
            }
            return Response.json(201, body)

        @router.route("GET", base, admin=True)
        def list_runners(request: Request) -> Response:
            runners = state.list_runners(_scope(request), request.arg("name"))
            page, headers = paginate(ctx, request, runners)
            now = time.time()
            body = {
                "total_count": len(runners),
                "runners": [render.runner_json(r, state, now) for r in page],
            }
            return Response.json(200, body, headers)

        @router.route("GET", f"{base}/{{runner_id}}", admin=True)
        def get_runner(request: Request) -> Response:
            try:
                runner = state.get_runner(_scope(request), _runner_id(request))
            except StateError as exc:
                raise _state_error(exc) from exc
            return Response.json(200, render.runner_json(runner, state, time.time()))

        @router.route("DELETE", f"{base}/{{runner_id}}", admin=True)
        def delete_runner(request: Request) -> Response:
            try:
                state.delete_runner(_scope(request), _runner_id(request))
            except StateError as exc:
                raise _state_error(exc) from exc
            return Response.empty(204)

    @router.route("GET", "/orgs/{org}/actions/runner-groups", admin=True)
    def runner_groups(request: Request) -> Response:
        org = request.params["org"]
        groups = state.org_groups(org)
        page, headers = paginate(ctx, request, groups)
        body = {
            "total_count": len(groups),
            "runner_groups": [render.group_json(g, org, ctx.api_url) for g in page],
        }
        return Response.json(200, body, headers)

    @router.route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}")
    def get_job(request: Request) -> Response:
        params = request.params
        try:
            job = state.get_job(int(params["job_id"]), f"{params['owner']}/{params['repo']}")
        except (ValueError, StateError) as exc:
            raise HttpError(404, "Not Found") from exc
        return Response.json(200, render.job_json(job, ctx.api_url, ctx.base_url))

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs")
    def run_jobs(request: Request) -> Response:
        params = request.params
        try:
            run_id = int(params["run_id"])
        except ValueError as exc:
            raise HttpError(404, "Not Found") from exc
        jobs = state.run_jobs(f"{params['owner']}/{params['repo']}", run_id)
        page, headers = paginate(ctx, request, jobs)
        body = {
            "total_count": len(jobs),
            "jobs": [render.job_json(j, ctx.api_url, ctx.base_url) for j in page],
        }
        return Response.json(200, body, headers)

    @router.route("GET", "/rate_limit")
    def rate_limit(request: Request) -> Response:
        bucket = ctx.ratelimit.peek(request.rate_key or request.token or "")
        core = {
            "limit": bucket.limit,
            "remaining": bucket.remaining,
            "reset": math.ceil(bucket.reset),
            "used": bucket.used,
        }
        reset = int(time.time()) + 3600
        fresh = {"limit": 5000, "remaining": 5000, "reset": reset, "used": 0}
        search = {"limit": 30, "remaining": 30, "reset": int(time.time()) + 60, "used": 0}
        resources = {
            "core": core,
            "search": search,
            "graphql": dict(fresh),
            "integration_manifest": dict(fresh),
            "actions_runner_registration": {**fresh, "limit": 10000, "remaining": 10000},
        }
        return Response.json(200, {"resources": resources, "rate": core})

    # Not in the runners subset, served so that PyGithub's non-lazy get_repo/get_organization
    # work against the sandbox.
    @router.route("GET", "/repos/{owner}/{repo}")
    def get_repo(request: Request) -> Response:
        full_name = f"{request.params['owner']}/{request.params['repo']}"
        return Response.json(200, render.repository_json(full_name, ctx.api_url, ctx.base_url))

    @router.route("GET", "/orgs/{org}")
    def get_org(request: Request) -> Response:
        org = request.params["org"]
        return Response.json(200, render.org_json(org, ctx.api_url, ctx.base_url))

    return router


def _iso(ts: float) -> str:
    return iso(ts) or ""
