"""Small HTTP primitives shared by the route modules: request, response and a router."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

DOCS = "https://docs.github.com/rest"


@dataclass
class Request:
    """An HTTP request as the route handlers see it."""

    method: str
    path: str
    query_string: str
    headers: Message
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    rate_key: str | None = None  # the rate-limit window (an installation's, an app's, a token's)
    route: str | None = None
    alive: Callable[[], bool] | None = None

    def client_alive(self) -> bool:
        """Whether the client still holds the connection (for long polls).

        Returns:
            False once the client has closed it.
        """
        return self.alive() if self.alive is not None else True

    @property
    def query(self) -> dict[str, list[str]]:
        """Parsed query string."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str) -> str | None:
        """The first value of a query argument.

        Args:
            name: argument name.

        Returns:
            Its value or None.
        """
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON; an empty body is None.

        Returns:
            The parsed body.

        Raises:
            HttpError: 400 if the body is not JSON.
        """
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, "Problems parsing JSON") from exc

    def header(self, name: str) -> str | None:
        """A header value (case-insensitive name).

        Args:
            name: header name.

        Returns:
            Its value or None.
        """
        value = self.headers.get(name)
        return str(value) if value is not None else None


@dataclass
class Response:
    """An HTTP response."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"
    on_failure: Callable[[], None] | None = None
    drip: float = 0.0  # seconds between the body's bytes (a fault); 0 sends it at once

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        """A JSON response.

        Args:
            status: HTTP status.
            payload: JSON-serializable body.
            headers: extra headers.

        Returns:
            The response.
        """
        body = json.dumps(payload, indent=None, separators=(",", ":")).encode()
        return cls(status, body, list(headers or []))

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        """A response with no body.

        Args:
            status: HTTP status.

        Returns:
            The response.
        """
        return cls(status, b"", [], "")

    def header(self, name: str) -> str | None:
        """A header value (case-insensitive name).

        Args:
            name: header name.

        Returns:
            Its value or None.
        """
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class HttpError(Exception):
    """Raised by handlers to answer with a GitHub-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        doc: str = DOCS,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.doc = doc

    def response(self) -> Response:
        """The error as a GitHub-style response.

        Returns:
            JSON {"message", "documentation_url", "status"}.
        """
        body = {"message": self.message, "documentation_url": self.doc, "status": str(self.status)}
        return Response.json(self.status, body, self.headers)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    """One route: method, template and handler."""

    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    admin: bool = False
    app_jwt: bool = False


class Router:
    """Map (method, path) to handlers through templates like ``/repos/{owner}/{repo}``."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        template: str,
        handler: Handler,
        admin: bool = False,
        app_jwt: bool = False,
    ) -> None:
        """Register a handler.

        Args:
            method: HTTP method.
            template: path template below the prefix; ``{name}`` matches one segment.
            handler: the function answering it.
            admin: whether the route needs an admin token.
            app_jwt: whether the route authenticates a GitHub App's JWT itself (no token).
        """
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
        route = Route(method, template, re.compile(f"^{regex}/?$"), handler, admin, app_jwt)
        self.routes.append(route)

    def route(
        self, method: str, template: str, admin: bool = False, app_jwt: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`.

        Args:
            method: HTTP method.
            template: path template.
            admin: whether the route needs an admin token.
            app_jwt: whether the route authenticates a GitHub App's JWT itself.

        Returns:
            The decorator.
        """

        def decorate(handler: Handler) -> Handler:
            self.add(method, template, handler, admin, app_jwt)
            return handler

        return decorate

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """Find the route for a request.

        Args:
            method: HTTP method.
            path: path below the prefix.

        Returns:
            The route and its path parameters, or None.

        Raises:
            HttpError: 405 if the path exists for other methods only.
        """
        allowed = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, dict(found.groupdict())
            allowed = True
        if allowed:
            raise HttpError(405, "Method Not Allowed")
        return None
