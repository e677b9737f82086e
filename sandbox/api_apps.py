"""Sandbox GitHub App routes: installation access tokens, and control routes to set apps up.

REST (below /api/v3, shape of ``sandbox/openapi/app-subset.json``), authenticated by the app's
JWT (``sandbox.apps``), counted in the app's own rate-limit window:

* ``POST /app/installations/{installation_id}/access_tokens`` -> 201 ``{token, expires_at,
  permissions, repository_selection}``; 404 for an installation that is not the app's; 401
  with GitHub's messages for a bad JWT.

Control (below /_sandbox, no auth):

* ``POST /apps`` ``{"client_id": "Iv23...", "public_key": "<PEM>", "installations": [{"id": 7,
  "account"?: "octo", "permissions"?: {...}}]}`` -> 201 ``{client_id, app_id, installations}``
  (registering a client ID again replaces the app);
* ``GET /apps`` -> the apps with their installations' ``tokens_issued`` counts;
* ``POST /apps/{client_id}/revoke-keys`` -> 200 (its JWTs no longer verify: "a revoked key");
* ``POST /app-token-lifetime`` ``{"seconds": 5}`` -> 200: installation tokens given from now
  on last that long (default 3600).
"""

from __future__ import annotations

from sandbox.apps import AppRegistry
from sandbox.context import Context
from sandbox.state import iso
from sandbox.web import HttpError, Request, Response, Router


def register(api: Router, control: Router, ctx: Context) -> AppRegistry:
    """Add the routes to the REST and control routers.

    Args:
        api: The /api/v3 router.
        control: The /_sandbox router.
        ctx: Server context (its token store receives installation tokens).

    Returns:
        The registry the routes share (the server's ``apps``).
    """
    registry = AppRegistry(ctx.tokens)

    @api.route("POST", "/app/installations/{installation_id}/access_tokens", app_jwt=True)
    def access_token(request: Request) -> Response:
        app = registry.authenticate(request)
        request.rate_key = app.rate_key
        ctx.ratelimit.hit(app.rate_key)  # the app's own window (403 once it is spent)
        try:
            installation_id = int(request.params["installation_id"])
        except ValueError as exc:
            raise HttpError(404, "Not Found") from exc
        token, expires_at, permissions = registry.issue_token(app, installation_id)
        body = {
            "token": token,
            "expires_at": iso(expires_at),
            "permissions": permissions,
            "repository_selection": "all",
        }
        return Response.json(201, body)

    @control.route("POST", "/apps")
    def add_app(request: Request) -> Response:
        app = registry.register(request.json())
        body = {
            "client_id": app.client_id,
            "app_id": app.app_id,
            "installations": sorted(app.installations),
        }
        return Response.json(201, body)

    @control.route("GET", "/apps")
    def list_apps(request: Request) -> Response:
        del request
        return Response.json(200, registry.snapshot())

    @control.route("POST", "/apps/{client_id}/revoke-keys")
    def revoke_keys(request: Request) -> Response:
        if not registry.revoke_keys(request.params["client_id"]):
            raise HttpError(404, "no such app")
        return Response.json(200, {"revoked": True})

    @control.route("POST", "/app-token-lifetime")
    def token_lifetime(request: Request) -> Response:
        body = request.json()
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise HttpError(422, "body must be {'seconds': a positive number}")
        registry.token_lifetime = float(seconds)
        return Response.json(200, {"seconds": registry.token_lifetime})

    return registry
