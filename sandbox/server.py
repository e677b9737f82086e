"""The sandbox HTTP server: one threaded server for the REST API, control and runner routes."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from sandbox import (
    DEFAULT_RUNNER_VERSION,
    api,
    api_apps,
    api_repos,
    api_runs,
    control,
    runner_protocol,
)
from sandbox.auth import ADMIN, READONLY, TokenStore, bearer
from sandbox.context import Context, Stats
from sandbox.downloads import Downloads
from sandbox.faults import FaultInjector
from sandbox.ratelimit import RateLimiter
from sandbox.state import LOST_TIMEOUT, ONLINE_WINDOW, SandboxState, Scope
from sandbox.web import HttpError, Request, Response, Route, Router
from sandbox.webhooks import WebhookSender

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v3"
MAX_BODY = 8 * 1024 * 1024
RATE_LIMIT_TEMPLATE = "/rate_limit"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer):
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 300
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _alive(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return True
            return bool(self.connection.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            response = HttpError(413 if length > 0 else 400, "Bad request body").response()
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length > 0 else b""
            path, _, query = self.path.partition("?")
            request = Request(self.command, path, query, self.headers, body, alive=self._alive)
            response = self.server.sandbox.dispatch(request)
        try:
            self.send_response(response.status)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            for key, value in response.headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD" and response.drip > 0:
                self._drip(response.body, response.drip)
            elif self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            if response.on_failure is not None:
                response.on_failure()

    def _drip(self, body: bytes, interval: float) -> None:
        """Send the body one byte every ``interval`` seconds (a drip fault)."""
        self.wfile.flush()  # the headers; the body bypasses the buffer, so nothing is left
        for i in range(len(body)):  # in it to flush when the client gives up
            time.sleep(interval)  # stop() shuts the socket down: the next send then fails
            self.connection.sendall(body[i : i + 1])

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _handle  # noqa: N815


class SandboxServer:  # pylint: disable=too-many-instance-attributes
    """A GitHub Enterprise Server stand-in on 127.0.0.1.

    Usage::

        with SandboxServer(token="admin-token", readonly_token="ro-token", port=0) as sb:
            Github(auth=Auth.Token("admin-token"), base_url=sb.api_url)

    Attributes:
        state: the in-memory model.
        tokens: the API tokens.
        faults: the fault injector.
        ratelimit: the per-token primary rate limit.
        stats: request counts.
        webhooks: the webhook sender (its ``deliveries`` record what was sent).
        apps: the GitHub Apps (``sandbox.apps.AppRegistry``).
        observers: callables given every (request, response) exchange, e.g. to validate them.
    """

    def __init__(
        self,
        token: str = "admin-token",  # noqa: S107 - a sandbox default, not a secret
        readonly_token: str | None = None,
        port: int = 0,
        runner_version: str = DEFAULT_RUNNER_VERSION,
        *,
        host: str = "127.0.0.1",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        online_window: float = ONLINE_WINDOW,
        lost_timeout: float = LOST_TIMEOUT,
        runner_poll_wait: float = 20.0,
        runner_heartbeat: float = 5.0,
        fault_seed: int | None = None,
    ):
        """Create the server (it listens once started).

        Args:
            token: admin personal access token.
            readonly_token: a token that can only read.
            port: TCP port on 127.0.0.1; 0 picks a free one.
            runner_version: version of the runner app offered for download.
            host: address to listen on (keep it loopback).
            webhook_url: where to POST workflow_job webhooks.
            webhook_secret: HMAC secret of the webhooks.
            online_window: seconds a runner stays online after it was last heard from.
            lost_timeout: seconds after which a silent busy runner's job fails.
            runner_poll_wait: long-poll seconds written into JIT configs for the runner app.
            runner_heartbeat: heartbeat seconds written into JIT configs for the runner app.
            fault_seed: seed of the fault injector's random draws.
        """
        self.host = host
        self._requested_port = port
        self.state = SandboxState(runner_version, online_window, lost_timeout)
        self.tokens = TokenStore()
        self.tokens.add(token, ADMIN)
        if readonly_token:
            self.tokens.add(readonly_token, READONLY)
        self.ratelimit = RateLimiter()
        self.faults = FaultInjector(fault_seed)
        self.stats = Stats()
        self.webhooks = WebhookSender(webhook_url, webhook_secret)
        self.ctx = Context(
            state=self.state,
            tokens=self.tokens,
            ratelimit=self.ratelimit,
            faults=self.faults,
            downloads=Downloads(),
            stats=self.stats,
            runner_settings={
                "pollWait": runner_poll_wait,
                "heartbeatInterval": runner_heartbeat,
            },
        )
        self.api_router = api.build_router(self.ctx)
        self.control_router = control.build_router(self.ctx, self.webhooks)
        self.runner_router = runner_protocol.build_router(self.ctx)
        # Repository policy endpoints (permissions, protection, pulls): sandbox/api_repos.py.
        self.repo_policy = api_repos.register(self.api_router, self.control_router, self.ctx)
        # GitHub Apps: installation access tokens and their control routes: sandbox/api_apps.py.
        self.apps = api_apps.register(self.api_router, self.control_router, self.ctx)
        # Workflow runs as GitHub records them (the policy decides on them): sandbox/api_runs.py.
        self.runs = api_runs.register(
            self.api_router, self.control_router, self.ctx, self.repo_policy
        )
        self.state.job_listeners.append(self._on_job_event)
        self.observers: list[Callable[[Request, Response], None]] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (the requested one before start)."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The "github-url" of this server, e.g. "http://127.0.0.1:8080"."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The REST API root, e.g. "http://127.0.0.1:8080/api/v3"."""
        return f"{self.base_url}{API_PREFIX}"

    def start(self) -> SandboxServer:
        """Listen and serve in a background thread.

        Returns:
            self.
        """
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self.ctx.base_url = self.base_url
        self.webhooks.start(self.ctx.api_url, self.base_url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake long polls and close open connections."""
        httpd = self._httpd
        if httpd is None:
            return
        self.state.close()
        httpd.shutdown()
        with httpd.connections_lock:
            for conn in list(httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.webhooks.stop()
        self._httpd = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` is called from another one."""
        self.start()
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> SandboxServer:
        """Start on entering a with block.

        Returns:
            self.
        """
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on leaving a with block."""
        self.stop()

    # ---- controls for in-process users ---------------------------------------------------

    def set_runner_version(self, version: str) -> None:
        """Change the runner version offered for download.

        Args:
            version: e.g. "2.331.0".
        """
        control.set_runner_version(self.ctx, version)

    def _on_job_event(self, action: str, job: Any) -> None:
        self.webhooks.job_event(action, job)

    # ---- dispatch ------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        """Answer one request, then show the exchange to every observer.

        Args:
            request: the request.

        Returns:
            The response.
        """
        response = self._dispatch(request)
        for observer in list(self.observers):
            observer(request, response)
        return response

    def _dispatch(self, request: Request) -> Response:
        self.state.reap_lost_jobs()
        try:
            if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
                return self._dispatch_api(request)
            for router in (self.control_router, self.runner_router):
                if request.path.startswith(router.prefix + "/"):
                    return self._dispatch_plain(router, request)
            self.stats.count(f"{request.method} <unknown>")
            return HttpError(404, "Not Found").response()
        except HttpError as exc:
            return exc.response()
        except Exception:  # a bug must answer 500, not kill the connection
            logger.exception("sandbox: unhandled error on %s %s", request.method, request.path)
            return HttpError(500, "Server Error").response()

    def _dispatch_plain(self, router: Router, request: Request) -> Response:
        path = request.path[len(router.prefix) :]
        found = router.match(request.method, path)
        if found is None:
            self.stats.count(f"{request.method} <unknown>")
            raise HttpError(404, "Not Found")
        route, params = found
        self.stats.count(f"{request.method} {router.prefix}{route.template}")
        request.params = params
        return route.handler(request)

    def _dispatch_api(self, request: Request) -> Response:
        path = request.path[len(API_PREFIX) :] or "/"
        headers = [
            ("X-GitHub-Media-Type", "github.v3; format=json"),
            ("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper()),
            ("X-GitHub-Api-Version-Selected", "2022-11-28"),
            ("X-GitHub-Enterprise-Version", "3.14.0"),
        ]
        try:
            found = self.api_router.match(request.method, path)
        except HttpError as exc:
            found = None
            error: HttpError | None = exc
        else:
            error = None if found is not None else HttpError(404, "Not Found")
        template = found[0].template if found is not None else "<unknown>"
        request.route = template
        self.stats.count(f"{request.method} {template}")
        response, drip = self.faults.apply(request.method, path)
        if response is None:
            response = self._authorized_call(request, found, error, template, headers)
        response.drip = drip
        response.headers = headers + [
            (k, v) for k, v in response.headers if k.lower() not in {h[0].lower() for h in headers}
        ]
        if not any(k.lower() == "x-ratelimit-limit" for k, _ in response.headers):
            window = request.rate_key or request.token or ""
            response.headers += self.ratelimit.peek(window).headers()
        return response

    def _app_call(
        self, request: Request, found: tuple[Route, dict[str, str]], headers: list[tuple[str, str]]
    ) -> Response:
        """A route that authenticates a GitHub App's JWT itself (``sandbox.api_apps``)."""
        route, params = found
        request.params = params
        try:
            response: Response = route.handler(request)
        except HttpError as exc:
            response = exc.response()
        if request.rate_key is not None:  # the app was authenticated: its window's headers
            headers += self.ratelimit.peek(request.rate_key).headers()
        return response

    def _scope_exists(self, params: dict[str, str]) -> bool:
        if "org" in params:
            return self.state.scope_allowed(Scope("org", params["org"]))
        if "owner" in params and "repo" in params:
            return self.state.scope_allowed(Scope("repo", f"{params['owner']}/{params['repo']}"))
        return True

    def _authorized_call(
        self,
        request: Request,
        found: tuple[Route, dict[str, str]] | None,
        error: HttpError | None,
        template: str,
        headers: list[tuple[str, str]],
    ) -> Response:
        if found is not None and found[0].app_jwt:
            return self._app_call(request, found, headers)
        token = bearer(request)
        if token is not None and self.tokens.access(token) is not None:
            request.token = token  # known, even if refused below: its rate-limit headers apply
            request.rate_key = self.tokens.rate_key(token)
        try:
            admin = found[0].admin if found is not None else False
            request.token = self.tokens.authenticate(request, admin=admin)
        except HttpError as exc:
            return exc.response()
        request.rate_key = self.tokens.rate_key(request.token)
        try:
            count = template != RATE_LIMIT_TEMPLATE
            headers += self.ratelimit.hit(request.rate_key, count=count)
        except HttpError as exc:
            return exc.response()
        if found is None:
            return (error or HttpError(404, "Not Found")).response()
        route, params = found
        request.params = params
        if not self._scope_exists(params):
            return HttpError(404, "Not Found").response()
        try:
            response: Response = route.handler(request)
        except HttpError as exc:
            return exc.response()
        return response
